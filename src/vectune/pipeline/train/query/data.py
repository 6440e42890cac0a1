"""Query-side training data: labels resolved to rows of the in-memory corpus, or of a pool standing in for it.

A corpus that fits in ``QueryConfig.corpus_max`` vectors is held whole: every query's loss runs
against every stored vector. A larger one is replaced by a pool: every positive, the
``pool_negatives`` hardest negatives of each query (mined with the live query vectors, streaming
the corpus), and a seeded random sample of the rest."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vectune.config.sections import QueryConfig
from vectune.errors import BadInput
from vectune.pipeline.train.query.stats import Positives

logger = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Training data resolved to rows of the in-memory corpus tensor."""

    corpus: Any  # torch.Tensor (N, d), L2-normalised, on the device
    pos_rows: list[np.ndarray]  # per kept query: rows of its positives
    pos_gain: list[np.ndarray]  # per kept query: their grades (> 0)
    kept: list[int]  # index into the caller's queries of each kept query
    dropped: int
    pooled: bool


def normalise_positives(positives: Sequence[Positives], n: int) -> list[dict[str, float]]:
    if len(positives) != n:
        raise BadInput(f"{n} queries but {len(positives)} positive lists: give one per query")
    out = []
    for p in positives:
        if isinstance(p, Mapping):
            out.append({str(k): float(g) for k, g in p.items() if float(g) > 0})
        elif isinstance(p, str):
            out.append({p: 1.0})
        else:
            out.append({str(k): 1.0 for k in p})
    return out


def as_unit_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 rows with unit norm (a copy only when needed)."""
    arr = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1)
    if arr.size and not np.allclose(norms, 1.0, atol=1e-3):
        logger.info("stored vectors are not unit-norm: normalising a copy for the query-side loss")
        arr = arr / np.maximum(norms[:, None], 1e-12)
    return np.ascontiguousarray(arr)


def mine_rows(query_vecs: np.ndarray, corpus_vectors: Any, k: int, exclude: list[set[int]],
               chunk: int = 65_536) -> list[np.ndarray]:
    """Top-``k`` corpus rows per query by inner product, skipping each query's ``exclude`` rows.

    Streams the corpus in chunks, so ``corpus_vectors`` may be a memory map larger than memory.
    """
    n = query_vecs.shape[0]
    want = [k + len(e) for e in exclude]
    top_s = [np.empty(0, np.float32) for _ in range(n)]
    top_i = [np.empty(0, np.int64) for _ in range(n)]
    total = corpus_vectors.shape[0]
    for start in range(0, total, chunk):
        block = as_unit_rows(corpus_vectors[start:start + chunk])
        scores = query_vecs @ block.T
        for q in range(n):
            kk = min(want[q], scores.shape[1])
            part = np.argpartition(-scores[q], kk - 1)[:kk]
            s = np.concatenate([top_s[q], scores[q, part]])
            i = np.concatenate([top_i[q], part + start])
            keep = np.argsort(-s)[:want[q]]
            top_s[q], top_i[q] = s[keep], i[keep]
    return [np.array([r for r in rows if r not in ex][:k], dtype=np.int64) for rows, ex in zip(top_i, exclude)]


def prepare(positives: Sequence[Positives], n_queries: int, corpus_vectors: Any, corpus_keys: Sequence[str],
             negatives: Sequence[Sequence[str]] | None, cfg: QueryConfig, seed: int, live_query_vecs,
            device: str) -> TrainingData:
    """Resolve positives to corpus rows and load the corpus (or a pool standing in for it) as a tensor.

    Args:
        positives: per query, its positive keys (or key -> grade).
        n_queries: number of queries.
        corpus_vectors: (N, d) stored vectors (array or memory map).
        corpus_keys: key of each row.
        negatives: optional per-query hard-negative keys (added to the pool).
        cfg: the query-side settings (``corpus_max``, ``pool_negatives``).
        seed: seed of the pool's random sample.
        live_query_vecs: a callable returning the live query vectors (only called when mining is needed).
        device: torch device.

    Returns:
        The resolved data.
    """
    import torch

    if len(corpus_keys) != corpus_vectors.shape[0]:
        raise BadInput(f"{corpus_vectors.shape[0]} corpus vectors but {len(corpus_keys)} keys")
    if negatives is not None and len(negatives) != n_queries:
        raise BadInput(f"{n_queries} queries but {len(negatives)} negative lists")
    pos = normalise_positives(positives, n_queries)
    row_of = {str(k): i for i, k in enumerate(corpus_keys)}
    kept, rows, gains = [], [], []
    for qi, p in enumerate(pos):
        found = [(row_of[k], g) for k, g in p.items() if k in row_of]
        if found:
            kept.append(qi)
            rows.append(np.array([r for r, _ in found], dtype=np.int64))
            gains.append(np.array([g for _, g in found], dtype=np.float32))
    dropped = n_queries - len(kept)
    if dropped:
        logger.info("%d of %d queries have no positive among the %d corpus keys: left out", dropped, n_queries,
                    len(corpus_keys))
    if len(kept) < 2:
        raise BadInput(f"only {len(kept)} queries have a positive in the corpus: need at least 2 to train")

    total = corpus_vectors.shape[0]
    if total <= cfg.corpus_max:
        corpus = torch.from_numpy(as_unit_rows(corpus_vectors)).to(device)
        return TrainingData(corpus, rows, gains, kept, dropped, pooled=False)

    # The corpus does not fit: positives + hard negatives (given, and mined with the live query
    # vectors) + a random sample of the rest, up to max_corpus_vectors rows.
    pool: set[int] = set()
    for r in rows:
        pool.update(int(x) for x in r)
    if negatives is not None:
        for qi in kept:
            pool.update(row_of[str(k)] for k in negatives[qi] if str(k) in row_of)
    if cfg.pool_negatives > 0:
        qv = np.asarray(live_query_vecs(kept), dtype=np.float32)
        for mined in mine_rows(qv, corpus_vectors, cfg.pool_negatives, [set(map(int, r)) for r in rows]):
            pool.update(int(x) for x in mined)
    if len(pool) > cfg.corpus_max:
        raise BadInput(f"positives and hard negatives alone are {len(pool)} vectors, over query_corpus_max "
                       f"({cfg.corpus_max}): raise VECTUNE_QUERY_CORPUS_MAX or lower VECTUNE_QUERY_POOL_NEGATIVES")
    rng = np.random.default_rng(seed)
    room = cfg.corpus_max - len(pool)
    if room:
        # draw a few more than the room (some draws are already in the pool), then keep the first new ones
        extra = rng.choice(total, size=min(total, room + len(pool)), replace=False)
        fresh = [int(x) for x in extra if int(x) not in pool][:room]
        pool.update(fresh)
    pool_rows = np.array(sorted(pool), dtype=np.int64)
    remap = {int(r): i for i, r in enumerate(pool_rows)}
    rows = [np.array([remap[int(x)] for x in r], dtype=np.int64) for r in rows]
    corpus = torch.from_numpy(as_unit_rows(np.asarray(corpus_vectors[pool_rows]))).to(device)
    logger.info("corpus of %d vectors over query_corpus_max=%d: training against a pool of %d", total,
                cfg.corpus_max, len(pool_rows))
    return TrainingData(corpus, rows, gains, kept, dropped, pooled=True)


def split_slice(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) positions among ``n`` kept queries."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = 0 if frac <= 0 else min(n - 1, max(1, int(round(frac * n))))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def new_doc_mask(data: TrainingData, tr: np.ndarray, va: np.ndarray) -> np.ndarray:
    """Which slice queries have no positive that a training query also has."""
    seen: set[int] = set()
    for i in tr:
        seen.update(int(x) for x in data.pos_rows[i])
    return np.array([not seen.intersection(int(x) for x in data.pos_rows[i]) for i in va], dtype=bool)
