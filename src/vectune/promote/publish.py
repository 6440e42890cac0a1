"""Publish: catch up, verify, final pass, one atomic alias swap, post-swap reconciliation.

1. delta passes until a pass changes at most a few points;
2. verify (same ids, sample points find themselves); mark the collection verified;
3. a final short pass from a *snapshot* of the source's ids and payload hashes;
4. one atomic alias swap;
5. post-swap reconciliation: writes that landed on the old collection between the
   snapshot and the swap (the *window*) are found by comparing the old collection
   with the snapshot and carried over — unless the app already re-wrote the same
   point through the alias after the swap (then the newer write wins).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np

from vectune import faults

from vectune.errors import VerificationFailed
from vectune.models import Encoder
from vectune.promote.stats import SyncStats
from vectune.promote.sync import fingerprints, reconcile, sync_once
from vectune.lock import NO_FENCE
from vectune.store import DenseSpec, Store, dense_of, point_id_for

logger = logging.getLogger(__name__)


def publish(store: Store, encoder: Encoder, source: str, target: str, alias: str, spec: DenseSpec,
            text_field: str, batch: int = 128, verify_sample: int = 5, max_passes: int = 5, small: int = 10,
            mark: Callable[[str, dict], None] | None = None, lock=NO_FENCE) -> tuple[SyncStats, dict]:
    """Catch up, verify, final pass, atomic swap, post-swap reconciliation (see module doc).

    Args:
        store: Qdrant access.
        encoder: the model whose vectors ``target`` holds.
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
            ``snapshot`` (the source snapshot, to persist for crash recovery), ``live`` (swapped).
        lock: the alias lease; fenced before every delete, the swap and the reconciliation, so an
            operator that lost its lease changes nothing more (:class:`vectune.lock.LockLost`).

    Returns:
        Sync statistics (with the window of risk) and the verification result.
    """
    t0 = time.perf_counter()
    stats = SyncStats()
    for _ in range(max_passes):
        # Each pass works from one scan of the source; verification checks the target against the
        # last pass's scan (apps may keep writing to the source meanwhile: the final pass takes those).
        scan = fingerprints(store, source, batch)
        if sync_once(store, encoder, source, target, spec, text_field, batch, stats, snapshot=scan,
                     lock=lock) <= small:
            break
    faults.point("before_verify", store=store, source=source, target=target)
    vinfo = verify(store, set(scan), target, spec, verify_sample)
    if mark:
        lock.fence("mark verified")
        mark("verified", vinfo)
    faults.point("before_final_sync", store=store, source=source, target=target)
    w0 = time.perf_counter()
    snapshot = fingerprints(store, source, batch)
    sync_once(store, encoder, source, target, spec, text_field, batch, stats, snapshot=snapshot, lock=lock)
    if store.count(target) != len(snapshot):
        raise VerificationFailed(f"'{target}' holds {store.count(target)} points after the final pass, "
                                 f"the source had {len(snapshot)}; alias not swapped")
    if mark:
        mark("snapshot", {"snapshot": snapshot})
    faults.point("before_swap", store=store, source=source, target=target)
    lock.fence("swap")
    store.swap_alias(alias, target)
    stats.window_s = time.perf_counter() - w0
    if mark:
        mark("live", vinfo)
    faults.point("after_swap", store=store, source=source, target=target)
    reconcile(store, encoder, source, target, spec, text_field, snapshot, batch, stats, lock)
    stats.seconds = time.perf_counter() - t0
    logger.info("swapped '%s' -> %s; window %.3f s, %d window writes carried over, %d conflicts",
                alias, target, stats.window_s, stats.window_writes, stats.window_conflicts)
    return stats, vinfo


def verify(store: Store, expected: str | set[str], target: str, spec: DenseSpec, sample: int = 5) -> dict:
    """Check ``target``: the expected ids (a source collection's, or a scan's), and sample points find themselves.

    Raises:
        VerificationFailed: with what is wrong; nothing is swapped.
    """
    source = expected if isinstance(expected, str) else "the source scan"
    src_ids = ({str(r.id) for recs, _ in store.scroll(expected, batch=1024, ids_only=True) for r in recs}
               if isinstance(expected, str) else expected)
    dst_ids = {str(r.id) for recs, _ in store.scroll(target, batch=1024, ids_only=True) for r in recs}
    missing, extra = src_ids - dst_ids, dst_ids - src_ids
    if missing or extra:
        raise VerificationFailed(f"'{target}' differs from '{source}': {len(missing)} missing, {len(extra)} extra points")
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
