"""Promote stage: build a model-tagged collection, sync it, verify it, swap the alias.

One mechanism serves promotion, rollback and roll-forward: :func:`sync` makes a
target collection hold exactly the source's points — every point missing or
whose payload changed is re-embedded with the target's model, every point the
source no longer has is deleted. Promotion streams a first full copy (constant
memory, resumable from a scroll offset), then :func:`publish`:

1. delta passes until a pass changes at most a few points;
2. verify (same ids, sample points find themselves); mark the collection verified;
3. a final short pass from a *snapshot* of the source's ids and payload hashes;
4. one atomic alias swap;
5. post-swap reconciliation: writes that landed on the old collection between the
   snapshot and the swap (the *window*) are found by comparing the old collection
   with the snapshot and carried over — unless the app already re-wrote the same
   point through the alias after the swap (then the newer write wins).

Apps need only write through the alias. The window's length is measured and
reported; during it, reads through the alias may briefly miss those writes, but
nothing is lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from vectune import faults
from vectune.chunks import extract_text
from vectune.errors import BadInput, VerificationFailed
from vectune.models import Encoder
from vectune.store import DenseSpec, Store, point_id_for

logger = logging.getLogger(__name__)


def payload_hash(payload: dict | None) -> str:
    """Stable hash of a payload (for change detection between collections)."""
    raw = json.dumps(payload or {}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


@dataclass
class SyncStats:
    """What a build or sync did."""

    upserted: int = 0
    deleted: int = 0
    reused_vectors: int = 0
    passes: int = 0
    seconds: float = 0.0
    window_s: float | None = None
    window_writes: int = 0
    window_conflicts: int = 0
    pass_deltas: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def make_point(record, vector: np.ndarray, spec: DenseSpec):
    """A PointStruct carrying the record's id, payload and other vectors, with a new tuned vector."""
    from qdrant_client import models

    v = record.vector
    new = vector.astype(np.float32).tolist()
    if isinstance(v, dict):
        vec: Any = {**v, spec.name: new}
    elif spec.name:
        vec = {spec.name: new}
    else:
        vec = new
    return models.PointStruct(id=record.id, vector=vec, payload=record.payload or {})


def _embed(encoder: Encoder, spec: DenseSpec, records: list, text_field: str,
           precomputed: dict[str, tuple[str, np.ndarray]] | None, stats: SyncStats) -> list:
    """Points for ``records`` with the encoder's vectors (reusing precomputed ones whose text matches)."""
    texts, todo, points = [], [], []
    for r in records:
        text, reason = extract_text(r.payload, text_field)
        if text is None:
            raise BadInput(f"point {r.id} has no usable text in payload field '{text_field}' ({reason}); "
                           "it cannot be re-embedded, so nothing was promoted")
        pre = precomputed.get(str(r.id)) if precomputed else None
        if pre is not None and pre[0] == text:
            points.append(make_point(r, pre[1], spec))
            stats.reused_vectors += 1
        else:
            texts.append(text)
            todo.append(r)
    if texts:
        emb = encoder.encode_passages(texts)
        points.extend(make_point(r, e, spec) for r, e in zip(todo, emb))
    return points


def _embed_and_upsert(store: Store, encoder: Encoder, target: str, spec: DenseSpec, records: list,
                      text_field: str, precomputed: dict[str, tuple[str, np.ndarray]] | None,
                      stats: SyncStats) -> None:
    points = _embed(encoder, spec, records, text_field, precomputed, stats)
    store.upsert(target, points)
    stats.upserted += len(points)


def build(store: Store, encoder: Encoder, source: str, target: str, spec: DenseSpec, text_field: str,
          batch: int = 128, precomputed: dict[str, tuple[str, np.ndarray]] | None = None,
          start_offset: Any = None, on_page: Callable[[Any, int], None] | None = None) -> SyncStats:
    """Stream every point of ``source`` into ``target``, re-embedded (constant memory).

    Qdrant I/O overlaps the model: one I/O thread reads the next page and writes the
    previous one while the main thread encodes the current one (the client is only
    ever used by one thread at a time). At most three pages are in memory.

    Args:
        store: Qdrant access.
        encoder: the model whose vectors go into ``target``.
        source: collection to copy from.
        target: collection to fill (already created).
        spec: the tuned dense vector.
        text_field: payload field with the text.
        batch: points per page.
        precomputed: ``key → (text, vector)`` from evaluation, reused when the text matches.
        start_offset: resume a killed build from this scroll offset.
        on_page: called with ``(next_offset, points_done)`` once a page is written (to checkpoint).

    Returns:
        Counts and time.
    """
    from concurrent.futures import ThreadPoolExecutor

    from vectune.logs import Progress

    t0 = time.perf_counter()
    stats = SyncStats(passes=1)
    bar = Progress(store.count(source), f"reindex {target}")
    pages = store.scroll(source, vectors=True, batch=batch, offset=start_offset)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vectune-io") as io:
        nxt_page = io.submit(next, pages, None)
        pending = None  # (future of the upsert, next offset, size)

        def settle():
            fut, offset, n = pending
            fut.result()
            stats.upserted += n
            bar.update(n)
            if on_page:
                on_page(offset, stats.upserted)
            if faults.active("reindex_page"):
                if nxt_page is not None:
                    nxt_page.result()  # hooks may use the client: let the I/O thread go idle first
                faults.point("reindex_page", store=store, source=source, target=target)

        while True:
            page = nxt_page.result()
            if page is None:
                break
            records, offset = page
            nxt_page = io.submit(next, pages, None) if offset is not None else None
            points = _embed(encoder, spec, records, text_field, precomputed, stats)
            if pending:
                settle()
            pending = (io.submit(store.upsert, target, points), offset, len(points))
            if nxt_page is None:
                break
        if pending:
            settle()
    bar.close()
    stats.seconds = time.perf_counter() - t0
    return stats


def _fingerprints(store: Store, name: str, batch: int) -> dict[str, tuple[Any, str]]:
    out = {}
    for records, _ in store.scroll(name, vectors=False, batch=max(batch, 256)):
        for r in records:
            out[str(r.id)] = (r.id, payload_hash(r.payload))
    return out


def delta(store: Store, source: str, target: str, batch: int = 256,
          src: dict[str, tuple[Any, str]] | None = None) -> tuple[list, list]:
    """Ids to (re)write in ``target`` and ids to delete from it so it equals ``source`` (or snapshot ``src``)."""
    src = src if src is not None else _fingerprints(store, source, batch)
    dst = _fingerprints(store, target, batch)
    upsert = [pid for key, (pid, h) in src.items() if key not in dst or dst[key][1] != h]
    delete = [pid for key, (pid, _) in dst.items() if key not in src]
    return upsert, delete


def _copy_points(store: Store, encoder: Encoder, source: str, target: str, spec: DenseSpec, text_field: str,
                 ids: list, batch: int, stats: SyncStats) -> None:
    for i in range(0, len(ids), batch):
        records = store.retrieve(source, ids[i:i + batch], vectors=True)
        # Points deleted from the source meanwhile are simply absent; a later pass deletes them.
        _embed_and_upsert(store, encoder, target, spec, records, text_field, None, stats)


def sync_once(store: Store, encoder: Encoder, source: str, target: str, spec: DenseSpec, text_field: str,
              batch: int = 128, stats: SyncStats | None = None,
              snapshot: dict[str, tuple[Any, str]] | None = None) -> int:
    """One delta pass (against a fresh scan, or a given ``snapshot`` of the source); returns points changed."""
    stats = stats or SyncStats()
    to_upsert, to_delete = delta(store, source, target, batch, src=snapshot)
    _copy_points(store, encoder, source, target, spec, text_field, to_upsert, batch, stats)
    store.delete_points(target, to_delete)
    stats.deleted += len(to_delete)
    stats.passes += 1
    stats.pass_deltas.append(len(to_upsert) + len(to_delete))
    return len(to_upsert) + len(to_delete)


def reconcile(store: Store, encoder: Encoder, old: str, new: str, spec: DenseSpec, text_field: str,
              snapshot: dict[str, tuple[Any, str]], batch: int, stats: SyncStats) -> None:
    """Carry writes that hit ``old`` between the snapshot and the swap over to ``new``.

    After the swap apps write to ``new`` through the alias, so ``old`` is frozen: every
    difference between ``old`` and the snapshot is a window write. A point the app has
    re-written in ``new`` since the swap (its hash differs from the snapshot's) keeps
    the newer write (counted as a conflict).
    """
    now_old = _fingerprints(store, old, batch)
    now_new = _fingerprints(store, new, batch)
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
    _copy_points(store, encoder, old, new, spec, text_field, to_copy, batch, stats)
    store.delete_points(new, to_delete)
    stats.deleted += len(to_delete)
    stats.window_writes = len(to_copy) + len(to_delete)


def publish(store: Store, encoder: Encoder, source: str, target: str, alias: str, spec: DenseSpec,
            text_field: str, batch: int = 128, verify_sample: int = 5, max_passes: int = 5, small: int = 10,
            mark: Callable[[str, dict], None] | None = None) -> tuple[SyncStats, dict]:
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

    Returns:
        Sync statistics (with the window of risk) and the verification result.
    """
    t0 = time.perf_counter()
    stats = SyncStats()
    for _ in range(max_passes):
        # Each pass works from one scan of the source; verification checks the target against the
        # last pass's scan (apps may keep writing to the source meanwhile: the final pass takes those).
        scan = _fingerprints(store, source, batch)
        if sync_once(store, encoder, source, target, spec, text_field, batch, stats, snapshot=scan) <= small:
            break
    faults.point("before_verify", store=store, source=source, target=target)
    vinfo = verify(store, set(scan), target, spec, verify_sample)
    if mark:
        mark("verified", vinfo)
    faults.point("before_final_sync", store=store, source=source, target=target)
    w0 = time.perf_counter()
    snapshot = _fingerprints(store, source, batch)
    sync_once(store, encoder, source, target, spec, text_field, batch, stats, snapshot=snapshot)
    if store.count(target) != len(snapshot):
        raise VerificationFailed(f"'{target}' holds {store.count(target)} points after the final pass, "
                                 f"the source had {len(snapshot)}; alias not swapped")
    if mark:
        mark("snapshot", {"snapshot": snapshot})
    faults.point("before_swap", store=store, source=source, target=target)
    store.swap_alias(alias, target)
    stats.window_s = time.perf_counter() - w0
    if mark:
        mark("live", vinfo)
    faults.point("after_swap", store=store, source=source, target=target)
    reconcile(store, encoder, source, target, spec, text_field, snapshot, batch, stats)
    stats.seconds = time.perf_counter() - t0
    logger.info("swapped '%s' -> %s; window %.3f s, %d window writes carried over, %d conflicts",
                alias, target, stats.window_s, stats.window_writes, stats.window_conflicts)
    return stats, vinfo


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
        recs = store.retrieve(target, [point_id_for(i) for i in ids], vectors=[spec.name] if spec.name else True)
        for r in recs:
            v = r.vector.get(spec.name) if isinstance(r.vector, dict) else r.vector
            if v is None:
                raise VerificationFailed(f"point {r.id} in '{target}' has no '{spec.name or 'default'}' vector")
            hits = store.search_batch(target, np.asarray([v], dtype=np.float32), limit=3, using=spec.name)[0]
            if str(r.id) not in {str(h[0]) for h in hits}:
                raise VerificationFailed(f"point {r.id} does not find itself in '{target}'")
            checked += 1
    return {"points": len(dst_ids), "sampled": checked}
