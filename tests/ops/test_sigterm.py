"""SIGTERM in the middle of a cycle: exit 143, the lock released, and the next run resumes or starts clean.

``vectune run`` is started as a real subprocess on the tiny corpus. A failpoint with the
``pause`` action (:mod:`vectune.core.faults`) holds it at an exact point (between two training
steps, between two reindex pages, just before the alias swap, just after it) and the test
sends SIGTERM there, the way ``docker stop``, ``podman kill --signal TERM`` or a Kubernetes
deadline do. Then:

* the run exits 143 (128 + SIGTERM), says so on stderr, and writes an ``interrupted`` report;
* the alias lease is free at once (the next run does not wait for its TTL);
* the alias points at a complete collection (the old one before the swap, the new one after);
* the next plain ``vectune run`` exits 0 and ends with the alias on the one ``live``
  collection, every point of the corpus in it, no collection left ``building``/``verified``,
  no checkpoint or in-flight marker left: a run stopped before its promotion started starts
  clean (trains again), one stopped during the promotion resumes it without training.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.cli import PERMISSIVE, invoke, qdrant

ALIAS = "docs"


def _strip(payload):
    return {k: v for k, v in (payload or {}).items() if k != "_vectune"}


def _points(c, name):
    out, offset = {}, None
    while True:
        recs, offset = c.scroll(name, limit=256, offset=offset, with_payload=True)
        out.update({str(r.id): _strip(r.payload) for r in recs})
        if offset is None:
            return out


def _state(c, name):
    return ((c.get_collection(name).config.metadata or {}).get("vectune") or {}).get("state")


def _alias(c):
    return {a.alias_name: a.collection_name for a in c.get_aliases().aliases}.get(ALIAS)


def _ours(c):
    """Collection name -> lineage state, for the alias's collections."""
    out = {}
    for col in c.get_collections().collections:
        meta = (c.get_collection(col.name).config.metadata or {}).get("vectune") or {}
        if meta.get("alias") == ALIAS:
            out[col.name] = meta.get("state")
    return out


def _lease():
    from vectune.config.settings import load_settings
    from vectune.qdrant.lease import AliasLock
    from vectune.qdrant.store import Store

    with Store.open(load_settings()) as store:
        return AliasLock(store, ALIAS, "probe", ttl_s=60).current()


def _cli(*args):
    return [sys.executable, "-m", "vectune.cli", *map(str, args)]


def _terminate_at(tmp_path: Path, failpoint: str, after: int = 0) -> tuple[int, str, str]:
    """Start ``vectune run``, wait until it pauses at ``failpoint``, SIGTERM it; (exit code, stdout, stderr)."""
    flag = tmp_path / f"paused-{failpoint}"
    out, err = tmp_path / f"{failpoint}.stdout", tmp_path / f"{failpoint}.stderr"
    env = {**os.environ, "VECTUNE_FAILPOINT": failpoint, "VECTUNE_FAILPOINT_AFTER": str(after),
           "VECTUNE_FAILPOINT_ACTION": "pause", "VECTUNE_FAILPOINT_FILE": str(flag), "VECTUNE_LOG_LEVEL": "INFO"}
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(_cli("run", "--alias", ALIAS, "--json", *PERMISSIVE), stdout=fo, stderr=fe, env=env)
        try:
            deadline = time.monotonic() + 900
            while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert flag.exists(), f"never reached {failpoint} (exit {proc.poll()}):\n{err.read_text()[-3000:]}"
            assert flag.read_text().split()[0] == failpoint
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return rc, out.read_text(), err.read_text()


# failpoint, pages let through first, mode, whether the alias has moved when SIGTERM lands, what the next run does.
# Mode full re-encodes every point on promotion; mode query (the default's CPU choice) copies the stored vectors.
CASES = [
    ("train_step", 1, "full", False, "clean"),     # between two optimizer steps: nothing built yet
    ("reindex_page", 1, "query", False, "resume"),  # the new collection half built
    ("before_swap", 0, "full", False, "resume"),   # verified, final pass done, snapshot taken; not swapped
    ("after_swap", 0, "query", True, "resume"),    # swapped; the window's writes not yet carried over
]


@pytest.mark.slow
@pytest.mark.parametrize("failpoint,after,mode,swapped,next_run", CASES, ids=[c[0] for c in CASES])
def test_sigterm_mid_cycle_then_next_run(indexed, home, tmp_path, monkeypatch, failpoint, after, mode, swapped,
                                         next_run):
    monkeypatch.setenv("VECTUNE_UPSERT_BATCH", "8")  # several reindex pages
    monkeypatch.setenv("VECTUNE_COPY_BATCH", "8")
    monkeypatch.setenv("VECTUNE_MODE", mode)
    monkeypatch.setenv("VECTUNE_METRICS_DIR", str(tmp_path / "metrics"))
    with qdrant() as c:
        original = _alias(c)
        original_points = _points(c, original)

    rc, out, err = _terminate_at(tmp_path, failpoint, after)

    # Stopped at once, with the documented code, saying why.
    assert rc == 143, f"exit {rc}\n{err[-3000:]}"
    assert "SIGTERM" in err, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    # The lease is free now: the next run need not wait for the TTL.
    assert _lease() is None
    # The alias is on a complete collection; nothing the app reads has changed.
    with qdrant() as c:
        target = _alias(c)
        if swapped:
            assert target != original and _state(c, target) in ("live", "verified")
        else:
            assert target == original and _state(c, target) == "live"
        assert _points(c, target) == original_points
    # The interrupted run left a report saying so (exit code 143), and its in-flight marker for the next run.
    from vectune.config.settings import load_settings

    s = load_settings()
    latest = json.loads((s.work_dir / "reports" / ALIAS / "latest.json").read_text())
    assert latest["status"] == "interrupted", latest.get("status")
    assert "SIGTERM" in latest["reason"]
    prom = (tmp_path / "metrics" / f"vectune_{ALIAS}.prom").read_text()
    assert re.search(rf'^vectune_last_run_success{{alias="{ALIAS}"}} 0(\.0)?$', prom, re.M), prom
    assert re.search(rf'^vectune_last_run_status{{alias="{ALIAS}",status="interrupted"}} 1(\.0)?$', prom, re.M), prom
    marker = json.loads((s.run_dir(ALIAS) / "inflight.json").read_text())
    assert marker["stage"] == ("train" if failpoint == "train_step" else "reindex"), marker
    assert marker["interrupted_by"] == "SIGTERM"

    # The next run, plain: exit 0, and the alias ends on one live, complete collection.
    rerun = subprocess.run(_cli("run", "--alias", ALIAS, "--json", *PERMISSIVE), capture_output=True, text=True,
                           timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rep = json.loads(rerun.stdout[rerun.stdout.index("{"):])
    assert rep["status"] == "promoted", rep.get("reason")
    recovered = rep["recovered"] or {}
    assert recovered["previous_run"]["stage"] == marker["stage"]
    assert recovered["previous_run"]["interrupted_by"] == "SIGTERM"
    if next_run == "clean":
        assert "train" in rep["timings"], "stopped before its promotion: the next run trains again"
        assert "resumed_promotion" not in recovered
    elif swapped:
        assert rep["new_collection"] == target
        assert "reconciled" in recovered, recovered
    else:
        assert recovered["resumed_promotion"]["target"] == rep["new_collection"]
        assert "train" not in rep["timings"], "a resumed promotion must not train again"
    assert _lease() is None
    with qdrant() as c:
        live = _alias(c)
        assert live == rep["new_collection"] and _state(c, live) == "live"
        assert _points(c, live) == original_points
        states = _ours(c)
        assert [n for n, st in states.items() if st == "live"] == [live], states
        assert not [n for n, st in states.items() if st in ("building", "verified")], f"orphans: {states}"
    assert not (s.run_dir(ALIAS) / "inflight.json").exists()
    assert not (s.run_dir(ALIAS) / "promotion.json").exists()
    crash = [e for e in json.loads(invoke("status", "--alias", ALIAS, "--json").output)["history"]
             if e["event"] == "crash"]
    assert [e["reason"] for e in crash] == [f"run {marker['run_id']} was stopped by SIGTERM during stage "
                                            f"'{marker['stage']}'"]
