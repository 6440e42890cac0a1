"""The gate judges query-side candidates on the whole live collection, not on a sample of it.

A collection of 300 points, an evaluation cap of 40 (the old sample: the 40 chunks the queries point at). Each
query has three distractors (points no query points at) that the candidate's query vector is drawn to and the
live one is not. On the sample the distractors are gone, the candidate looks far better and would be promoted;
on the whole collection, which is what the app searches, it is worse, and the gate keeps the live model.
The truth is computed by brute force over every point, independently of the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import models as qm

from vectune.config.sections import CollectionConfig, GateConfig, ReadConfig
from vectune.pipeline.evaluate import EvalQuery, evaluate, evaluate_candidate, scan_top
from vectune.pipeline.gate import decide
from vectune.pipeline.pairs.labeled import LabeledQuery
from vectune.pipeline.read import ReadResult, sample_collection

Q, D = 40, 160  # queries; dimensions: e_i the answers, e_{Q+i} the distractors' direction, the rest filler


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def _e(i, w=1.0):
    v = np.zeros(D, dtype=np.float32)
    v[i] = w
    return v


class _Queries:
    """An encoder stand-in: a fixed query vector per text (the scoring under test is real)."""

    def __init__(self, vectors):
        self.vectors = vectors

    def encode_queries(self, texts):
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, D), np.float32)


@pytest.fixture
def collection(memory_store):
    rng = np.random.default_rng(3)
    points, pid = [], 0

    def add(vec, text):
        nonlocal pid
        pid += 1
        points.append(qm.PointStruct(id=pid, vector=_unit(vec).tolist(), payload={"text": text}))
        return str(pid)

    answers = [add(_e(i), f"answer {i} text long enough to be a chunk") for i in range(Q)]
    for i in range(Q):
        for j in range(3):
            add(_e(i, 0.2) + _e(Q + i) + _e(2 * Q + j, 0.1), f"distractor {i}.{j} text long enough to be a chunk")
    while pid < 300:
        add(rng.normal(size=D) * np.r_[np.zeros(3 * Q), np.ones(D - 3 * Q)], f"filler {pid} text long enough here")
    memory_store.client.create_collection("live", vectors_config=qm.VectorParams(size=D, distance=qm.Distance.COSINE))
    memory_store.client.upsert("live", points=points, wait=True)
    spec = memory_store.dense_spec("live", None)
    cfg = ReadConfig(min_chars=5)
    chunks, stats, fp = sample_collection(memory_store, "live", spec, cfg, "text", seed=1, keep=300)
    rd = ReadResult("live", {"model_ref": "m"}, spec, CollectionConfig(), chunks, stats, fp, {c.key: c for c in chunks})
    live_q = {f"q{i}": _unit(_e(i) + _e((i + 1) % Q, 1.2)) for i in range(Q)}  # the answer second, no distractor
    cand_q = {f"q{i}": _unit(_e(i) + _e(Q + i)) for i in range(Q)}  # drawn to the distractors
    golden = [LabeledQuery(f"q{i}", {answers[i]}) for i in range(Q)]
    truth = {name: _brute_force(points, vecs, golden) for name, vecs in (("live", live_q), ("cand", cand_q))}
    return memory_store, rd, _Queries(live_q), _Queries(cand_q), golden, truth


def _brute_force(points, qvecs, golden):
    keys = [str(p.id) for p in points]
    corpus = np.stack([np.asarray(p.vector, dtype=np.float32) for p in points])
    qs = [EvalQuery(q.text, q.relevant) for q in golden]
    return evaluate(np.stack([qvecs[q.text] for q in golden]), corpus, keys, qs)


class _Pairs:
    eval_queries: list = []


def _judge(store, rd, live, cand, golden, whole):
    cfg = GateConfig(eval_corpus_cap=Q, whole_collection=whole)
    out = evaluate_candidate(store, rd, _Pairs(), live, cand, cfg, golden, reencode=False)
    lr, cr = out.results["golden"]
    return out, decide(lr, cr, metric="ndcg@10", evidence="golden", min_delta=0.005, test="permutation")


def test_a_distractor_outside_the_old_sample_turns_a_promotion_into_a_keep(collection):
    store, rd, live, cand, golden, truth = collection
    capped, d_capped = _judge(store, rd, live, cand, golden, whole=False)
    assert capped.counts["eval_corpus"] == {"size": Q, "capped": True, "cap": Q}  # the old sample: answers only
    assert d_capped.promote and d_capped.delta > 0.3  # the sample's verdict: a big win

    whole, d_whole = _judge(store, rd, live, cand, golden, whole=True)
    assert whole.counts["eval_corpus"]["whole"] and whole.counts["eval_corpus"]["size"] == 300
    lr, cr = whole.results["golden"]
    for mine, true in ((lr, truth["live"]), (cr, truth["cand"])):  # exactly what brute force over all 300 says
        for m, v in true.per_query.items():
            assert np.allclose(mine.per_query[m], v), m
    assert not d_whole.promote and d_whole.delta < 0  # the app's verdict: worse; kept
    assert d_whole.delta == pytest.approx(truth["cand"].means["ndcg@10"] - truth["live"].means["ndcg@10"], abs=1e-9)


def test_a_small_collection_is_scored_as_before(collection):
    store, rd, live, cand, golden, truth = collection
    cfg = GateConfig(eval_corpus_cap=20000)  # everything fits: the in-memory corpus is the collection
    out = evaluate_candidate(store, rd, _Pairs(), live, cand, cfg, golden, reencode=False)
    assert out.counts["eval_corpus"] == {"size": 300, "capped": False, "cap": 20000}
    assert np.allclose(out.results["golden"][1].per_query["ndcg@10"], truth["cand"].per_query["ndcg@10"])


@pytest.mark.parametrize("batch", [1, 7, 64, 1000])
def test_scan_top_is_exact_whatever_the_page_size(collection, batch):
    store, rd, live, cand, golden, truth = collection
    mats = {"live": live.encode_queries([q.text for q in golden]), "none": np.zeros((0, D), np.float32)}
    keys, top, seen = scan_top(store, "live", rd.spec, mats, k=10, batch=batch)
    assert seen == 300 and "none" not in top and top["live"].shape == (Q, 10)
    points = store.client.scroll("live", limit=1000, with_vectors=True)[0]
    corpus = np.stack([_unit(p.vector) for p in points])
    q = mats["live"]
    for i in range(Q):
        expect = np.argsort(-(corpus @ q[i]), kind="stable")[:10]
        got = [keys[j] for j in top["live"][i]]
        assert np.allclose(sorted(corpus[expect] @ q[i]), sorted(corpus[[int(g) - 1 for g in got]] @ q[i]))


def test_the_live_side_is_scanned_once_and_shared_by_every_candidate(collection, monkeypatch):
    import vectune.pipeline.evaluate as ev

    store, rd, live, cand, golden, truth = collection
    asked = []
    real = ev.scan_top

    def spy(store, collection, spec, queries, **kw):
        asked.append(sorted(queries))
        return real(store, collection, spec, queries, **kw)

    monkeypatch.setattr(ev, "scan_top", spy)
    cfg, shared = GateConfig(eval_corpus_cap=Q), {}
    first = evaluate_candidate(store, rd, _Pairs(), live, cand, cfg, golden, reencode=False, live=shared)
    second = evaluate_candidate(store, rd, _Pairs(), live, live, cfg, golden, reencode=False, live=shared)
    assert asked == [[("cand", "golden"), ("live", "golden")], [("cand", "golden")]]
    assert second.results["golden"][0] is first.results["golden"][0]  # the same live result
    assert np.allclose(second.results["golden"][1].per_query["ndcg@10"], truth["live"].per_query["ndcg@10"])
