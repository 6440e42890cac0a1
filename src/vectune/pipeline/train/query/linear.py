"""The ``linear`` candidate: a d×d map on the live query embeddings, started at and pulled toward the
identity — seconds of training, cautious. Packaged by
:func:`~vectune.pipeline.train.query.router.build_asymmetric_model` as a bias-free ``Dense`` + ``Normalize``
after the live query route."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from vectune.config.sections import QueryConfig
from vectune.errors import BadInput
from vectune.models.device import device as pick_device
from vectune.models.device import torch_threads
from vectune.pipeline.train.query.data import as_unit_rows, new_doc_mask, prepare, split_slice
from vectune.pipeline.train.query.loss import slice_ndcg10, softmax_loss
from vectune.pipeline.train.query.stats import Positives, QuerySideStats

logger = logging.getLogger(__name__)


def train_linear_map(query_vectors: np.ndarray, positives: Sequence[Positives], corpus_vectors: np.ndarray,
                     corpus_keys: Sequence[str], negatives: Sequence[Sequence[str]] | None = None,
                     cfg: QueryConfig | None = None, *, seed: int = 42, device: str | None = None,
                     on_epoch: Callable[[float, np.ndarray, float], None] | None = None,
                     deadline: float | None = None) -> tuple[np.ndarray, QuerySideStats]:
    """Learn a d×d linear map on the live query embeddings, started at and pulled toward the identity.

    The candidate query vector is ``normalize(W @ q)``; the loss is the query encoder's
    cross-entropy against the stored vectors plus ``cfg.identity_weight * ||W - I||_F^2``. The best
    epoch on the validation slice of the training queries is kept (``stats.beats_live`` says whether it
    beat the identity there).

    Args:
        query_vectors: (n, d) live query embeddings of the training queries (prompt applied).
        positives: per query, its positive keys, or key -> grade.
        corpus_vectors: (N, d) stored passage vectors (may be a memory map).
        corpus_keys: key of each stored vector.
        negatives: optional per-query hard-negative keys (for the pool of a corpus too big to hold).
        cfg: the config (``linear_epochs``, ``linear_lr``, ``identity_weight``, ``batch_size``, ...).
        on_epoch: called as ``on_epoch(epoch, W, identity_weight)`` after every epoch of every identity
            weight's run (``W`` a float32 numpy copy): how cross-fitting scores a fold's map on its held-out
            fold (:mod:`vectune.pipeline.crossfit`).
        deadline: a ``time.perf_counter()`` value to stop at, if earlier than the time budget's.

    Returns:
        ``(W, stats)``: the map as a float32 (d, d) array (rows = output dims, as ``nn.Linear.weight``).

    Raises:
        BadInput: mismatched inputs or dimensions.
    """
    import torch

    cfg = cfg or QueryConfig()
    device = pick_device(device)
    qv_all = as_unit_rows(query_vectors)
    if qv_all.ndim != 2 or qv_all.shape[1] != corpus_vectors.shape[1]:
        raise BadInput(f"query vectors {qv_all.shape} and stored vectors {corpus_vectors.shape} differ in dimension")
    data = prepare(positives, qv_all.shape[0], corpus_vectors, corpus_keys, negatives, cfg, seed,
                   lambda idx: qv_all[idx], device)
    tr, va = split_slice(len(data.kept), cfg.val_fraction, seed)
    stats = QuerySideStats(kind="linear", train_queries=len(tr), val_queries=len(va), dropped_queries=data.dropped,
                           train_indices=[data.kept[i] for i in tr], val_indices=[data.kept[i] for i in va],
                           corpus_in_memory=int(data.corpus.shape[0]), pooled=data.pooled)
    q_all = torch.from_numpy(qv_all[data.kept]).to(device)
    d = q_all.shape[1]
    eye = torch.eye(d, device=device)
    with torch_threads(cfg.threads) as stats.threads:
        t0 = time.perf_counter()
        deadline = min(t0 + cfg.time_budget_s if cfg.time_budget_s > 0 else math.inf,
                       math.inf if deadline is None else deadline)

        new_docs = new_doc_mask(data, tr, va)
        stats.val_new_docs = int(new_docs.sum())

        def score(w) -> tuple[float, float | None]:
            with torch.no_grad():
                q = torch.nn.functional.normalize(q_all[va] @ w.T, dim=-1)
                per = slice_ndcg10(q, data.corpus, [data.pos_rows[i] for i in va], [data.pos_gain[i] for i in va])
            return float(per.mean()), (float(per[new_docs].mean()) if new_docs.any() else None)

        def run(positions: np.ndarray, epochs: int, weight: float, select: bool) -> tuple[torch.Tensor, dict]:
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            w = torch.nn.Parameter(eye.clone())
            opt = torch.optim.Adam([w], lr=cfg.linear_learning_rate)
            per_epoch = max(1, math.ceil(len(positions) / cfg.batch_size))
            best = {"w": eye.clone(), "epoch": 0, "value": None, "epochs": 0, "stopped_by": "epochs",
                    "curve": [[0.0, stats.val_live]] if select else [], "loss": [],
                "curve_new": [[0.0, live_new]] if select and live_new is not None else []}
            done = 0
            for epoch in range(1, epochs + 1):
                order = positions[rng.permutation(len(positions))]
                losses = []
                for b in range(per_epoch):
                    batch = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                    q = torch.nn.functional.normalize(q_all[batch] @ w.T, dim=-1)
                    loss = softmax_loss(q, data.corpus, [data.pos_rows[i] for i in batch],
                                        [data.pos_gain[i] for i in batch],
                                 cfg.scale, cfg.multi_positive)
                    loss = loss + weight * ((w - eye) ** 2).sum()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    stats.steps += 1
                    stats.examples += int(sum(len(data.pos_rows[i]) for i in batch))
                    losses.append(float(loss.detach()))
                    done += 1
                    if cfg.max_steps > 0 and done >= cfg.max_steps:
                        break
                best["epochs"] = epoch if len(losses) == per_epoch else epoch - 1 + len(losses) / per_epoch
                best["loss"].append(float(np.mean(losses)))
                if on_epoch is not None:
                    on_epoch(float(best["epochs"]), w.detach().cpu().numpy().astype(np.float32), weight)
                if select:
                    value, new = score(w.detach())
                    best["curve"].append([float(epoch), value])
                    if new is not None:
                        best["curve_new"].append([float(epoch), new])
                    if best["value"] is None or value > best["value"]:
                        best.update(w=w.detach().clone(), epoch=epoch, value=value)
                if cfg.max_steps > 0 and done >= cfg.max_steps:
                    best["stopped_by"] = "max_steps"
                    break
                if time.perf_counter() > deadline:
                    best["stopped_by"] = "time"
                    break
            if not select:
                best["w"] = w.detach().clone()
            return best["w"], best

        weights = _identity_weights(cfg)
        live_new = None
        if len(va):
            stats.val_live, live_new = score(eye)
        # strongest pull first: a weaker one is kept only when it is strictly better on the slice
        w, info, chosen = None, None, weights[0]
        for weight in weights:
            w_i, info_i = run(tr, cfg.linear_epochs, weight, select=bool(len(va)))
            if len(va):
                stats.weight_scores[str(weight)] = info_i["value"]
            if info is None or (len(va) and info_i["value"] is not None and info_i["value"] > info["value"]):
                w, info, chosen = w_i, info_i, weight
            if info_i["stopped_by"] == "time":
                break
        stats.identity_weight = chosen
        stats.epochs_run, stats.stopped_by = float(info["epochs"]), info["stopped_by"]
        stats.val_curve, stats.epoch_loss = info["curve"], info["loss"]
        stats.val_curve_new_docs = info["curve_new"]
        if len(va) and info["value"] is not None:
            stats.chosen_epoch, stats.val_best = float(info["epoch"]), info["value"]
            stats.beats_live = stats.val_best > stats.val_live
            if cfg.refit and info["epoch"] > 0 and time.perf_counter() < deadline:
                w_refit, rinfo = run(np.arange(len(data.kept)), int(info["epoch"]), chosen, select=False)
                if rinfo["stopped_by"] == "epochs":
                    w, stats.refit, stats.refit_epochs = w_refit, True, float(info["epoch"])
        else:
            stats.chosen_epoch = float(info["epochs"])
    stats.seconds = time.perf_counter() - t0
    stats.examples_per_s = stats.examples / stats.seconds if stats.seconds else 0.0
    logger.info("linear map: %d steps in %.1f s; chosen epoch %s, slice nDCG@10 %s -> %s", stats.steps,
                stats.seconds, stats.chosen_epoch, stats.val_live, stats.val_best)
    return w.cpu().numpy().astype(np.float32), stats


def _identity_weights(cfg: QueryConfig) -> list[float]:
    """The identity-pull weights to try, strongest first."""
    raw = cfg.identity_weight
    values = [float(raw)] if isinstance(raw, (int, float)) else [float(x) for x in raw]
    if not values or any(v < 0 for v in values):
        raise BadInput(f"identity_weight must be one or more non-negative numbers, not {raw!r}")
    return sorted(set(values), reverse=True)


def apply_linear(w: np.ndarray, query_vectors: np.ndarray) -> np.ndarray:
    """The linear candidate's query vectors: ``normalize(q @ W.T)`` (what its Dense + Normalize route gives).

    Args:
        w: the (d, d) map from :func:`train_linear_map`.
        query_vectors: (n, d) live query embeddings.

    Returns:
        (n, d) unit float32 vectors.
    """
    out = np.asarray(query_vectors, dtype=np.float32) @ np.asarray(w, dtype=np.float32).T
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)
