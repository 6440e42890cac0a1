"""Two-phase deletion (vectune.qdrant.deletion): marked, re-checked, deleted; a marked collection is never made live."""

from __future__ import annotations

import pytest

from vectune.errors import BadInput
from vectune.qdrant import deletion, lineage
from vectune.qdrant.lease import AliasLock, LockLost

BUNDLED = "bundled:all-MiniLM-L6-v2"


def _version(store, name, state, created, parent=None):
    rec = lineage.record(alias="docs", model_ref=BUNDLED, model_tag="m", created_by="test", dense_vector="",
                         state=state, parent_collection=parent)
    rec["created_at"] = created
    store.create_collection(name, 4, "Cosine", rec)


@pytest.fixture
def three(store):
    _version(store, "docs--v0", "retired", "2024-01-01")
    _version(store, "docs--v1", "retired", "2024-02-01", parent="docs--v0")
    _version(store, "docs--v2", "live", "2024-03-01", parent="docs--v1")
    store.swap_alias("docs", "docs--v2")
    return store


def test_mark_then_delete_and_the_mark_survives_lineage_rewrites(three):
    store = three
    lock = AliasLock(store, "docs", "h:1:test", ttl_s=60).acquire()
    mark = deletion.mark(store, "docs--v0", lock, "prune")
    assert mark["why"] == "prune" and mark["by"] == "h:1:test" and mark["lease_generation"] == lock.generation
    lineage.set_state(store, "docs--v0", "retired", note="a lineage rewrite")  # replaces the lineage record ...
    assert lineage.doom_mark(store, "docs--v0") == mark  # ... but not the mark beside it
    assert lineage.rollback_target(store, "docs", "docs--v2") == "docs--v1"
    assert deletion.delete_marked(store, "docs", "docs--v0", lock)
    assert store.collections() == ["docs--v1", "docs--v2", "vectune_locks"]
    lock.release()


def test_a_marked_collection_is_never_made_live_nor_a_rollback_target(three):
    store = three
    deletion.mark(store, "docs--v1", why="prune")
    assert lineage.rollback_target(store, "docs", "docs--v2") == "docs--v0"  # the parent is marked: skipped
    assert lineage.rollback_target(store, "docs", "docs--v2", marked_too=True) == "docs--v1"
    with pytest.raises(BadInput, match="marked for deletion"):
        deletion.guard_swap(store, "docs", "docs--v1")
    deletion.guard_swap(store, "docs", "docs--v0")  # unmarked: fine


def test_the_recheck_keeps_a_collection_that_became_live_and_takes_the_mark_back(three):
    store = three
    deletion.mark(store, "docs--v0", why="prune")
    store.swap_alias("docs", "docs--v0")  # (a stale operator's swap, the case the guard exists for)
    assert not deletion.delete_marked(store, "docs", "docs--v0")
    assert "docs--v0" in store.collections() and lineage.doom_mark(store, "docs--v0") is None


def test_a_mark_left_on_the_live_collection_is_cleared_and_pending_marks_are_finished(three):
    store = three
    deletion.mark(store, "docs--v2", why="prune")  # landed after the collection became live
    deletion.mark(store, "docs--v0", why="prune")  # a deleter stopped between its phases
    deletion.guard_swap(store, "docs", "docs--v2")  # the alias is on it already: the mark is taken back
    assert lineage.doom_mark(store, "docs--v2") is None
    assert deletion.finish_marked(store, "docs") == ["docs--v0"]
    assert store.collections() == ["docs--v1", "docs--v2"]


def test_a_deleter_that_lost_the_lease_between_its_phases_deletes_nothing(three):
    store = three
    lock = AliasLock(store, "docs", "h:1:a", ttl_s=60).acquire()
    deletion.mark(store, "docs--v0", lock, "prune")
    lock._lose("taken by another operator (simulated)")
    with pytest.raises(LockLost):
        deletion.delete_marked(store, "docs", "docs--v0", lock)
    assert "docs--v0" in store.collections()
