"""Rollback and retention: a rollback syncs what apps wrote since the promotion; prune protects what matters."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.helpers.cli import PERMISSIVE, invoke, qdrant

pytestmark = pytest.mark.slow  # each test promotes (train + reindex) first


def _points(c, name):
    recs = c.scroll(name, limit=1000, with_payload=True, with_vectors=True)[0]
    return {str(r.id): r for r in recs}


def _alias():
    with qdrant() as c:
        return {a.alias_name: a.collection_name for a in c.get_aliases().aliases}["docs"]


def _promote():
    out = invoke("run", "--alias", "docs", "--json", *PERMISSIVE)
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["status"] == "promoted"
    return rep


def test_rollback_syncs_writes_made_after_the_promotion(indexed, home):
    from qdrant_client import models

    from vectune import resolve
    from vectune.config.settings import Settings
    from vectune.models.store import ModelStore

    base = _alias()
    rep = _promote()
    with qdrant() as c:
        coll, enc = resolve(c, "docs", Settings())  # the app uses the promoted model now
        ids = sorted(_points(c, coll), key=str)
        changed_id, deleted_id = ids[0], ids[1]
        changed = c.retrieve("docs", [int(changed_id) if changed_id.isdigit() else changed_id])[0]
        new_text = "Changed after the promotion: how do decorators wrap a function? " + changed.payload["text"][:200]
        added_text = "Added after the promotion: the walrus operator := assigns inside an expression."
        c.upsert("docs", [
            models.PointStruct(id=changed.id, vector=enc.encode_passages([new_text])[0].tolist(),
                               payload={**changed.payload, "text": new_text}),
            models.PointStruct(id=424242, vector=enc.encode_passages([added_text])[0].tolist(),
                               payload={"text": added_text, "doc_id": "added"}),
        ])
        gone = deleted_id if not deleted_id.isdigit() else int(deleted_id)
        c.delete("docs", points_selector=models.PointIdsList(points=[gone]))
        live_now = {k: r.payload for k, r in _points(c, "docs").items()}

    out = invoke("rollback", "--alias", "docs")
    assert "synced 2 re-embedded, 1 deleted" in out.output
    assert _alias() == base
    with qdrant() as c:
        rolled = _points(c, "docs")
        assert {k: r.payload for k, r in rolled.items()} == live_now  # exactly the live id set and payloads
        old_enc = ModelStore.from_settings(Settings()).load("bundled:all-MiniLM-L6-v2",
                               max_seq_length=c.get_collection(base).config.metadata["vectune"]["max_seq_length"])
        # vectors from the OLD model, of the NEW text
        assert np.allclose(rolled[str(changed.id)].vector, old_enc.encode_passages([new_text])[0], atol=1e-3)
        assert np.allclose(rolled["424242"].vector, old_enc.encode_passages([added_text])[0], atol=1e-3)
        assert deleted_id not in rolled
    st = json.loads(invoke("status", "--alias", "docs", "--json").output)
    ev = [e for e in st["history"] if e["event"] == "rollback"][-1]
    assert ev["synced"]["upserted"] == 2 and ev["synced"]["deleted"] == 1
    assert "synced 2 upserted, 1 deleted" in invoke("history", "--alias", "docs").output

    # roll forward again to the tuned version: also synced (nothing changed since, so nothing to do)
    out = invoke("rollback", "--alias", "docs", "--to", rep["new_collection"])
    assert _alias() == rep["new_collection"]
    assert "synced 0 re-embedded, 0 deleted" in out.output


def test_rollback_refuses_when_target_model_is_missing(indexed, home):
    rep = _promote()
    invoke("rollback", "--alias", "docs")
    shutil.rmtree(home / "models" / rep["candidate_model"])
    out = invoke("rollback", "--alias", "docs", "--to", rep["new_collection"], expect=3)
    assert "not in the model store" in out.output
    assert _alias() == "docs--all-minilm-l6-v2"
    st = json.loads(invoke("status", "--alias", "docs", "--json").output)
    assert any(v["collection"] == rep["new_collection"] and not v["model_available"] for v in st["versions"])
    invoke("rollback", "--alias", "docs", "--to", rep["new_collection"], "--force")
    assert _alias() == rep["new_collection"]


def test_prune_keeps_live_and_rollback_target(indexed, home, monkeypatch):
    first = _promote()
    monkeypatch.setenv("VECTUNE_SEED", "7")  # a different cycle, not a no-op
    second = _promote()
    assert _alias() == second["new_collection"]
    out = invoke("prune", "--alias", "docs", "--keep", "1", "--dry-run")
    assert "would delete 1: docs--all-minilm-l6-v2" in out.output
    invoke("prune", "--alias", "docs", "--keep", "1", "--delete-models")
    with qdrant() as c:
        names = {col.name for col in c.get_collections().collections}
    assert second["new_collection"] in names and first["new_collection"] in names  # live + rollback target
    assert "docs--all-minilm-l6-v2" not in names
    assert (home / "models" / first["candidate_model"]).exists()
    invoke("rollback", "--alias", "docs")
    assert _alias() == first["new_collection"]


# ------------------------------------------------------------------------- crashes in a rollback (issue 14)
def _live_states():
    with qdrant() as c:
        out = {}
        for col in c.get_collections().collections:
            meta = (c.get_collection(col.name).config.metadata or {}).get("vectune") or {}
            if meta.get("alias") == "docs":
                out[col.name] = meta.get("state")
        return out


def _run_dir():
    from vectune.config.settings import load_settings

    return load_settings().run_dir("docs")


def _no_markers(c, name):
    return not any("_vectune" in (r.payload or {}) for r in c.scroll(name, limit=1000, with_payload=True)[0])


def test_a_rollback_killed_at_each_stage_is_finished_by_the_next_one(indexed, home):
    """SIGKILL a rollback (then a roll-forward) at each stage: the next `vectune rollback` finishes it,
    with the writes made since the promotion, exactly one live collection and no markers left."""
    import os
    import subprocess
    import sys

    from qdrant_client import models

    base = _alias()
    rep = _promote()
    tuned = rep["new_collection"]
    target, other = base, tuned
    for n, failpoint in enumerate(("before_final_sync", "before_swap", "after_swap")):
        with qdrant() as c:  # the app writes through the alias before the rollback
            recs = sorted(_points(c, "docs").values(), key=lambda r: str(r.id))
            first = str(recs[n].id)
            c.set_payload("docs", payload={"text": f"Edited before rollback {n}: how do context managers work?"},
                          points=[recs[n].id])
            c.delete("docs", points_selector=models.PointIdsList(points=[recs[-1].id]))
            expected = {k: r.payload for k, r in _points(c, "docs").items()}
        killed = subprocess.run([sys.executable, "-m", "vectune.cli", "rollback", "--alias", "docs", "--to", target],
                                capture_output=True, text=True, timeout=600,
                                env={**os.environ, "VECTUNE_FAILPOINT": failpoint})
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert _alias() == (target if failpoint == "after_swap" else other)
        out = invoke("rollback", "--alias", "docs", "--to", target)
        assert "rolled back" in out.output
        assert _alias() == target
        states = _live_states()
        assert [k for k, v in states.items() if v == "live"] == [target], states
        assert not list(_run_dir().glob("promotion*"))
        with qdrant() as c:
            rolled = _points(c, target)
            assert {k: r.payload for k, r in rolled.items()} == expected, failpoint
            assert _no_markers(c, target) and _no_markers(c, other)
            meta = c.get_collection(target).config.metadata["vectune"]
        enc_ref = meta.get("passage_model") or meta["model_ref"]
        from vectune.config.settings import Settings
        from vectune.models.store import ModelStore

        ref = enc_ref if enc_ref.startswith("bundled:") else str(home / "models" / enc_ref)
        enc = ModelStore.from_settings(Settings()).load(ref,
                           max_seq_length=meta.get("max_seq_length"))
        edited = rolled[first]
        assert np.allclose(edited.vector, enc.encode_passages([edited.payload["text"]])[0], atol=1e-3)
        target, other = other, target


def test_a_crash_right_after_the_rollback_swap_loses_no_window_write(indexed, home):
    """An exception right after a rollback's swap (a Qdrant timeout, say) leaves a checkpoint; the next
    run's recovery carries the window's writes over and marks exactly one collection live."""
    from qdrant_client import models

    from vectune.config.settings import load_settings
    from vectune.core import faults
    from vectune.errors import QdrantUnavailable
    from vectune.ops.recover import recover
    from vectune.promote.checkpoint import Checkpoint
    from vectune.qdrant.lease import AliasLock
    from vectune.qdrant.store import Store

    base = _alias()
    _promote()
    state = {}

    def in_window(store, **_):
        c = store.client
        p = c.scroll("docs", limit=3)[0]
        state["changed"] = p[0].id
        c.set_payload("docs", payload={"text": "Changed in the rollback's window: what does yield from do?"},
                      points=[p[0].id])
        c.upsert("docs", [models.PointStruct(id=515151, vector=np.ones(384).tolist(),
                                             payload={"text": "Born in the rollback's window: the GIL."})])
        c.delete("docs", points_selector=models.PointIdsList(points=[p[1].id]))
        state["deleted"] = p[1].id

    def boom(**_):
        raise QdrantUnavailable("simulated: timed out right after the swap")

    faults.HOOKS["before_swap"].append(in_window)
    faults.HOOKS["after_swap"].append(boom)
    try:
        invoke("rollback", "--alias", "docs", expect=4)
    finally:
        faults.HOOKS.clear()
    assert _alias() == base
    settings = load_settings()
    assert Checkpoint(settings.run_dir("docs")).load()["kind"] == "rollback"
    assert [k for k, v in _live_states().items() if v == "live"] == [base]
    with Store.open(settings) as store:
        with AliasLock(store, "docs", "next-run", 60) as lock:
            rec = recover(store, settings, "docs", base, lock)
    assert rec.found["finished_rollback"]["to"] == base and rec.found["reconciled"]["window_writes"] == 3
    assert Checkpoint(settings.run_dir("docs")).load() is None
    with qdrant() as c:
        got = _points(c, "docs")
        assert got[str(state["changed"])].payload["text"].startswith("Changed in the rollback's window")
        assert got["515151"].payload["text"].startswith("Born in the rollback's window")
        assert str(state["deleted"]) not in got
        assert _no_markers(c, base)


def test_a_swapped_promotion_whose_model_is_gone_is_not_dropped(indexed, home):
    """A crash after a promotion's swap, then the model disappears: recovery refuses loudly and keeps
    the checkpoint (the window's writes need it); once the model is back it finishes."""
    from vectune.core import faults
    from vectune.errors import QdrantUnavailable

    state = {}

    def in_window(store, **_):
        c = store.client
        p = c.scroll("docs", limit=1)[0][0]
        state["id"] = p.id
        c.set_payload("docs", payload={"text": "Changed in the promotion's window: what is a metaclass?"},
                      points=[p.id])

    def boom(**_):
        raise QdrantUnavailable("simulated: timed out right after the swap")

    faults.HOOKS["before_swap"].append(in_window)
    faults.HOOKS["after_swap"].append(boom)
    try:
        invoke("run", "--alias", "docs", *PERMISSIVE, expect=4)
    finally:
        faults.HOOKS.clear()
    new = _alias()
    assert new != "docs--all-minilm-l6-v2"
    model_dir = home / "models" / new.split("--", 1)[1]
    moved = model_dir.with_name(model_dir.name + ".away")
    model_dir.rename(moved)
    out = invoke("run", "--alias", "docs", *PERMISSIVE, expect=3)
    assert "stopped before carrying over the writes made in its window" in out.output
    assert (_run_dir() / "promotion.json").exists()
    moved.rename(model_dir)
    out = invoke("run", "--alias", "docs", "--json", *PERMISSIVE)
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["recovered"]["reconciled"]["window_writes"] == 1
    with qdrant() as c:
        assert c.retrieve("docs", [state["id"]])[0].payload["text"].startswith("Changed in the promotion's window")
    assert [k for k, v in _live_states().items() if v == "live"] == [_alias()]
