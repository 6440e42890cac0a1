"""evaluate.py: metrics per query, and the evaluation corpus."""

from __future__ import annotations

import numpy as np
import pytest

from vectune.core.chunks import Chunk
from vectune.pipeline.evaluate import EvalQuery, eval_corpus, evaluate


def test_metrics_on_a_known_ranking():
    corpus = np.eye(4, dtype=np.float32)
    keys = ["a", "b", "c", "d"]
    q = np.array([[0.1, 0.9, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=np.float32)  # ranks: b,c,a,d ; a,...
    res = evaluate(q, corpus, keys, [EvalQuery("q1", {"c"}), EvalQuery("q2", {"a", "d"})])
    assert res.per_query["recall@1"].tolist() == [0.0, 0.5]
    assert res.per_query["mrr@10"].tolist() == pytest.approx([0.5, 1.0])
    assert res.per_query["recall@5"].tolist() == [1.0, 1.0]
    ndcg_q1 = (1 / np.log2(3)) / 1.0
    assert res.per_query["ndcg@10"][0] == pytest.approx(ndcg_q1)
    assert res.queries == 2 and res.corpus == 4


def test_no_queries_scores_zero():
    res = evaluate(np.zeros((0, 2)), np.eye(2), ["a", "b"], [])
    assert res.queries == 0 and res.means["recall@5"] == 0.0


def _chunks(n):
    return [Chunk(f"k{i:03d}", i, f"text {i}") for i in range(n)]


def test_eval_corpus_keeps_every_required_chunk_under_the_cap():
    chunks = _chunks(50)
    by_key = {c.key: c for c in chunks}
    must = {"k007", "k049", "k020"}
    out = eval_corpus(chunks, by_key, must, cap=10, seed=1)
    keys = [c.key for c in out]
    assert len(out) == 10 and must <= set(keys) and keys == sorted(keys)
    assert [c.key for c in eval_corpus(chunks, by_key, must, cap=10, seed=1)] == keys  # seeded
    assert len(eval_corpus(chunks, by_key, must, cap=100, seed=1)) == 50


def test_graded_ndcg_decides_where_binary_sees_no_difference():
    """Grades 1/2 reach the gate: with both answers in the top 2, binary nDCG ties; graded prefers grade 2 first."""
    from vectune.pipeline.gate import decide

    corpus = np.eye(3, dtype=np.float32)
    keys = ["a", "b", "c"]
    live_q = np.tile([[0.5, 0.9, 0.0]], (40, 1)).astype(np.float32)  # ranks b (grade 1) before a (grade 2)
    cand_q = np.tile([[0.9, 0.5, 0.0]], (40, 1)).astype(np.float32)  # ranks a before b
    graded = [EvalQuery(f"q{i}", {"a", "b"}, "golden", {"a": 2.0, "b": 1.0}) for i in range(40)]
    binary = [EvalQuery(f"q{i}", {"a", "b"}, "golden") for i in range(40)]

    g_live, g_cand = evaluate(live_q, corpus, keys, graded), evaluate(cand_q, corpus, keys, graded)
    b_live, b_cand = evaluate(live_q, corpus, keys, binary), evaluate(cand_q, corpus, keys, binary)
    disc = 1 / np.log2(3)
    assert b_live.means["ndcg@10"] == pytest.approx(1.0) == b_cand.means["ndcg@10"]
    assert g_cand.means["ndcg@10"] == pytest.approx(1.0)
    assert g_live.means["ndcg@10"] == pytest.approx((1 + 2 * disc) / (2 + disc))

    kw = dict(metric="ndcg@10", evidence="golden", min_delta=0.005, test="permutation")
    assert decide(g_live, g_cand, **kw).promote
    assert not decide(b_live, b_cand, **kw).promote


def test_ndcg_is_the_one_graded_definition():
    from vectune.pipeline.evaluate import ndcg

    assert ndcg([2, 1, 0], [2, 1]) == pytest.approx(1.0)
    assert ndcg([1, 2, 0], [2, 1]) == pytest.approx((1 + 2 / np.log2(3)) / (2 + 1 / np.log2(3)))
    assert ndcg([0, 0], [1]) == 0.0 and ndcg([1], []) == 0.0


def test_outcome_reports_a_delta_interval_per_metric():
    from vectune.pipeline.evaluate import EvalOutcome, EvalResult

    half = np.r_[np.zeros(25), np.ones(25)]
    live = EvalResult({"ndcg@10": 0.0, "recall@5": 0.5}, {"ndcg@10": np.zeros(50), "recall@5": half}, 50, 9)
    cand = EvalResult({"ndcg@10": 0.5, "recall@5": 0.5}, {"ndcg@10": half, "recall@5": half}, 50, 9)
    d = EvalOutcome({"golden": (live, cand)}, corpus=[]).to_dict()["golden"]
    lo, hi = d["delta_ci"]["ndcg@10"]
    assert 0 < lo < 0.5 < hi < 1  # a clear gain: the interval sits right of zero, around +0.5
    assert d["delta_ci"]["recall@5"] == [0.0, 0.0]  # identical per-query values: no spread
    assert d["live"]["queries"] == 50 and "delta_ci" not in d["live"]
