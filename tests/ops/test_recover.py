"""Crash recovery (vectune.ops.recover): left-over checkpoints, in-flight markers and orphan collections."""

from __future__ import annotations

import numpy as np

from vectune.core.hashing import payload_hash
from vectune.observe.history import History
from vectune.ops.recover import recover
from vectune.promote.checkpoint import Checkpoint, InFlight
from vectune.qdrant import lineage

BUNDLED = "bundled:all-MiniLM-L6-v2"


def _collection(store, name, state, alias="docs", **extra):
    rec = lineage.record(alias=alias, model_ref=BUNDLED, model_tag="all-minilm-l6-v2", created_by="test",
                         dense_vector="", state=state, max_seq_length=96, **extra)
    store.create_collection(name, 384, "Cosine", rec)


def _put(store, name, payloads: dict):
    from qdrant_client import models

    store.upsert(name, [models.PointStruct(id=i, vector=[1.0] + [0.0] * 383, payload=p) for i, p in payloads.items()])


def test_orphans_deleted_checkpoint_cleared_crash_recorded(settings, store):
    _collection(store, "docs--base", "live")
    store.swap_alias("docs", "docs--base")
    _collection(store, "docs--run1", "building")  # the killed run's half-built collection
    _collection(store, "docs--run0", "verified")  # an older orphan
    _collection(store, "docs--old", "retired")  # a real version: kept
    _collection(store, "other--x", "building", alias="other")  # another alias: not ours to clean
    ckpt = Checkpoint(settings.run_dir("docs"))
    # left behind by a run whose tuned model was never saved: it cannot be resumed
    ckpt.save({"run_id": "run1", "alias": "docs", "target": "docs--run1", "parent": "docs--base",
               "model_tag": "docs-tuned-never-saved", "dense_vector": "", "text_field": "text", "offset": 12,
               "done": 128, "stage": "building"})
    ckpt.save_snapshot({"1": (1, "abc")})
    InFlight(settings.run_dir("docs")).set("run1", "promote")

    rec = recover(store, settings, "docs", "docs--base")
    done = rec.done

    assert done is False
    assert store.collections() == ["docs--base", "docs--old", "other--x"]
    assert store.aliases() == {"docs": "docs--base"}
    assert ckpt.load() is None and ckpt.load_snapshot() is None
    assert not ckpt.path.exists() and not ckpt.snapshot_path.exists()
    assert sorted(rec.found["orphans_deleted"]) == ["docs--run0", "docs--run1"]
    assert rec.found["previous_run"]["run_id"] == "run1"
    assert rec.found["previous_run"]["stage"] == "promote"
    assert rec.reason is None
    crash = [e for e in History(settings.work_dir, "docs").read() if e["event"] == "crash"]
    assert len(crash) == 1 and crash[0]["run_id"] == "run1" and crash[0]["stage"] == "promote"
    assert "died during stage 'promote'" in crash[0]["reason"]


def test_nothing_left_behind_changes_nothing(settings, store):
    _collection(store, "docs--base", "live")
    store.swap_alias("docs", "docs--base")
    rec = recover(store, settings, "docs", "docs--base")
    assert rec.done is False and rec.found == {}
    assert store.collections() == ["docs--base"]
    assert History(settings.work_dir, "docs").read() == []


def test_checkpoint_of_a_deleted_target_is_cleared(settings, store):
    _collection(store, "docs--base", "live")
    store.swap_alias("docs", "docs--base")
    ckpt = Checkpoint(settings.run_dir("docs"))
    ckpt.save({"run_id": "r", "target": "docs--gone", "parent": "docs--base", "model_tag": BUNDLED,
               "stage": "verified"})
    rec = recover(store, settings, "docs", "docs--base")
    assert rec.done is False
    assert ckpt.load() is None
    assert rec.found == {}  # nothing to report: no marker, no orphan


def test_killed_after_the_swap_finishes_reconciliation(settings, store, bundled_encoder):
    # The run swapped 'docs' to docs--new and died before carrying the window writes over.
    _collection(store, "docs--base", "live")
    _collection(store, "docs--new", "verified")
    texts = {1: "Sorting is stable in Python.", 2: "Generators yield values lazily."}
    _put(store, "docs--base", {i: {"text": t} for i, t in texts.items()})
    _put(store, "docs--new", {i: {"text": t} for i, t in texts.items()})
    snapshot = {str(i): (i, payload_hash({"text": t})) for i, t in texts.items()}
    _put(store, "docs--base", {3: {"text": "A dict keeps insertion order."}})  # a write in the window
    store.swap_alias("docs", "docs--new")
    ckpt = Checkpoint(settings.run_dir("docs"))
    ckpt.save({"run_id": "run7", "alias": "docs", "target": "docs--new", "parent": "docs--base",
               "model_tag": BUNDLED, "dense_vector": "", "text_field": "text", "stage": "swapped"})
    ckpt.save_snapshot(snapshot)


    rec = recover(store, settings, "docs", "docs--new")
    assert rec.done is True

    assert rec.new_collection == "docs--new" and rec.live_collection == "docs--base"
    assert "run7" in rec.reason
    assert rec.found["reconciled"]["window_writes"] == 1
    assert store.metadata("docs--new")["state"] == "live"
    assert store.metadata("docs--base")["state"] == "retired"
    assert ckpt.load() is None and ckpt.load_snapshot() is None
    (p3,) = store.retrieve("docs--new", [3], vectors=True)
    assert p3.payload == {"text": "A dict keeps insertion order."}
    want = bundled_encoder.encode_passages(["A dict keeps insertion order."])[0]
    np.testing.assert_allclose(np.asarray(p3.vector, dtype=np.float32), want, atol=1e-4)
    assert store.collections() == ["docs--base", "docs--new"]  # the retired parent stays for rollback
