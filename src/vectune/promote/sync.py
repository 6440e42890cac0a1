"""Sync: delta passes that make a target hold exactly the source's points, and post-swap reconciliation.

Every point missing from the target or whose payload changed is re-embedded with the
target's model; every point the source no longer has is deleted.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np

from vectune import faults

from vectune.hashing import payload_hash
from vectune.models import Encoder
from vectune.promote.build import embed_and_upsert
from vectune.promote.stats import SyncStats
from vectune.lock import NO_FENCE
from vectune.store import DenseSpec, Store

logger = logging.getLogger(__name__)


def fingerprints(store: Store, name: str, batch: int) -> dict[str, tuple[Any, str]]:
    out = {}
    for records, _ in store.scroll(name, vectors=False, batch=max(batch, 256)):
        for r in records:
            out[str(r.id)] = (r.id, payload_hash(r.payload))
    return out


def delta(store: Store, source: str, target: str, batch: int = 256,
          src: dict[str, tuple[Any, str]] | None = None) -> tuple[list, list]:
    """Ids to (re)write in ``target`` and ids to delete from it so it equals ``source`` (or snapshot ``src``)."""
    src = src if src is not None else fingerprints(store, source, batch)
    dst = fingerprints(store, target, batch)
    upsert = [pid for key, (pid, h) in src.items() if key not in dst or dst[key][1] != h]
    delete = [pid for key, (pid, _) in dst.items() if key not in src]
    return upsert, delete


def _copy_points(store: Store, encoder: Encoder | None, source: str, target: str, spec: DenseSpec,
                 text_field: str, ids: list, batch: int, stats: SyncStats, lock=NO_FENCE) -> None:
    for i in range(0, len(ids), batch):
        records = store.retrieve(source, ids[i:i + batch], vectors=True)
        # Points deleted from the source meanwhile are simply absent; a later pass deletes them.
        embed_and_upsert(store, encoder, target, spec, records, text_field, None, stats, lock)


def sync_once(store: Store, encoder: Encoder | None, source: str, target: str, spec: DenseSpec, text_field: str,
              batch: int = 128, stats: SyncStats | None = None,
              snapshot: dict[str, tuple[Any, str]] | None = None, lock=NO_FENCE) -> int:
    """One delta pass (against a fresh scan, or a given ``snapshot`` of the source); returns points changed."""
    stats = stats or SyncStats()
    to_upsert, to_delete = delta(store, source, target, batch, src=snapshot)
    _copy_points(store, encoder, source, target, spec, text_field, to_upsert, batch, stats, lock)
    if to_delete:
        lock.fence("delete from the new collection")
    store.delete_points(target, to_delete)
    stats.deleted += len(to_delete)
    stats.passes += 1
    stats.pass_deltas.append(len(to_upsert) + len(to_delete))
    return len(to_upsert) + len(to_delete)


def reconcile(store: Store, encoder: Encoder | None, old: str, new: str, spec: DenseSpec, text_field: str,
              snapshot: dict[str, tuple[Any, str]], batch: int, stats: SyncStats, lock=NO_FENCE) -> None:
    """Carry writes that hit ``old`` between the snapshot and the swap over to ``new``.

    After the swap apps write to ``new`` through the alias, so ``old`` is frozen: every
    difference between ``old`` and the snapshot is a window write. A point the app has
    re-written in ``new`` since the swap (its hash differs from the snapshot's) keeps
    the newer write (counted as a conflict).
    """
    now_old = fingerprints(store, old, batch)
    now_new = fingerprints(store, new, batch)
    snap_h = {k: h for k, (_, h) in snapshot.items()}
    untouched_in_new = {k for k, (_, h) in now_new.items() if snap_h.get(k) == h}
    to_copy, to_delete = [], []
    for key, (pid, h) in now_old.items():
        if snap_h.get(key) == h:
            continue  # not written in the window
        if key in untouched_in_new or (key not in snap_h and key not in now_new):
            to_copy.append(pid)
        else:
            stats.window_conflicts += 1
    for key, (pid, _) in snapshot.items():
        if key not in now_old:  # deleted in the window
            if key in untouched_in_new:
                to_delete.append(pid)
            elif key in now_new:
                stats.window_conflicts += 1
    lock.fence("reconcile")
    _copy_points(store, encoder, old, new, spec, text_field, to_copy, batch, stats, lock)
    if to_delete:
        lock.fence("reconcile deletes")
    store.delete_points(new, to_delete)
    stats.deleted += len(to_delete)
    stats.window_writes = len(to_copy) + len(to_delete)


def sync(store: Store, encoder: Encoder, source: str, target: str, spec: DenseSpec, text_field: str,
         batch: int = 128, max_passes: int = 5, small: int = 0) -> SyncStats:
    """Delta passes until a pass changes at most ``small`` points (or ``max_passes``)."""
    t0 = time.perf_counter()
    stats = SyncStats()
    for _ in range(max_passes):
        if sync_once(store, encoder, source, target, spec, text_field, batch, stats) <= small:
            break
    stats.seconds = time.perf_counter() - t0
    return stats


