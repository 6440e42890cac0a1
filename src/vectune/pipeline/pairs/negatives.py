"""Hard-negative mining against the live collection's own stored vectors.

For each training query we encode the query once with the live model and ask
Qdrant (batched query API) for its nearest chunks. Nothing in the corpus is
re-encoded. A false-negative guard drops candidates that look too much like the
answer (NV-Retriever's TopK-PercPos): a candidate is kept only if its score is
below ``positive_score * (1 - relative_margin)``; the ``skip_top`` first ranks can
be skipped as well. Candidates with the same text as a positive are never
negatives.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vectune.core.chunks import extract_text, text_hash
from vectune.core.stats import Stats
from vectune.pipeline.pairs.teachers.base import Query

logger = logging.getLogger(__name__)


@dataclass
class Example:
    """One training example: a query, its positive passage, and hard negatives."""

    anchor: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    source: str = ""


@dataclass
class MiningStats(Stats):
    """What mining did: negatives found, candidates dropped by each guard, explicit negatives used."""

    queries: int = 0
    negatives: int = 0
    dropped_false_negative: int = 0
    dropped_same_text: int = 0
    without_hard_negative: int = 0
    filled_random: int = 0
    short_of_negatives: int = 0
    explicit: int = 0


def mine(
    queries: Sequence[Query],
    query_vectors: np.ndarray,
    positive_vectors: np.ndarray,
    positives: dict[str, str],
    search: Callable[[np.ndarray, int], list[list[tuple[str, float]]]],
    fetch_texts: Callable[[list[str]], dict[str, str]],
    num_negatives: int = 1,
    depth: int = 30,
    skip_top: int = 0,
    relative_margin: float = 0.05,
    relevant: dict[str, set[str]] | None = None,
    seed: int = 42,
) -> tuple[list[Example], MiningStats]:
    """Build training examples with hard negatives.

    Args:
        queries: training queries.
        query_vectors: their live-model embeddings, one row each.
        positive_vectors: the stored live vector of each query's chunk, one row each.
        positives: chunk key → passage text, for every chunk a query points at.
        search: ``search(vectors, limit)`` → per query ``[(chunk_key, score), ...]`` best first.
        fetch_texts: chunk keys → their texts (for negatives outside ``positives``).
        num_negatives: hard negatives per query (0 = in-batch negatives only).
        depth: how many neighbours to look at per query.
        skip_top: ranks to skip before taking negatives.
        relative_margin: false-negative guard (see module doc).
        relevant: extra chunk keys that answer a query (by query text) and so are never negatives.
        seed: for random fill-ins.

    Returns:
        The examples (one per query) and mining statistics.
    """
    stats = MiningStats(queries=len(queries))
    examples: list[Example] = []
    if num_negatives <= 0 or not len(queries):
        for q in queries:
            examples.append(Example(q.text, q.positive or positives[q.chunk_id], [], q.source))
        return examples, stats

    pos_scores = np.einsum("ij,ij->i", query_vectors, positive_vectors)
    hits = search(query_vectors, depth + skip_top + 1)
    pos_hash = {q.chunk_id: text_hash(positives[q.chunk_id]) for q in queries}  # only the chunks queries point at
    picked: list[list[str]] = []
    for q, pos_score, cands in zip(queries, pos_scores, hits):
        banned = {q.chunk_id} | (relevant or {}).get(q.text, set())
        chosen: list[str] = []
        rank = 0
        for key, score in cands:
            if key in banned:
                continue
            rank += 1
            if rank <= skip_top:
                continue
            if score >= pos_score * (1.0 - relative_margin):
                stats.dropped_false_negative += 1
                continue
            chosen.append(key)
            if len(chosen) >= num_negatives:
                break
        picked.append(chosen)

    need = sorted({k for ks in picked for k in ks if k not in positives})
    texts = dict(positives)
    if need:
        texts.update(fetch_texts(need))
    rng = random.Random(seed)
    pool = sorted(positives)
    pool_keys = set(pool)
    for q, chosen in zip(queries, picked):
        pos_text = q.positive or positives[q.chunk_id]
        negs = []
        for k in chosen:
            t = texts.get(k)
            if t is None:
                continue
            if text_hash(t) == pos_hash.get(q.chunk_id):
                stats.dropped_same_text += 1
                continue
            negs.append(t)
        if not negs:
            stats.without_hard_negative += 1
        # MNRL needs a fixed number of columns: fill missing negatives with random chunks,
        # drawn from the pool keys that are neither this query's chunk nor relevant to it.
        banned = {q.chunk_id} | (relevant or {}).get(q.text, set())
        if len(negs) < num_negatives and len(pool_keys) > len(banned & pool_keys):
            while len(negs) < num_negatives:  # ends: at least one key of the pool is allowed
                k = rng.choice(pool)
                if k not in banned:
                    negs.append(positives[k])
                    stats.filled_random += 1
        if len(negs) < num_negatives:
            stats.short_of_negatives += 1  # every chunk is this query's own or relevant to it
        stats.negatives += len(negs)
        examples.append(Example(q.text, pos_text, negs[:num_negatives], q.source))
    if stats.short_of_negatives:
        logger.warning("%d of %d queries have fewer than %d negatives (no other chunk to fill in with); "
                       "training uses the fewest any example has", stats.short_of_negatives, len(queries),
                       num_negatives)
    return examples, stats


def texts_from_records(records, text_field: str) -> dict[str, str]:
    """Map scrolled/retrieved records to ``{key: text}``, skipping unusable payloads."""
    out = {}
    for r in records:
        text, _ = extract_text(r.payload, text_field)
        if text:
            out[str(r.id)] = text
    return out


def count_sources(examples: Sequence[Example]) -> dict[str, int]:
    return dict(Counter(e.source for e in examples))
