"""Dual writes: app writes that stay exact across vectune's promotions and rollbacks.

Apps that write through the alias with the plain client lose nothing in a promotion or
rollback, with a few exceptions in the seconds between vectune's final pass and its
reconciliation (README, "Writes during a promotion"): a point created in that window and
deleted through the alias right after the swap comes back; an edit right after the swap of
a point created in the window is rejected as not found. Qdrant's migration tutorial solves
this with dual writes, and so does this helper::

    from qdrant_client import QdrantClient
    from vectune.apps.dualwrite import DualWriter

    client = QdrantClient(url="http://localhost:6333")
    docs = DualWriter(client, "docs")
    docs.upsert([models.PointStruct(id=7, vector=..., payload={"text": "..."})])
    docs.set_payload({"tag": "x"}, [7])
    docs.delete([8])

While vectune publishes a collection behind the alias it records ``migrating_to`` in the
live collection's lineage. The helper reads it before (and again after) every write; while
it is set, each write goes to the new collection *and* to the live one (new first), both
marked ``_vectune = {"dw": <new collection>, "n": <nonce>}``, and the new collection gets
its own tuned vector (encoded with its passage model from the model store, or copied
verbatim for a query-side promotion). vectune's passes never overwrite such a write, and
its reconciliation leaves points written this way alone. Otherwise it is a plain write to
the alias. The marker is removed when the promotion ends.

For the guarantee, *every* write to a point during a promotion must go through the helper.
Writes take point ids (a list or ``PointIdsList``); a ``Filter``/``FilterSelector`` is
resolved to ids on the live collection first.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vectune.config.settings import Settings
from vectune.core.chunks import extract_text
from vectune.errors import BadInput
from vectune.models.store import ModelStore
from vectune.promote.mark import MARK, payload_of
from vectune.qdrant.store import META_KEY

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """Where writes go now: the alias's collection, and the collection being published (if any)."""

    live: str
    target: str | None = None
    copy: bool = True
    dense_vector: str = ""
    text_field: str = "text"


class DualWriter:
    """Write through an alias; during a promotion, to both collections (see module doc).

    Args:
        client: a ``qdrant_client.QdrantClient``.
        alias: the alias apps write through.
        settings: where the model store is (default: the environment's settings).
        encoder_for: ``encoder_for(collection, lineage) -> Encoder`` with the passage model of a
            collection being published (default: loaded from the model store as its lineage says).
        refresh_s: reuse the route read from Qdrant for this long (0: read it around every write,
            which the guarantee assumes).
    """

    def __init__(self, client, alias: str, settings=None, *, encoder_for: Callable | None = None,
                 refresh_s: float = 0.0):
        self.client = client
        self.alias = alias
        self.settings = settings
        self.encoder_for = encoder_for
        self.refresh_s = float(refresh_s)
        self._route: tuple[float, Route] | None = None
        self._encoders: dict[str, Any] = {}

    # -- where to write ------------------------------------------------------------------------
    def route(self, fresh: bool = False) -> Route:
        """The alias's collection and the promotion in progress, read from Qdrant."""

        now = time.monotonic()
        if not fresh and self._route and now - self._route[0] < self.refresh_s:
            return self._route[1]
        aliases = {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}
        if self.alias not in aliases:

            raise BadInput(f"alias '{self.alias}' does not exist")
        live = aliases[self.alias]
        meta = (self.client.get_collection(live).config.metadata or {}).get(META_KEY) or {}
        mig = meta.get("migrating_to") or {}
        target = mig.get("target")
        if target and target != live and self.client.collection_exists(target):
            route = Route(live, target, bool(mig.get("copy")), mig.get("dense_vector") or "",
                          mig.get("text_field") or "text")
        else:
            route = Route(live)
        self._route = (now, route)
        return route

    def _encoder(self, target: str):

        if target not in self._encoders:
            meta = (self.client.get_collection(target).config.metadata or {}).get(META_KEY) or {}
            if self.encoder_for is not None:
                self._encoders[target] = self.encoder_for(target, meta)
            else:

                ref = meta.get("passage_model") or meta.get("model_ref")
                models = ModelStore.from_settings(self.settings or Settings())
                self._encoders[target] = models.load_lineage(meta, ref=ref)
        return self._encoders[target]

    def _write(self, plain: Callable[[], Any], dual: Callable[[Route], Any]) -> Any:
        """Write as the route says; if the route changed meanwhile into a promotion, write again dually."""
        before = self.route()
        result = dual(before) if before.target else plain()
        after = self.route(fresh=True)
        if after.target and after != before:
            result = dual(after)  # a promotion began during the write: mirror it (writes are idempotent)
        return result

    # -- the writes ------------------------------------------------------------------------------
    def upsert(self, points: Sequence, **kwargs) -> Any:
        """``client.upsert`` through the alias (``points``: PointStructs)."""
        points = list(points)

        def dual(r: Route):
            mark = self._mark(r)
            self.client.upsert(r.target, points=self._for_target(r, [_with(p, mark) for p in points]), **kwargs)
            return self.client.upsert(r.live, points=[_with(p, mark) for p in points], **kwargs)

        return self._write(lambda: self.client.upsert(self.alias, points=points, **kwargs), dual)

    def set_payload(self, payload: dict, points, key: str | None = None, **kwargs) -> Any:
        """``client.set_payload`` through the alias."""
        def dual(r: Route):
            ids = self._ids(r, points)
            mark = self._mark(r)
            body = {**payload_of(payload), MARK: mark} if key is None else payload

            def op(coll, sel):
                self.client.set_payload(coll, payload=body, points=sel, key=key, **kwargs)
                if key is not None:
                    self.client.set_payload(coll, payload={MARK: mark}, points=sel, **kwargs)
            return self._edit(r, ids, op, text_changed=key is None and _root(r.text_field) in payload
                              or key is not None and key.split(".")[0].split("[")[0] == _root(r.text_field))

        return self._write(lambda: self.client.set_payload(self.alias, payload=payload, points=points, key=key,
                                                           **kwargs), dual)

    def overwrite_payload(self, payload: dict, points, **kwargs) -> Any:
        """``client.overwrite_payload`` through the alias."""
        def dual(r: Route):
            ids = self._ids(r, points)
            mark = self._mark(r)
            return self._edit(r, ids, lambda coll, sel: self.client.overwrite_payload(
                coll, payload={**payload_of(payload), MARK: mark}, points=sel, **kwargs), text_changed=True)

        return self._write(lambda: self.client.overwrite_payload(self.alias, payload=payload, points=points, **kwargs),
                           dual)

    def clear_payload(self, points_selector, **kwargs) -> Any:
        """``client.clear_payload`` through the alias."""
        def dual(r: Route):
            ids = self._ids(r, points_selector)
            mark = self._mark(r)
            return self._edit(r, ids, lambda coll, sel: self.client.overwrite_payload(
                coll, payload={MARK: mark}, points=sel, **kwargs), text_changed=True)

        return self._write(lambda: self.client.clear_payload(self.alias, points_selector=points_selector, **kwargs),
                           dual)

    def delete_payload(self, keys: Sequence[str], points, **kwargs) -> Any:
        """``client.delete_payload`` through the alias."""
        keys = list(keys)

        def dual(r: Route):
            ids = self._ids(r, points)
            mark = self._mark(r)

            def op(coll, sel):
                self.client.delete_payload(coll, keys=keys, points=sel, **kwargs)
                self.client.set_payload(coll, payload={MARK: mark}, points=sel, **kwargs)
            return self._edit(r, ids, op, text_changed=any(k.split(".")[0].split("[")[0] == _root(r.text_field)
                                                           for k in keys))

        return self._write(lambda: self.client.delete_payload(self.alias, keys=keys, points=points, **kwargs), dual)

    def update_vectors(self, points: Sequence, **kwargs) -> Any:
        """``client.update_vectors`` through the alias (``points``: PointVectors)."""
        from qdrant_client import models

        points = list(points)

        def dual(r: Route):
            ids = [p.id for p in points]
            mark = self._mark(r)
            managed = r.dense_vector
            by_id = {str(p.id): p for p in points}

            def op(coll, sel):
                pts = [by_id[str(i)] for i in sel]
                if coll == r.target and not r.copy:  # the new collection's tuned vector is its own
                    keep = []
                    for p in pts:
                        v = p.vector if isinstance(p.vector, dict) else {"": p.vector}
                        rest = {k: x for k, x in v.items() if k != managed}
                        if rest:
                            keep.append(models.PointVectors(id=p.id, vector=rest))
                    pts = keep
                if pts:
                    self.client.update_vectors(coll, points=pts, **kwargs)
                self.client.set_payload(coll, payload={MARK: mark}, points=sel, **kwargs)
            return self._edit(r, ids, op, text_changed=False)

        return self._write(lambda: self.client.update_vectors(self.alias, points=points, **kwargs), dual)

    def delete_vectors(self, vectors: Sequence[str], points, **kwargs) -> Any:
        """``client.delete_vectors`` through the alias."""
        vectors = list(vectors)

        def dual(r: Route):
            ids = self._ids(r, points)
            mark = self._mark(r)

            def op(coll, sel):
                names = [v for v in vectors if r.copy or coll != r.target or v != r.dense_vector]
                if names:
                    self.client.delete_vectors(coll, vectors=names, points=sel, **kwargs)
                self.client.set_payload(coll, payload={MARK: mark}, points=sel, **kwargs)
            return self._edit(r, ids, op, text_changed=False)

        return self._write(lambda: self.client.delete_vectors(self.alias, vectors=vectors, points=points, **kwargs),
                           dual)

    def delete(self, points_selector, **kwargs) -> Any:
        """``client.delete`` through the alias."""
        from qdrant_client import models

        def dual(r: Route):
            ids = self._ids(r, points_selector)
            if not ids:
                return None
            self.client.delete(r.target, points_selector=models.PointIdsList(points=ids), **kwargs)
            return self.client.delete(r.live, points_selector=models.PointIdsList(points=ids), **kwargs)

        return self._write(lambda: self.client.delete(self.alias, points_selector=points_selector, **kwargs), dual)

    # -- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _mark(r: Route) -> dict:
        return {"dw": r.target, "n": uuid.uuid4().hex[:16]}

    def _ids(self, r: Route, selector) -> list:
        """Point ids of a selector (ids as given; a filter resolved on the live collection)."""
        from qdrant_client import models

        if isinstance(selector, models.PointIdsList):
            return list(selector.points)
        flt = selector.filter if isinstance(selector, models.FilterSelector) else selector
        if isinstance(flt, models.Filter):
            out, offset = [], None
            while True:
                recs, offset = self.client.scroll(r.live, scroll_filter=flt, limit=1024, offset=offset,
                                                  with_payload=False, with_vectors=False)
                out += [p.id for p in recs]
                if offset is None:
                    return out
        return list(selector)

    def _for_target(self, r: Route, points: list) -> list:
        """The points as the new collection stores them: its own tuned vector unless copying."""
        if r.copy or not points:
            return points

        enc = self._encoder(r.target)
        texts = [extract_text(p.payload, r.text_field)[0] for p in points]
        todo = [i for i, t in enumerate(texts) if t is not None]
        vecs = enc.encode_passages([texts[i] for i in todo]) if todo else []
        out = list(points)
        for i, v in zip(todo, vecs):
            p = points[i]
            cur = p.vector if isinstance(p.vector, dict) else ({"": p.vector} if p.vector is not None else {})
            new = {**cur, r.dense_vector: [float(x) for x in v]}
            out[i] = p.model_copy(update={"vector": new[""] if set(new) == {""} else new})
        return out

    def _edit(self, r: Route, ids: list, op: Callable[[str, list], None], text_changed: bool) -> Any:
        """An edit of existing points, new collection first; points it lacks are copied over afterwards."""
        from qdrant_client import models

        if not ids:
            return None
        have = {str(p.id) for p in self.client.retrieve(r.target, ids=ids, with_payload=False, with_vectors=False)}
        there = [i for i in ids if str(i) in have]
        missing = [i for i in ids if str(i) not in have]
        if there:
            op(r.target, there)
            if text_changed and not r.copy:
                self._reembed(r, there)
        result = op(r.live, ids)
        if missing:  # not in the new collection yet: copy them over as the live collection now has them
            recs = self.client.retrieve(r.live, ids=missing, with_payload=True, with_vectors=True)
            pts = [models.PointStruct(id=p.id, vector=p.vector if p.vector is not None else {}, payload=p.payload or {})
                   for p in recs]
            self.client.upsert(r.target, points=self._for_target(r, pts),
                               update_mode=models.UpdateMode.INSERT_ONLY)
        return result

    def _reembed(self, r: Route, ids: list) -> None:
        """Re-encode the new collection's tuned vector of these points from their text."""
        from qdrant_client import models

        recs = self.client.retrieve(r.target, ids=ids, with_payload=True, with_vectors=False)
        texts = [(p.id, extract_text(p.payload, r.text_field)[0]) for p in recs]
        texts = [(i, t) for i, t in texts if t is not None]
        if not texts:
            return
        vecs = self._encoder(r.target).encode_passages([t for _, t in texts])
        self.client.update_vectors(r.target, points=[
            models.PointVectors(id=i, vector=([float(x) for x in v] if r.dense_vector == ""
                                              else {r.dense_vector: [float(x) for x in v]}))
            for (i, _), v in zip(texts, vecs)])


def _with(point, mark: dict):
    """A copy of a PointStruct with the dual-write marker in its payload."""
    return point.model_copy(update={"payload": {**payload_of(point.payload), MARK: mark}})


def _root(path: str) -> str:
    return path.split(".")[0].split("[")[0]
