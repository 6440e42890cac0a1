"""The gate's paired tests: bootstrap CI, Wilcoxon signed-rank, randomization (sign-flip)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from vectune.errors import BadInput
from vectune.pipeline.evaluate import EvalResult
from vectune.pipeline.gate import GATE_TESTS, choose, decide, paired_permutation, paired_wilcoxon


def _res(values, metric="ndcg@10"):
    a = np.asarray(values, dtype=np.float64)
    return EvalResult(means={metric: float(a.mean())}, per_query={metric: a}, queries=a.size)


def test_wilcoxon_p_value_is_scipys_one_sided_signed_rank():
    rng = np.random.default_rng(3)
    live = rng.random(60)
    cand = live + rng.normal(0.05, 0.1, 60)
    cand[:20] = live[:20]  # unchanged queries are dropped
    want = stats.wilcoxon(cand - live, zero_method="wilcox", alternative="greater").pvalue
    assert paired_wilcoxon(live, cand) == pytest.approx(want)
    assert paired_wilcoxon(live, live) == 1.0


def test_permutation_p_value_matches_the_exact_sign_flip_distribution():
    live = np.zeros(5)
    cand = np.ones(5)  # 5 wins: only the observed assignment (1 of 2^5) reaches the mean
    p = paired_permutation(live, cand, samples=20000, seed=1)
    assert p == pytest.approx(1 / 32, abs=0.004)
    assert p == paired_permutation(live, cand, samples=20000, seed=1)  # deterministic
    assert paired_permutation(live, live) == 1.0
    worse = paired_permutation(cand, live, samples=2000)  # every query worse: p near 1
    assert worse > 0.95


def test_four_wins_in_twenty_queries_pass_the_approximate_tests_not_the_exact_one():
    # 4 queries gained a hit, 16 unchanged. Under "no effect" 4 wins out of 4 changed queries happen
    # 1 time in 16, so the exact randomization test keeps the live model. The percentile bootstrap's
    # CI clears 0 (a resample misses all 4 only (16/20)^20 ≈ 1.2% of the time) and the signed-rank
    # normal approximation gives p = 0.023: both promote — the small-sample optimism the
    # gate-power study measured.
    live, cand = _res([0.0] * 20), _res([1.0] * 4 + [0.0] * 16)
    boot = decide(live, cand, metric="ndcg@10", evidence="golden", min_delta=0.005, test="bootstrap")
    assert boot.promote and boot.ci_low > 0 and boot.p_value is None
    wil = decide(live, cand, metric="ndcg@10", evidence="golden", min_delta=0.005, test="wilcoxon")
    assert wil.promote and wil.p_value == pytest.approx(0.0228, abs=1e-4)
    perm = decide(live, cand, metric="ndcg@10", evidence="golden", min_delta=0.005, test="permutation")
    assert not perm.promote and perm.p_value == pytest.approx(1 / 16, abs=0.02)
    assert "within noise" in perm.reason and "one-sided permutation p" in perm.reason


def test_each_test_promotes_a_clear_gain_and_keeps_min_delta():
    rng = np.random.default_rng(0)
    base = rng.random(120)
    gain = base + np.where(rng.random(120) < 0.4, 0.2, 0.0)
    for test in GATE_TESTS:
        d = decide(_res(base), _res(gain), metric="ndcg@10", evidence="golden", min_delta=0.005, test=test)
        assert d.promote and d.ci_low > 0, test
        assert (d.p_value is None) == (test == "bootstrap") and (d.p_value is None or d.p_value < 0.025)
        assert "improved by" in d.reason and d.to_dict()["test"] == test
        small = decide(_res(base), _res(gain), metric="ndcg@10", evidence="golden", min_delta=0.5, test=test)
        assert not small.promote and "below the required" in small.reason


def test_significance_off_and_unknown_test():
    live, cand = _res([0.0] * 20), _res([1.0] * 4 + [0.0] * 16)
    d = decide(live, cand, metric="ndcg@10", evidence="golden", min_delta=0.005, bootstrap=False,
               test="permutation")
    assert d.promote and d.p_value is None and d.ci_low is None
    with pytest.raises(BadInput, match="unknown gate test"):
        decide(live, cand, metric="ndcg@10", evidence="golden", min_delta=0.0, test="ttest")


def test_choose_uses_the_gate_test_between_cost_classes():
    rng = np.random.default_rng(1)
    live = rng.random(200)
    cheap = live + np.where(rng.random(200) < 0.3, 0.1, 0.0)
    costly = cheap + np.where(rng.random(200) < 0.5, 0.2, 0.0)
    results = {"query": (_res(live), _res(cheap)), "full": (_res(live), _res(costly))}
    decisions = {k: decide(a, b, metric="ndcg@10", evidence="golden", min_delta=0.005, test="permutation")
                 for k, (a, b) in results.items()}
    chosen, comps = choose(["query", "full"], results, decisions, metric="ndcg@10", test="permutation")
    assert chosen == "full" and comps[0]["test"] == "permutation" and comps[0]["p_value"] < 0.025
    same = {"query": results["query"], "full": (_res(live), _res(cheap))}
    chosen, comps = choose(["query", "full"], same, decisions, metric="ndcg@10", test="wilcoxon")
    assert chosen == "query" and comps[0]["costlier_wins"] is False


def test_holm_adjusts_step_down():
    from vectune.pipeline.gate import holm

    assert holm({"a": 0.01, "b": 0.04}) == pytest.approx({"a": 0.02, "b": 0.04})
    assert holm({"a": 0.03, "b": 0.02}) == pytest.approx({"b": 0.04, "a": 0.04})  # monotone: max with the one before
    assert holm({"a": 0.6, "b": 0.7, "c": 0.01}) == pytest.approx({"c": 0.03, "a": 1.0, "b": 1.0})


def test_several_candidates_keep_the_family_wise_level():
    """A candidate that passes alone at p = 0.02 does not pass beside a second candidate (Holm: 0.02 x 2 > 0.025)."""
    from types import SimpleNamespace

    from vectune.config.sections import GateConfig
    from vectune.pipeline.gate import bootstrap_p, judge, one_sided_p, paired_permutation
    from vectune.pipeline.train.candidate import Candidate, TrainStats

    base = np.zeros(40)
    gain = base.copy()
    gain[:8], gain[8] = 0.2, -0.2  # 8 wins, 1 loss
    p = paired_permutation(base, gain)
    assert 0.0125 <= p < 0.025, p  # passes alone, not at 0.025 / 2
    st = TrainStats(1, 1, 1.0, None, 1.0)
    cands = [Candidate(None, "t-linear", st, "linear"), Candidate(None, "t-query", st, "query")]
    outcomes = {k: SimpleNamespace(results={"golden": (_res(base), _res(v))}) for k, v in
                (("linear", base + 0.0), ("query", gain))}
    alone = judge(cands[1:], {"query": outcomes["query"]}, "golden", GateConfig())
    assert alone.decision.promote and alone.decision.family == 1
    both = judge(cands, outcomes, "golden", GateConfig())
    d = both.decisions["query"]
    assert not d.promote and d.family == 2 and d.p_holm == pytest.approx(2 * p)
    assert "Holm-adjusted" in d.reason and both.chosen is None
    # the bootstrap p-value agrees with the bootstrap CI's verdict
    assert one_sided_p("bootstrap", base, gain) == bootstrap_p(base, gain)
