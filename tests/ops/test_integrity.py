"""Models verified and state files read before anything else (issue 22, items 3 and 4)."""

from __future__ import annotations

import json

import pytest

from tests.helpers.cli import invoke
from vectune.errors import TornState
from vectune.ops import integrity
from vectune.promote.checkpoint import Checkpoint, InFlight


@pytest.fixture
def stored_alias(home, corpus_file, bundled_encoder):
    """``docs`` indexed with a model the model store holds (saved with its manifest of file hashes)."""
    from vectune.config.settings import load_settings
    from vectune.models.store import ModelStore

    ModelStore.from_settings(load_settings()).save(bundled_encoder, "minilm-stored", {"note": "test"})
    invoke("index", corpus_file, "--alias", "docs", "--model", "minilm-stored")
    return home / "models" / "minilm-stored"


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_check_and_a_no_op_run_stop_on_a_truncated_model(stored_alias):
    """`vectune check` says "ok" while the model is intact and exit 3 naming the file once it is truncated; a
    run whose content is unchanged (a no-op) verifies too, and so does a dry run."""
    out = invoke("check", "--alias", "docs")
    assert "models: ok 1 model(s) intact" in out.output
    assert json.loads(invoke("run", "--alias", "docs", "--json").stdout)["status"] == "kept"  # synthetic: no training
    rep = json.loads(invoke("run", "--alias", "docs", "--json").stdout)
    assert rep["status"] == "noop"
    assert rep["models_verified"][0]["ref"] == "minilm-stored" and rep["models_verified"][0]["checked"] >= 3
    weights = stored_alias / "model.safetensors"
    _truncate(weights)
    out = invoke("check", "--alias", "docs", expect=3)
    assert "models: FAIL DAMAGED" in out.output and str(weights) in out.output
    out = invoke("check", expect=3)  # without an alias: every stored model
    assert str(weights) in out.output
    for args in (("run", "--alias", "docs"), ("run", "--alias", "docs", "--dry-run")):
        out = invoke(*args, expect=3)
        assert str(weights) in out.output and "is damaged" in out.output, out.output
    last = json.loads((stored_alias.parents[1] / "work" / "reports" / "docs" / "latest.json").read_text())
    assert last["status"] == "failed" and str(weights) in last["reason"]


def test_every_damaged_state_file_is_named(settings):
    run_dir = settings.run_dir("docs")
    ck = Checkpoint(run_dir)
    ck.save({"stage": "building"})
    ck.save_snapshot({"1": (1, "abc")})
    InFlight(run_dir).set("r", "train")
    assert integrity.state_problems(settings, "docs") == []
    for p in (ck.path, ck.snapshot_path, InFlight(run_dir).path):
        _truncate(p)
    with pytest.raises(TornState) as e:
        integrity.require_readable_state(settings, "docs")
    msg = str(e.value)
    for p in (ck.path, ck.snapshot_path, InFlight(run_dir).path):
        assert str(p) in msg
    assert msg.count("vectune recover --alias docs") >= 3
    # the snapshot's copy is intact: recover reads it, the run never does
    assert ck.load_snapshot(use_copy=True) is not None
    with pytest.raises(TornState):
        ck.load_snapshot()


def test_journal_appends_are_whole_records(settings):
    from vectune.promote.window import Snapshot

    ck = Checkpoint(settings.run_dir("docs"))
    snap = Snapshot(None, None, None, {}).with_journal(ck.journal_path)
    snap.record(["a", "b"])
    snap.record(["c"])
    snap.record(finished=True)
    assert snap.done() == ({"a", "b", "c"}, True)
    _truncate(ck.journal_path)
    with pytest.raises(TornState, match="reconciliation journal"):
        snap.done()
