"""Paired statistics over per-query values of two models on the same queries: a bootstrap CI and one-sided tests.

Used by the gate (:mod:`vectune.pipeline.gate`), the evaluation's per-metric intervals
(:mod:`vectune.pipeline.evaluate`) and anything else that compares two models query by query.
"""

from __future__ import annotations

import warnings

import numpy as np


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


def paired_wilcoxon(live: np.ndarray, cand: np.ndarray) -> float:
    """One-sided p-value of ``cand > live``: Wilcoxon signed-rank test on the per-query deltas.

    Unchanged queries are dropped (``zero_method="wilcox"``); scipy picks the exact null
    distribution for small samples without ties, else the normal approximation with tie correction.

    Args:
        live: per-query metric of the live model.
        cand: per-query metric of the candidate, same queries in the same order.

    Returns:
        The p-value (1.0 when no query changed).
    """
    from scipy.stats import wilcoxon

    diff = np.asarray(cand, dtype=np.float64) - np.asarray(live, dtype=np.float64)
    if not np.any(diff != 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that small samples with ties use the approximation
        p = float(wilcoxon(diff, zero_method="wilcox", alternative="greater").pvalue)
    return p if np.isfinite(p) else 1.0


def paired_permutation(live: np.ndarray, cand: np.ndarray, samples: int = 1000, seed: int = 0) -> float:
    """One-sided p-value of ``mean(cand - live) > 0`` by a paired randomization (sign-flip) test.

    Under the null the candidate and live labels are exchangeable within each query, so each
    per-query delta's sign is a coin flip; the p-value is the share of ``samples`` random flips
    whose mean is at least the observed one (counting the observed assignment itself).

    Args:
        live: per-query metric of the live model.
        cand: per-query metric of the candidate, same queries in the same order.
        samples: random sign assignments.
        seed: RNG seed (the gate is deterministic for given inputs).

    Returns:
        The p-value (1.0 when no query changed).
    """
    diff = np.asarray(cand, dtype=np.float64) - np.asarray(live, dtype=np.float64)
    if not np.any(diff != 0):
        return 1.0
    rng = np.random.default_rng(seed)
    observed, hits, done = diff.mean(), 0, 0
    chunk = max(1, min(samples, 2_000_000 // diff.size))  # bounded memory on a large golden set
    while done < samples:
        k = min(chunk, samples - done)
        signs = np.where(rng.random((k, diff.size)) < 0.5, -1.0, 1.0)
        hits += int(np.sum(signs @ diff / diff.size >= observed - 1e-12))
        done += k
    return (1 + hits) / (samples + 1)
