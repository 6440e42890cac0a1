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


def _res(vals, metric="recall@5"):
    import numpy as np

    from vectune.pipeline.evaluate import EvalResult

    a = np.asarray(vals, dtype=float)
    return EvalResult(means={metric: float(a.mean())}, per_query={metric: a}, queries=a.size)


def _ok(promote, delta=0.0):
    from vectune.pipeline.gate import Decision

    return Decision(promote, "", "recall@5", "golden", 0.0, delta, delta)


def test_equal_cost_candidates_compete_on_gain_alone():
    from vectune.pipeline.gate import choose

    live = _res([0.0] * 40)
    weak, strong = _res([1.0] * 10 + [0.0] * 30), _res([1.0] * 12 + [0.0] * 28)
    results = {"linear": (live, weak), "query": (live, strong)}
    # the query encoder's gain is higher by a hair (not significantly): same cost, so the better gain wins
    chosen, comps = choose(["linear", "query"], results, {"linear": _ok(True, 0.25), "query": _ok(True, 0.30)},
                           metric="recall@5")
    assert chosen == "query"
    assert comps == [{"rule": "equal cost: best gain", "cost": {"serve": "one query-encoder pass", "promote": "copy"},
                      "gains": {"linear": 0.25, "query": 0.3}, "chosen": "query"}]
    # ...and the other way round: the cheaper-listed linear map wins when its gain is higher
    chosen, _ = choose(["linear", "query"], results, {"linear": _ok(True, 0.30), "query": _ok(True, 0.25)},
                       metric="recall@5")
    assert chosen == "linear"
    chosen, _ = choose(["linear", "query"], results, {"linear": _ok(False, 0.3), "query": _ok(True, 0.25)},
                       metric="recall@5")
    assert chosen == "query"
    assert choose(["linear", "query"], results, {"linear": _ok(False), "query": _ok(False)},
                  metric="recall@5") == (None, [])


def test_a_costlier_class_only_when_significantly_better():
    from vectune.pipeline.gate import choose

    live = _res([0.0] * 40)
    cheap, costly, same = _res([1.0] * 10 + [0.0] * 30), _res([1.0] * 35 + [0.0] * 5), _res([1.0] * 11 + [0.0] * 29)
    chosen, comps = choose(["query", "full"], {"query": (live, cheap), "full": (live, costly)},
                           {"query": _ok(True, 0.25), "full": _ok(True, 0.875)}, metric="recall@5")
    assert chosen == "full" and comps[0]["costlier_wins"] and comps[0]["ci_low"] > 0
    # full re-encodes every point: a gain that is higher but not significantly so does not pay for it
    chosen, comps = choose(["query", "full"], {"query": (live, cheap), "full": (live, same)},
                           {"query": _ok(True, 0.25), "full": _ok(True, 0.275)}, metric="recall@5")
    assert chosen == "query" and not comps[0]["costlier_wins"]
    assert comps[0]["rule"] == "costlier only if significantly better"
