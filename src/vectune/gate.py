"""The promotion gate: promote only on an improvement that deserves trust.

The gate knows where its evidence comes from. A golden set of real queries
(``--eval-set``) decides when given. Held-out queries written by the generator are
*synthetic* evidence: measured on SciFact, fine-tuning raised the generator's own
held-out nDCG@10 (0.677 → 0.719) while real-query nDCG@10 fell (0.645 → 0.630).
So by default synthetic evidence alone never promotes; ``--allow-synthetic-gate``
accepts that risk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vectune.evaluate import EvalResult


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

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def paired_bootstrap(live: np.ndarray, cand: np.ndarray, samples: int = 1000, confidence: float = 0.95,
                     seed: int = 0) -> tuple[float, float]:
    """Confidence interval of ``mean(cand - live)`` by resampling queries (paired).

    Args:
        live: per-query metric of the live model.
        cand: per-query metric of the candidate, same queries in the same order.
        samples: bootstrap resamples.
        confidence: interval mass (0.95 → 2.5th..97.5th percentile).
        seed: RNG seed (the gate is deterministic for given inputs).

    Returns:
        ``(low, high)``.
    """
    diff = np.asarray(cand, dtype=np.float64) - np.asarray(live, dtype=np.float64)
    if diff.size == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(samples, diff.size))
    means = diff[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def decide(live: EvalResult, cand: EvalResult, *, metric: str, evidence: str, min_delta: float,
           bootstrap: bool = True, samples: int = 1000, confidence: float = 0.95,
           allow_synthetic: bool = False) -> Decision:
    """Decide whether the candidate replaces the live model.

    Args:
        live: live model's evaluation.
        cand: candidate's evaluation on the same queries and corpus.
        metric: which metric decides (e.g. ``recall@5``).
        evidence: ``golden`` (real queries) or ``synthetic``.
        min_delta: the smallest improvement worth a promotion.
        bootstrap: require the CI's lower bound above zero.
        samples: bootstrap resamples.
        confidence: CI mass.
        allow_synthetic: accept synthetic evidence.

    Returns:
        The decision.
    """
    lv, cv = live.means[metric], cand.means[metric]
    d = Decision(promote=False, reason="", metric=metric, evidence=evidence, live=lv, candidate=cv,
                 delta=cv - lv, min_delta=min_delta)
    if bootstrap:
        d.ci_low, d.ci_high = paired_bootstrap(live.per_query[metric], cand.per_query[metric], samples, confidence)
    if live.queries == 0:
        d.reason = "no evaluation queries: nothing to decide on"
        return d
    if d.delta < min_delta:
        d.reason = f"{metric} changed by {d.delta:+.4f}, below the required +{min_delta:.4f}"
        return d
    if bootstrap and d.ci_low is not None and d.ci_low <= 0:
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
        f" ({int(confidence * 100)}% CI [{d.ci_low:+.4f}, {d.ci_high:+.4f}])" if bootstrap else "")
    return d


def choose(order: list[str], results: dict[str, tuple[EvalResult, EvalResult]], decisions: dict[str, Decision],
           *, metric: str, samples: int = 1000, confidence: float = 0.95) -> tuple[str | None, list[dict]]:
    """Pick one of several candidates, each already gated against live on the same queries.

    Among the candidates that pass, the cheapest wins, unless a costlier one is significantly
    better than it: the paired-bootstrap CI of (costlier − cheaper) on the gate metric lies above 0.

    Args:
        order: candidate kinds, cheapest first.
        results: per kind, ``(live, candidate)`` results on the deciding query set.
        decisions: per kind, its gate decision against live.
        metric: the gate metric.
        samples: bootstrap resamples.
        confidence: CI mass.

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
        better = low > 0
        comparisons.append({"cheaper": chosen, "costlier": costlier, "metric": metric,
                            "delta": round(float(np.mean(b) - np.mean(a)), 4), "ci_low": round(low, 4),
                            "ci_high": round(high, 4), "costlier_wins": better})
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


def judge(candidates: list, outcomes: dict, evidence: str, settings) -> Verdict:
    """Gate every candidate against live on the deciding evidence, then :func:`choose` one.

    Args:
        candidates: :class:`vectune.train.Candidate` objects, cheapest first.
        outcomes: their :class:`vectune.evaluate.EvalOutcome`, by kind.
        evidence: which query set decides (``golden``, ``synthetic`` or ``teacher``).
        settings: gate settings (metric, min delta, bootstrap, confidence, synthetic policy).

    Returns:
        The verdict.
    """
    decisions = {}
    for c in candidates:
        live, cand = outcomes[c.kind].results[evidence]
        decisions[c.kind] = decide(live, cand, metric=settings.gate_metric, evidence=evidence,
                                   min_delta=settings.min_delta, bootstrap=settings.bootstrap,
                                   samples=settings.bootstrap_samples, confidence=settings.confidence,
                                   allow_synthetic=settings.allow_synthetic_gate)
    kinds = [c.kind for c in candidates]
    chosen, comparisons = choose(kinds, {k: outcomes[k].results[evidence] for k in kinds}, decisions,
                                 metric=settings.gate_metric, samples=settings.bootstrap_samples,
                                 confidence=settings.confidence)
    shown = chosen or max(kinds, key=lambda k: decisions[k].delta)
    cand = next(c for c in candidates if c.kind == shown)
    return Verdict(cand, outcomes[shown], decisions[shown], decisions, outcomes, list(candidates), chosen,
                   comparisons)
