"""The query side's objective: a multi-positive softmax cross-entropy over the stored vectors, its
learning-rate schedule, and the slice metric that picks the epoch (the gate's graded nDCG@10)."""

from __future__ import annotations

import math

import numpy as np

from vectune.pipeline.evaluate import ndcg


def softmax_loss(q, corpus, pos_rows: list[np.ndarray], pos_gain: list[np.ndarray], scale: float, mode: str):
    """Multi-positive softmax cross-entropy of unit query vectors ``q`` (B, d) against ``corpus``."""
    import torch

    logits = scale * (q @ corpus.T)  # (B, N)
    b = logits.shape[0]
    width = max(len(r) for r in pos_rows)
    idx = torch.zeros((b, width), dtype=torch.long, device=logits.device)
    w = torch.zeros((b, width), dtype=logits.dtype, device=logits.device)
    for i, (r, g) in enumerate(zip(pos_rows, pos_gain)):
        idx[i, : len(r)] = torch.from_numpy(r)
        w[i, : len(r)] = torch.from_numpy(g / g.sum())
    valid = w > 0
    pos_logits = logits.gather(1, idx)  # (B, P)
    if mode == "any":
        lse_all = torch.logsumexp(logits, dim=1)
        lse_pos = torch.logsumexp(pos_logits.masked_fill(~valid, float("-inf")), dim=1)
        return (lse_all - lse_pos).mean()
    # "each": every positive against all non-positives, weighted by grade
    mask = torch.zeros_like(logits, dtype=torch.bool)
    mask.scatter_(1, idx, valid)
    lse_neg = torch.logsumexp(logits.masked_fill(mask, float("-inf")), dim=1, keepdim=True)  # (B, 1)
    ce = torch.logaddexp(pos_logits, lse_neg) - pos_logits  # (B, P)
    return ((ce * w).sum(dim=1)).mean()


def lr_lambda(total_steps: int, warmup_ratio: float):
    warm = max(1, int(math.ceil(total_steps * warmup_ratio))) if warmup_ratio > 0 else 0

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))
    return f


def slice_ndcg10(q, corpus, pos_rows: list[np.ndarray], pos_gain: list[np.ndarray]) -> np.ndarray:
    """Per-query graded nDCG@10 of unit query vectors against the corpus tensor (the gate's metric).

    Args:
        q: (n, d) unit query vectors (a torch tensor).
        corpus: (N, d) unit corpus vectors (a torch tensor).
        pos_rows: per query, the corpus rows of its positives.
        pos_gain: per query, their grades.

    Returns:
        (n,) nDCG@10 values, computed by :func:`vectune.pipeline.evaluate.ndcg`.
    """
    import torch

    k = min(10, corpus.shape[0])
    top = torch.topk(q @ corpus.T, k, dim=1).indices.cpu().numpy()
    out = np.zeros(len(pos_rows))
    for i, (r, g) in enumerate(zip(pos_rows, pos_gain)):
        gain = dict(zip(r.tolist(), g.tolist()))
        out[i] = ndcg([gain.get(int(j), 0.0) for j in top[i]], g.tolist(), 10)
    return out
