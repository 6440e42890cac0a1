"""Evaluate stage: live vs candidate on the same queries against the same corpus.

Exact search (a matrix product) over a capped corpus, per-query metric values so
the gate can run a paired bootstrap. The live side scores against the vectors
stored in Qdrant (no re-encoding); the candidate encodes the same corpus, and those
embeddings are kept for the reindex when the corpus is the whole collection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")


@dataclass
class EvalQuery:
    """A query with the keys of the chunks that answer it."""

    text: str
    relevant: set[str]
    source: str = ""


@dataclass
class EvalResult:
    """Mean metrics plus per-query values (for the bootstrap)."""

    means: dict[str, float]
    per_query: dict[str, np.ndarray] = field(repr=False)
    queries: int = 0
    corpus: int = 0

    def to_dict(self) -> dict:
        return {"queries": self.queries, "corpus": self.corpus, **{k: round(v, 4) for k, v in self.means.items()}}


def rank(query_vectors: np.ndarray, corpus_vectors: np.ndarray, k: int = 10) -> np.ndarray:
    """Indices of the top-k corpus rows per query, best first (exact inner product)."""
    k = min(k, corpus_vectors.shape[0])
    out = np.empty((query_vectors.shape[0], k), dtype=np.int64)
    for i in range(0, query_vectors.shape[0], 256):
        scores = query_vectors[i:i + 256] @ corpus_vectors.T
        part = np.argpartition(-scores, kth=k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
        out[i:i + 256] = np.take_along_axis(part, order, axis=1)
    return out


def score(top: np.ndarray, corpus_keys: list[str], queries: list[EvalQuery]) -> EvalResult:
    """Compute recall@1/5/10, MRR@10 and nDCG@10 per query from ranked indices.

    Args:
        top: ``rank()`` output.
        corpus_keys: key of each corpus row.
        queries: the queries, in the same order as ``top``'s rows.

    Returns:
        The result with means and per-query arrays.
    """
    n = len(queries)
    per = {m: np.zeros(n, dtype=np.float64) for m in METRICS}
    discounts = 1.0 / np.log2(np.arange(2, 12))
    for i, q in enumerate(queries):
        hits = np.array([corpus_keys[j] in q.relevant for j in top[i][:10]], dtype=bool)
        nrel = max(1, len(q.relevant))
        for k in (1, 5, 10):
            per[f"recall@{k}"][i] = hits[:k].sum() / nrel
        first = np.flatnonzero(hits)
        per["mrr@10"][i] = 1.0 / (first[0] + 1) if first.size else 0.0
        dcg = float((hits * discounts[: hits.size]).sum())
        idcg = float(discounts[: min(nrel, 10)].sum())
        per["ndcg@10"][i] = dcg / idcg if idcg else 0.0
    means = {m: float(v.mean()) if n else 0.0 for m, v in per.items()}
    return EvalResult(means=means, per_query=per, queries=n, corpus=len(corpus_keys))


def evaluate(query_vectors: np.ndarray, corpus_vectors: np.ndarray, corpus_keys: list[str],
             queries: list[EvalQuery]) -> EvalResult:
    """Rank and score in one call."""
    if not queries:
        return EvalResult(means={m: 0.0 for m in METRICS}, per_query={m: np.zeros(0) for m in METRICS},
                          queries=0, corpus=len(corpus_keys))
    return score(rank(query_vectors, corpus_vectors, 10), corpus_keys, queries)
