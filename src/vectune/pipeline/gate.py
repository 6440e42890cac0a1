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

Several candidates (mode auto) are several tests: :func:`judge` keeps the family-wise false-pass
rate at the single test's level with Holm's step-down correction over every candidate's one-sided
p-value. :func:`choose` then picks by expected gain among candidates that cost the same
(:data:`vectune.pipeline.train.candidate.COSTS`), and prefers a cheaper cost class unless a costlier
one is significantly better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vectune.config.sections import GateConfig
from vectune.errors import BadInput
from vectune.pipeline.evaluate import EvalResult
from vectune.pipeline.paired import paired_bootstrap, paired_permutation, paired_wilcoxon
from vectune.pipeline.train.candidate import COSTS, Cost

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
    family: int = 1  # candidates tested together (Holm's correction applies when > 1)
    p_holm: float | None = None  # Holm-adjusted one-sided p-value over the family

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def bootstrap_p(live: np.ndarray, cand: np.ndarray, samples: int = 1000, seed: int = 0) -> float:
    """One-sided p-value of the paired bootstrap: the share of resampled mean deltas at or below 0.

    Uses the very resamples :func:`paired_bootstrap` draws, so ``p < (1 - confidence) / 2`` agrees with
    the CI's low end above 0 (up to the quantile's interpolation).

    Returns:
        The p-value (1.0 when no query changed).
    """
    diff = np.asarray(cand, dtype=np.float64) - np.asarray(live, dtype=np.float64)
    if not np.any(diff != 0):
        return 1.0
    idx = np.random.default_rng(seed).integers(0, diff.size, size=(samples, diff.size))
    return float(np.mean(diff[idx].mean(axis=1) <= 0))


def one_sided_p(test: str, live: np.ndarray, cand: np.ndarray, samples: int = 1000) -> float:
    """The one-sided p-value of ``cand > live`` by the gate's ``test`` (see :func:`decide`)."""
    if test == "wilcoxon":
        return paired_wilcoxon(live, cand)
    if test == "permutation":
        return paired_permutation(live, cand, samples)
    return bootstrap_p(live, cand, samples)


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values: ``max over j <= i of min(1, (m - j + 1) * p_(j))``.

    Rejecting every hypothesis whose adjusted p-value is below ``alpha`` keeps the family-wise error
    rate at ``alpha`` whatever the dependence between the tests.

    Args:
        p_values: raw p-values by name.

    Returns:
        Adjusted p-values by name.
    """
    m = len(p_values)
    out, running = {}, 0.0
    for i, (name, p) in enumerate(sorted(p_values.items(), key=lambda kv: (kv[1], kv[0]))):
        running = max(running, min(1.0, (m - i) * p))
        out[name] = running
    return out


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
           *, metric: str, samples: int = 1000, confidence: float = 0.95, test: str = "bootstrap",
           costs: dict[str, Cost] | None = None) -> tuple[str | None, list[dict]]:
    """Pick one of several candidates, each already gated against live on the same queries.

    Candidates that cost the same (``costs``; by default :data:`COSTS` of each kind) compete on gain
    alone: among the passing ones of a cost class, the best gain on the gate metric wins (ties: the one
    first in ``order``). Between classes, the cheapest class's best wins unless a costlier class's best
    is significantly better than it, by the gate's ``test``: the paired-bootstrap CI of (costlier −
    cheaper) lies above 0, or the one-sided p-value is below ``(1 - confidence) / 2``.

    Args:
        order: candidate kinds, cheapest first.
        results: per kind, ``(live, candidate)`` results on the deciding query set.
        decisions: per kind, its gate decision against live.
        metric: the gate metric.
        samples: bootstrap resamples.
        confidence: CI mass.
        test: ``bootstrap``, ``permutation`` or ``wilcoxon`` (see :func:`decide`).
        costs: each kind's cost (default :data:`vectune.pipeline.train.candidate.COSTS`).

    Returns:
        The chosen kind (None when none passes) and the comparisons made (``rule`` says which).
    """
    costs = costs or COSTS
    passing = [k for k in order if k in decisions and decisions[k].promote]
    if not passing:
        return None, []
    comparisons: list[dict] = []
    classes: dict[tuple, list[str]] = {}
    for k in passing:
        c = costs[k]
        classes.setdefault((c.rank, c.serve, c.promote), []).append(k)
    best: list[str] = []
    for key in sorted(classes, key=lambda key: key[0]):
        members = classes[key]
        top = members[0]
        for k in members[1:]:
            if decisions[k].delta > decisions[top].delta:
                top = k
        best.append(top)
        if len(members) > 1:
            comparisons.append({"rule": "equal cost: best gain", "cost": {"serve": key[1], "promote": key[2]},
                                "gains": {k: round(decisions[k].delta, 4) for k in members}, "chosen": top})
    chosen = best[0]
    for costlier in best[1:]:
        a, b = results[chosen][1].per_query[metric], results[costlier][1].per_query[metric]
        low, high = paired_bootstrap(a, b, samples, confidence)
        row = {"rule": "costlier only if significantly better", "cheaper": chosen, "costlier": costlier,
               "metric": metric, "delta": round(float(np.mean(b) - np.mean(a)), 4), "ci_low": round(low, 4),
               "ci_high": round(high, 4)}
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
        cands = {c.kind: {"model": c.tag, "cost": c.cost.to_dict(), "train": c.stats.to_dict(),
                          "evaluation": self.outcomes[c.kind].to_dict(), "gate": self.decisions[c.kind].to_dict()}
                 for c in self.candidates}
        return cands, {"chosen": self.chosen, "order": [c.kind for c in self.candidates],
                       "comparisons": self.comparisons}


def judge(candidates: list, outcomes: dict, evidence: str, cfg: GateConfig) -> Verdict:
    """Gate every candidate against live on the deciding evidence (Holm-corrected over them), then :func:`choose`.

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
    if len(kinds) > 1 and cfg.require_significance:
        family_wise(decisions, {k: outcomes[k].results[evidence] for k in kinds}, cfg)
    chosen, comparisons = choose(kinds, {k: outcomes[k].results[evidence] for k in kinds}, decisions,
                                 metric=cfg.metric, samples=cfg.samples, confidence=cfg.confidence, test=test,
                                 costs={c.kind: c.cost for c in candidates})
    shown = chosen or max(kinds, key=lambda k: decisions[k].delta)
    cand = next(c for c in candidates if c.kind == shown)
    return Verdict(cand, outcomes[shown], decisions[shown], decisions, outcomes, list(candidates), chosen,
                   comparisons)


def family_wise(decisions: dict[str, Decision], results: dict[str, tuple[EvalResult, EvalResult]],
                cfg: GateConfig) -> None:
    """Holm's correction over the candidates tested together: a candidate passes only if its adjusted p-value does.

    Every candidate is a hypothesis of the family (also one that failed ``min_delta``). A candidate
    that passed alone but not after the correction is kept out, and its reason says so.

    Args:
        decisions: each candidate's decision against live (updated in place: ``family``, ``p_holm``, ``promote``).
        results: each candidate's ``(live, candidate)`` results on the deciding queries.
        cfg: the gate settings (metric, test, samples, confidence).
    """
    alpha = (1 - cfg.confidence) / 2
    raw = {}
    for k, d in decisions.items():
        live, cand = results[k]
        raw[k] = d.p_value if d.p_value is not None else one_sided_p(
            cfg.test, live.per_query[cfg.metric], cand.per_query[cfg.metric], cfg.samples)
    adjusted = holm(raw)
    for k, d in decisions.items():
        d.family, d.p_holm = len(decisions), adjusted[k]
        if d.promote and adjusted[k] >= alpha:
            d.promote = False
            d.reason = (f"{d.metric} {d.delta:+.4f} passes alone (one-sided {cfg.test} p = {raw[k]:.4f}) but not "
                        f"with {len(decisions)} candidates tested together: Holm-adjusted p = {adjusted[k]:.4f} "
                        f"≥ {alpha:g}")
        elif d.promote:
            d.reason += f"; Holm-adjusted p = {adjusted[k]:.4f} over {len(decisions)} candidates"
