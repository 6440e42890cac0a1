"""Log feedback from the app's own traffic: the app's write API.

An app records what its users did with a search result — a click, a citation in a
RAG answer, a thumbs-up or thumbs-down, a result shown but skipped::

    from qdrant_client import QdrantClient
    from vectune import feedback

    client = QdrantClient(url="http://localhost:6333")
    feedback.log(client, "docs", "how do I rotate keys?", ["doc-17"], signal="click")
    feedback.log_many(client, [{"alias": "docs", "query": "...", "relevant_ids": ["doc-3"], "signal": "cite"}])

Events are validated (:class:`~vectune.qdrant.feedback.BadFeedback`, a ``ValueError``, names the
reason) and stored in Qdrant (:mod:`vectune.qdrant.feedback`); each cycle reads them
(:mod:`vectune.pipeline.pairs.feedback`). Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vectune.qdrant.feedback import (
    FEEDBACK_COLLECTION,
    NEGATIVE_SIGNALS,
    POSITIVE_SIGNALS,
    SIGNALS,
    BadFeedback,
    as_store,
    event_from_row,
    make_event,
    write_events,
)


def log(client: Any, alias: str, query: str, relevant_ids: Any, *, signal: str = "click", weight: float = 1.0,
        ts: Any = None, negative_ids: Any = (), collection: str = FEEDBACK_COLLECTION) -> str:
    """Record one feedback event.

    Args:
        client: the app's ``QdrantClient`` (or a vectune Store).
        alias: the alias the app searched.
        query: the user's query.
        relevant_ids: ids the signal is about: for ``click``/``cite``/``thumbs_up`` the answers, for
            ``thumbs_down``/``skip`` results that did not answer.
        signal: ``click`` (default), ``cite``, ``thumbs_up``, ``thumbs_down`` or ``skip``.
        weight: how much the event counts (> 0, default 1).
        ts: when (datetime, ISO string or epoch seconds; default now, UTC).
        negative_ids: results shown and passed over (become hard negatives).
        collection: the feedback collection.

    Returns:
        The event's point id (deterministic: logging the same event again overwrites it).

    Raises:
        BadFeedback: bad event (also a ``ValueError``).
    """
    pid, payload = make_event(alias, query, relevant_ids, signal=signal, weight=weight, ts=ts,
                              negative_ids=negative_ids)
    write_events(as_store(client), collection, [(pid, payload)])
    return pid


def log_many(client: Any, rows: Iterable[Mapping], *, collection: str = FEEDBACK_COLLECTION,
             batch: int = 256) -> int:
    """Record many events in batched upserts; every row is validated before anything is written.

    Args:
        client: the app's ``QdrantClient`` (or a vectune Store).
        rows: dicts with ``alias``, ``query``, ``relevant_ids`` (or ``ids``/``relevant``) and optionally
            ``signal``, ``weight``, ``ts``, ``negative_ids`` — the arguments of :func:`log`.
        collection: the feedback collection.
        batch: points per upsert.

    Returns:
        How many events were written.

    Raises:
        BadFeedback: a bad row (named by its index); nothing is written then.
    """
    events = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise BadFeedback(f"feedback row {i}: expected a dict, got {type(row).__name__}", "not_an_object")
        try:
            events.append(event_from_row(row))
        except BadFeedback as e:
            raise BadFeedback(f"feedback row {i}: {e}", e.reason) from None
    write_events(as_store(client), collection, events, batch)
    return len(events)


__all__ = ["FEEDBACK_COLLECTION", "NEGATIVE_SIGNALS", "POSITIVE_SIGNALS", "SIGNALS", "BadFeedback", "log", "log_many"]
