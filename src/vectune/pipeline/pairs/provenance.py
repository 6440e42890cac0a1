"""Which labels a promoted model trained on and was gated on: its provenance, kept with the model.

A promotion records it twice: a summary in the new collection's lineage (``meta["labels"]``: source,
counts, the newest label's time, a hash of the events) and the whole record in the model store's
manifest (``ModelStore.manifest(tag)["labels"]``: every feedback event's point id and every query's
key). Whatever judges the model later on *fresh* feedback (:func:`fresh_rows`) must leave out both: events
it used, and queries it was trained or gated on, asked again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from vectune.pipeline.pairs.labeled import LabeledQuery
from vectune.qdrant.feedback import normalize_query

#: Keys of the full record that only the model store's manifest keeps (the lineage gets the rest).
LISTS = ("event_ids", "query_keys")


def query_key(text: str) -> str:
    """A short, stable key of a query as the feedback reader merges it (normalised text, hashed)."""
    return hashlib.sha256(normalize_query(text).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _epoch(ts: str | None) -> float | None:
    try:
        return datetime.fromisoformat(ts).timestamp() if ts else None
    except ValueError:
        return None


def provenance(labels: Sequence[LabeledQuery], *, source: str, evidence: str, split: dict | None = None) -> dict:
    """The record of the labels a model trained on and was gated on.

    Args:
        labels: every labeled query used, training and deciding (cross-fitted: all of them).
        source: ``feedback``, ``train-set`` or ``eval-set`` (a fixed golden set decided).
        evidence: ``cross-fitted`` or ``golden``.
        split: how the labels were used (the cross-fit's folds, or the golden share).

    Returns:
        The full record (see :func:`summary` for the lineage's part).
    """
    events = sorted({e for q in labels for e in q.events})
    stamps = sorted(t for t in (q.ts for q in labels) if t)
    return {"source": source, "evidence": evidence, "queries": len(labels), "events": len(events),
            "first_ts": stamps[0] if stamps else None, "last_ts": stamps[-1] if stamps else None,
            "last_epoch": _epoch(stamps[-1]) if stamps else None,
            "events_sha256": hashlib.sha256(json.dumps(events).encode()).hexdigest() if events else None,
            "split": split or {}, "event_ids": events, "query_keys": sorted({query_key(q.text) for q in labels})}


def summary(record: dict | None) -> dict | None:
    """The record without its id lists (for the lineage, the run report and history)."""
    return None if record is None else {k: v for k, v in record.items() if k not in LISTS}


def fresh_rows(rows: Iterable[Any], record: dict | None) -> list[Any]:
    """Feedback rows a model neither trained on nor was gated on.

    A row is fresh when its event is not one the model used and its query (normalised) is not one of the
    model's labeled queries asked again. Rows are :class:`vectune.qdrant.feedback.Row` (``point_id``, ``query``).

    Args:
        rows: feedback rows of the alias.
        record: the model's provenance (:func:`provenance`, from its manifest); None: every row is fresh.

    Returns:
        The fresh rows, in the order given.
    """
    if not record:
        return list(rows)
    used, asked = set(record.get("event_ids") or ()), set(record.get("query_keys") or ())
    return [r for r in rows if r.point_id not in used and query_key(r.query) not in asked]


__all__ = ["LISTS", "fresh_rows", "provenance", "query_key", "summary"]
