"""Cross-fitting's pieces: folds by time or seed, the leave-one-fold-out epoch choice, pooling, the budget."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from vectune.config.sections import LabelsConfig
from vectune.errors import BadInput
from vectune.pipeline.crossfit import LIVE, Budget, _pool, choose_points, dedupe, make_plan
from vectune.pipeline.evaluate import EvalResult
from vectune.pipeline.pairs.labeled import LabeledQuery


def _labels(n):
    return [LabeledQuery(f"q{i}", {f"d{i}"}, ts=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00", events=(f"e{i}",))
            for i in range(n)]


def test_folds_by_time_are_contiguous_stretches_newest_last():
    plan = make_plan(_labels(23), LabelsConfig(), by_time=True)
    assert plan.folds == 5 and plan.by == "time"
    assert plan.fold_of == sorted(plan.fold_of)  # each fold a stretch of time, in order
    sizes = plan.to_dict()["sizes"]
    assert sum(sizes) == 23 and max(sizes) - min(sizes) <= 1
    assert plan.members(4)[-1] == 22  # the newest query is in the last fold
    spans = plan.to_dict()["spans"]
    assert all(a <= b for a, b in spans) and all(spans[k][1] < spans[k + 1][0] for k in range(4))


def test_seeded_folds_are_balanced_deterministic_and_depend_on_the_seed():
    a = make_plan(_labels(40), LabelsConfig(folds=4), by_time=False, seed=1)
    b = make_plan(_labels(40), LabelsConfig(folds=4), by_time=False, seed=1)
    c = make_plan(_labels(40), LabelsConfig(folds=4), by_time=False, seed=2)
    assert a.fold_of == b.fold_of != c.fold_of
    assert a.to_dict()["sizes"] == [10, 10, 10, 10] and a.by == "seeded" and "spans" not in a.to_dict()


def test_a_query_is_in_one_fold_only_duplicates_merged():
    labels = _labels(20) + [LabeledQuery("q3", {"extra"}, ts="2026-02-01T00:00:00+00:00", events=("e99",))]
    merged = dedupe(labels)
    assert len(merged) == 20
    q3 = next(q for q in merged if q.text == "q3")
    assert q3.relevant == {"d3", "extra"} and q3.events == ("e3", "e99") and q3.ts.startswith("2026-02")
    plan = make_plan(labels, LabelsConfig(), by_time=False)
    assert len(plan.labels) == 20 and len(plan.fold_of) == 20


def test_too_few_labels_say_what_is_needed():
    assert LabelsConfig().crossfit_minimum() == 20
    assert LabelsConfig(folds=15).crossfit_minimum() == 30
    with pytest.raises(BadInput, match="needs at least 20"):
        make_plan(_labels(19), LabelsConfig(), by_time=True)


def _res(values):
    a = np.asarray(values, dtype=np.float64)
    return EvalResult({"ndcg@10": float(a.mean())}, {"ndcg@10": a}, queries=a.size)


def test_each_fold_is_scored_at_the_point_the_other_folds_chose():
    e1, e2 = (None, 1.0), (None, 2.0)
    # fold 0 alone would take epoch 2; folds 1 and 2 prefer epoch 1
    per_fold = [{LIVE: _res([0.5] * 4), e1: _res([0.6] * 4), e2: _res([0.9] * 4)},
                {LIVE: _res([0.5] * 4), e1: _res([0.8] * 4), e2: _res([0.55] * 4)},
                {LIVE: _res([0.5] * 4), e1: _res([0.8] * 4), e2: _res([0.6] * 4)}]
    chosen, final, curve = choose_points(per_fold, "ndcg@10")
    assert chosen[0] == e1  # not its own best (epoch 2): folds 1 and 2 choose, 0.8 + 0.8 against 0.55 + 0.6
    assert chosen[1] == e2  # folds 0 and 2: 0.6 + 0.8 against 0.9 + 0.6
    assert chosen[2] == e2  # folds 0 and 1: 0.6 + 0.8 against 0.9 + 0.55
    assert final == e1  # all folds: 0.733 against 0.683
    assert [c[:2] for c in curve] == [[None, 0.0], [None, 1.0], [None, 2.0]]


def test_only_points_every_fold_reached_count_and_ties_go_to_the_earliest():
    a, b, late = (0.1, 3.0), (1.0, 3.0), (None, 7.0)
    per_fold = [{LIVE: _res([0.5]), a: _res([0.7]), b: _res([0.7]), late: _res([1.0])},
                {LIVE: _res([0.5]), a: _res([0.7]), b: _res([0.7])}]
    chosen, final, _ = choose_points(per_fold, "ndcg@10")
    assert final == b and chosen == [b, b]  # same epoch, tie: the strongest identity pull; 'late' is not common


def test_leave_one_fold_out_removes_the_selection_bias_of_picking_the_best_epoch():
    """Pure-noise curves (no epoch is better than live): choosing each fold's epoch on the fold itself shows a
    gain; choosing it on the other folds does not."""
    rng = np.random.default_rng(0)
    lofo, own = [], []
    for _ in range(200):
        per_fold = []
        for _k in range(5):
            d = {LIVE: _res(np.full(8, 0.5))}
            for e in range(1, 9):
                d[(None, float(e))] = _res(0.5 + rng.normal(0, 0.2, 8))
            per_fold.append(d)
        chosen, _, _ = choose_points(per_fold, "ndcg@10")
        lofo.append(np.mean([pf[p].means["ndcg@10"] for pf, p in zip(per_fold, chosen)]) - 0.5)
        own.append(np.mean([max(r.means["ndcg@10"] for r in pf.values()) for pf in per_fold]) - 0.5)
    assert np.mean(own) > 0.05  # the in-fold choice is optimistic
    assert abs(np.mean(lofo)) < 0.01  # the cross-fitted one is not


def test_pooling_concatenates_every_fold():
    pooled = _pool([_res([1.0, 0.0]), _res([0.5])], corpus=10)
    assert pooled.queries == 3 and pooled.corpus == 10
    assert pooled.per_query["ndcg@10"].tolist() == [1.0, 0.0, 0.5] and pooled.means["ndcg@10"] == pytest.approx(0.5)


def test_budget_reserves_the_final_fit_and_shares_the_rest_per_fold():
    b = Budget(600.0, 5, start=100.0)
    r = 5 / 4
    assert b.reserve == pytest.approx(600 * r / (5 + r))  # 120 s: the final fit trains on 5/4 of a fold's data
    assert b.fold_deadline(0) == pytest.approx(100 + 480 / 5) and b.fold_deadline(4) == pytest.approx(580.0)
    now = time.perf_counter()
    assert b.share(now + 100, 2) == pytest.approx(now + 50, abs=1.0)
    free = Budget(0.0, 5)
    assert math.isinf(free.fold_deadline(2)) and math.isinf(free.final_deadline())
    assert math.isinf(free.share(free.fold_deadline(2), 1))
