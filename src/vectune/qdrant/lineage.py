"""Lineage: which model made which collection, and what happened to an alias.

Each collection vectune builds (or adopts) carries a record in its Qdrant
collection metadata (key ``vectune``): alias, model tag and reference, parent
model and collection, evaluation numbers, data counts, time and state
(``building`` → ``verified`` → ``live``/``retired``). Two models per collection:
``passage_model`` made its stored vectors (apps keep writing with it) and
``query_model`` (= ``model_ref``) encodes queries; they differ after a query-side
promotion, whose saved model routes queries and passages to different modules. Events (promotions,
rejections, rollbacks) are the alias's history (:mod:`vectune.observe.history`).
"""

from __future__ import annotations

import logging
from typing import Any

from vectune.core.clock import now
from vectune.errors import BadInput

logger = logging.getLogger(__name__)




def record(*, alias: str, model_ref: str, model_tag: str, created_by: str, dense_vector: str,
           query_prompt: str = "", base_model: str | None = None, parent_model: str | None = None,
           parent_collection: str | None = None, evaluation: dict | None = None, data: dict | None = None,
           state: str = "building", **extra: Any) -> dict:
    """A lineage record for a collection's metadata."""
    return {
        "alias": alias,
        "model_ref": model_ref,
        "query_model": extra.pop("query_model", None) or model_ref,
        "passage_model": extra.pop("passage_model", None) or model_ref,
        "mode": extra.pop("mode", None) or "full",
        "model_tag": model_tag,
        "base_model": base_model or model_ref,
        "parent_model": parent_model,
        "parent_collection": parent_collection,
        "created_by": created_by,
        "created_at": now(),
        "dense_vector": dense_vector,
        "query_prompt": query_prompt,
        "eval": evaluation or {},
        "data": data or {},
        "state": state,
        **extra,
    }


def passage_model(meta: dict) -> str | None:
    """The model whose passage vectors a collection holds (what apps write with)."""
    return meta.get("passage_model") or meta.get("model_ref")


def query_model(meta: dict) -> str | None:
    """The model apps encode their queries with for a collection (its ``model_ref``)."""
    return meta.get("query_model") or meta.get("model_ref")


def set_state(store, name: str, state: str, **fields: Any) -> dict:
    """Record a collection's new state (``live``, ``retired``...) and extra facts in its lineage."""
    meta = store.metadata(name)
    meta.update(state=state, **fields)
    store.set_metadata(name, meta)
    return meta


def collection_name(alias: str, model_tag: str) -> str:
    """``<alias>--<model-tag>``: the collection built for a model."""
    return f"{alias}--{model_tag}"


def versions(store, alias: str) -> list[tuple[str, dict]]:
    """All collections vectune knows for an alias, oldest first, with their records."""
    out = []
    for name in store.collections():
        try:
            meta = store.metadata(name)
        except Exception:  # noqa: BLE001 - a collection deleted meanwhile is simply not a version
            continue
        if meta.get("alias") == alias:
            out.append((name, meta))
    out.sort(key=lambda x: (x[1].get("created_at", ""), x[0]))
    return out


def rollback_target(store, alias: str, live: str, *, marked_too: bool = False) -> str | None:
    """The default rollback target: the live collection's parent, else the newest older version.

    A collection still being built or verified (a publish underway, or its leftover) is no version
    to roll back to, and is never the fallback.

    Args:
        store: Qdrant access.
        alias: the alias.
        live: the collection behind it.
        marked_too: also consider collections marked for deletion (:func:`doom_mark`); by default a
            marked collection is never a rollback target.
    """
    def ok(name: str) -> bool:
        return marked_too or not doom_mark(store, name)

    parent = store.metadata(live).get("parent_collection")
    if parent and parent != live and store.collection_exists(parent) and ok(parent):
        return parent
    for name, meta in reversed(versions(store, alias)):
        if name != live and meta.get("state") not in ("building", "verified") and ok(name):
            return name
    return None


# ------------------------------------------------------------------------------ deletion marks
#: The top-level collection metadata key of a deletion mark (beside the lineage record, so that no
#: rewrite of the lineage record can erase it).
DOOM_KEY = "vectune_doomed"


def doom_mark(store, name: str) -> dict | None:
    """The deletion mark of a collection (who marked it, under which lease, when), or None.

    A marked ("doomed") collection is on its way out: it is never made live again and never a
    rollback target (:mod:`vectune.qdrant.deletion`).
    """
    try:
        mark = store.meta_key(name, DOOM_KEY)
    except BadInput:  # a collection deleted meanwhile carries no mark (Qdrant unreachable: raised)
        return None
    return mark if isinstance(mark, dict) and mark else None


def set_doom(store, name: str, mark: dict | None) -> None:
    """Write (or, with None, clear) a collection's deletion mark."""
    store.set_meta_key(name, DOOM_KEY, mark)
