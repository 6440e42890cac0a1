"""Metrics and the gate's decisions, on hand-made rankings."""

from __future__ import annotations

import numpy as np
import pytest

from vectune.pipeline.evaluate import EvalQuery, evaluate, score
from vectune.pipeline.gate import decide, paired_bootstrap


def test_metrics_on_a_known_ranking():
    keys = ["a", "b", "c", "d"]
    top = np.array([[0, 1, 2, 3], [1, 2, 3, 0], [3, 2, 1, 0]])
    qs = [EvalQuery("q1", {"a"}), EvalQuery("q2", {"a"}), EvalQuery("q3", {"b", "x"})]
    r = score(top, keys, qs)
    assert r.per_query["recall@1"].tolist() == [1.0, 0.0, 0.0]
    assert r.per_query["mrr@10"].tolist() == pytest.approx([1.0, 0.25, 1 / 3])
    assert r.per_query["recall@10"].tolist() == [1.0, 1.0, 0.5]  # 'x' is not in the corpus: half found
    assert r.per_query["ndcg@10"][0] == pytest.approx(1.0)


def test_exact_search_ranks_by_inner_product():
    corpus = np.eye(3, dtype=np.float32)
    q = np.array([[0.1, 0.9, 0.0]], dtype=np.float32)
    r = evaluate(q, corpus, ["x", "y", "z"], [EvalQuery("q", {"y"})])
    assert r.means["recall@1"] == 1.0


def _res(values):
    keys = [str(i) for i in range(len(values))]
    top = np.array([[0 if v else 1] for v in values])
    return score(top, ["hit", "miss"], [EvalQuery(k, {"hit"}) for k in keys])


def test_gate_promotes_a_clear_win_on_golden_evidence():
    live, cand = _res([0] * 60 + [1] * 40), _res([1] * 100)
    d = decide(live, cand, metric="recall@5", evidence="golden", min_delta=0.01)
    assert d.promote and d.ci_low > 0 and "improved" in d.reason


def test_gate_refuses_noise_small_gains_and_untrusted_evidence():
    live = _res([1, 0] * 50)
    noisy = _res([0, 1] * 50 + [])
    d = decide(live, noisy, metric="recall@5", evidence="golden", min_delta=-1)
    assert not d.promote and "noise" in d.reason
    small = decide(live, _res([1, 0] * 49 + [1, 1]), metric="recall@5", evidence="golden", min_delta=0.05)
    assert not small.promote and "below the required" in small.reason
    win = _res([1] * 100)
    syn = decide(live, win, metric="recall@5", evidence="synthetic", min_delta=0.01)
    assert not syn.promote and "synthetic" in syn.reason
    assert decide(live, win, metric="recall@5", evidence="synthetic", min_delta=0.01, allow_synthetic=True).promote


def test_paired_bootstrap_interval_contains_the_mean_difference():
    rng = np.random.default_rng(0)
    live = rng.random(200)
    cand = live + 0.05 + rng.normal(0, 0.01, 200)
    lo, hi = paired_bootstrap(live, cand, samples=500)
    assert lo < 0.05 < hi and lo > 0


def test_choose_cheapest_passing_unless_a_costlier_one_is_significantly_better():
    import numpy as np

    from vectune.pipeline.evaluate import EvalResult
    from vectune.pipeline.gate import Decision, choose

    def res(vals):
        a = np.asarray(vals, dtype=float)
        return EvalResult(means={"recall@5": float(a.mean())}, per_query={"recall@5": a}, queries=a.size)

    live = res([0.0] * 40)
    cheap, costly, same = res([1.0] * 10 + [0.0] * 30), res([1.0] * 35 + [0.0] * 5), res([1.0] * 10 + [0.0] * 30)

    def ok(promote):
        return Decision(promote, "", "recall@5", "golden", 0.0, 0.0, 0.0)

    results = {"linear": (live, cheap), "query": (live, costly)}
    chosen, comps = choose(["linear", "query"], results, {"linear": ok(True), "query": ok(True)}, metric="recall@5")
    assert chosen == "query" and comps[0]["costlier_wins"] and comps[0]["ci_low"] > 0
    results = {"linear": (live, cheap), "query": (live, same)}
    chosen, comps = choose(["linear", "query"], results, {"linear": ok(True), "query": ok(True)}, metric="recall@5")
    assert chosen == "linear" and not comps[0]["costlier_wins"]
    chosen, _ = choose(["linear", "query"], results, {"linear": ok(False), "query": ok(True)}, metric="recall@5")
    assert chosen == "query"
    none = choose(["linear", "query"], results, {"linear": ok(False), "query": ok(False)}, metric="recall@5")
    assert none == (None, [])
