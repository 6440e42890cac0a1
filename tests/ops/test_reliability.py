"""Nothing lost, nothing half-promoted: writes during the reindex, kills at every stage, locks.

Writes "during" the reindex are made by hooks at the operator's own checkpoints
(``vectune.core.faults``): between reindex pages, before verify, before the final pass,
in the window before the swap and right after it. That is deterministic in
embedded mode (one process) and the same code runs against a server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.cli import PERMISSIVE, invoke, qdrant
from vectune.core import faults


def _alias(alias="docs", c=None):
    if c is not None:
        return {a.alias_name: a.collection_name for a in c.get_aliases().aliases}.get(alias)
    with qdrant() as c:
        return _alias(alias, c)


def _strip(payload):
    """A payload without vectune's marker (present on the new collection until its window is reconciled;
    an app that reads a point and writes it back carries it along)."""
    return {k: v for k, v in (payload or {}).items() if k != "_vectune"}


def _points(c, name):
    out = {}
    offset = None
    while True:
        recs, offset = c.scroll(name, limit=256, offset=offset, with_payload=True)
        out.update({str(r.id): _strip(r.payload) for r in recs})
        if offset is None:
            return out


def _vec(seed):
    v = np.random.default_rng(seed).normal(size=384)
    return (v / np.linalg.norm(v)).tolist()


class AppWriter:
    """An app writing through the alias: bounded upserts (new and changed) and deletes at each hook."""

    def __init__(self, corpus_records, per_hook=2):
        self.per_hook = per_hook
        self.n = 0
        self.writes = 0
        self.deleted: set[str] = set()
        self.spare = [r for r in corpus_records]
        self.after_swap = False  # set by a hook: writes now land in the new collection through the alias
        self.after_written: dict[str, dict] = {}
        self.after_deleted: set[str] = set()

    def __call__(self, store, **_):
        from qdrant_client import models

        from vectune.qdrant.store import point_id_for

        c = store.client
        pts = []
        for _ in range(self.per_hook):
            self.n += 1
            pid = point_id_for(f"app-new-{self.n}")
            pts.append(models.PointStruct(id=pid, vector=_vec(self.n), payload={
                "text": (f"Added by the app while vectune ran, number {self.n}. "
                         + self.spare[self.n % 40]["text"][:300]),
                "doc_id": f"app-new-{self.n}"}))
        live_ids = [p.id for p in c.scroll("docs", limit=200)[0] if str(p.id) not in self.deleted]
        changed = live_ids[self.n % len(live_ids)]
        old = c.retrieve("docs", [changed])[0].payload
        pts.append(models.PointStruct(id=changed, vector=_vec(1000 + self.n), payload={
            **old, "text": f"Edited by the app (edit {self.n}). " + old["text"]}))
        c.upsert("docs", pts)
        if self.after_swap:
            self.after_written.update({str(p.id): _strip(p.payload) for p in pts})
        victim = live_ids[(self.n * 7) % len(live_ids)]
        if victim != changed:
            c.delete("docs", points_selector=models.PointIdsList(points=[victim]))
            self.deleted.add(str(victim))
            if self.after_swap:
                self.after_deleted.add(str(victim))
                self.after_written.pop(str(victim), None)
            self.writes += 1
        self.writes += len(pts)


@pytest.fixture
def hooks():
    yield faults.HOOKS
    faults.HOOKS.clear()


@pytest.mark.slow
def test_writes_during_reindex_are_not_lost_or_resurrected(indexed, corpus_records, hooks, monkeypatch):
    monkeypatch.setenv("VECTUNE_UPSERT_BATCH", "8")  # several reindex pages
    monkeypatch.setenv("VECTUNE_COPY_BATCH", "8")
    writer = AppWriter(corpus_records)
    for point in ("reindex_page", "before_verify", "before_final_sync", "before_swap"):
        hooks[point].append(writer)
    hooks["after_swap"].append(lambda **_: setattr(writer, "after_swap", True))
    hooks["after_swap"].append(writer)  # these go to the new collection through the alias

    out = invoke("run", "--alias", "docs", "--json", *PERMISSIVE)
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["status"] == "promoted"
    new = rep["new_collection"]
    reidx = rep["counts"]["reindex"]["catch_up"]
    assert reidx["window_s"] is not None
    with qdrant() as c:
        old = rep["live_collection"]
        live_now = _points(c, "docs")
        # The old collection froze at the swap plus the writes in the window: everything in it must be live,
        # and every point the app wrote or deleted after the swap is as the app left it.
        # The truth: the old collection froze at the swap (window writes included), then apps wrote through the
        # alias into the new one. The promoted collection must hold exactly that: same ids, same payloads.
        expected = _points(c, old)
        expected.update(writer.after_written)
        for k in writer.after_deleted:
            expected.pop(k, None)
        lost = set(expected) - set(live_now)
        resurrected = set(live_now) - set(expected)
        assert writer.writes >= 25
        assert not lost, f"lost {len(lost)} points"
        assert not resurrected, f"resurrected {len(resurrected)} points"
        assert live_now == expected, "payloads differ from the live data"
        assert not set(live_now) & (writer.deleted - set(writer.after_written))
        # changed points carry the tuned model's encoding of their *new* text
        from vectune import resolve
        from vectune.config.settings import Settings

        coll, enc = resolve(c, "docs", Settings())
        assert coll == new
        edited = [r for r in c.scroll(new, limit=500, with_vectors=True)[0] if r.payload["text"].startswith("Edited")]
        assert edited
        for r in edited[:3]:
            assert np.allclose(r.vector, enc.encode_passages([r.payload["text"]])[0], atol=1e-3)
    print(f"\nwrites during reindex: {writer.writes}, lost: {len(lost)}, resurrected: {len(resurrected)}, "
          f"window {reidx['window_s']:.3f}s, window writes carried: {reidx['window_writes']}")


@pytest.mark.slow
def test_window_writes_are_carried_over_and_newer_writes_win(indexed, hooks):
    """A write in the window (after the final pass, before the swap) reaches the new collection;
    if the app re-writes the same point after the swap, its newer write wins."""
    from qdrant_client import models

    state = {}

    def in_window(store, **_):
        c = store.client
        p = c.scroll("docs", limit=2)[0]
        state["a"], state["b"] = p[0].id, p[1].id
        c.upsert("docs", [
            models.PointStruct(id=p[0].id, vector=_vec(1),
                               payload={**p[0].payload, "text": "window A " + p[0].payload["text"]}),
            models.PointStruct(id=p[1].id, vector=_vec(2),
                               payload={**p[1].payload, "text": "window B " + p[1].payload["text"]})])
        c.upsert("docs", [models.PointStruct(id=777777, vector=_vec(3), payload={"text": "born in the window " * 5})])

    def after_swap(store, **_):
        c = store.client
        rec = c.retrieve("docs", [state["b"]])[0]
        c.upsert("docs", [models.PointStruct(id=state["b"], vector=_vec(4),
                                             payload={**rec.payload, "text": "after swap B"})])

    hooks["before_swap"].append(in_window)
    hooks["after_swap"].append(after_swap)
    out = invoke("run", "--alias", "docs", "--json", *PERMISSIVE)
    rep = json.loads(out.output[out.output.index("{"):])
    cu = rep["counts"]["reindex"]["catch_up"]
    # A and the point born in the window are carried; B's payload is the app's (a conflict), and in re-encoding
    # mode its tuned vector is re-encoded from the text it ends with (the app wrote a vector of no model)
    assert cu["window_writes"] - cu["text_followed"] == 2 and cu["window_conflicts"] == 1
    copy = rep["candidate_model"].endswith(("-linear", "-query"))  # a query-side candidate: vectors copied
    assert cu["text_followed"] == (0 if copy else 1)
    with qdrant() as c:
        a, b, born = c.retrieve("docs", [state["a"], state["b"], 777777])
        assert a.payload["text"].startswith("window A")
        assert b.payload["text"] == "after swap B"
        assert born.payload["text"].startswith("born in the window")


def _run_cli(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "vectune.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("failpoint,after", [("generate", 0), ("train", 0), ("reindex_page", 1),
                                             ("before_swap", 0), ("after_swap", 0)])
def test_kill_at_each_stage_then_rerun(indexed, failpoint, after, monkeypatch, home):
    monkeypatch.setenv("VECTUNE_UPSERT_BATCH", "8")
    monkeypatch.setenv("VECTUNE_COPY_BATCH", "8")
    original = _alias()
    with qdrant() as c:
        original_points = _points(c, original)
    killed = _run_cli("run", "--alias", "docs", *PERMISSIVE,
                      env={"VECTUNE_FAILPOINT": failpoint, "VECTUNE_FAILPOINT_AFTER": str(after)})
    assert killed.returncode == -9, killed.stderr[-2000:]

    # the alias never points at an incomplete or unverified collection
    with qdrant() as c:
        target = _alias(c=c)
        meta = c.get_collection(target).config.metadata["vectune"]
        if failpoint == "after_swap":
            assert target != original and meta["state"] in ("live", "verified")
        else:
            assert target == original
        assert meta["state"] in ("live", "verified")
        assert _points(c, target) == original_points

    rerun = _run_cli("run", "--alias", "docs", "--json", *PERMISSIVE)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rep = json.loads(rerun.stdout[rerun.stdout.index("{"):])
    assert rep["status"] == "promoted", rep.get("reason")
    assert rep["recovered"]["previous_run"]["stage"] in (failpoint, "reindex", "read", "generate", "train")
    if failpoint in ("reindex_page", "before_swap"):
        assert rep["recovered"]["resumed_promotion"]["target"] == rep["new_collection"]
        assert "train" not in rep["timings"], "a resumed promotion must not train again"
    with qdrant() as c:
        live = _alias(c=c)
        assert _points(c, live) == original_points
        leftovers = [col.name for col in c.get_collections().collections
                     if (c.get_collection(col.name).config.metadata or {}).get("vectune", {}).get("state")
                     in ("building", "verified")]
        assert leftovers == [], f"orphans left: {leftovers}"
    st = json.loads(invoke("status", "--alias", "docs", "--json").output)
    assert any(ev["event"] == "crash" for ev in st["history"])
    assert "died during stage" in invoke("history", "--alias", "docs").output


def test_second_operator_on_same_alias_exits_with_clear_message(indexed, home):
    from vectune.config.settings import load_settings
    from vectune.qdrant.lease import AliasLock
    from vectune.qdrant.store import Store

    with Store.open(load_settings()) as store:
        AliasLock(store, "docs", "nightly-pod-1:123:run-x", ttl_s=3600).acquire()
    out = invoke("run", "--alias", "docs", *PERMISSIVE, expect=5)
    assert "another vectune operator" in out.output and "nightly-pod-1" in out.output
    assert _alias() == "docs--all-minilm-l6-v2"


def test_lock_lease_semantics(indexed):
    import time

    from vectune.config.settings import load_settings
    from vectune.errors import LockHeld
    from vectune.qdrant.lease import AliasLock
    from vectune.qdrant.store import Store

    with Store.open(load_settings()) as store:
        a = AliasLock(store, "docs", "a", ttl_s=1).acquire()
        with pytest.raises(LockHeld):
            AliasLock(store, "docs", "b", ttl_s=60).acquire()
        a.renew()  # still ours
        time.sleep(1.3)  # a crashed holder blocks only until its lease expires
        b = AliasLock(store, "docs", "b", ttl_s=60, clock_skew_s=0).acquire()
        with pytest.raises(LockHeld):
            a.renew()  # the old holder finds out and stops
        a.release()  # not ours any more: must not free b's lease
        assert b.current().owner == "b"
        b.release()
        assert b.current() is None


@pytest.mark.slow
def test_embedded_store_in_use_is_a_lock_error(indexed):
    from vectune.config.settings import load_settings
    from vectune.qdrant.store import Store

    with Store.open(load_settings()):
        out = _run_cli("run", "--alias", "docs")
    assert out.returncode == 5, out.stderr
    assert "in use by another vectune process" in out.stderr
