"""The cron container, built and run for real: ``deploy/smoke`` under pytest.

``test_smoke`` (marker ``container``) builds the image with podman or docker and
runs it: ``vectune check``, a shortened ``vectune demo`` cycle, ``vectune serve``
firing once on schedule and stopping on SIGTERM, ``vectune run`` stopped by SIGTERM in
the middle of a cycle (exit 143) and run again on the same volumes (exit 0), read-only root file system, JSON
logs, no secret in logs, the HEALTHCHECK, and the compose file on embedded Qdrant.
It took 20 minutes on 2 busy CPU cores from nothing (the image build 8-10 of them) and
needs podman or docker, which ``make test`` does not install, so it runs only when asked for
(not in ``.ci/run``; the README says how):

    pytest -m container tests/test_container.py      # or: make smoke (the script alone)
    VECTUNE_CONTAINER_TESTS=1 make test              # as part of the whole suite

It is skipped, with the reason, when no container engine works (podman or docker
``info``). The other tests here are fast checks of the script's helpers.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from vectune.schedule import Cron

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "deploy" / "smoke"
OPT_IN = "VECTUNE_CONTAINER_TESTS"


def _load_smoke():
    loader = importlib.machinery.SourceFileLoader("vectune_deploy_smoke", str(SMOKE))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


smoke = _load_smoke()


# ----------------------------------------------------------------------------- the real thing
def _truthy(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def _asked_for(config: pytest.Config) -> bool:
    """Selected with -m container, or opted in with VECTUNE_CONTAINER_TESTS=1."""
    if os.environ.get(OPT_IN, "").lower() in ("0", "false", "no"):
        return False
    return _truthy(OPT_IN) or "container" in (config.getoption("-m") or "")


@pytest.mark.container
def test_smoke(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """deploy/smoke passes: image built, check, a cycle, serve once + SIGTERM, compose."""
    if not _asked_for(request.config):
        pytest.skip(f"builds and runs the image (~20 min): run `pytest -m container` or set {OPT_IN}=1")
    engine, why = smoke.find_engine()
    if engine is None:
        pytest.skip(f"no working container engine: {why}")
    summary = tmp_path / "summary.json"
    env = {**os.environ, "SMOKE_WORK": str(tmp_path / "work")}
    proc = subprocess.run([sys.executable, str(SMOKE), "--summary", str(summary)], env=env,
                          capture_output=True, text=True, timeout=2 * 3600)
    sys.stdout.write(proc.stdout[-20000:])  # shown by pytest -rP / on failure
    if proc.returncode == smoke.SKIP:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    assert summary.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(summary.read_text())
    failed = [c for c in result["checks"] if not c["ok"]]
    assert proc.returncode == 0 and result["ok"] and not failed, json.dumps(failed, indent=1) + proc.stdout[-4000:]
    passed = {c["check"] for c in result["checks"]}
    for must in ("image built", "check exits 0", "demo cycle exits 0", "demo: logs are JSON",
                 "root file system is read-only, volumes writable", "runs as uid 10001",
                 "serve fired on schedule", "the scheduled cycle finished with exit code 0",
                 "HEALTHCHECK passes while serving", "stopped cleanly on SIGTERM", "exactly one cycle ran",
                 "serve: logs are JSON", "serve wrote its report to the work volume",
                 "serve wrote the Prometheus textfile to the work volume", "no secret in any log or volume file",
                 "the run reached a long stage", "SIGTERM mid-cycle: exit code 143, interrupted report",
                 "next run on the same volumes: lock free, exits 0 (resumes or starts clean)",
                 "after SIGTERM and the rerun: alias on the one live collection, no orphan"):
        assert must in passed, f"check {must!r} did not run"
    assert result["image_size_bytes"] > 100e6


# ----------------------------------------------------------------------------- fast: the script's helpers
def test_no_engine_exits_77_for_skip(tmp_path: Path) -> None:
    summary = tmp_path / "s.json"
    proc = subprocess.run([sys.executable, str(SMOKE), "--summary", str(summary)],
                          env={**os.environ, "CONTAINER_ENGINE": "no-such-engine-xyz"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == smoke.SKIP, proc.stdout + proc.stderr
    assert "no-such-engine-xyz: not installed" in proc.stdout
    assert "skipped" in json.loads(summary.read_text())


@pytest.mark.parametrize("offset_s", [0, 10, 44, 45, 46, 59.9])
def test_first_slot_fires_once_soon(offset_s: float) -> None:
    """serve's schedule in the smoke: the next slot is 15-75 s away and the one after is a day later."""
    now = datetime(2026, 3, 1, 23, 58, 0, tzinfo=timezone.utc) + timedelta(seconds=offset_s)
    expr, slot = smoke.first_slot(lead_s=15, now=now)
    cron = Cron.parse(expr)
    first = cron.next_after(now, "UTC")
    assert first == slot
    assert 15 <= (first - now).total_seconds() <= 75
    assert cron.next_after(first, "UTC") - first == timedelta(days=1)


def test_json_log_check_rejects_non_json_lines() -> None:
    good = json.dumps({"ts": "t", "level": "INFO", "logger": "vectune", "msg": "hi"})
    records, bad = smoke.json_log_problems("\n".join([good, "", good]))
    assert len(records) == 2 and not bad
    records, bad = smoke.json_log_problems("\n".join([good, "Traceback (most recent call last):", '{"msg": 1}']))
    assert len(records) == 1 and bad == ["Traceback (most recent call last):", '{"msg": 1}']


def test_debian_mirror_from_apt_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEBIAN_MIRROR", raising=False)
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n")
    assert smoke.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (d / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("# comment\ndeb [arch=amd64] http://old.example/debian bookworm main\n")
    assert smoke.debian_mirror(tmp_path) == "http://old.example/debian"
    (tmp_path / "sources.list").unlink()
    assert smoke.debian_mirror(tmp_path) == "http://deb.debian.org/debian"
    monkeypatch.setenv("DEBIAN_MIRROR", "http://forced.example/debian")
    assert smoke.debian_mirror(tmp_path) == "http://forced.example/debian"


def test_service_volumes_of_the_compose_file() -> None:
    """The named volumes the smoke creates before podman-compose runs the service: read from the real file."""
    text = (ROOT / "docker-compose.yml").read_text()
    assert smoke.service_volumes(text, "vectune") == ["vectune_models", "vectune_work"]
    assert smoke.service_volumes(text, "qdrant") == ["qdrant_storage"]
    assert smoke.service_volumes(text, "nope") == []


def test_compose_failure_shows_the_real_error_not_the_volume_probe() -> None:
    proc = subprocess.CompletedProcess(
        ["podman-compose"], 0,
        stdout="services:\n  vectune: {}\npodman run --name=p_vectune_1 -d --init vectune:t\nexit code: 125\n",
        stderr="Error: inspecting object: no such volume p_vectune_models\n"
               "Error: inspecting object: no such volume p_vectune_work\n"
               "Error: container-init binary not found on the host: stat /usr/libexec/podman/catatonit\n")
    text = smoke.compose_failure(proc)
    assert "catatonit" in text and "no such volume" not in text
    assert "exit code: 125" in text and "podman run --name=p_vectune_1" in text and "services:" not in text
