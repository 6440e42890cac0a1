"""Feedback test helpers: a small live collection and time stamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vectune.apps.feedback import log_many
from vectune.qdrant.store import Store, point_id_for

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def ts(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def make_live(store: Store, n: int = 60, name: str = "live", alias: str | None = "docs") -> list[str]:
    """A small live collection: points doc-0..doc-{n-1} (external ids, as `vectune index` stores them)."""
    from qdrant_client import models

    store.create_collection(name, 4)
    ids = [f"doc-{i}" for i in range(n)]
    store.upsert(name, [models.PointStruct(id=point_id_for(d), vector=[1.0, float(i), 0.5, 0.0],
                                           payload={"doc_id": d, "text": f"passage number {i} about topic {i % 7}"})
                        for i, d in enumerate(ids)])
    if alias:
        store.swap_alias(alias, name)
    return ids


def key(doc: str) -> str:
    return str(point_id_for(doc))



def log_queries(store: Store, n: int, start: float = 0.0) -> list[str]:
    texts = [f"user question number {i}" for i in range(n)]
    log_many(store, [{"alias": "docs", "query": t, "ids": [f"doc-{i % 50}"], "ts": ts(start + i)}
                        for i, t in enumerate(texts)])
    return texts
