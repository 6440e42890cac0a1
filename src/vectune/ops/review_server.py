"""Pair review in the browser: ``vectune review`` serves the last run's pair sample on 127.0.0.1.

A person reads the sampled training pairs (query, the passage that answers it, the hard
negative, the source) and clicks *reject pair* or *reject query*. Each click is a plain
HTML form POST — no script, no framework, nothing fetched from elsewhere — and lands in
the same store ``vectune pairs reject`` writes (:class:`vectune.rejections.Rejections`,
``<run_dir>/rejections.jsonl``), so the next cycle never trains on it.

The server listens on the loopback interface only, and every request must carry the
random token printed at start (``?token=...`` in the URL, a hidden field in the forms):
other local users, and web pages the reviewer happens to have open, get 403.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections.abc import Mapping
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from vectune.observe.pages import CSS
from vectune.pipeline.pairs import rejections, review

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_BODY = 64 * 1024
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never pass it on
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def page(alias: str, rows: list[dict], vetoes: rejections.Rejections, token: str, message: str = "") -> str:
    """The review page: every sampled pair with its reject buttons (already rejected rows are marked)."""
    t = escape(token, quote=True)
    counts = vetoes.counts()
    trs = []
    for i, r in enumerate(rows, 1):
        pid = escape(str(r.get("pair_id") or ""), quote=True)
        done = vetoes.row_rejected(r)
        if done:
            actions = "<span class='badge warn'>rejected</span>"
        elif pid:
            actions = "".join(
                f"<form method='post' action='/reject' id='reject-{what}-{pid}' class='act'>"
                f"<input type='hidden' name='token' value='{t}'><input type='hidden' name='pair_id' value='{pid}'>"
                f"<input type='hidden' name='what' value='{what}'><input type='hidden' name='row' value='{i}'>"
                f"<button type='submit' class='{what}'>{label}</button></form>"
                for what, label in (("pair", "Reject pair"), ("query", "Reject query")))
        else:
            actions = "<span class='muted small'>no id</span>"
        trs.append(f"<tr id='row-{i}' class='{'rej' if done else ''}' data-pair-id='{pid}'>"
                   f"<td class='num muted'>{i}</td><td class='q'>{escape(str(r.get('query') or ''))}</td>"
                   f"<td class='snip'>{escape(str(r.get('positive_snippet') or ''))}</td>"
                   f"<td class='snip'>{escape(str(r.get('negative_snippet') or '')) or '<span class=muted>–</span>'}</td>"
                   f"<td><span class='badge neutral'>{escape(str(r.get('source') or ''))}</span></td>"
                   f"<td class='acts'>{actions}</td></tr>")
    note = f"<div class='notice' id='message'>{escape(message)}</div>" if message else ""
    body = (f"<div class='banner neutral' id='decision'><div class='verdict'>Pair review</div>"
            f"<h1>{len(rows)} training pairs of alias '{escape(alias)}'</h1>"
            f"<p>Reject a pair whose passage does not answer its query, or a whole query that is wrong or should "
            f"not be learned. The next cycle leaves rejected pairs and queries out of training. "
            f"Rejections cannot be undone here.</p><p class='facts' id='counts'>Vetoed so far: {counts['pairs']} pairs "
            f"and {counts['queries']} whole queries.</p></div>{note}"
            "<section class='card'><table><tr><th class='num'>#</th><th>query</th><th>positive (answers it)</th>"
            f"<th>hard negative</th><th>source</th><th></th></tr>{''.join(trs)}</table></section>")
    extra = ("form.act{display:inline}form.act+form.act{margin-left:6px}button{font:inherit;font-size:13px;padding:4px 10px;border-radius:6px;"
             "border:1px solid #d0d7de;background:#f6f8fa;cursor:pointer;margin:2px 0;white-space:nowrap}"
             "button:hover{background:#ffebe9;border-color:#ff8182;color:#c0392b}td.acts{white-space:nowrap}"
             "tr.rej td{color:#8c959f;text-decoration:line-through}tr.rej td.acts{text-decoration:none}")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><meta name='referrer' content='no-referrer'>"
            f"<title>vectune review: {escape(alias)}</title><style>{CSS}{extra}</style></head><body>"
            f"<header class='top'><div class='wrap'><span class='brand'>vectune</span>"
            f"<span class='crumb'>pair review · {escape(alias)}</span></div></header>"
            f"<main class='wrap'>{body}</main></body></html>")


class ReviewServer:
    """The review page's HTTP server (loopback only, token-guarded).

    Args:
        run_dir: the alias's run directory (``settings.run_dir(alias)``): its pair sample and rejections.
        alias: the alias (for the page's title).
        port: TCP port; 0 picks a free one.
        host: the interface; 127.0.0.1 unless a caller insists (the CLI does not offer another).
        token: the access token (default: a fresh random one).
    """

    def __init__(self, run_dir: Path | str, alias: str, port: int = 0, host: str = HOST, token: str | None = None):
        self.run_dir, self.alias = Path(run_dir), alias
        self.token = token or secrets.token_urlsafe(24)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        review.read_run_sample(self.run_dir, alias)  # a clear error now if there is nothing to review
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        """The page's address, token included."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/?{urlencode({'token': self.token})}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> ReviewServer:
        """Serve in a background thread (tests, embedding)."""
        self._thread = threading.Thread(target=self.serve_forever, name="vectune-review", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()

    def __enter__(self) -> ReviewServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------------- actions
    def reject(self, pair_id: str, what: str) -> str:
        """Record one rejection from the page; returns the message to show."""
        rows = review.read_run_sample(self.run_dir, self.alias)
        row = next((r for r in rows if r.get("pair_id") == pair_id), None)
        if row is None:
            raise LookupError(f"pair {pair_id} is not in the current sample (a new run replaced it?)")
        with self._lock:
            rej = rejections.Rejections(self.run_dir)
            new = rej.add_row(row, whole_query=(what == "query"), note="review page")
        what_text = f"every pair of the query '{row.get('query')}'" if what == "query" else f"pair {pair_id}"
        return f"Rejected {what_text}." if new else f"Already rejected: {what_text}."

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "vectune-review"
            sys_version = ""

            def log_message(self, fmt, *args):  # noqa: D401 - never log the token
                logger.debug("review %s: " + fmt, self.client_address[0],
                             *[str(a).replace(server.token, "<token>") for a in args])

            def _send(self, status: int, body: str = "", headers: Mapping[str, str] | None = None) -> None:
                data = body.encode("utf-8")
                self.send_response(status)
                for k, v in {**HEADERS, **(headers or {})}.items():
                    self.send_header(k, v)
                if data:
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if data and self.command != "HEAD":
                    self.wfile.write(data)

            def _authorised(self, given: str | None) -> bool:
                return bool(given) and hmac.compare_digest(given.encode(), server.token.encode())

            def _deny(self) -> None:
                self._send(HTTPStatus.FORBIDDEN, "<!DOCTYPE html><title>403</title><h1>403 Forbidden</h1>"
                                                 "<p>This page needs the token printed by <code>vectune review</code>.</p>")

            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                q = parse_qs(url.query)
                if not self._authorised((q.get("token") or [None])[0]):
                    return self._deny()
                if url.path not in ("/", "/index.html"):
                    return self._send(HTTPStatus.NOT_FOUND, "<h1>404</h1>")
                try:
                    rows = review.read_run_sample(server.run_dir, server.alias)
                except Exception as e:  # noqa: BLE001 - the sample vanished or is unreadable: say so
                    return self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"<h1>No pair sample</h1><p>{escape(str(e))}</p>")
                msg = (q.get("msg") or [""])[0][:300]
                self._send(HTTPStatus.OK, page(server.alias, rows, rejections.Rejections(server.run_dir), server.token, msg))

            do_HEAD = do_GET

            def do_POST(self):  # noqa: N802
                url = urlsplit(self.path)
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0 or length > MAX_BODY:
                    return self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "<h1>413</h1>")
                form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
                token = (form.get("token") or parse_qs(url.query).get("token") or [None])[0]
                if not self._authorised(token):
                    return self._deny()
                if url.path != "/reject":
                    return self._send(HTTPStatus.NOT_FOUND, "<h1>404</h1>")
                pid, what = (form.get("pair_id") or [""])[0], (form.get("what") or ["pair"])[0]
                if what not in ("pair", "query") or not pid:
                    return self._send(HTTPStatus.BAD_REQUEST, "<h1>400</h1><p>pair_id and what=pair|query needed</p>")
                try:
                    msg = server.reject(pid, what)
                except LookupError as e:
                    return self._send(HTTPStatus.CONFLICT, f"<h1>409</h1><p>{escape(str(e))}</p>")
                row = (form.get("row") or [""])[0]
                anchor = f"#row-{row}" if row.isdigit() else ""
                self._send(HTTPStatus.SEE_OTHER, headers={
                    "Location": "/?" + urlencode({"token": server.token, "msg": msg}) + anchor})

        return Handler
