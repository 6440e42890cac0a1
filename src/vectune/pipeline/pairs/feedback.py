"""The app's feedback as a cycle's labels: read, deduplicated, resolved, split by time.

The cycle reads feedback with :func:`read_for_cycle`, only ever by scrolling (a
second operator reading at the same time is fine): queries are deduplicated on
normalised text, ids resolved against the live collection (ids whose points are
gone are dropped and counted), and the split is by time — the newest share is the
golden set, the older rest the training pairs, so no query is on both sides.
Negative signals become explicit hard negatives of their query.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vectune.errors import BadInput
from vectune.pipeline.pairs.labeled import LabeledQuery
from vectune.pipeline.pairs.negatives import texts_from_records
from vectune.pipeline.pairs.teachers.base import Query
from vectune.qdrant.feedback import (
    FEEDBACK_COLLECTION,
    as_store,
    existing_ids,
    no_feedback_message,
    normalize_query,
    read_rows,
)
from vectune.qdrant.store import point_id_for

logger = logging.getLogger(__name__)


@dataclass
class FeedbackSplit:
    """Feedback turned into evidence and training data for one cycle.

    Attributes:
        enough: True when there is enough feedback for both a golden set and training pairs.
        message: one human sentence for the report and the log (why it falls back, or what it found).
        golden: the newest queries, with the keys (string point ids) that answer them.
        train: the older queries (when not ``enough``: every usable query, as there is no golden set).
        negatives: explicit hard negatives of training queries, ``{query text: [keys]}``, strongest veto first.
        counts: rows, malformed, queries, usable, golden, train, negatives, negative_queries, dropped_missing
            (distinct ids whose points are gone), dropped_refs, without_positive, conflicts,
            window {first, last}, golden_since.
    """

    enough: bool
    message: str
    golden: list[LabeledQuery] = field(default_factory=list)
    train: list[LabeledQuery] = field(default_factory=list)
    negatives: dict[str, list[str]] = field(default_factory=dict)
    counts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """For the run report."""
        return {"enough": self.enough, "message": self.message, **self.counts}

    def train_queries(self, max_per_query: int = 1, source: str = "feedback") -> list:
        """Training pairs as :class:`~vectune.pipeline.pairs.teachers.base.Query` objects (one per positive, capped)."""

        return [Query(q.text, k, source) for q in self.train for k in sorted(q.relevant)[:max_per_query]]

    def relevant(self) -> dict[str, set[str]]:
        """Every known answer of each training query (never mined as a negative)."""
        return {q.text: set(q.relevant) for q in self.train}


@dataclass
class _Group:
    text: str = ""
    text_ts: tuple = ()
    last: float = -math.inf
    last_iso: str = ""
    score: dict = field(default_factory=lambda: defaultdict(float))
    events: list = field(default_factory=list)


def read_for_cycle(store: Any, alias: str, live_collection: str, *, golden_fraction: float = 0.3,
                   min_golden: int = 20, min_train: int = 20, seed: int = 42,
                   collection: str = FEEDBACK_COLLECTION) -> FeedbackSplit:
    """Read an alias's feedback and split it by time into a golden set and training pairs.

    Reads only by scroll. Queries are merged on :func:`normalize_query`; per (query, id) the weights of
    positive events add and those of negative events subtract: a net positive id is an answer, a net negative
    one an explicit hard negative, a tie is dropped (``conflicts``). Ids are resolved against
    ``live_collection``; ids whose points are gone are dropped (``dropped_missing``). Queries with an answer
    are ordered by their newest event: the newest ``golden_fraction`` (at least ``min_golden``) are the golden
    set, the rest train — a query is on one side only. Equal times are ordered by a seeded hash.

    Args:
        store: a vectune Store (or a ``QdrantClient``).
        alias: the alias.
        live_collection: the collection the alias points at now.
        golden_fraction: newest share for the golden set (0 ≤ f < 1; 0 = training only).
        min_golden: fewest golden queries worth deciding on.
        min_train: fewest training queries worth training on.
        seed: orders events with equal times.
        collection: the feedback collection.

    Returns:
        The split; ``enough`` is False (and ``message`` says why) when there is too little feedback.
    """
    if not 0 <= golden_fraction < 1:
        raise BadInput(f"golden_fraction must be in [0, 1), got {golden_fraction}")
    store = as_store(store)
    rows, malformed = read_rows(store, alias, collection=collection)
    groups: dict[str, _Group] = {}
    for r in rows:
        g = groups.setdefault(normalize_query(r.query), _Group())
        if (r.ts_epoch, r.point_id) > (g.text_ts or (-math.inf, "")):
            g.text, g.text_ts = r.query, (r.ts_epoch, r.point_id)  # the newest wording stands for the group
        if r.ts_epoch > g.last:
            g.last, g.last_iso = r.ts_epoch, r.ts
        g.events.append(r.point_id)
        for key, vote in r.votes():
            g.score[key] += vote

    keys = {k for g in groups.values() for k in g.score}
    present = existing_ids(store, live_collection, keys) if keys else set()
    counts: dict[str, Any] = {
        "rows": len(rows), "malformed": malformed, "queries": len(groups), "usable": 0, "golden": 0, "train": 0,
        "negatives": 0, "negative_queries": 0, "dropped_missing": len(keys - present), "dropped_refs": 0,
        "without_positive": 0, "conflicts": 0,
        "window": {"first": rows[0].ts if rows else None, "last": rows[-1].ts if rows else None},
        "golden_since": None,
    }
    usable: list[tuple[tuple, str, set[str], list[str], str, tuple]] = []  # (order, text, answers, negatives, ts,
    #                                                                         events)
    for norm, g in groups.items():
        pos, neg = set(), []
        for k, s in g.score.items():
            if k not in present:
                counts["dropped_refs"] += 1
            elif s > 0:
                pos.add(k)
            elif s < 0:
                neg.append(k)
            else:
                counts["conflicts"] += 1
        if not pos:
            counts["without_positive"] += 1
            continue
        tie = hashlib.sha256(f"{seed}\x1f{norm}".encode("utf-8", "surrogatepass")).hexdigest()
        neg.sort(key=lambda k: (g.score[k], k))  # the strongest veto first
        usable.append(((g.last, tie), g.text, pos, neg, g.last_iso, tuple(sorted(g.events))))
    usable.sort(key=lambda u: u[0])
    n = len(usable)
    counts["usable"] = n
    n_golden = max(min_golden, int(round(golden_fraction * n))) if golden_fraction > 0 else 0
    enough = n_golden <= n and n - n_golden >= max(1, min_train) and (golden_fraction == 0 or n_golden >= 1)
    if not enough:
        train_part, golden_part = usable, []
    else:
        train_part, golden_part = usable[:n - n_golden], usable[n - n_golden:]
    golden = [LabeledQuery(text, pos, ts=ts, events=ev) for _, text, pos, _, ts, ev in golden_part]
    train = [LabeledQuery(text, pos, ts=ts, events=ev) for _, text, pos, _, ts, ev in train_part]
    negatives = {text: neg for _, text, _, neg, _, _ in train_part if neg}
    counts.update(golden=len(golden), train=len(train), negatives=sum(len(v) for v in negatives.values()),
                  negative_queries=len(negatives), golden_since=golden_part[0][4] if golden_part else None)
    gone = f"; {counts['dropped_missing']} ids no longer in '{live_collection}' dropped" \
        if counts["dropped_missing"] else ""
    if not rows:
        message = no_feedback_message(alias, collection) + ": falling back to the configured teacher"
    elif not enough:
        need = (f"at least {min_golden} golden (newest {golden_fraction:.0%}) + {max(1, min_train)} training "
                "queries" if golden_fraction > 0 else f"at least {max(1, min_train)} training queries")
        message = (f"too little feedback for alias '{alias}': {n} usable queries from {len(rows)} rows{gone}; "
                   f"need {need}: falling back to the configured teacher")
    else:
        message = (f"feedback for alias '{alias}': {len(rows)} rows, {n} usable queries -> {len(golden)} golden "
                   f"(newest, since {counts['golden_since']}), {len(train)} training, {counts['negatives']} "
                   f"explicit negatives{gone}")
    logger.info("%s", message)
    return FeedbackSplit(enough, message, golden, train, negatives, counts)


def few_shot_examples(split: FeedbackSplit, n: int = 5, seed: int = 42, max_chars: int = 300) -> list[str]:
    """A few real queries from the training side (never the golden side) to show the teacher how users ask.

    Args:
        split: from :func:`read_for_cycle`.
        n: how many.
        seed: which ones (seeded sample).
        max_chars: longer queries are not shown.

    Returns:
        Up to ``n`` query texts, in a stable order (part of the teacher's cache key).
    """
    golden = {normalize_query(q.text) for q in split.golden}
    pool = sorted({q.text for q in split.train if len(q.text) <= max_chars and normalize_query(q.text) not in golden})
    if len(pool) <= n:
        return pool
    return sorted(random.Random(seed).sample(pool, n))


def few_shot_fingerprint(examples: Sequence[str]) -> str:
    """A short hash of the few-shot examples, for the teacher's cache key."""
    return hashlib.sha256(json.dumps(list(examples), ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- negatives into training
def negative_texts(store: Any, live_collection: str, split: FeedbackSplit, text_field: str) -> dict[str, list[str]]:
    """The passages of the split's explicit negatives, ``{query text: [passage texts]}``."""

    store = as_store(store)
    keys = sorted({k for ks in split.negatives.values() for k in ks})
    texts: dict[str, str] = {}
    for i in range(0, len(keys), 256):
        texts.update(texts_from_records(store.retrieve(live_collection, [point_id_for(k) for k in keys[i:i + 256]]),
                                        text_field))
    return {q: [texts[k] for k in ks if k in texts] for q, ks in split.negatives.items()}


def merge_negatives(examples: Sequence[Any], explicit: Mapping[str, Sequence[str]],
                    num_negatives: int) -> tuple[list[Any], int]:
    """Put users' explicit negatives first in each example's hard negatives (mined ones fill the rest).

    The number of negatives per example stays ``num_negatives`` (MNRL needs fixed columns); with 0 the
    examples are returned unchanged.

    Args:
        examples: :class:`~vectune.pipeline.pairs.negatives.Example` objects (``anchor``, ``positive``, ``negatives``).
        explicit: ``{query text: [negative passage texts]}`` (from :func:`negative_texts`).
        num_negatives: hard negatives per example.

    Returns:
        ``(examples, applied)``: new examples and how many explicit negatives went in.
    """
    from dataclasses import replace

    if num_negatives <= 0 or not explicit:
        return list(examples), 0
    out, applied = [], 0
    for ex in examples:
        mine_ = [t for t in explicit.get(ex.anchor, ()) if t != ex.positive]
        if not mine_:
            out.append(ex)
            continue
        taken = list(dict.fromkeys(mine_))[:num_negatives]
        rest = [t for t in ex.negatives if t not in taken]
        applied += len(taken)
        out.append(replace(ex, negatives=(taken + rest)[:num_negatives]))
    return out, applied


def labels_from_feedback(store: Any, alias: str, live: str, cfg, seed: int = 42,
                         crossfit: bool = False) -> tuple[FeedbackSplit | None, dict]:
    """The alias's logged feedback as the cycle's labels (golden + training queries, or all of them).

    Args:
        store: Qdrant access.
        alias: the alias.
        live: the collection it points at (ids are resolved against it).
        cfg: the labels settings (:class:`~vectune.config.sections.LabelsConfig`).
        seed: the split's seed.
        crossfit: every usable query in ``train`` (oldest first, no golden share): the cross-fit's labels,
            enough from :meth:`~vectune.config.sections.LabelsConfig.crossfit_minimum` queries on.

    Returns:
        ``(split, counts)``: the split (None when feedback is off, absent, or too little to train on) and its
        counts for the run report.
    """
    if not cfg.feedback:
        return None, {}
    if crossfit:
        fb = read_for_cycle(store, alias, live, golden_fraction=0.0, min_golden=cfg.min_golden,
                            min_train=cfg.crossfit_minimum(), seed=seed, collection=cfg.collection)
        c = fb.counts
        gone = f"; {c['dropped_missing']} ids no longer in '{live}' dropped" if c.get("dropped_missing") else ""
        if fb.enough:
            fb.message = (f"feedback for alias '{alias}': {c['rows']} rows, {c['usable']} usable queries, every one "
                          f"a label that trains and decides: cross-fitted in {cfg.folds} folds blocked by time, "
                          f"{c['negatives']} explicit negatives{gone}")
        elif c.get("rows"):
            fb.message = (f"too little feedback for alias '{alias}': {c['usable']} usable queries from {c['rows']} "
                          f"rows{gone}; cross-fitting in {cfg.folds} folds needs at least {cfg.crossfit_minimum()}: "
                          "falling back to the configured teacher")
        logger.info("%s", fb.message)
    else:
        fb = read_for_cycle(store, alias, live, golden_fraction=cfg.golden_fraction, min_golden=cfg.min_golden,
                            min_train=cfg.min_train, seed=seed, collection=cfg.collection)
    if not fb.counts.get("rows"):
        return None, {"rows": 0}
    if not fb.enough:
        logger.warning("%s", fb.message)
        return (fb if fb.train else None), fb.to_dict()
    return fb, fb.to_dict()


def explicit_negatives(store: Any, read, fb: FeedbackSplit | None) -> dict:
    """Users' explicit negatives (thumbs down, skipped) as passage texts per training query."""
    if fb is None or not fb.negatives:
        return {}
    return negative_texts(store, read.live, fb, read.text_field)
