"""`vectune prune` against a rollback that races it (issue 22, item 2): no delete can orphan the alias.

The audit's race, with the fault hooks at the exact points: prune passes its lease check and then
freezes for longer than the lease before ``delete_collection`` lands; meanwhile a rollback takes the
(expired) lease and wants the alias on that very collection. Before the two-phase deletion the
alias ended on nothing. Now the rollback refuses a collection marked for deletion (or, when prune
froze before marking it, the rollback wins and prune deletes nothing), and the alias always ends on
a live collection holding exactly what the app wrote: checked point by point against the truth model.

In-process, on one embedded Qdrant: every command's ``Store.open`` returns the world's client, and the
freeze is the hook expiring prune's lease as a freeze longer than the lease would.
"""

from __future__ import annotations

from tests.helpers.truth import ALIAS, BATCH, KINDS, Flow, World, as_versions, hash_models, share
from vectune.core import faults
from vectune.errors import BadInput
from vectune.qdrant import lineage
from vectune.qdrant.lease import LOCK_COLLECTION, AliasLock, LockLost


def _three_versions(texts, monkeypatch) -> tuple[World, list[str]]:
    """``docs--base`` (oldest) <- ``docs--cand`` (the rollback target) <- ``docs--v2`` (live), copy mode."""
    from vectune.promote.build import build
    from vectune.promote.publish import publish

    w = World(hash_models(), texts)
    f = Flow("rollback-copy", w)
    f.setup()  # base -> cand, alias on cand
    base, cand = as_versions(w, copy=True)
    v2 = f"{ALIAS}--v2"
    rec = {**w.store.metadata(cand), "model_ref": "v2-tag", "model_tag": "v2-tag", "parent_collection": cand,
           "state": "building", "created_at": "2024-03-01T00:00:00+00:00"}
    w.store.create_like(cand, v2, w.spec, 384, rec)
    build(w.store, None, cand, v2, w.spec, "text", BATCH)
    publish(w.store, None, cand, v2, ALIAS, w.spec, "text", BATCH)
    lineage.set_state(w.store, v2, "live")
    lineage.set_state(w.store, cand, "retired")
    share(w, monkeypatch)
    for i, kind in enumerate(KINDS):  # the app's writes since: the rollback has something to sync
        w.write(kind, 1000 if kind == "upsert_new" else i)
    return w, [base, cand, v2]


def _freeze_longer_than_the_lease(store) -> None:
    """What the world sees of a process frozen for longer than its lease: the lease has run out."""
    lease = AliasLock(store, ALIAS, "observer", ttl_s=60).current()
    store.lease_update(LOCK_COLLECTION, AliasLock(store, ALIAS, "o", 60)._pid, {"expires_at": 0.0},
                       only_if={"owner": lease.owner, "token": lease.token})


def _race(settings, w, point: str, doomed: str, then_hold: bool = False) -> dict:
    """Prune (keep 2) freezes at ``point``; meanwhile a rollback to ``doomed`` runs to its end (and, with
    ``then_hold``, another operator takes the lease and keeps it)."""
    from vectune.ops.prune import prune
    from vectune.ops.rollback import rollback

    seen = {}

    def frozen(store, collection, **_):
        if collection != doomed or seen:
            return
        _freeze_longer_than_the_lease(store)
        try:
            seen["rollback"] = rollback(settings, ALIAS, to=doomed)
        except BadInput as e:
            seen["refused"] = str(e)
        if then_hold:
            seen["holder"] = AliasLock(store, ALIAS, "other-host:2:run", ttl_s=900).acquire()

    faults.HOOKS[point].append(frozen)
    try:
        seen["prune"] = prune(settings, ALIAS, keep=2)
    except LockLost as e:
        seen["prune_lost"] = str(e)
    return seen


def _alias_on_a_live_collection(w) -> str:
    live = w.store.resolve_alias(ALIAS)  # raises if the alias is gone
    assert w.store.collection_exists(live)
    return live


def test_prune_frozen_before_delete_collection_cannot_orphan_the_alias(settings, texts, monkeypatch):
    """The audit's point: after prune's lease check and alias re-check, right before delete_collection."""
    w, (base, cand, v2) = _three_versions(texts, monkeypatch)
    seen = _race(settings, w, "delete_collection", base)
    assert "marked for deletion" in seen["refused"]  # the rollback refused the marked collection
    assert seen["prune"]["deleted"] == [base]  # prune finished its delete (exit 0): harmless now
    assert _alias_on_a_live_collection(w) == v2
    total, wrong = w.compare(None)
    print(f"\nfrozen before delete_collection: alias on {v2}, total {total}, wrong {len(wrong)}")
    assert total >= 30 and wrong == []


def test_prune_frozen_between_mark_and_recheck_deletes_nothing(settings, texts, monkeypatch):
    """Frozen after marking, before its second fence: the rollback refuses the marked collection, prune's
    fence fails (exit 5, nothing deleted), and the next holder finishes the marked deletion."""
    from vectune.qdrant import deletion

    w, (base, cand, v2) = _three_versions(texts, monkeypatch)
    seen = _race(settings, w, "delete_recheck", base, then_hold=True)
    assert "marked for deletion" in seen["refused"] and "prune_lost" in seen
    assert w.store.collection_exists(base) and lineage.doom_mark(w.store, base)
    assert _alias_on_a_live_collection(w) == v2
    assert deletion.finish_marked(w.store, ALIAS, seen["holder"]) == [base]  # recovery, under the next lease
    assert w.compare(None)[1] == []


def test_prune_frozen_before_marking_loses_to_the_rollback(settings, texts, monkeypatch):
    """Frozen after its first fence, before the mark lands: the rollback (not refused: nothing marked yet)
    puts the alias on that collection, synced; prune's late mark lands on a live collection, its second
    fence fails, nothing is deleted, and the next holder takes the stray mark back."""
    from vectune.ops.recover import recover

    w, (base, cand, v2) = _three_versions(texts, monkeypatch)
    seen = _race(settings, w, "delete_mark", base)
    assert seen["rollback"]["to"] == base and "prune_lost" in seen
    assert _alias_on_a_live_collection(w) == base and lineage.doom_mark(w.store, base)
    rec = recover(w.store, settings, ALIAS, base)
    assert rec.found["deletion_mark_cleared"] == base and lineage.doom_mark(w.store, base) is None
    total, wrong = w.compare(None)
    print(f"\nfrozen before the mark: alias on {base} (rolled back, synced), total {total}, wrong {len(wrong)}")
    assert wrong == []


def test_prune_and_dry_run_keep_live_and_rollback_target(settings, texts, monkeypatch):
    from vectune.ops.prune import prune

    w, (base, cand, v2) = _three_versions(texts, monkeypatch)
    assert prune(settings, ALIAS, keep=1, dry_run=True) == {"kept": sorted([cand, v2]), "deleted": [base],
                                                           "models_deleted": [], "dry_run": True}
    out = prune(settings, ALIAS, keep=1)
    assert out["deleted"] == [base] and sorted(out["kept"]) == sorted([cand, v2])
    assert sorted(n for n, _ in lineage.versions(w.store, ALIAS)) == sorted([cand, v2])
