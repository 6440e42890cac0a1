"""The round-trip filter (vectune.pipeline.pairs.teachers.roundtrip): keep a query only if it retrieves its chunk."""

from __future__ import annotations

import numpy as np
import pytest

from vectune.pipeline.pairs.teachers.base import Query
from vectune.pipeline.pairs.teachers.roundtrip import roundtrip_filter


# --------------------------------------------------------------------------- round trip
def test_roundtrip_filter():
    # chunk vectors: one-hot; a query "points at" the chunk named in its text
    keys = ["a", "b", "c", "d"]
    corpus = np.eye(4, dtype=np.float32)

    def encode(texts):
        return np.stack([corpus[keys.index(t.split()[-1])] for t in texts])

    def search(vectors, k):
        order = np.argsort(-(vectors @ corpus.T), axis=1, kind="stable")[:, :k]
        return [[keys[j] for j in row] for row in order]

    queries = [
        Query("about a", "a", "openai"),
        Query("about b", "b", "openai"),
        Query("about c", "a", "openai"),  # retrieves c, not its own chunk
        Query("about d", "d", "openai"),
    ]
    kept, dropped = roundtrip_filter(queries, encode, search, top_k=1, batch_size=3)
    assert [q.text for q in kept] == ["about a", "about b", "about d"] and dropped == 1
    kept, dropped = roundtrip_filter(queries, encode, search, top_k=4)
    assert len(kept) == 4 and dropped == 0
    assert roundtrip_filter([], encode, search, top_k=1) == ([], 0)
    with pytest.raises(ValueError):
        roundtrip_filter(queries, encode, search, top_k=0)
