"""candidates.widen_corpus: a collection larger than the in-memory sample lends its real hard negatives."""

from __future__ import annotations

import numpy as np
from qdrant_client import models as qm

from vectune.config.sections import CollectionConfig, ReadConfig
from vectune.pipeline.read import ReadResult, sample_collection
from vectune.pipeline.train.query.candidates import stored_corpus, widen_corpus

D = 16


class _Queries:
    def __init__(self, vectors):
        self.vectors = vectors

    def encode_queries(self, texts):
        return np.stack([self.vectors[t] for t in texts])


def _collection(store, n=200, seed=0):
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, D)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store.client.create_collection("live", vectors_config=qm.VectorParams(size=D, distance=qm.Distance.COSINE))
    store.client.upsert("live", points=[qm.PointStruct(id=i + 1, vector=v.tolist(), payload={"text": f"chunk {i} text"})
                                        for i, v in enumerate(vecs)], wait=True)
    return vecs


def _read(store, keep):
    spec = store.dense_spec("live", None)
    chunks, stats, fp = sample_collection(store, "live", spec, ReadConfig(min_chars=5), "text", seed=1, keep=keep)
    return ReadResult("live", {"model_ref": "m"}, spec, CollectionConfig(), chunks, stats, fp,
                      {c.key: c for c in chunks})


def test_each_training_querys_nearest_points_join_the_corpus_with_their_stored_vectors(memory_store):
    vecs = _collection(memory_store)
    rd = _read(memory_store, keep=30)
    qv = {f"q{i}": vecs[i] + 0.01 for i in range(0, 100, 10)}  # ten queries near chunks 0, 10, ... 90
    truth = {str(j + 1) for v in qv.values() for j in np.argsort(-(vecs @ (v / np.linalg.norm(v))))[:5]}
    missing = truth - set(rd.by_key)
    assert missing  # the sample of 30 lacks most of them

    done = widen_corpus(memory_store, rd, _Queries(qv), sorted(qv), per_query=5)
    assert truth <= set(rd.by_key) and done["nearest"] == len(truth) and done["added"] == len(missing)
    for k in truth:
        assert np.allclose(rd.by_key[k].vector / np.linalg.norm(rd.by_key[k].vector), vecs[int(k) - 1], atol=1e-6)
    keys, _ = stored_corpus(rd, [set()], cap=1000)
    assert truth <= set(keys)  # the trainer's softmax runs over them


def test_nothing_changes_when_the_sample_is_the_whole_collection(memory_store):
    vecs = _collection(memory_store, n=50)
    rd = _read(memory_store, keep=50)
    before = dict(rd.by_key)
    assert widen_corpus(memory_store, rd, _Queries({"q": vecs[0]}), ["q"], per_query=5) == {}
    assert rd.by_key == before


def test_above_the_cap_every_positive_stays_and_the_rest_is_a_sample_not_the_first_keys(memory_store):
    _collection(memory_store, n=120)
    rd = _read(memory_store, keep=120)
    positives = [{"100", "7"}, {"55"}]
    keys, vecs = stored_corpus(rd, positives, cap=40)
    assert len(keys) == 40 == vecs.shape[0] and {"100", "7", "55"} <= set(keys)
    rest = [k for k in keys if k not in {"100", "7", "55"}]
    first = sorted(k for k in rd.by_key if k not in {"100", "7", "55"})[:37]
    assert rest != first and stored_corpus(rd, positives, cap=40)[0] == keys  # a seeded sample


def test_neighbours_mining_found_are_reused_not_searched_again(memory_store, monkeypatch):
    vecs = _collection(memory_store)
    qv = {f"q{i}": vecs[i] + 0.01 for i in range(0, 100, 10)}
    searched = []
    real = memory_store.search_batch

    def spy(name, vectors, limit, **kw):
        searched.append(len(vectors))
        return real(name, vectors, limit, **kw)

    monkeypatch.setattr(memory_store, "search_batch", spy)
    fresh = _read(memory_store, keep=30)
    widen_corpus(memory_store, fresh, _Queries(qv), sorted(qv), per_query=5)
    assert searched == [10]
    hits = real("live", np.stack([qv[t] for t in sorted(qv)]), 8)
    known = {t: [str(p) for p, _ in h] for t, h in zip(sorted(qv), hits)}  # as mining records them, deeper
    known.pop("q50")  # one query mining did not search
    reused = _read(memory_store, keep=30)
    widen_corpus(memory_store, reused, _Queries(qv), sorted(qv), per_query=5, known=known)
    assert searched == [10, 1]  # only the query without neighbours was searched
    assert set(reused.by_key) == set(fresh.by_key)  # the same corpus either way
