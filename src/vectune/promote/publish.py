"""Publish: catch up, verify, final pass, one atomic alias swap, post-swap reconciliation.

1. announce the migration in the source's lineage (``migrating_to``: dual-write helpers start
   writing to both collections);
2. delta passes until a pass changes at most a few points (:class:`~vectune.promote.sync.Syncer`:
   payload and every vector, conditional writes);
3. verify (same ids, sample points find themselves); mark the collection verified;
4. a final short pass from a *snapshot* of the source; the :class:`~vectune.promote.window.Snapshot`
   records, per point, the source state the target reflects (persisted by ``mark``);
5. one atomic alias swap (refused for a collection marked for deletion: :mod:`vectune.qdrant.deletion`);
6. post-swap reconciliation of the writes made in the *window* (between the snapshot and the
   swap), merged with the app's writes through the alias since the swap
   (:mod:`vectune.promote.window`); then vectune's markers are removed.

The same function serves promotion, rollback and roll-forward.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from vectune.core import faults
from vectune.errors import VerificationFailed
from vectune.models.encoder import Encoder
from vectune.promote.mark import MARK, dw_nonce
from vectune.promote.stats import SyncStats
from vectune.promote.sync import Syncer
from vectune.promote.window import announce, reconcile, withdraw
from vectune.qdrant.deletion import guard_swap
from vectune.qdrant.lease import NO_FENCE, LockLost
from vectune.qdrant.store import DenseSpec, Store, dense_of, point_id_for

logger = logging.getLogger(__name__)


def publish(store: Store, encoder: Encoder | None, source: str, target: str, alias: str, spec: DenseSpec,
            text_field: str, batch: int = 128, verify_sample: int = 5, max_passes: int = 5, small: int = 10,
            mark: Callable[[str, dict], None] | None = None, lock=NO_FENCE) -> tuple[SyncStats, dict]:
    """Catch up, verify, final pass, atomic swap, post-swap reconciliation (see module doc).

    Args:
        store: Qdrant access.
        encoder: the model whose vectors ``target`` holds; None copies every vector verbatim
            (a query-side promotion, or a rollback between collections of the same passage model).
        source: the collection the alias points at now.
        target: the collection to put behind the alias.
        alias: the alias.
        spec: the tuned dense vector.
        text_field: payload field with the text.
        batch: points per request.
        verify_sample: points checked to find themselves.
        max_passes: catch-up passes at most before verifying.
        small: a pass changing at most this many points ends the catch-up.
        mark: ``mark(state, info)`` is told of progress — ``verified`` (verification result),
            ``snapshot`` (``info["snapshot"]``: the :class:`~vectune.promote.window.Snapshot`, to
            persist for crash recovery), ``live`` (swapped).
        lock: the alias lease; fenced before every delete, the swap and the reconciliation, so an
            operator that lost its lease changes nothing more (:class:`vectune.qdrant.lease.LockLost`).

    Returns:
        Sync statistics (with the window of risk) and the verification result.
    """
    t0 = time.perf_counter()
    stats = SyncStats()
    syncer = Syncer(store, encoder, source, target, spec, text_field, batch, stats, lock)
    lock.fence("announce the migration")
    for key in (f"{MARK}.r", f"{MARK}.n"):  # the fields conditional writes filter on (server only)
        store.index_keyword(target, key)
    announce(store, source, target, spec, text_field, copy=encoder is None)
    try:
        syncer.load_view()
        for _ in range(max_passes):
            # Each pass works from one scan of the source; verification checks the target against the
            # last pass's scan (apps may keep writing to the source meanwhile: the final pass takes those).
            scan = syncer.scan()
            if syncer.apply(scan) <= small:
                break
        faults.point("before_verify", store=store, source=source, target=target)
        vinfo = verify(store, set(scan), target, spec, verify_sample, source=source)
        if mark:
            lock.fence("mark verified")
            mark("verified", vinfo)
        faults.point("before_final_sync", store=store, source=source, target=target)
        w0 = time.perf_counter()
        scan = syncer.scan()
        syncer.apply(scan)
        snapshot = syncer.snapshot(scan)
        if mark:
            mark("snapshot", {"snapshot": snapshot})
        faults.point("before_swap", store=store, source=source, target=target)
        lock.fence("swap")
        guard_swap(store, alias, target, lock)  # never make a collection marked for deletion live
    except LockLost:
        raise  # another operator holds the alias: touch nothing more
    except BaseException:
        withdraw(store, source, target)
        raise
    store.swap_alias(alias, target)
    stats.window_s = time.perf_counter() - w0
    if mark:
        mark("live", vinfo)
    faults.point("after_swap", store=store, source=source, target=target)
    reconcile(store, encoder, source, target, spec, text_field, snapshot, batch, stats, lock)
    stats.seconds = time.perf_counter() - t0
    logger.info("swapped '%s' -> %s; window %.3f s, %d window writes carried over, %d written after the swap too; "
                "%d points found equal and marked without a copy", alias, target, stats.window_s,
                stats.window_writes, stats.window_conflicts, syncer.stamped)
    return stats, vinfo


def verify(store: Store, expected: str | set[str], target: str, spec: DenseSpec, sample: int = 5,
           source: str | None = None) -> dict:
    """Check ``target``: the expected ids (a source collection's, or a scan's), and sample points find themselves.

    Args:
        store: Qdrant access.
        expected: a collection name, or the ids of a scan of ``source``.
        target: the collection to check.
        spec: the tuned dense vector.
        sample: points checked to find themselves.
        source: the scanned collection; a difference is then tolerated where the source moved since
            the scan (a point it no longer has, or one the dual-write helper wrote to both).

    Raises:
        VerificationFailed: with what is wrong; nothing is swapped.
    """
    what = expected if isinstance(expected, str) else "the source scan"
    src_ids = ({str(r.id) for recs, _ in store.scroll(expected, batch=1024, ids_only=True) for r in recs}
               if isinstance(expected, str) else expected)
    dst_ids = {str(r.id) for recs, _ in store.scroll(target, batch=1024, ids_only=True) for r in recs}
    missing, extra = src_ids - dst_ids, dst_ids - src_ids
    if (missing or extra) and source is not None:
        if missing:  # the source lost them since the scan
            still = {str(r.id) for r in store.retrieve(source, [point_id_for(i) for i in missing])}
            missing &= still
        if extra:  # created since the scan through the dual-write helper
            recs = store.retrieve(target, [point_id_for(i) for i in extra])
            extra -= {str(r.id) for r in recs if dw_nonce(r.payload, target)}
    if missing or extra:
        raise VerificationFailed(f"'{target}' differs from '{what}': {len(missing)} missing, {len(extra)} extra points")
    checked = 0
    if sample and dst_ids:
        ids = sorted(dst_ids)[:: max(1, len(dst_ids) // sample)][:sample]
        recs = store.retrieve(target, [point_id_for(i) for i in ids], vectors=spec.selector)
        for r in recs:
            v = dense_of(r, spec)
            if v is None:
                raise VerificationFailed(f"point {r.id} in '{target}' has no '{spec.name or 'default'}' vector")
            hits = store.search_batch(target, v[None, :], limit=3, using=spec.name)[0]
            if str(r.id) not in {str(h[0]) for h in hits}:
                raise VerificationFailed(f"point {r.id} does not find itself in '{target}'")
            checked += 1
    return {"points": len(dst_ids), "sampled": checked}
