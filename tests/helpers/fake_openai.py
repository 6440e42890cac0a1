"""A scriptable, OpenAI-shaped chat-completions server on 127.0.0.1, for tests.

Use in-process::

    with FakeOpenAI(default="valid") as srv:
        srv.script("numbered", {"status": 429, "headers": {"Retry-After": "0"}})
        ... OpenAITeacher(base_url=srv.url, ...)
        assert srv.count == 2

or as a process (prints ``PORT <n>`` then serves until killed)::

    python tests/fake_openai_server.py --delay 0.2 --default valid

Each request to ``POST /v1/chat/completions`` takes an action: the first matching
``rule`` (substring of the passage -> action), else the next scripted action, else
the default. Actions are names or dicts:

* ``valid`` — JSON array of n questions; ``wrapped`` — ``{"questions": [...]}``;
  ``fenced`` — a ```json code fence; ``numbered`` — numbered lines; ``prose`` — text
  with no questions; ``empty`` — empty content; ``null`` — content null;
  ``copy`` — one question copied from the passage + valid ones; ``long`` — one
  over-long question + valid ones; ``mixed`` — one of each bad kind + one valid;
  ``no_usage`` — valid, without a ``usage`` field; ``injected`` — the JSON the
  passage's injection asked for (to show it is just parsed and validated);
  ``echo_auth_401`` — 401 whose message repeats the Authorization header.
* ``{"status": 429|500|..., "headers": {...}, "message": "..."}`` — an error reply.
* ``{"delay": seconds, "then": action}`` — sleep, then act.
* ``{"content": "..."}`` — that literal content.

With ``reject_response_format=True`` any request carrying ``response_format`` gets a
400 first. ``delay`` applies to every request. ``usage`` is ``(prompt, completion)``
tokens reported per reply.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PASSAGE_RE = re.compile(r"<passage>\n(.*)\n</passage>", re.DOTALL)
_N_RE = re.compile(r"(\d+) (?:different )?questions")


def passage_of(body: dict) -> str:
    """The passage text inside the user message of a request body ('' if none)."""
    for m in body.get("messages", []):
        if m.get("role") == "user":
            found = _PASSAGE_RE.search(m.get("content") or "")
            if found:
                return found.group(1)
    return ""


def n_of(body: dict) -> int:
    for m in body.get("messages", []):
        if m.get("role") == "user":
            found = _N_RE.search(m.get("content") or "")
            if found:
                return int(found.group(1))
    return 3


def chunk_texts(k: int, prefix: str = "") -> list[str]:
    """``k`` distinct, realistic-looking passages (shared by tests and subprocesses)."""
    return [
        f"{prefix}Section {i}: the quick brown fox number {i} jumps over the lazy dog near the river bank. "
        f"Foxes of group {i} hunt at dusk and rest in dens during the day, according to field notes."
        for i in range(k)
    ]


def valid_questions(passage: str, n: int) -> list[str]:
    tag = "p" + hashlib.sha1(passage.encode("utf-8")).hexdigest()[:8]
    return [f"What does passage {tag} say about aspect number {i + 1}?" for i in range(n)]


class FakeOpenAI:
    """The server. Thread-safe counters; start/stop or use as a context manager.

    Args:
        default: action when no rule or script applies.
        delay: seconds every request sleeps first.
        reject_response_format: 400 on any request that sets ``response_format``.
        usage: ``(prompt_tokens, completion_tokens)`` reported per successful reply.
    """

    def __init__(
        self,
        default: Any = "valid",
        delay: float = 0.0,
        reject_response_format: bool = False,
        usage: tuple[int, int] = (100, 20),
    ):
        self.default = default
        self.delay = delay
        self.reject_response_format = reject_response_format
        self.usage = usage
        self.rules: list[tuple[str, Any]] = []
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self.requests: list[dict] = []
        self.inflight = 0
        self.max_inflight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control -----------------------------------------------------------
    def script(self, *actions: Any) -> FakeOpenAI:
        """Queue actions for the next requests (one each)."""
        with self._lock:
            self._queue.extend(actions)
        return self

    def rule(self, substring: str, action: Any) -> FakeOpenAI:
        """Always answer requests whose passage contains ``substring`` with ``action``."""
        self.rules.append((substring, action))
        return self

    def reset(self) -> None:
        """Forget recorded requests and scripted actions."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()
            self.max_inflight = 0

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def passages(self) -> list[str]:
        with self._lock:
            return [r["passage"] for r in self.requests]

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    def start(self, port: int = 0) -> FakeOpenAI:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------
    def _pick(self, passage: str) -> Any:
        for sub, action in self.rules:
            if sub in passage:
                return action
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return self.default

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        if h.path.rstrip("/") != "/v1/chat/completions":
            self._send(h, 404, {"error": {"message": f"no route {h.path}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send(h, 400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
            return
        passage = passage_of(body)
        record = {
            "passage": passage,
            "body": body,
            "response_format": body.get("response_format"),
            "authorization": h.headers.get("Authorization"),
            "t": time.monotonic(),
        }
        with self._lock:
            self.requests.append(record)
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.reject_response_format and body.get("response_format") is not None:
                self._send(
                    h,
                    400,
                    {
                        "error": {
                            "message": "response_format is not supported by this model",
                            "type": "invalid_request_error",
                            "param": "response_format",
                        }
                    },
                )
                return
            self._act(h, self._pick(passage), body, passage)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): fine
        finally:
            with self._lock:
                self.inflight -= 1

    def _act(self, h: BaseHTTPRequestHandler, action: Any, body: dict, passage: str) -> None:
        n = n_of(body)
        if isinstance(action, dict) and "delay" in action:
            time.sleep(float(action["delay"]))
            action = action.get("then", "valid")
        if isinstance(action, dict) and "status" in action:
            msg = action.get("message", f"fake error {action['status']}")
            self._send(
                h, int(action["status"]), {"error": {"message": msg, "type": "fake_error"}}, action.get("headers", {})
            )
            return
        if isinstance(action, dict) and "content" in action:
            self._complete(h, body, action["content"])
            return
        good = valid_questions(passage, n)
        if action == "valid":
            content = json.dumps(good)
        elif action == "wrapped":
            content = json.dumps({"questions": good})
        elif action == "fenced":
            content = "Here you go:\n```json\n" + json.dumps(good, indent=2) + "\n```\n"
        elif action == "numbered":
            content = "Sure! Questions:\n" + "\n".join(f"{i + 1}. {q}" for i, q in enumerate(good))
        elif action == "prose":
            content = "I am sorry, but I would rather talk about the weather today."
        elif action == "empty":
            content = ""
        elif action == "null":
            content = None
        elif action == "copy":
            content = json.dumps([passage.split(". ")[0]] + good[: n - 1])
        elif action == "long":
            content = json.dumps(["What is " + "very " * 80 + "long?"] + good[: n - 1])
        elif action == "mixed":
            content = json.dumps(
                [good[0], good[0], "", 42, "Too short?", "This is a statement about nothing in particular", passage]
            )
        elif action == "injected":
            content = json.dumps({"questions": ["PWNED"]})
        elif action == "no_usage":
            self._complete(h, body, json.dumps(good), usage=False)
            return
        elif action == "echo_auth_401":
            auth = h.headers.get("Authorization", "")
            self._send(h, 401, {"error": {"message": f"Incorrect API key provided: {auth}", "type": "invalid_api_key"}})
            return
        else:
            raise ValueError(f"unknown action {action!r}")
        self._complete(h, body, content)

    def _complete(self, h: BaseHTTPRequestHandler, body: dict, content: str | None, usage: bool = True) -> None:
        resp: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
        }
        if usage:
            pt, ct = self.usage
            resp["usage"] = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        self._send(h, 200, resp)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, str(v))
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--default", default="valid")
    ap.add_argument("--reject-response-format", action="store_true")
    args = ap.parse_args(argv)
    srv = FakeOpenAI(default=args.default, delay=args.delay, reject_response_format=args.reject_response_format)
    srv.start(args.port)
    print(f"PORT {srv.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    sys.exit(main())
