"""Fresh feedback: the queries that arrived after a promotion and that no cycle before it saw.

The watch (:mod:`vectune.ops.watch`) judges a promoted model on them. A promotion records the
newest feedback time its cycle read (``data.feedback_until`` in the new collection's lineage):
every event up to then was in that cycle's labels, trained on or gated on. A query is *fresh*
when every one of its events is newer than that cutoff; a query asked again after the cutoff
but already asked before it is not (the model may have trained on it) and is counted as
``repeated``. Queries are merged and their answers resolved exactly as the cycle does
(:func:`vectune.pipeline.pairs.feedback.read_for_cycle`): per (query, id) the weights of positive
events add and those of negative events subtract; a net positive id is an answer; ids whose
points are gone from the live collection are dropped.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vectune.pipeline.pairs.labeled import LabeledQuery
from vectune.qdrant.feedback import FEEDBACK_COLLECTION, as_store, existing_ids, normalize_query, read_rows


def epoch(ts: str | None) -> float:
    """Unix seconds of an ISO 8601 time (naive = UTC); ``-inf`` for None or an unreadable value."""
    if not ts:
        return -math.inf
    try:
        dt = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return -math.inf
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


@dataclass
class Fresh:
    """The fresh queries after a cutoff.

    Attributes:
        since: the cutoff (ISO time; None = every query is fresh).
        queries: the fresh queries with their answers (point-id strings), oldest first.
        counts: rows, fresh_rows, queries (fresh, with or without an answer), repeated (asked before the
            cutoff too: not fresh), usable, without_positive, dropped_missing, window {first, last}.
    """

    since: str | None
    queries: list[LabeledQuery] = field(default_factory=list)
    counts: dict = field(default_factory=dict)


@dataclass
class _Group:
    text: str = ""
    newest: tuple = ()
    score: dict = field(default_factory=lambda: defaultdict(float))


def fresh_labels(store: Any, alias: str, live_collection: str, since: str | None, *,
                 collection: str = FEEDBACK_COLLECTION) -> Fresh:
    """The queries of ``alias`` whose every event is newer than ``since``, with their answers.

    Reads by scroll only.

    Args:
        store: a vectune Store (or a ``QdrantClient``).
        alias: the alias.
        live_collection: ids are resolved against it (ids whose points are gone are dropped).
        since: the cutoff (ISO time), or None.
        collection: the feedback collection.

    Returns:
        The fresh queries and their counts.
    """
    store = as_store(store)
    rows, _ = read_rows(store, alias, collection=collection)
    cut = epoch(since)
    seen = {normalize_query(r.query) for r in rows if r.ts_epoch <= cut}
    groups: dict[str, _Group] = {}
    repeated: set[str] = set()
    fresh_rows = []
    for r in rows:
        if r.ts_epoch <= cut:
            continue
        norm = normalize_query(r.query)
        if norm in seen:
            repeated.add(norm)
            continue
        fresh_rows.append(r)
        g = groups.setdefault(norm, _Group())
        if (r.ts_epoch, r.point_id) > (g.newest or (-math.inf, "")):
            g.text, g.newest = r.query, (r.ts_epoch, r.point_id)  # the newest wording stands for the group
        for key, vote in r.votes():
            g.score[key] += vote
    keys = {k for g in groups.values() for k in g.score}
    present = existing_ids(store, live_collection, keys) if keys else set()
    out: list[tuple[tuple, LabeledQuery]] = []
    without = 0
    for g in groups.values():
        pos = {k for k, s in g.score.items() if s > 0 and k in present}
        if not pos:
            without += 1
            continue
        out.append((g.newest, LabeledQuery(g.text, pos)))
    out.sort(key=lambda x: x[0])
    counts = {"rows": len(rows), "fresh_rows": len(fresh_rows), "queries": len(groups), "repeated": len(repeated),
              "usable": len(out), "without_positive": without, "dropped_missing": len(keys - present),
              "window": {"first": fresh_rows[0].ts if fresh_rows else None,
                         "last": fresh_rows[-1].ts if fresh_rows else None}}
    return Fresh(since, [q for _, q in out], counts)


__all__ = ["Fresh", "epoch", "fresh_labels"]
