"""The promotion gate: promote only on an improvement that deserves trust.

The gate knows where its evidence comes from. A golden set of real queries
(``--eval-set``) decides when given. Held-out queries written by the generator are
*synthetic* evidence: measured on SciFact, fine-tuning raised the generator's own
held-out nDCG@10 (0.677 → 0.719) while real-query nDCG@10 fell (0.645 → 0.630).
So by default synthetic evidence alone never promotes; ``--allow-synthetic-gate``
accepts that risk.

Which paired test says "not noise" (``test``): ``bootstrap`` — the paired-bootstrap CI's low
end above 0; ``permutation`` — a one-sided paired randomization (sign-flip) test on the mean
delta, exact at any sample size; ``wilcoxon`` — a one-sided Wilcoxon signed-rank test on the
per-query deltas (unchanged queries dropped; scipy's normal approximation when there are ties).
All run at the same level, one-sided ``(1 - confidence) / 2`` (2.5% at the default 0.95), and
every one also needs the mean delta ≥ ``min_delta``. Measured on SciFact with nDCG@10
(``bench/gate_power.py``, bench/RESULTS.md "Gate power"): the percentile bootstrap promoted
near-null candidates in up to 6% of 20–40-query golden sets, the randomization test in at most 4%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vectune.config.sections import GateConfig
from vectune.errors import BadInput
from vectune.pipeline.evaluate import EvalResult
from vectune.pipeline.paired import paired_bootstrap, paired_permutation, paired_wilcoxon

#: the paired tests :func:`decide` knows
GATE_TESTS = ("bootstrap", "permutation", "wilcoxon")


@dataclass
class Decision:
    """The gate's verdict and why."""

    promote: bool
    reason: str
    metric: str
    evidence: str  # "golden" or "synthetic"
    live: float
    candidate: float
    delta: float
    ci_low: float | None = None
    ci_high: float | None = None
    min_delta: float = 0.0
    test: str = "bootstrap"
    p_value: float | None = None  # one-sided, for the wilcoxon and permutation tests

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def decide(live: EvalResult, cand: EvalResult, *, metric: str, evidence: str, min_delta: float,
           bootstrap: bool = True, samples: int = 1000, confidence: float = 0.95,
           allow_synthetic: bool = False, test: str = "bootstrap") -> Decision:
    """Decide whether the candidate replaces the live model.

    Args:
        live: live model's evaluation.
        cand: candidate's evaluation on the same queries and corpus.
        metric: which metric decides (e.g. ``ndcg@10``).
        evidence: ``golden`` (real queries) or ``synthetic``.
        min_delta: the smallest improvement worth a promotion.
        bootstrap: require a significant improvement (by ``test``); the paired-bootstrap CI is
            computed and reported whatever the test.
        samples: bootstrap resamples (and sign flips of the permutation test).
        confidence: CI mass; the tests run one-sided at ``(1 - confidence) / 2``.
        allow_synthetic: accept synthetic evidence.
        test: ``bootstrap`` (the CI's lower bound above zero), ``permutation`` or ``wilcoxon``
            (one-sided p-value below ``(1 - confidence) / 2``); see the module doc.

    Returns:
        The decision.

    Raises:
        BadInput: an unknown test.
    """
    if test not in GATE_TESTS:
        raise BadInput(f"unknown gate test {test!r}: use one of {', '.join(GATE_TESTS)}")
    lv, cv = live.means[metric], cand.means[metric]
    d = Decision(promote=False, reason="", metric=metric, evidence=evidence, live=lv, candidate=cv,
                 delta=cv - lv, min_delta=min_delta, test=test)
    if bootstrap:
        d.ci_low, d.ci_high = paired_bootstrap(live.per_query[metric], cand.per_query[metric], samples, confidence)
    if live.queries == 0:
        d.reason = "no evaluation queries: nothing to decide on"
        return d
    if d.delta < min_delta:
        d.reason = f"{metric} changed by {d.delta:+.4f}, below the required +{min_delta:.4f}"
        return d
    alpha = (1 - confidence) / 2
    if bootstrap and test != "bootstrap":
        a, b = live.per_query[metric], cand.per_query[metric]
        d.p_value = paired_wilcoxon(a, b) if test == "wilcoxon" else paired_permutation(a, b, samples)
        if d.p_value >= alpha:
            d.reason = (f"{metric} +{d.delta:.4f} is within noise: one-sided {test} p = {d.p_value:.4f} ≥ {alpha:g} "
                        f"({int(confidence * 100)}% CI [{d.ci_low:+.4f}, {d.ci_high:+.4f}])")
            return d
    if bootstrap and test == "bootstrap" and d.ci_low is not None and d.ci_low <= 0:
        d.reason = (f"{metric} +{d.delta:.4f} is within noise: {int(confidence * 100)}% CI "
                    f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}] includes 0")
        return d
    if evidence == "synthetic" and not allow_synthetic:
        d.reason = (f"{metric} +{d.delta:.4f} on synthetic queries only, which is not trusted evidence: "
                    "give a golden set of real queries (--eval-set) or accept the risk with --allow-synthetic-gate")
        return d
    d.promote = True
    verb = "improved by" if d.delta > 0 else "changed by"
    d.reason = f"{metric} {verb} {d.delta:+.4f} on {evidence} queries (min delta {min_delta:+.4f})" + (
        f" ({int(confidence * 100)}% CI [{d.ci_low:+.4f}, {d.ci_high:+.4f}]" if bootstrap else "") + (
        f"; one-sided {test} p = {d.p_value:.4f})" if bootstrap and d.p_value is not None else (")" if bootstrap
                                                                                               else ""))
    return d


def choose(order: list[str], results: dict[str, tuple[EvalResult, EvalResult]], decisions: dict[str, Decision],
           *, metric: str, samples: int = 1000, confidence: float = 0.95,
           test: str = "bootstrap") -> tuple[str | None, list[dict]]:
    """Pick one of several candidates, each already gated against live on the same queries.

    Among the candidates that pass, the cheapest wins, unless a costlier one is significantly
    better than it on the gate metric, by the gate's ``test``: the paired-bootstrap CI of
    (costlier − cheaper) lies above 0, or the one-sided p-value is below ``(1 - confidence) / 2``.

    Args:
        order: candidate kinds, cheapest first.
        results: per kind, ``(live, candidate)`` results on the deciding query set.
        decisions: per kind, its gate decision against live.
        metric: the gate metric.
        samples: bootstrap resamples.
        confidence: CI mass.
        test: ``bootstrap``, ``permutation`` or ``wilcoxon`` (see :func:`decide`).

    Returns:
        The chosen kind (None when none passes) and the pairwise comparisons made.
    """
    passing = [k for k in order if k in decisions and decisions[k].promote]
    if not passing:
        return None, []
    chosen, comparisons = passing[0], []
    for costlier in passing[1:]:
        a, b = results[chosen][1].per_query[metric], results[costlier][1].per_query[metric]
        low, high = paired_bootstrap(a, b, samples, confidence)
        row = {"cheaper": chosen, "costlier": costlier, "metric": metric,
               "delta": round(float(np.mean(b) - np.mean(a)), 4), "ci_low": round(low, 4), "ci_high": round(high, 4)}
        if test == "bootstrap":
            better = low > 0
        else:
            p = paired_wilcoxon(a, b) if test == "wilcoxon" else paired_permutation(a, b, samples)
            better = bool(np.mean(b) > np.mean(a)) and p < (1 - confidence) / 2
            row.update(test=test, p_value=round(p, 4))
        row["costlier_wins"] = better
        comparisons.append(row)
        if better:
            chosen = costlier
    return chosen, comparisons


@dataclass
class Verdict:
    """The gate's word on every candidate of a cycle.

    Attributes:
        candidate: the chosen candidate, or (when none passes) the one that came closest.
        outcome: its evaluation.
        decision: its gate decision (``promote`` is False when none passes).
        decisions: every candidate's decision, by kind.
        outcomes: every candidate's evaluation, by kind.
        chosen: the chosen kind, or None.
        comparisons: the pairwise tests between passing candidates.
    """

    candidate: object
    outcome: object
    decision: Decision
    decisions: dict
    outcomes: dict
    candidates: list
    chosen: str | None
    comparisons: list

    def report(self) -> tuple[dict | None, dict | None]:
        """``(candidates, choice)`` for the run report (None with a single candidate)."""
        if len(self.candidates) < 2:
            return None, None
        cands = {c.kind: {"model": c.tag, "train": c.stats.to_dict(), "evaluation": self.outcomes[c.kind].to_dict(),
                          "gate": self.decisions[c.kind].to_dict()} for c in self.candidates}
        return cands, {"chosen": self.chosen, "order": [c.kind for c in self.candidates],
                       "comparisons": self.comparisons}


def judge(candidates: list, outcomes: dict, evidence: str, cfg: GateConfig) -> Verdict:
    """Gate every candidate against live on the deciding evidence, then :func:`choose` one.

    Args:
        candidates: :class:`vectune.pipeline.train.candidate.Candidate` objects, cheapest first.
        outcomes: their :class:`vectune.pipeline.evaluate.EvalOutcome`, by kind.
        evidence: which query set decides (``golden``, ``synthetic`` or ``teacher``).
        cfg: the gate settings (metric, paired test, min delta, significance, confidence, synthetic policy).

    Returns:
        The verdict.
    """
    decisions = {}
    test = cfg.test
    for c in candidates:
        live, cand = outcomes[c.kind].results[evidence]
        decisions[c.kind] = decide(live, cand, metric=cfg.metric, evidence=evidence,
                                   min_delta=cfg.min_delta, bootstrap=cfg.require_significance,
                                   samples=cfg.samples, confidence=cfg.confidence,
                                   allow_synthetic=cfg.allow_synthetic, test=test)
    kinds = [c.kind for c in candidates]
    chosen, comparisons = choose(kinds, {k: outcomes[k].results[evidence] for k in kinds}, decisions,
                                 metric=cfg.metric, samples=cfg.samples,
                                 confidence=cfg.confidence, test=test)
    shown = chosen or max(kinds, key=lambda k: decisions[k].delta)
    cand = next(c for c in candidates if c.kind == shown)
    return Verdict(cand, outcomes[shown], decisions[shown], decisions, outcomes, list(candidates), chosen,
                   comparisons)
