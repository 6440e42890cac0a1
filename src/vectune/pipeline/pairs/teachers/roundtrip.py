"""Promptagator-style round-trip consistency filter.

A generated query is kept only if retrieving with it brings back the chunk it was
written for within the top ``k``. Queries the retriever cannot connect to their own
chunk are usually too generic or wrong, and train the model on noise.

The filter knows nothing about models or Qdrant: the caller passes an encoder and a
search function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from vectune.pipeline.pairs.teachers.base import Query

logger = logging.getLogger(__name__)


def roundtrip_filter(
    queries: Sequence[Query],
    encode_queries: Callable[[list[str]], np.ndarray],
    search: Callable[[np.ndarray, int], list[list[str]]],
    top_k: int,
    batch_size: int = 256,
) -> tuple[list[Query], int]:
    """Keep the queries whose own chunk is in the top ``top_k`` of a search with them.

    Args:
        queries: the generated queries; ``Query.chunk_id`` names the chunk key.
        encode_queries: texts -> a ``(len(texts), dim)`` array of query vectors.
        search: ``(vectors, k)`` -> for each vector, the ranked chunk keys (strings)
            of its top ``k`` hits.
        top_k: how deep the own chunk may rank and still count.
        batch_size: queries encoded and searched per call.

    Returns:
        ``(kept, dropped)``: kept queries in their original order and how many were dropped.

    Raises:
        ValueError: ``top_k`` < 1, or the callables return the wrong number of rows.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    queries = list(queries)
    kept: list[Query] = []
    for start in range(0, len(queries), batch_size):
        batch = queries[start : start + batch_size]
        vectors = np.asarray(encode_queries([q.text for q in batch]))
        if len(vectors) != len(batch):
            raise ValueError(f"encode_queries returned {len(vectors)} vectors for {len(batch)} queries")
        hits = search(vectors, top_k)
        if len(hits) != len(batch):
            raise ValueError(f"search returned {len(hits)} result lists for {len(batch)} queries")
        for q, ranked in zip(batch, hits):
            if str(q.chunk_id) in {str(k) for k in list(ranked)[:top_k]}:
                kept.append(q)
    dropped = len(queries) - len(kept)
    logger.info("round-trip filter (top %d): kept %d of %d queries", top_k, len(kept), len(queries))
    return kept, dropped
