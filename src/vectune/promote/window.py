"""The window: writes that reach the old collection after the final pass, carried over after the swap.

Apps write through the alias. Writes that land on the old collection between the final pass and
the swap (the *window*) are found after the swap by comparing the old collection, frozen by the
swap, with the :class:`Snapshot` — per point, the source state the new collection reflected at the
swap. Each such point is then carried over, point by point, merged with whatever the app wrote to
the same point through the alias after the swap (the newer write wins, key by key):

* the app **replaced** the point after the swap (``upsert``, ``overwrite_payload``, delete +
  re-create): vectune's marker is gone from the new point, so its payload stands; a vector the
  app left as it was at the swap (same stored bits) takes the window's value, one the app wrote
  keeps the app's;
* the app only **edited** it (``set_payload``, ``delete_payload``, ``update_vectors``,
  ``delete_vectors``) or did nothing: the marker is still there; each payload key and each vector
  the app changed since the swap keeps the app's value (per-key hashes in the marker, per-vector
  hashes of the new collection at the swap), each one the window changed takes the window's value,
  and the tuned vector is re-encoded when the resulting text differs;
* the app **deleted** it after the swap: it stays deleted;
* a point **deleted** in the window is deleted, unless the app replaced it after the swap;
* a point **created** in the window is inserted (``update_mode=insert_only``: never over an app's
  own create).

Every carried-over write is conditional on the marker the decision saw (a filter on the marker,
evaluated by Qdrant as it applies the write), so an app write that replaces the point meanwhile
is never overwritten. Points written through the dual-write helper (:mod:`vectune.apps.dualwrite`) in
the window are already in the new collection and are left alone.

What cannot be exact without the helper (README, "Writes during a promotion"): a point created in
the window and then deleted through the alias after the swap comes back; a ``set_payload`` /
``update_vectors`` / ``overwrite_payload`` after the swap on a point created in the window is
rejected by Qdrant (not found); an ``overwrite_payload`` after the swap on a point deleted in the
window keeps it; a write after the swap that sets a key or vector back to exactly its value at
the swap reads as "unchanged" (the window's value wins); an app write to the same key/vector that
lands between reconciliation reading a point and writing it (milliseconds) is overwritten.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vectune.core import faults
from vectune.core.chunks import extract_text
from vectune.core.hashing import payload_hash
from vectune.core.jsonl import append_durable
from vectune.errors import BadInput, TornState
from vectune.promote.build import embed_points
from vectune.promote.mark import (
    MARK,
    NONE,
    Shape,
    any_of,
    dw_nonce,
    has_marker,
    only_if,
    payload_of,
    same_sketch,
    seen_mark,
    split_vh,
    value_hash,
    vector_hash,
    vector_sketch,
    vectors_of,
)
from vectune.promote.scan import chunks, scan_source
from vectune.promote.stats import SyncStats
from vectune.qdrant.lease import NO_FENCE
from vectune.qdrant.store import DenseSpec, Store

logger = logging.getLogger(__name__)

#: Snapshot entry fields: id, payload hash and tracked vectors' hashes of the source state the new
#: collection reflected (source-side), the source's dual-write nonce, the new point's marker and its
#: tracked vectors' sketches (new-collection side), all at the swap.
PID, PH, VS, DW, SEEN, VT = range(6)


class Snapshot:
    """Per point, what the new collection reflected at the swap (see module doc).

    Args:
        source: the collection the alias pointed at before the swap.
        target: the collection it points at after.
        shape: which vectors the hashes cover (None for a first-layout snapshot: payload hashes only).
        points: ``{key: [pid, ph, vs, dw, seen, vt]}``.
    """

    VERSION = 2

    def __init__(self, source: str | None, target: str | None, shape: Shape | None,
                 points: dict[str, list], legacy: bool = False):
        self.source, self.target, self.shape, self.points, self.legacy = source, target, shape, points, legacy
        #: Where reconciliation records its progress (set by :class:`vectune.promote.checkpoint.Checkpoint`).
        self.journal: Path | None = None

    def __len__(self) -> int:
        return len(self.points)

    def __contains__(self, key: str) -> bool:
        return key in self.points

    def keys(self):
        return self.points.keys()

    @property
    def copy(self) -> bool:
        """Whether the promotion copied every vector verbatim (no model needed to reconcile)."""
        return bool(self.shape and self.shape.copy)

    def to_json(self) -> dict:
        return {"version": self.VERSION, "source": self.source, "target": self.target,
                "shape": self.shape.to_json() if self.shape else None, "points": self.points}

    @classmethod
    def from_json(cls, data: dict) -> Snapshot:
        """A snapshot as saved, or one of the first layout (``{key: [id, payload_hash]}``)."""
        if isinstance(data, dict) and data.get("version") == cls.VERSION:
            shape = Shape.from_json(data["shape"]) if data.get("shape") else None
            return cls(data.get("source"), data.get("target"), shape, dict(data.get("points") or {}))
        points = {k: [v[0], v[1], "", "", "", ""] for k, v in (data or {}).items()}
        return cls(None, None, None, points, legacy=True)

    # -- progress of the reconciliation (a crash resumes it where it stopped) ---------------------
    def with_journal(self, path: Path) -> Snapshot:
        self.journal = Path(path)
        return self

    def done(self) -> tuple[set[str], bool]:
        """Keys already reconciled, and whether reconciliation finished.

        Raises:
            TornState: the journal exists but cannot be read to its end. Its records are appended whole
                (one write each, :func:`vectune.core.jsonl.append_durable`), so this is damage, not a
                crash: ``vectune recover`` sets it aside and reconciles from the snapshot again
                (reconciliation is idempotent: a point already carried over reads as the app's write).
        """
        keys: set[str] = set()
        finished = False
        if self.journal is None or not self.journal.exists():
            return keys, finished
        try:
            with gzip.open(self.journal, "rt", encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    rec = json.loads(line)
                    if not isinstance(rec, dict):
                        raise ValueError(f"line {n} is not a JSON object")
                    keys.update(rec.get("keys") or ())
                    finished = finished or bool(rec.get("finished"))
        except (OSError, EOFError, ValueError, zlib.error) as e:
            raise TornState(self.journal, f"the reconciliation journal {self.journal} is damaged "
                                          f"({type(e).__name__}: {e}). Run `vectune recover --alias "
                                          f"{self.journal.parent.name}`: it sets the journal aside and reconciles "
                                          f"the window again from the snapshot") from None
        return keys, finished

    def record(self, keys: list[str] | None = None, finished: bool = False) -> None:
        if self.journal is None:
            return
        line = json.dumps({"keys": keys or [], "finished": finished}) + "\n"
        append_durable(self.journal, gzip.compress(line.encode("utf-8"), compresslevel=6))


@dataclass
class Plan:
    """What reconciliation does with one point written in the window."""

    kind: str  # skip | carry | replace | delete | merge | keep
    seen: str = ""
    set_payload: dict = field(default_factory=dict)
    unset: list = field(default_factory=list)
    vec_set: dict = field(default_factory=dict)
    vec_del: list = field(default_factory=list)
    text: str | None = None
    app_wrote: bool = False

    @property
    def writes(self) -> bool:
        return self.kind in ("carry", "replace", "delete") or bool(
            self.set_payload or self.unset or self.vec_set or self.vec_del or self.text is not None)


def decide(entry: list | None, w, n, shape: Shape, text_field: str, target: str, reembed: bool,
           legacy: bool = False) -> Plan:
    """The plan for one point written in the window.

    Args:
        entry: the point's snapshot entry (None: it did not exist at the snapshot).
        w: the point in the old collection now (None: deleted), payload and every vector.
        n: the point in the new collection now (None: deleted), payload and tracked vectors.
        shape: which vectors are tracked.
        text_field: payload field with the text.
        target: the new collection (dual-write markers name it).
        reembed: whether the tuned vector is re-encoded (False in copy mode).
        legacy: a first-layout snapshot (payload hashes only, no markers).
    """
    if w is not None:
        nonce = dw_nonce(w.payload, target)
        if nonce and nonce != (entry[DW] if entry else ""):
            return Plan("skip")  # written to both collections by the dual-write helper in the window
    if entry is None:  # created in the window
        return Plan("carry") if n is None else Plan("keep", app_wrote=True)
    if n is None:  # the app deleted it after the swap
        return Plan("keep", app_wrote=True)
    seen = seen_mark(n.payload)
    npay = payload_of(n.payload)
    if legacy:
        untouched = payload_hash(npay) == entry[PH]
        if w is None:
            return Plan("delete", seen=seen) if untouched else Plan("keep", app_wrote=True)
        return Plan("replace", seen=seen) if untouched else Plan("keep", app_wrote=True)
    ours = seen.startswith("v:") and seen == entry[SEEN]
    if w is None:  # deleted in the window
        return Plan("delete", seen=seen) if ours else Plan("keep", seen=seen, app_wrote=True)
    plan = Plan("merge", seen=seen)
    wpay = payload_of(w.payload)
    if ours:
        p0 = (n.payload.get(MARK) or {}).get("p") or {}
        for key in sorted(set(p0) | set(npay) | set(wpay)):
            h0 = p0.get(key, NONE)
            if (value_hash(npay[key]) if key in npay else NONE) != h0:
                plan.app_wrote = True  # the app changed this key after the swap: its value stands
                continue
            if (value_hash(wpay[key]) if key in wpay else NONE) != h0:
                if key in wpay:
                    plan.set_payload[key] = wpay[key]
                else:
                    plan.unset.append(key)
    else:
        plan.app_wrote = True  # payload replaced after the swap: the app's payload stands
    nvec, wvec = vectors_of(n), vectors_of(w)
    at_swap, in_snap = split_vh(entry[VT], shape.tracked), split_vh(entry[VS], shape.tracked)
    for name in shape.tracked:
        if not same_sketch(vector_sketch(nvec.get(name)), at_swap[name]):
            plan.app_wrote = True
            continue
        if vector_hash(wvec.get(name)) != in_snap[name]:
            if wvec.get(name) is not None:
                plan.vec_set[name] = wvec[name]
            else:
                plan.vec_del.append(name)
    final = final_payload(npay, plan)
    if shape.copy and (shape.managed in plan.vec_set or shape.managed in plan.vec_del):
        # The tuned vector follows the text (copy mode): the window's vector was written with the window's
        # text; when the point ends with another text (the app wrote one after the swap, e.g. put the old
        # one back), the window's vector would belong to a text the point no longer has: keep the vector
        # the new point has, the one written with that text.
        if extract_text(final, text_field)[0] != extract_text(wpay, text_field)[0]:
            plan.vec_set.pop(shape.managed, None)
            if shape.managed in plan.vec_del:
                plan.vec_del.remove(shape.managed)
    if reembed and ours and (plan.set_payload or plan.unset):
        text, _ = extract_text(final, text_field)
        if text is not None and text != extract_text(npay, text_field)[0]:
            plan.text = text
    return plan


def final_payload(npayload: dict, plan: Plan) -> dict:
    """The payload a point ends with once ``plan`` is applied to its payload ``npayload`` (marker left out)."""
    merged = {**payload_of(npayload), **plan.set_payload}
    for key in plan.unset:
        merged.pop(key, None)
    return merged


def _same_direction(a, b, tol: float = 1e-4) -> bool:
    """Whether two dense vectors are the same up to float noise (cosine above 1 - ``tol``)."""
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape or not x.size:
        return False
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    return bool(nx > 0 and ny > 0 and float(x @ y) / (nx * ny) >= 1.0 - tol)


def follow_text(plans: list, news: dict, spec: DenseSpec, text_field: str, encoder) -> int:
    """Re-encoding mode: make every reconciled point's tuned vector the encoding of the text it ends with.

    After the window's writes are merged with the app's, a point may end with a text its tuned vector
    was not encoded from (the app replaced or edited it after the swap and the window changed the text,
    or the app wrote a vector of another model). Each such point gets ``plan.text`` (re-encoded with
    the collection's passage model, conditioned on the marker the plan saw like every other write).

    Args:
        plans: ``(key, pid, plan)`` of one batch (edited in place).
        news: the new collection's points by key, with their tuned vector.
        spec: the tuned dense vector.
        text_field: payload field with the text.
        encoder: the collection's passage model.

    Returns:
        How many points were given a re-encoding this way.
    """
    todo = []
    for key, _, p in plans:
        n = news.get(key)
        if n is None or p.kind not in ("merge", "keep") or p.text is not None:
            continue
        text, _ = extract_text(final_payload(n.payload, p), text_field)
        if text is not None:
            todo.append((p, text, vectors_of(n).get(spec.name)))
    if not todo:
        return 0
    encoded = encoder.encode_passages([text for _, text, _ in todo])
    fixed = 0
    for (p, text, have), want in zip(todo, encoded):
        if have is None or isinstance(have, dict) or not _same_direction(have, want):
            p.text = text
            if p.kind == "keep":
                p.kind = "merge"
            fixed += 1
    return fixed


_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def _vector_struct(vectors: dict) -> Any:
    """A PointVectors/PointStruct vector value (a bare list for the unnamed vector alone)."""
    if set(vectors) == {""} and isinstance(vectors[""], list):
        return vectors[""]
    return vectors


def _merge_ops(pid: Any, plan: Plan, npayload: dict, managed: str, vector) -> list:
    """The conditional operations that apply a merge plan to the new point."""
    from qdrant_client import models

    cond = only_if(pid, plan.seen)
    ops: list[Any] = []
    if plan.unset and not all(_SIMPLE_KEY.match(k) for k in plan.unset):
        # a key Qdrant would read as a JSON path: write the whole merged payload instead
        merged = {**npayload, **plan.set_payload}
        for k in plan.unset:
            merged.pop(k, None)
        ops.append(models.OverwritePayloadOperation(overwrite_payload=models.SetPayload(payload=merged, filter=cond)))
    else:
        if plan.set_payload:
            ops.append(models.SetPayloadOperation(set_payload=models.SetPayload(payload=plan.set_payload, filter=cond)))
        if plan.unset:
            ops.append(models.DeletePayloadOperation(delete_payload=models.DeletePayload(keys=plan.unset, filter=cond)))
    vecs = dict(plan.vec_set)
    if vector is not None:
        vecs[managed] = [float(x) for x in vector]
    if vecs:
        ops.append(models.UpdateVectorsOperation(update_vectors=models.UpdateVectors(
            points=[models.PointVectors(id=pid, vector=_vector_struct(vecs))], update_filter=cond)))
    if plan.vec_del:
        ops.append(models.DeleteVectorsOperation(delete_vectors=models.DeleteVectors(vector=plan.vec_del, filter=cond)))
    return ops


def window_writes(snap: Snapshot, now: dict) -> list[tuple[str, Any]]:
    """``(key, id)`` of every point whose state in the old collection differs from the snapshot."""
    out = []
    for key, e in snap.points.items():
        w = now.get(key)
        if w is None or w.ph != e[PH] or (not snap.legacy and w.vh != e[VS]) or (w.dw and w.dw != e[DW]):
            out.append((key, e[PID]))
    out.extend((key, w.pid) for key, w in now.items() if key not in snap.points)
    return out


def reconcile(store: Store, encoder, old: str, new: str, spec: DenseSpec, text_field: str, snapshot,
              batch: int, stats: SyncStats, lock=NO_FENCE) -> None:
    """Carry the window's writes over to ``new`` (see module doc); then remove vectune's markers.

    Resumable: progress is journalled next to a checkpointed snapshot, so a crash resumes with the
    points not yet done, and a finished reconciliation is not run again.

    Args:
        store: Qdrant access.
        encoder: the new collection's model (None in copy mode: vectors copied verbatim).
        old: the collection the alias pointed at before the swap.
        new: the collection it points at now.
        spec: the tuned dense vector.
        text_field: payload field with the text.
        snapshot: the :class:`Snapshot` taken for the swap (or a saved one's JSON).
        batch: points per request.
        stats: ``window_writes`` (points carried over) and ``window_conflicts`` (points the app wrote
            through the alias after the swap) are added to it.
        lock: the alias lease; fenced before reconciling, before deletes and before removing markers.

    Raises:
        BadInput: the window holds writes to re-embed but there is no model (``encoder=None`` for a
            re-embedding promotion).
    """
    from qdrant_client import models


    snap = snapshot if isinstance(snapshot, Snapshot) else Snapshot.from_json(snapshot)
    done, finished = snap.done()
    lock.fence("reconcile")
    if not finished:
        shape = snap.shape or Shape.of(store, new, spec, copy=encoder is None)
        reembed = not shape.copy
        if reembed and encoder is None:
            raise BadInput(f"reconciling '{new}' needs its model to re-embed the window's writes, and none was given")
        todo = [(k, pid) for k, pid in window_writes(snap, scan_source(store, old, shape, new, batch))
                if k not in done]
        for chunk in chunks(todo, batch):
            pids = [pid for _, pid in chunk]
            olds = {str(r.id): r for r in store.retrieve(old, pids, vectors=True)}
            news = {str(r.id): r for r in store.retrieve(new, pids, vectors=True if reembed else shape.selector)}
            plans = [(key, pid, decide(snap.points.get(key), olds.get(key), news.get(key), shape, text_field, new,
                                       reembed, snap.legacy)) for key, pid in chunk]
            if reembed:
                stats.text_followed += follow_text(plans, news, spec, text_field, encoder)
            ops: list[Any] = []
            whole = [olds[key] for key, _, p in plans if p.kind in ("carry", "replace")]
            if whole:
                points = embed_points(encoder if reembed else None, spec, whole, text_field, None, stats)
                kinds = {key: p.kind for key, _, p in plans}
                carry = [pt for pt in points if kinds[str(pt.id)] == "carry"]
                if carry:
                    ops.append(models.UpsertOperation(upsert=models.PointsList(
                        points=carry, update_mode=models.UpdateMode.INSERT_ONLY)))
                replace = [pt for pt in points if kinds[str(pt.id)] == "replace"]
                if replace:
                    seen = {key: p.seen for key, _, p in plans}
                    ops.append(models.UpsertOperation(upsert=models.PointsList(
                        points=replace, update_filter=any_of([only_if(pt.id, seen[str(pt.id)]) for pt in replace]))))
            texts = [p.text for _, _, p in plans if p.kind == "merge" and p.text is not None]
            encoded = iter(encoder.encode_passages(texts)) if texts else iter(())
            for key, pid, p in plans:
                if p.kind == "merge":
                    vec = next(encoded) if p.text is not None else None
                    ops += _merge_ops(pid, p, payload_of(news[key].payload), spec.name, vec)
            dels = [only_if(pid, p.seen) for _, pid, p in plans if p.kind == "delete"]
            if dels:
                lock.fence("reconcile deletes")
                ops.append(models.DeleteOperation(delete=models.FilterSelector(filter=any_of(dels))))
            lock.check("reconcile")
            store.batch_update(new, ops)
            for _, _, p in plans:
                stats.window_writes += int(p.writes)
                stats.window_conflicts += int(p.app_wrote)
                stats.upserted += int(p.kind in ("carry", "replace"))
                stats.deleted += int(p.kind == "delete")
            snap.record([key for key, _ in chunk])
            faults.point("reconcile_batch", store=store, source=old, target=new)
        snap.record(finished=True)
    finish(store, old, new, lock)


def finish(store: Store, old: str, new: str, lock=NO_FENCE) -> None:
    """End of a promotion's window: vectune's markers leave the new collection, and the old one no
    longer announces a migration (dual-write helpers go back to single writes).

    The old collection's dual-write markers stay (it is frozen; they tell a resumed reconciliation
    which points the helper wrote)."""
    lock.fence("remove markers")
    store.delete_payload_where(new, [MARK], has_marker())
    if store.collection_exists(old):
        meta = store.metadata(old)
        if meta.pop("migrating_to", None) is not None:
            store.set_metadata(old, meta)


def announce(store: Store, source: str, target: str, spec: DenseSpec, text_field: str, copy: bool) -> None:
    """Record in ``source``'s lineage that writes should also go to ``target`` (for dual-write helpers)."""
    meta = store.metadata(source)
    meta["migrating_to"] = {"target": target, "copy": bool(copy), "dense_vector": spec.name,
                            "text_field": text_field}
    store.set_metadata(source, meta)


def withdraw(store: Store, source: str, target: str) -> None:
    """Undo :func:`announce` (a publish that stopped before its swap)."""
    if not store.collection_exists(source):
        return
    meta = store.metadata(source)
    if (meta.get("migrating_to") or {}).get("target") == target:
        meta.pop("migrating_to", None)
        store.set_metadata(source, meta)
