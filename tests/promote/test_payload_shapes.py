"""Collections written by other tools: LangChain payloads, extra sparse vectors, named vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.cli import PERMISSIVE, invoke, qdrant

pytestmark = pytest.mark.slow  # adopt + train + promote per test


def _encode(texts):
    from vectune.config.settings import Settings
    from vectune.models.store import ModelStore

    return ModelStore.from_settings(Settings()).load("bundled:all-MiniLM-L6-v2").encode_passages(texts)


def test_langchain_payloads_with_sparse_vector_survive_promotion(home, corpus_records):
    """page_content + metadata payloads, an unnamed dense vector and a sparse one; adopt, tune, promote."""
    from qdrant_client import models

    texts = [r["text"] for r in corpus_records]
    vecs = _encode(texts)
    sparse = {i: models.SparseVector(indices=[i, i + 100], values=[0.5, 0.25]) for i in range(len(texts))}
    with qdrant() as c:
        c.create_collection("lc", vectors_config={"": models.VectorParams(size=384, distance=models.Distance.COSINE)},
                            sparse_vectors_config={"bm25": models.SparseVectorParams()})
        c.upsert("lc", [models.PointStruct(id=i, vector={"": v.tolist(), "bm25": sparse[i]},
                                           payload={"page_content": t, "metadata": {"source": f"doc{i}.md"}})
                        for i, (t, v) in enumerate(zip(texts, vecs))])
    invoke("adopt", "--collection", "lc", "--alias", "kb", "--model", "bundled:all-MiniLM-L6-v2",
           "--text-field", "langchain")
    out = invoke("run", "--alias", "kb", "--text-field", "langchain", "--json", *PERMISSIVE)
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["status"] == "promoted", rep.get("reason")
    new = rep["new_collection"]
    with qdrant() as c:
        info = c.get_collection(new)
        assert "bm25" in info.config.params.sparse_vectors
        for p in c.scroll(new, limit=100, with_vectors=True)[0]:
            sv = p.vector["bm25"]
            assert list(sv.indices) == [p.id, p.id + 100] and np.allclose(sv.values, [0.5, 0.25])
            assert p.payload["metadata"] == {"source": f"doc{p.id}.md"}
        assert c.count(new).count == len(texts)


def test_named_dense_vector(home, corpus_records):
    from qdrant_client import models

    texts = [r["text"] for r in corpus_records]
    vecs = _encode(texts)
    with qdrant() as c:
        c.create_collection("nv", vectors_config={
            "dense": models.VectorParams(size=384, distance=models.Distance.COSINE),
            "other": models.VectorParams(size=4, distance=models.Distance.DOT)})
        c.upsert("nv", [models.PointStruct(id=i, vector={"dense": v.tolist(), "other": [1.0, 2.0, 3.0, float(i)]},
                                           payload={"content": t}) for i, (t, v) in enumerate(zip(texts, vecs))])
    out = invoke("adopt", "--collection", "nv", "--alias", "n", "--model", "bundled:all-MiniLM-L6-v2",
                 "--text-field", "haystack", expect=3)
    assert "several named vectors" in out.output
    invoke("adopt", "--collection", "nv", "--alias", "n", "--model", "bundled:all-MiniLM-L6-v2",
           "--text-field", "haystack", "--vector-name", "dense")
    out = invoke("run", "--alias", "n", "--text-field", "haystack", "--json", *PERMISSIVE)
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["status"] == "promoted"
    with qdrant() as c:
        p = c.retrieve(rep["new_collection"], [3], with_vectors=True)[0]
        assert p.vector["other"] == [1.0, 2.0, 3.0, 3.0]
        assert len(p.vector["dense"]) == 384
