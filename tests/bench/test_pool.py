"""bench/pool.py's corpora: the sample holds every positive, widening adds each query's exact nearest points."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from vectune.pipeline.train.query.candidates import stored_corpus, widen_corpus

_spec = importlib.util.spec_from_file_location("bench_pool", Path(__file__).resolve().parents[2] / "bench" / "pool.py")
pool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pool)


def _world(n: int = 50, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, d)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    keys = [f"k{i:03d}" for i in range(n)]
    chunks = {k: SimpleNamespace(key=k, vector=v) for k, v in zip(keys, vecs)}
    return keys, vecs, chunks


def test_sampled_read_holds_the_sample_and_every_positive():
    keys, _, chunks = _world()
    positives = [{"k001", "k002"}, {"k049"}]
    a = pool.sampled_read(chunks, positives, 10, seed=3, meta={})
    b = pool.sampled_read(chunks, positives, 10, seed=3, meta={})
    assert set(a.by_key) == set(b.by_key)  # seeded
    assert {"k001", "k002", "k049"} <= set(a.by_key)
    assert 10 <= len(a.by_key) <= 13
    assert a.stats.usable == 50
    got, vecs = stored_corpus(a, positives, 10 ** 9)
    assert set(got) == set(a.by_key) and vecs.shape == (len(got), 8)


def test_widen_corpus_adds_each_querys_exact_nearest():
    keys, vecs, chunks = _world()
    positives = [{"k000"}, {"k001"}]
    read = pool.sampled_read(chunks, positives, 5, seed=1, meta={})
    texts = ["q0", "q1"]
    qv = vecs[[10, 20]] + 0.01
    live = pool.KnownQueries(None, texts, qv)
    done = widen_corpus(pool.ExactStore(keys, vecs), read, live, texts, 4)
    scores = qv @ vecs.T
    want = {keys[j] for row in np.argsort(-scores, axis=1)[:, :4] for j in row}
    assert want <= set(read.by_key)
    assert done["nearest"] == len(want) and done["corpus"] == len(read.by_key)


def test_ci_is_the_mean_difference_in_points():
    live = np.array([0.5, 0.5, 0.5, 0.5])
    cand = np.array([0.6, 0.6, 0.6, 0.6])
    d, lo, hi = pool.ci(live, cand)
    assert d == lo == hi == 10.0
