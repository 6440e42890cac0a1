"""Build: stream every point of the live collection into a new collection, re-embedded.

Constant memory, resumable from a scroll offset; the Ray engine (``VECTUNE_ENGINE=ray``)
does the same on a cluster (:mod:`vectune.promote.engines.ray_engine`). Every point written carries
vectune's marker (:mod:`vectune.promote.mark`): the fingerprint of the source state it was
made from, so the catch-up passes find every later change of payload or vectors exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vectune.core import faults
from vectune.core.chunks import extract_text
from vectune.errors import BadInput
from vectune.models.encoder import Encoder
from vectune.observe.progress import Progress
from vectune.promote.mark import Shape, with_marker
from vectune.promote.stats import SyncStats
from vectune.qdrant.lease import NO_FENCE
from vectune.qdrant.store import DenseSpec, Store, copy_point, point_with_vector

logger = logging.getLogger(__name__)


def embed_points(encoder: Encoder | None, spec: DenseSpec, records: list, text_field: str,
                 precomputed: dict[str, tuple[str, np.ndarray]] | None, stats: SyncStats) -> list:
    """Points for ``records`` with the encoder's vectors (reusing precomputed ones whose text matches).

    With ``encoder=None`` the points are copied as they are, every vector included (a query-side
    promotion: the passages' vectors stay those of the passage model). The points come back in
    an order of their own (reused vectors first); match them to ``records`` by id.
    """
    if encoder is None:
        return [copy_point(r) for r in records]
    texts, todo, points = [], [], []
    for r in records:
        text, reason = extract_text(r.payload, text_field)
        if text is None:
            raise BadInput(f"point {r.id} has no usable text in payload field '{text_field}' ({reason}); "
                           "it cannot be re-embedded, so nothing was promoted")
        pre = precomputed.get(str(r.id)) if precomputed else None
        if pre is not None and pre[0] == text:
            points.append(point_with_vector(r, pre[1], spec))
            stats.reused_vectors += 1
        else:
            texts.append(text)
            todo.append(r)
    if texts:
        emb = encoder.encode_passages(texts)
        points.extend(point_with_vector(r, e, spec) for r, e in zip(todo, emb))
    return points


def marked_points(encoder: Encoder | None, spec: DenseSpec, records: list, text_field: str,
                  precomputed: dict[str, tuple[str, np.ndarray]] | None, stats: SyncStats, shape: Shape) -> list:
    """:func:`embed_points`, each point carrying vectune's marker for the record it was made from."""
    by_id = {str(r.id): r for r in records}
    return [with_marker(p, by_id[str(p.id)], shape)
            for p in embed_points(encoder, spec, records, text_field, precomputed, stats)]


def embed_and_upsert(store: Store, encoder: Encoder | None, target: str, spec: DenseSpec, records: list,
                     text_field: str, precomputed: dict[str, tuple[str, np.ndarray]] | None,
                     stats: SyncStats, lock=NO_FENCE, shape: Shape | None = None) -> None:
    """Embed ``records`` and upsert them (marked when ``shape`` is given) into ``target``."""
    points = (marked_points(encoder, spec, records, text_field, precomputed, stats, shape) if shape
              else embed_points(encoder, spec, records, text_field, precomputed, stats))
    lock.check("upsert")
    store.upsert(target, points)
    stats.upserted += len(points)


def build(store: Store, encoder: Encoder, source: str, target: str, spec: DenseSpec, text_field: str,
          batch: int = 128, precomputed: dict[str, tuple[str, np.ndarray]] | None = None,
          start_offset: Any = None, on_page: Callable[[Any, int], None] | None = None,
          lock=NO_FENCE, shape: Shape | None = None) -> SyncStats:
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
        lock: the alias lease, checked before every page.
        shape: which vectors the markers' fingerprints cover (default: every vector but the
            tuned one, or every vector with ``encoder=None``).

    Returns:
        Counts and time.
    """
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    stats = SyncStats(passes=1)
    shape = shape or Shape.of(store, source, spec, copy=encoder is None)
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
            points = marked_points(encoder, spec, records, text_field, precomputed, stats, shape)
            if pending:
                settle()
            lock.check("reindex page")
            pending = (io.submit(store.upsert, target, points), offset, len(points))
            if nxt_page is None:
                break
        if pending:
            settle()
    bar.close()
    stats.seconds = time.perf_counter() - t0
    return stats


