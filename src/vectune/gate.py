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
