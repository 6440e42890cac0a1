"""ops/review_server.py: the pair-review page on 127.0.0.1, token-guarded, writing the rejections store."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlencode, urlsplit

import pytest

from tests.helpers.cli import invoke
from vectune.ops.review_server import ReviewServer
from vectune.pipeline.pairs import rejections, review


class _Ex:
    def __init__(self, anchor, positive, negatives=(), source="feedback"):
        self.anchor, self.positive, self.negatives, self.source = anchor, positive, list(negatives), source


ROWS = review.sample_pairs([_Ex("what is a list?", "Lists are mutable sequences.", ["Tuples are immutable."]),
                            _Ex("what is a list?", "A list literal is written in brackets."),
                            _Ex("how do dicts work?", "Dictionaries map keys to values.", ["Sets hold keys."]),
                            _Ex("what is a <b>set</b>?", "Sets are unordered collections.", [], "offline:title")])


@pytest.fixture
def server(tmp_path):
    review.write_run_sample(tmp_path, ROWS)
    with ReviewServer(tmp_path, "docs").start() as s:
        yield s


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def _post(url, fields):
    req = urllib.request.Request(url, data=urlencode(fields).encode(), method="POST")
    try:
        with urllib.request.build_opener(_NoRedirect).open(req, timeout=10) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def test_listens_on_loopback_only_with_a_random_token(server, tmp_path):
    parts = urlsplit(server.url)
    assert parts.hostname == "127.0.0.1" and len(server.token) >= 24
    with ReviewServer(tmp_path, "docs") as other:
        assert other.token != server.token


def test_requests_without_the_token_get_403(server):
    base = server.url.split("?")[0]
    assert _get(base)[0] == 403
    assert _get(base + "?token=wrong")[0] == 403
    assert _get(base + "nothing-here")[0] == 403  # even a 404 needs the token first
    status, _ = _post(base + "reject", {"pair_id": ROWS[0]["pair_id"], "what": "pair"})
    assert status == 403
    assert len(rejections.Rejections(server.run_dir)) == 0  # nothing recorded


def test_page_lists_the_sample_escaped_with_safe_headers(server):
    status, html, headers = _get(server.url)
    assert status == 200
    assert html.count("Reject pair") == len(ROWS) and "what is a &lt;b&gt;set&lt;/b&gt;?" in html
    assert headers["Referrer-Policy"] == "no-referrer" and "default-src 'none'" in headers["Content-Security-Policy"]
    assert "<script" not in html


def test_reject_pair_and_query_land_in_the_rejections_store(server):
    base = server.url.split("?")[0]
    status, headers = _post(base + "reject", {"token": server.token, "pair_id": ROWS[2]["pair_id"], "what": "pair",
                                              "row": "3"})
    assert status == 303 and headers["Location"].endswith("#row-3") and server.token in headers["Location"]
    assert _post(base + "reject", {"token": server.token, "pair_id": ROWS[0]["pair_id"], "what": "query"})[0] == 303
    rej = rejections.Rejections(server.run_dir)
    assert rej.counts() == {"pairs": 1, "queries": 1}
    assert rej.row_rejected(ROWS[2]) and rej.row_rejected(ROWS[0]) and rej.row_rejected(ROWS[1])  # same query
    assert not rej.row_rejected(ROWS[3])
    html = _get(server.url)[1]
    assert html.count("Reject pair") == 1 and html.count("badge warn'>rejected") == 3
    # the store is the one `vectune pairs reject` writes: one JSON record per line
    lines = [json.loads(x) for x in (server.run_dir / review.REJECTIONS_FILE).read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["pair", "query"] and lines[0]["pair_id"] == ROWS[2]["pair_id"]


def test_bad_posts(server):
    base = server.url.split("?")[0]
    assert _post(base + "reject", {"token": server.token, "pair_id": "ffffffffffffffff", "what": "pair"})[0] == 409
    assert _post(base + "reject", {"token": server.token, "pair_id": ROWS[0]["pair_id"], "what": "all"})[0] == 400


def test_cli_review_and_report_without_a_run_say_so(home):
    r = invoke("review", "--alias", "docs", expect=3)
    assert "no training-pair sample" in r.output
    r = invoke("report", "--alias", "docs", expect=3)
    assert "no run report or history" in r.output


def test_cli_report_prints_the_pages(home):
    from vectune.observe.report import write

    reports = home / "work" / "reports" / "docs"
    write({"run_id": "20260101T000000Z-abc123", "alias": "docs", "status": "kept", "reason": "within noise"}, reports)
    r = invoke("report", "--alias", "docs")
    assert f"history: {reports / 'history.html'}" in r.output
    assert f"run 20260101T000000Z-abc123: {reports / '20260101T000000Z-abc123.html'}" in r.output
    invoke("report", "--alias", "docs", "--run", "nope", expect=3)
