"""Sync: delta passes that make a target hold exactly the source's points (payload and every vector).

A pass compares the source's fingerprints (payload + every vector vectune does not manage, see
:mod:`vectune.promote.mark`) with the target's markers — the fingerprint of the source state each
target point was made from — and

* copies every point that is missing or stale (re-embedded with the target's model, or verbatim
  with ``encoder=None``), conditionally: a point that is absent is only *inserted*
  (``update_mode=insert_only``), an existing one only replaced while it still carries the marker
  the pass saw (``update_filter`` + ``update_mode=update_only``), so a write the dual-write helper
  made to the target meanwhile is never overwritten and a point deleted meanwhile is never
  brought back;
* deletes every point the source no longer has, under the same condition;
* *stamps* points that carry no marker of this publish but already equal the source (a rollback
  target, or points written by another engine): their payload must be equal and their vectors
  equal up to float32 re-normalisation, compared value by value, never by hash across
  collections.

The target is scanned once; afterwards its view is kept current from the points each pass wrote
(re-read after writing), so later passes and the final pass scan only the source.
Post-swap reconciliation lives in :mod:`vectune.promote.window`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from vectune.core.hashing import payload_hash
from vectune.errors import VerificationFailed
from vectune.models.encoder import Encoder
from vectune.promote.build import embed_and_upsert, marked_points
from vectune.promote.mark import (
    MARK,
    Shape,
    any_of,
    fingerprint,
    fp_str,
    key_hashes,
    only_if,
    parse_fp,
    payload_of,
    same_vector,
    vectors_of,
)
from vectune.promote.scan import SrcPoint, TgtPoint, _tgt, chunks, scan_source, scan_target
from vectune.promote.stats import SyncStats
from vectune.promote.window import Snapshot, reconcile
from vectune.qdrant.lease import NO_FENCE
from vectune.qdrant.store import DenseSpec, Store

logger = logging.getLogger(__name__)


class Syncer:
    """Makes ``target`` equal ``source``, pass by pass, keeping a view of the target.

    Args:
        store: Qdrant access.
        encoder: the target's model (None: copy every vector verbatim).
        source: the collection to follow.
        target: the collection to fill.
        spec: the tuned dense vector.
        text_field: payload field with the text.
        batch: points per request.
        stats: counts to add to.
        lock: the alias lease (checked before each write batch, fenced before deletes).
        shape: which vectors fingerprints cover (default: from the source).
    """

    def __init__(self, store: Store, encoder: Encoder | None, source: str, target: str, spec: DenseSpec,
                 text_field: str, batch: int = 128, stats: SyncStats | None = None, lock=NO_FENCE,
                 shape: Shape | None = None):
        self.store, self.encoder, self.source, self.target = store, encoder, source, target
        self.spec, self.text_field, self.batch = spec, text_field, batch
        self.stats = stats if stats is not None else SyncStats()
        self.lock = lock
        self.shape = shape or Shape.of(store, source, spec, copy=encoder is None)
        self.view: dict[str, TgtPoint] = {}
        #: Keys a pass could not copy because the source no longer had them.
        self.vanished: set[str] = set()
        #: Target points found equal to the source and marked without a copy.
        self.stamped = 0

    # -- reading ---------------------------------------------------------------------------------
    def load_view(self) -> None:
        """Scan the target once."""
        self.view = scan_target(self.store, self.target, self.shape, self.batch)

    def scan(self) -> dict[str, SrcPoint]:
        """Fingerprints of the source now."""
        return scan_source(self.store, self.source, self.shape, self.target, self.batch)

    def refresh(self, pids: list) -> None:
        """Re-read these points of the target into the view."""
        for chunk in chunks(list(pids), self.batch):
            got = {str(r.id): r for r in self.store.retrieve(self.target, chunk, vectors=self.shape.selector)}
            for pid in chunk:
                r = got.get(str(pid))
                if r is None:
                    self.view.pop(str(pid), None)
                else:
                    self.view[str(pid)] = _tgt(r, self.shape)

    # -- one pass --------------------------------------------------------------------------------
    def plan(self, src: dict[str, SrcPoint]) -> tuple[list, list, list]:
        """``(copy, check, delete)``: lists of ``(pid, seen)`` this pass must handle."""
        copy, check, delete = [], [], []
        for key, s in src.items():
            t = self.view.get(key)
            if t is None:
                copy.append((s.pid, None))
            elif t.seen == "v:" + fp_str(s.ph, s.vh):
                continue
            elif t.seen.startswith("v:") or t.ph != s.ph:
                copy.append((s.pid, t.seen))
            else:  # same payload, no marker of ours (yet): compare the vectors by value
                check.append((s.pid, t.seen))
        for key, t in self.view.items():
            if key not in src:
                delete.append((t.pid, t.seen))
        return copy, check, delete

    def apply(self, src: dict[str, SrcPoint]) -> int:
        """One pass against ``src`` (a scan of the source); returns the points copied or deleted."""
        copy, check, delete = self.plan(src)
        if check:
            copy += self._check(check)
        self._copy(copy)
        self._delete(delete)
        self.stats.passes += 1
        self.stats.pass_deltas.append(len(copy) + len(delete))
        return len(copy) + len(delete)

    def _copy(self, items: list) -> None:
        """Write these source points into the target (conditionally, see module doc)."""
        from qdrant_client import models

        for chunk in chunks(items, self.batch):
            seen = {str(pid): s for pid, s in chunk}
            records = self.store.retrieve(self.source, [pid for pid, _ in chunk], vectors=True)
            present = {str(r.id) for r in records}
            self.vanished |= {k for k in seen if k not in present}
            # Points deleted from the source meanwhile are simply absent; a later pass deletes them.
            points = marked_points(self.encoder, self.spec, records, self.text_field, None, self.stats, self.shape)
            new = [p for p in points if seen[str(p.id)] is None]
            old = [p for p in points if seen[str(p.id)] is not None]
            self.lock.check("copy to the new collection")
            self.store.upsert_where(self.target, new, update_mode=models.UpdateMode.INSERT_ONLY)
            if old:
                self.store.upsert_where(self.target, old, update_mode=models.UpdateMode.UPDATE_ONLY,
                                        update_filter=any_of([only_if(p.id, seen[str(p.id)]) for p in old]))
            self.stats.upserted += len(points)
            self.refresh([pid for pid, _ in chunk])

    def _check(self, items: list) -> list:
        """Stamp the target points that equal the source; return the others (to copy)."""
        from qdrant_client import models

        to_copy = []
        for chunk in chunks(items, self.batch):
            pids = [pid for pid, _ in chunk]
            src = {str(r.id): r for r in self.store.retrieve(self.source, pids, vectors=self.shape.selector)}
            dst = {str(r.id): r for r in self.store.retrieve(self.target, pids, vectors=self.shape.selector)}
            ops = []
            for pid, seen in chunk:
                s, t = src.get(str(pid)), dst.get(str(pid))
                if s is None or t is None:
                    continue  # moved meanwhile: the next pass sees it
                sv, tv = vectors_of(s), vectors_of(t)
                if payload_of(s.payload) == payload_of(t.payload) and all(
                        same_vector(sv.get(n), tv.get(n)) for n in self.shape.tracked):
                    ph, vh = fingerprint(s, self.shape)
                    mark = {"r": fp_str(ph, vh), "p": key_hashes(t.payload)}
                    ops.append(models.SetPayloadOperation(set_payload=models.SetPayload(
                        payload={MARK: mark}, filter=only_if(pid, seen))))
                else:
                    to_copy.append((pid, seen))
            if ops:
                self.lock.check("mark the new collection")
                self.store.batch_update(self.target, ops)
                self.stamped += len(ops)
            self.refresh(pids)
        return to_copy

    def _delete(self, items: list) -> None:
        for chunk in chunks(items, max(self.batch, 256)):
            self.lock.fence("delete from the new collection")
            self.store.delete_matching(self.target, any_of([only_if(pid, seen) for pid, seen in chunk]))
            self.stats.deleted += len(chunk)
            self.refresh([pid for pid, _ in chunk])

    # -- the state at the swap ---------------------------------------------------------------------
    def snapshot(self, scan: dict[str, SrcPoint]) -> Snapshot:
        """What the target reflects now, per point, for reconciliation after the swap.

        Each target point either carries this publish's marker (its fingerprint is the source state
        it reflects) or the dual-write helper's. The source's dual-write nonces come from ``scan``.

        Raises:
            VerificationFailed: the target does not reflect the source (nothing must be swapped).
        """
        points, stale, extra = {}, [], []
        for key, t in self.view.items():
            s = scan.get(key)
            if t.seen.startswith("v:"):
                if s is None:
                    extra.append(key)
                ph0, vh0 = parse_fp(t.seen[2:])
            elif t.seen.startswith("dw:"):
                ph0, vh0 = (s.ph, s.vh) if s else (t.ph, "")
            else:
                stale.append(key)
                continue
            points[key] = [t.pid, ph0, vh0, s.dw if s else "", t.seen, t.vh]
        missing = [k for k in scan if k not in self.view]
        if missing:  # tolerated only where the source lost the point meanwhile (a write in the window)
            still = {str(r.id) for r in self.store.retrieve(self.source, [scan[k].pid for k in missing])}
            missing = [k for k in missing if k in still]
        if missing or stale or extra:
            raise VerificationFailed(f"'{self.target}' does not reflect '{self.source}' after the final pass: "
                                     f"{len(missing)} missing, {len(stale)} unmarked, {len(extra)} extra points; "
                                     "alias not swapped")
        if not any(p[4].startswith("dw:") for p in points.values()) and self.store.count(self.target) != len(points):
            raise VerificationFailed(f"'{self.target}' holds {self.store.count(self.target)} points, its view "
                                     f"{len(points)}; alias not swapped")
        return Snapshot(self.source, self.target, self.shape, points)


# ------------------------------------------------------------------------------------- simple entry points
def fingerprints(store: Store, name: str, batch: int, shape: Shape | None = None) -> dict[str, tuple[Any, str]]:
    """``{key: (id, fingerprint)}`` of a collection (payload only without ``shape``)."""
    out = {}
    for records, _ in store.scroll(name, vectors=shape.selector if shape else False, batch=max(batch, 256)):
        for r in records:
            out[str(r.id)] = (r.id, fp_str(*fingerprint(r, shape)) if shape else payload_hash(payload_of(r.payload)))
    return out


def delta(store: Store, source: str, target: str, batch: int = 256, src: dict | None = None,
          spec: DenseSpec | None = None, encoder: Encoder | None = None) -> tuple[list, list]:
    """Ids a pass would (re)write in ``target`` and ids it would delete, so it equals ``source``.

    Without ``spec`` only payloads are compared (the first layout's behaviour).
    """
    if spec is None:
        srcp = src if src is not None else fingerprints(store, source, batch)
        dst = fingerprints(store, target, batch)
        return ([pid for k, (pid, h) in srcp.items() if k not in dst or dst[k][1] != h],
                [pid for k, (pid, _) in dst.items() if k not in srcp])
    syncer = Syncer(store, encoder, source, target, spec, "", batch)
    syncer.load_view()
    copy, check, delete = syncer.plan(syncer.scan())
    return [pid for pid, _ in copy + check], [pid for pid, _ in delete]


def sync_once(store: Store, encoder: Encoder | None, source: str, target: str, spec: DenseSpec, text_field: str,
              batch: int = 128, stats: SyncStats | None = None, snapshot: dict | None = None,
              lock=NO_FENCE) -> int:
    """One delta pass with a fresh view of the target; returns points changed (``snapshot`` is ignored:
    a pass always works from its own scan)."""
    syncer = Syncer(store, encoder, source, target, spec, text_field, batch, stats, lock)
    syncer.load_view()
    return syncer.apply(syncer.scan())


def sync(store: Store, encoder: Encoder | None, source: str, target: str, spec: DenseSpec, text_field: str,
         batch: int = 128, max_passes: int = 5, small: int = 0) -> SyncStats:
    """Delta passes until a pass changes at most ``small`` points (or ``max_passes``)."""
    t0 = time.perf_counter()
    stats = SyncStats()
    syncer = Syncer(store, encoder, source, target, spec, text_field, batch, stats)
    syncer.load_view()
    for _ in range(max_passes):
        if syncer.apply(syncer.scan()) <= small:
            break
    stats.seconds = time.perf_counter() - t0
    return stats


__all__ = ["SrcPoint", "Syncer", "TgtPoint", "delta", "embed_and_upsert", "fingerprints", "reconcile",
           "scan_source", "scan_target", "sync", "sync_once"]
