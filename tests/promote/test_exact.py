"""Every write survives a promotion, a rollback and a roll-forward, exactly: a matrix against a truth model.

Driven at the publish level on a real embedded Qdrant (``:memory:``) with the real MiniLM: a
collection with a tuned dense vector (named or unnamed), another named dense vector and a sparse
vector. An app writes through the alias at every stage boundary — every kind of write Qdrant
offers — and a truth model applies the same writes in the same order. Afterwards the alias must
equal the truth: ids, payloads, every vector, and the tuned vector equal to the right model's
encoding of the current text (re-embedding) or the exact vector written (copy mode).

The "candidate" model is MiniLM with its dimensions permuted (a different, deterministic model);
the live one is MiniLM. Each run prints ``total N, wrong 0``.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers.truth import ALIAS, BATCH, FLOWS, KINDS, PROMOTE_STAGES, Flow, World, _ids, _Plain
from vectune.core import faults


# ----------------------------------------------------------------------------------------- the matrix
@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("stage", PROMOTE_STAGES)
def test_every_write_kind_at_every_stage(models, texts, flow, stage):
    """Each write kind, once, at one stage boundary (each on its own point)."""
    if stage == "reindex_page" and not flow.startswith("promote"):
        pytest.skip("a rollback has no reindex")
    w = World(models, texts)
    f = Flow(flow, w)
    f.setup()
    targets = dict(zip(KINDS, _ids(w, 0, len(KINDS))))
    targets["upsert_new"] = 1000

    def hook(s):
        if s == stage:
            for kind, pid in targets.items():
                w.write(kind, pid)

    f.run(hook)
    f.check(f"writes at {stage}")


#: Window write, then a write after the swap, to the same point, that no protocol can make exact
#: without the app's cooperation (README: "Writes during a promotion"); exact with the dual-write helper.
NEEDS_HELPER = {("upsert_new", y) for y in ("update_vectors_named", "update_vectors_sparse", "set_payload",
                                            "overwrite_payload", "delete_payload", "delete")}
NEEDS_HELPER |= {("delete", "overwrite_payload")}


def _cross(models, texts, flow, window_kind, dual: bool, named: bool = True):
    from vectune.apps.dualwrite import DualWriter

    w = World(models, texts, named=named)
    f = Flow(flow, w)
    f.setup()
    writer = (DualWriter(w.c, ALIAS, encoder_for=lambda coll, meta: models["base" if coll == w.base else "cand"])
              if dual else None)
    ys = [y for y in KINDS if dual or (window_kind, y) not in NEEDS_HELPER]
    pids = [2000 + i for i in range(len(ys))] if window_kind == "upsert_new" else _ids(w, 0, len(ys))
    plan = dict(zip(ys, pids))

    def hook(s):
        if s == "before_swap":
            for pid in plan.values():
                w.write(window_kind, pid, writer)
        if s == "after_swap":
            for y, pid in plan.items():
                w.write(y, pid, writer)

    f.run(hook)
    f.check(f"window {window_kind} then after the swap {', '.join(ys)}{' (dual-write)' if dual else ''}")
    return w


@pytest.mark.parametrize("flow", ("promote", "promote-copy", "rollback"))
@pytest.mark.parametrize("window_kind", KINDS)
def test_window_write_then_write_after_the_swap(models, texts, flow, window_kind):
    """Cross-window sequences: X in the window, then Y through the alias right after the swap, same point."""
    _cross(models, texts, flow, window_kind, dual=False)


@pytest.mark.parametrize("window_kind", KINDS)
def test_unnamed_dense_vector(models, texts, window_kind):
    """The same cross-window sequences on a collection whose tuned vector is the unnamed one (+ sparse)."""
    _cross(models, texts, "promote", window_kind, dual=False, named=False)


@pytest.mark.parametrize("flow", ("promote", "promote-copy", "rollback"))
@pytest.mark.parametrize("window_kind", KINDS)
def test_dual_write_makes_every_sequence_exact(models, texts, flow, window_kind):
    """With the dual-write helper every sequence is exact, those of NEEDS_HELPER included."""
    _cross(models, texts, flow, window_kind, dual=True)


def test_the_cases_that_need_the_helper_are_wrong_without_it(models, texts):
    """Documented limits: without the helper these sequences end wrong (or rejected), as the README says."""
    w = World(models, texts)
    f = Flow("promote", w)
    f.setup()

    def hook(s):
        if s == "before_swap":
            w.write("upsert_new", 3000)
            w.write("upsert_new", 3001)
            w.write("delete", 5)
        if s == "after_swap":
            w.write("delete", 3000)  # a no-op on the new collection: the point is not there yet
            w.write("set_payload", 3001)  # rejected: not found
            w.write("overwrite_payload", 5)  # applies to the stale point: it comes back

    f.run(hook)
    total, wrong = w.compare(f.right)
    assert any(e.startswith("set_payload 3001") for e in w.errors)
    assert {x.split(":")[0] for x in wrong} == {"3000", "3001", "5"}, wrong


def _restore(w: World, orig: dict, pid, payload: dict | None = None, writer=None) -> None:
    """Upsert point ``pid`` as it was in ``orig`` (vectors too), with ``payload`` if given, through the alias."""
    from qdrant_client import models as qm

    o = orig[str(pid)]
    vec = {k: (qm.SparseVector(indices=v[1], values=v[2]) if v[0] == "sparse" else v[1])
           for k, v in o["vectors"].items()}
    payload = payload if payload is not None else o["payload"]
    if not w.copy_mode:
        vec[w.managed] = w.app_encoding(payload["text"])
    p = qm.PointStruct(id=pid, vector=vec, payload=payload)
    (writer or _Plain(w.c)).upsert([p])
    w._truth_upsert(p)


def test_issue_sequences(models, texts):
    """The sequences of the issue (item 2) that need no cooperation, with the plain client."""
    w = World(models, texts)
    f = Flow("promote", w)
    f.setup()
    orig = json.loads(json.dumps(w.truth, default=str))

    def hook(s):
        if s == "before_swap":
            w.write("delete", 1)  # deleted in the window ...
            _restore(w, orig, 2, {**orig["2"]["payload"], "text": "B " + orig["2"]["payload"]["text"]})  # A -> B
            w.write("set_payload", 3)  # text changed in the window ...
        if s == "after_swap":
            _restore(w, orig, 1)  # ... re-created identically through the alias after the swap
            _restore(w, orig, 2)  # ... B -> A after the swap
            w.c.set_payload(ALIAS, payload={"extra": 1}, points=[3])  # ... then a set_payload after the swap
            w.truth["3"]["payload"]["extra"] = 1

    f.run(hook)
    f.check("issue sequences")
    assert w.truth["2"]["payload"] == orig["2"]["payload"] and "1" in w.truth


def test_dual_write_aba_restores(models, texts):
    """With the helper, restoring a point after the swap to exactly its state before the window wins,
    vectors included (without it, a vector the window changed and the app restored bit for bit reads as
    untouched)."""
    from vectune.apps.dualwrite import DualWriter

    w = World(models, texts)
    f = Flow("promote", w)
    f.setup()
    orig = json.loads(json.dumps(w.truth, default=str))
    dw = DualWriter(w.c, ALIAS, encoder_for=lambda coll, meta: models["cand"])

    def hook(s):
        if s == "before_swap":
            w.write("upsert_changed", 4, dw)
            w.write("update_vectors_sparse", 5, dw)
            w.write("set_payload", 6, dw)
        if s == "after_swap":
            _restore(w, orig, 4, writer=dw)
            _restore(w, orig, 5, writer=dw)
            dw.set_payload({"text": orig["6"]["payload"]["text"], "tag": orig["6"]["payload"]["tag"]}, [6])
            w.truth["6"]["payload"].update(text=orig["6"]["payload"]["text"], tag=orig["6"]["payload"]["tag"])
            for call in w._follow_text(dw, 6, orig["6"]["payload"]["text"]):
                call()

    f.run(hook)
    f.check("window edits restored after the swap (dual-write)")


def test_reconciliation_interrupted_midway_resumes_from_its_journal(models, texts, tmp_path):
    """A crash between two batches of the reconciliation: resumed from the saved snapshot's journal, the
    batches already done are not redone, and the alias ends exact."""
    from vectune.errors import QdrantUnavailable
    from vectune.promote.build import build
    from vectune.promote.publish import publish
    from vectune.promote.stats import SyncStats
    from vectune.promote.window import Snapshot, reconcile

    w = World(models, texts)
    f = Flow("promote", w)
    f.setup()
    enc = models["cand"]
    saved = {}

    def mark(what, info):
        if what == "snapshot":
            data = json.loads(json.dumps(info["snapshot"].to_json()))
            saved["snap"] = Snapshot.from_json(data)
            saved["snap"].journal = info["snapshot"].journal = tmp_path / "journal.jsonl.gz"

    def window(**_):
        for i, kind in enumerate(KINDS):
            w.write(kind, 1000 if kind == "upsert_new" else i)
        w.write("set_payload", 11)
        w.write("update_vectors_sparse", 12)

    real = w.store.batch_update
    calls = {"n": 0}

    def flaky(name, ops):
        if name == f.target and any(getattr(o, "upsert", None) is None for o in ops):
            calls["n"] += 1
            if calls["n"] == 2:
                raise QdrantUnavailable("simulated: connection reset during reconciliation")
        return real(name, ops)

    faults.HOOKS["before_swap"].append(window)
    build(w.store, enc, w.base, f.target, w.spec, "text", BATCH)
    w.store.batch_update = flaky
    with pytest.raises(QdrantUnavailable):
        publish(w.store, enc, w.base, f.target, ALIAS, w.spec, "text", BATCH, mark=mark)
    faults.HOOKS.clear()
    w.store.batch_update = real
    done, finished = saved["snap"].done()
    assert len(done) == BATCH and not finished
    stats = SyncStats()
    reconcile(w.store, enc, w.base, f.target, w.spec, "text", saved["snap"], BATCH, stats)
    assert stats.window_writes == 12 - BATCH and saved["snap"].done()[1]
    f.stats = stats
    w.swapped, w.app_model = True, "cand"
    f.check("reconciliation resumed after a crash between batches")


# ------------------------------------------------- issue 22, item 5: the tuned vector follows the final text
WINDOW_TEXT_CHANGES = ("set_payload", "upsert_changed", "overwrite_payload")


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("window_kind", WINDOW_TEXT_CHANGES)
def test_text_changed_in_the_window_then_restored_through_the_alias(models, texts, flow, window_kind):
    """The audit's sequence: the app changes a point's text (and its vector) on the old collection in the
    window; right after the swap it upserts the point back through the alias with the original text and
    vector. Ends exact, and no tuned vector belongs to another text — copy mode and re-encoding mode."""
    w = World(models, texts)
    f = Flow(flow, w)
    f.setup()
    orig = json.loads(json.dumps(w.truth, default=str))
    pids = [3, 4, 5]

    def hook(s):
        if s == "before_swap":
            for pid in pids:
                w.write(window_kind, pid)
        if s == "after_swap":
            for pid in pids:
                _restore(w, orig, pid)

    f.run(hook)
    assert all(w.truth[str(p)]["payload"] == orig[str(p)]["payload"] for p in pids)
    if window_kind != "upsert_changed":
        f.check(f"{window_kind} in the window, restored through the alias after the swap")
    else:
        # the window's upsert also changed the other vectors ('img', 'sp'); the restore sets them back to exactly
        # their value at the swap, which reads as no write: README case 4, the window's values win there. The
        # payload and the tuned vector are exact.
        total, wrong = w.compare(f.right)
        print(f"\n{flow} upsert_changed restored: total {total}, wrong {len(wrong)}: {wrong}")
        assert wrong and all(x.endswith(("vector 'img' differs", "vector 'sp' differs")) for x in wrong), wrong
    assert not w.inconsistent(f.right)


@pytest.mark.parametrize("flow", ("promote", "promote-copy", "rollback-copy"))
def test_text_restored_by_edits_after_the_swap_stays_consistent(models, texts, flow):
    """Restoring with edits (set_payload of the old text, then update_vectors of its old vector) instead of an
    upsert is README case 4 (a value set back to exactly what it was at the swap reads as no write: the
    window's text wins) — inexact, but the point keeps a tuned vector of the text it ends with."""
    from qdrant_client import models as qm

    w = World(models, texts)
    f = Flow(flow, w)
    f.setup()
    orig = json.loads(json.dumps(w.truth, default=str))

    def hook(s):
        if s == "before_swap":
            w.write("set_payload", 6)
        if s == "after_swap":
            o = orig["6"]
            w.c.set_payload(ALIAS, payload={"text": o["payload"]["text"], "tag": o["payload"]["tag"]}, points=[6])
            vec = o["vectors"][w.managed][1] if w.copy_mode else w.app_encoding(o["payload"]["text"])
            w.c.update_vectors(ALIAS, points=[qm.PointVectors(id=6, vector={w.managed: vec})])

    f.run(hook)
    assert not w.inconsistent(f.right)


def test_a_point_written_after_the_swap_with_another_model_is_re_encoded(models, texts):
    """Re-encoding mode: when the window changed a point and the app then wrote it through the alias with a
    vector of another model (an app still holding the old encoder), reconciliation re-encodes it: the tuned
    vector is the new model's encoding of the text the point ends with."""
    from qdrant_client import models as qm

    w = World(models, texts)
    f = Flow("promote", w)
    f.setup()
    orig = json.loads(json.dumps(w.truth, default=str))

    def hook(s):
        if s == "before_swap":
            w.write("set_payload", 7)
        if s == "after_swap":
            o = orig["7"]
            vec = {k: (qm.SparseVector(indices=v[1], values=v[2]) if v[0] == "sparse" else v[1])
                   for k, v in o["vectors"].items()}
            vec[w.managed] = [float(x) for x in models["base"].encode_passages([o["payload"]["text"]])[0]]
            p = qm.PointStruct(id=7, vector=vec, payload=o["payload"])
            w.c.upsert(ALIAS, [p])  # the old model's vector, through the alias, after the swap
            w._truth_upsert(p)

    f.run(hook)
    assert f.stats.text_followed == 1
    f.check("written after the swap with the old model's vector")
