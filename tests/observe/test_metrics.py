"""Tests for the Prometheus textfile exporter and Pushgateway push."""

from __future__ import annotations

import base64
import os
import re
import stat
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from vectune.observe import metrics
from vectune.observe.metrics import export, push, registry, render, textfile_path, write_textfile

REPORT = {
    "alias": "docs",
    "status": "promoted",
    "started_at": "2025-01-01T03:00:00Z",
    "finished_at": "2025-01-01T03:20:00+00:00",
    "duration_s": 1200.5,
    "gate": {
        "metric": "recall@5",
        "live": 0.61,
        "candidate": 0.66,
        "promoted": True,
        "reason": "delta above min_delta",
        "evidence": {"ci_low": 0.01},
    },
}
T_FINISHED = 1735701600.0  # 2025-01-01T03:20:00Z

SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def parse(text: str) -> dict[tuple[str, str], float]:
    """Parse exposition text into {(name, labels): value}; checks every line's shape."""
    out: dict[tuple[str, str], float] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            assert line.split()[3] == "gauge"
            continue
        m = SAMPLE.match(line)
        assert m, f"bad line {line!r}"
        assert m.group(1) in helped, f"{m.group(1)} has no HELP"
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def test_render_promoted() -> None:
    text = render(REPORT)
    assert text.endswith("\n")
    vals = parse(text)
    a = '{alias="docs"}'
    assert vals[("vectune_last_run_timestamp_seconds", a)] == T_FINISHED
    assert vals[("vectune_last_run_success", a)] == 1
    assert vals[("vectune_last_run_duration_seconds", a)] == 1200.5
    assert vals[("vectune_last_run_promoted", a)] == 1
    assert vals[("vectune_last_success_timestamp_seconds", a)] == T_FINISHED
    assert vals[("vectune_recall_live", '{alias="docs",metric="recall@5"}')] == 0.61
    assert vals[("vectune_recall_candidate", '{alias="docs",metric="recall@5"}')] == 0.66
    assert vals[("vectune_last_run_status", '{alias="docs",status="promoted"}')] == 1
    assert vals[("vectune_last_run_status", '{alias="docs",status="failed"}')] == 0


@pytest.mark.parametrize(
    ("status", "success", "promoted"),
    [("kept", 1, 0), ("noop", 1, 0), ("dry-run", 1, 0), ("failed", 0, 0), ("interrupted", 0, 0)],
)
def test_render_statuses(status: str, success: int, promoted: int) -> None:
    vals = parse(render({**REPORT, "status": status}))
    assert vals[("vectune_last_run_success", '{alias="docs"}')] == success
    assert vals[("vectune_last_run_promoted", '{alias="docs"}')] == promoted
    statuses = {labels for name, labels in vals if name == "vectune_last_run_status"}
    assert len(statuses) == len(metrics.STATUSES)  # same label set every run
    assert vals[("vectune_last_run_status", f'{{alias="docs",status="{status}"}}')] == 1


def test_render_tolerates_missing_keys() -> None:
    vals = parse(render({}, now=123.0))
    assert vals[("vectune_last_run_timestamp_seconds", '{alias="unknown"}')] == 123.0
    assert vals[("vectune_last_run_success", '{alias="unknown"}')] == 0  # no status: treat as failed
    assert not any(name.startswith("vectune_recall") for name, _ in vals)
    assert ("vectune_last_run_duration_seconds", '{alias="unknown"}') not in vals


def test_render_epoch_times_and_derived_duration() -> None:
    vals = parse(render({"alias": "a", "status": "noop", "started_at": 100, "finished_at": 160.5, "gate": None}))
    assert vals[("vectune_last_run_duration_seconds", '{alias="a"}')] == 60.5
    assert vals[("vectune_last_run_timestamp_seconds", '{alias="a"}')] == 160.5


def test_render_partial_gate_and_nan() -> None:
    vals = parse(render({"alias": "a", "status": "failed", "gate": {"live": float("nan"), "candidate": None}}))
    key = ("vectune_recall_live", '{alias="a",metric="unknown"}')
    assert key in vals and vals[key] != vals[key]  # NaN
    assert not any(n == "vectune_recall_candidate" for n, _ in vals)


def test_label_escaping() -> None:
    text = render({"alias": 'we"ird\\al\nias', "status": "kept"})
    assert 'alias="we\\"ird\\\\al\\nias"' in text
    assert len([ln for ln in text.splitlines() if ln.startswith("vectune_last_run_success")]) == 1


def test_write_textfile_atomic_and_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "tf" / "vectune_docs.prom"
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        replaced.append((str(src), str(dst)))
        assert Path(src).parent == target.parent  # same directory: rename is atomic
        assert not str(Path(src).name).endswith(".prom")  # collector ignores the temp file
        assert Path(src).read_text() == render(REPORT)  # complete before the rename
        real_replace(src, dst)

    monkeypatch.setattr(metrics.os, "replace", spy)
    text = write_textfile(target, REPORT)
    assert replaced and replaced[0][1] == str(target)
    assert target.read_text() == text
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["vectune_docs.prom"]


def test_write_textfile_failure_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "vectune_docs.prom"
    target.write_text("old\n")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(metrics.os, "replace", boom)
    with pytest.raises(OSError):
        write_textfile(target, REPORT)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["vectune_docs.prom"]  # temp file cleaned


def test_failed_run_keeps_last_success(tmp_path: Path) -> None:
    target = textfile_path(tmp_path, "docs")
    write_textfile(target, REPORT)
    write_textfile(target, {"alias": "docs", "status": "failed", "finished_at": T_FINISHED + 86400})
    vals = parse(target.read_text())
    assert vals[("vectune_last_success_timestamp_seconds", '{alias="docs"}')] == T_FINISHED
    assert vals[("vectune_last_run_timestamp_seconds", '{alias="docs"}')] == T_FINISHED + 86400
    assert vals[("vectune_last_run_success", '{alias="docs"}')] == 0


def test_textfile_path_sanitises(tmp_path: Path) -> None:
    assert textfile_path(tmp_path, "a/b c").name == "vectune_a_b_c.prom"


class _Gateway(BaseHTTPRequestHandler):
    received: list[tuple[str, str, dict[str, str], bytes]] = []
    status = 200

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append((self.command, self.path, dict(self.headers), body))
        self.send_response(type(self).status)
        self.end_headers()

    do_PUT = do_POST = _handle

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> tuple[str, type[_Gateway]]:
    _Gateway.received = []
    _Gateway.status = 200
    server = HTTPServer(("127.0.0.1", 0), _Gateway)
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{server.server_port}", _Gateway
    server.shutdown()
    server.server_close()


def test_push_puts_grouped_text(gateway: tuple[str, type[_Gateway]]) -> None:
    url, gw = gateway
    push(url + "/", "vectune", registry(REPORT), grouping={"alias": "docs"})
    (method, path, headers, body), = gw.received
    assert method == "PUT"
    assert path == "/metrics/job/vectune/alias/docs"
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert body.decode() == render(REPORT)


def test_push_base64_and_basic_auth(gateway: tuple[str, type[_Gateway]]) -> None:
    url, gw = gateway
    authed = url.replace("http://", "http://user:p%40ss@")
    push(authed, "vectune", registry({"alias": "a/b"}), grouping={"alias": "a/b"})
    _, path, headers, _ = gw.received[0]
    enc = base64.urlsafe_b64encode(b"a/b").decode().rstrip("=")
    assert path == f"/metrics/job/vectune/alias@base64/{enc}"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"user:p@ss").decode()


def test_push_error_raises(gateway: tuple[str, type[_Gateway]]) -> None:
    import urllib.error

    url, gw = gateway
    gw.status = 400
    with pytest.raises(urllib.error.HTTPError):
        push(url, "vectune", registry(REPORT))


def test_export_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert export(REPORT, textfile_dir=tmp_path, pushgateway_url="http://127.0.0.1:9") is False
    assert (tmp_path / "vectune_docs.prom").exists()
    assert any("Pushgateway" in r.getMessage() for r in caplog.records)


def test_export_both(tmp_path: Path, gateway: tuple[str, type[_Gateway]]) -> None:
    url, gw = gateway
    assert export(REPORT, textfile_dir=tmp_path, pushgateway_url=url) is True
    assert gw.received[0][3].decode() == (tmp_path / "vectune_docs.prom").read_text()


def test_the_watch_is_exported() -> None:
    from vectune.ops.watch import VERDICTS

    assert metrics.WATCH_VERDICTS == VERDICTS  # observe sits below ops: the list is kept twice, checked here
    rep = {**REPORT, "status": "rolled-back",
           "watch": {"verdict": "worse", "rolled_back": True, "queries": 41, "scores": {"metric": "ndcg@10",
                                                                                       "delta": -0.12}}}
    vals = parse(render(rep))
    a = '{alias="docs"}'
    assert vals[("vectune_watch_rolled_back", a)] == 1.0
    assert vals[("vectune_watch_fresh_queries", a)] == 41.0
    assert vals[("vectune_watch_delta", '{alias="docs",metric="ndcg@10"}')] == -0.12
    assert vals[("vectune_watch_verdict", '{alias="docs",verdict="worse"}')] == 1.0
    assert vals[("vectune_watch_verdict", '{alias="docs",verdict="confirmed"}')] == 0.0
    assert vals[("vectune_last_run_status", '{alias="docs",status="rolled-back"}')] == 1.0
    assert vals[("vectune_last_run_success", a)] == 1.0  # a completed outcome, not a failure
    too_few = parse(render({**REPORT, "watch": {"verdict": "too-few", "queries": 3}}))
    assert too_few[("vectune_watch_rolled_back", a)] == 0.0 and ("vectune_watch_delta", a) not in too_few
    assert not any(k[0].startswith("vectune_watch") for k in parse(render(REPORT)))  # no watch, no gauges
