"""Deleting an alias's collections in two phases, so that no delete can orphan the alias.

Qdrant checks no token on its own requests: a ``delete_collection`` lands whenever it arrives. A
deleter that passed its lease check and then froze (SIGSTOP, a VM pause) for longer than the lease
could otherwise delete a collection that the next lease holder made live meanwhile — the alias
would point at nothing. So every deletion vectune makes (``prune``, retention, recovery's leftovers)
has two phases (:func:`retire`):

1. **mark** (:func:`mark`): under the lease (a fence first), the collection gets a deletion mark in
   its metadata (key ``vectune_doomed``, beside the lineage record: who, under which lease
   generation, when, why);
2. **delete** (:func:`delete_marked`): fence again, re-read the alias and the rollback target; if
   the collection is live or the rollback target now, take the mark back and delete nothing;
   otherwise delete it.

Every publish that makes a collection live (promotion, rollback, roll-forward, their resumption)
calls :func:`guard_swap` after its last fence, right before the swap, and refuses a marked target
(a marked collection is never a rollback target either: :func:`vectune.qdrant.lineage.rollback_target`).

Why this holds whatever the freeze: a publisher's check comes after its fence, so after it took the
lease. A deleter that still deletes passed its second fence before that — so its mark, written
before that second fence, is there to be seen, and the publisher refuses the target. A deleter that
lost the lease between its phases fails its second fence and deletes nothing; a mark it left on a
collection that was made live meanwhile is taken back by the next holder (:func:`clear_live_mark`:
that deleter can no longer delete, and a live collection is never deleted by one that re-checks).
"""

from __future__ import annotations

import logging
import socket

from vectune.core import faults
from vectune.core.clock import now
from vectune.errors import BadInput
from vectune.qdrant import lineage
from vectune.qdrant.lease import NO_FENCE
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)


def mark(store: Store, name: str, lock=NO_FENCE, why: str = "") -> dict:
    """Phase 1: mark ``name`` for deletion, under the lease.

    Args:
        store: Qdrant access.
        name: the collection.
        lock: the alias lease (fenced first).
        why: what deletes it (``prune``, ``retention``, ``recovery: leftover``).

    Returns:
        The mark written.
    """
    lock.fence(f"mark {name} for deletion")
    faults.point("delete_mark", store=store, collection=name)
    stamp = lock.stamp() if hasattr(lock, "stamp") else {}
    doom = {"why": why, "at": now(), "by": stamp.get("lease_owner") or socket.gethostname(),
            "lease_generation": stamp.get("lease_generation")}
    lineage.set_doom(store, name, doom)
    return doom


def delete_marked(store: Store, alias: str, name: str, lock=NO_FENCE) -> bool:
    """Phase 2: re-check the lease and the alias, then delete a marked collection.

    Args:
        store: Qdrant access.
        alias: the alias whose version it is.
        name: the marked collection.
        lock: the alias lease (fenced before the re-check).

    Returns:
        True when it was deleted; False when it had become live or the rollback target (its mark is
        then taken back) or was gone already.
    """
    faults.point("delete_recheck", store=store, collection=name)
    lock.fence(f"delete {name}")
    if not store.collection_exists(name):
        return False
    live = store.resolve_alias(alias)
    if name in (live, lineage.rollback_target(store, alias, live, marked_too=True)):
        logger.warning("not deleting %s: it is live or the rollback target of '%s' now; mark taken back", name, alias)
        lineage.set_doom(store, name, None)
        return False
    faults.point("delete_collection", store=store, collection=name)
    store.delete_collection(name)
    logger.info("deleted %s", name)
    return True


def retire(store: Store, alias: str, name: str, lock=NO_FENCE, why: str = "") -> bool:
    """Both phases: mark ``name``, then re-check and delete it (see module doc).

    Returns:
        Whether it was deleted.
    """
    mark(store, name, lock, why)
    return delete_marked(store, alias, name, lock)


def guard_swap(store: Store, alias: str, target: str, lock=NO_FENCE) -> None:
    """Right before a swap to ``target`` (after the last fence): refuse a collection marked for deletion.

    A mark on the collection the alias points at already is taken back instead (nobody deletes a
    live collection after re-checking).

    Raises:
        BadInput: ``target`` is marked for deletion (exit code 3); nothing is swapped.
    """
    doom = lineage.doom_mark(store, target)
    if not doom:
        return
    if store.aliases().get(alias) == target:
        clear_live_mark(store, alias, target, lock)
        return
    raise BadInput(f"'{target}' is marked for deletion ({doom.get('why') or 'a deletion'} by {doom.get('by')} at "
                   f"{doom.get('at')}) and will not be made live behind '{alias}'; choose another version "
                   f"(`vectune status --alias {alias}`)")


def clear_live_mark(store: Store, alias: str, live: str, lock=NO_FENCE) -> bool:
    """Take back a deletion mark found on the live collection (left by a deleter that lost its lease).

    Returns:
        Whether there was one.
    """
    doom = lineage.doom_mark(store, live)
    if not doom:
        return False
    lock.fence(f"unmark {live}")
    lineage.set_doom(store, live, None)
    logger.warning("'%s' is live behind '%s' but was marked for deletion (%s by %s at %s); mark taken back: that "
                   "deletion can no longer happen", live, alias, doom.get("why"), doom.get("by"), doom.get("at"))
    return True


def finish_marked(store: Store, alias: str, lock=NO_FENCE) -> list[str]:
    """Delete every collection of ``alias`` still marked for deletion (a deleter stopped between its phases).

    Returns:
        The collections deleted.
    """
    out = []
    for name, _ in lineage.versions(store, alias):
        if lineage.doom_mark(store, name) and delete_marked(store, alias, name, lock):
            out.append(name)
    return out


__all__ = ["clear_live_mark", "delete_marked", "finish_marked", "guard_swap", "mark", "retire"]
