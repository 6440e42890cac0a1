"""Scans: a collection streamed once and kept only as fingerprints (source) or markers and sketches (target).

Shared by the delta passes (:mod:`.sync`) and the post-swap reconciliation (:mod:`.window`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from vectune.core.hashing import payload_hash
from vectune.promote.mark import Shape, dw_nonce, fingerprint, payload_of, seen_mark, vectors_of, vectors_sketch
from vectune.qdrant.store import Store


class SrcPoint(NamedTuple):
    """A source point's fingerprint: id, payload hash, tracked vectors' hashes, dual-write nonce."""

    pid: Any
    ph: str
    vh: str
    dw: str


class TgtPoint(NamedTuple):
    """A target point as a pass sees it: id, marker (:func:`~vectune.promote.mark.seen_mark`),
    payload hash, tracked vectors' sketches (of the target's own stored values)."""

    pid: Any
    seen: str
    ph: str
    vh: str


def scan_source(store: Store, name: str, shape: Shape, target: str, batch: int) -> dict[str, SrcPoint]:
    """Stream ``name`` (payload and tracked vectors) and keep only fingerprints."""
    out = {}
    for records, _ in store.scroll(name, vectors=shape.selector, batch=max(batch, 256)):
        for r in records:
            ph, vh = fingerprint(r, shape)
            out[str(r.id)] = SrcPoint(r.id, ph, vh, dw_nonce(r.payload, target))
    return out


def _tgt(r, shape: Shape) -> TgtPoint:
    return TgtPoint(r.id, seen_mark(r.payload), payload_hash(payload_of(r.payload)),
                    vectors_sketch(vectors_of(r), shape.tracked))


def scan_target(store: Store, name: str, shape: Shape, batch: int) -> dict[str, TgtPoint]:
    """Stream ``name`` (payload and tracked vectors) and keep only markers, hashes and sketches."""
    return {str(r.id): _tgt(r, shape) for records, _ in store.scroll(name, vectors=shape.selector,
                                                                      batch=max(batch, 256)) for r in records}


def chunks(items: list, n: int):
    """``items`` in consecutive slices of ``n``."""
    for i in range(0, len(items), n):
        yield items[i:i + n]
