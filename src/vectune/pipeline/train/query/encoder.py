"""Train the query encoder against the stored passage vectors (the ``query`` candidate).

Only a copy of the live model's query route learns; the passage side is the collection's stored
vectors and is never encoded. See :func:`train_query_encoder`."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vectune.config.sections import QueryConfig
from vectune.models.device import device as pick_device
from vectune.models.device import torch_threads
from vectune.pipeline.train.query.data import TrainingData, new_doc_mask, prepare, split_slice
from vectune.pipeline.train.query.loss import lr_lambda, slice_ndcg10, softmax_loss
from vectune.pipeline.train.query.router import embed, embed_eval, load_model, trainable_query_model
from vectune.pipeline.train.query.stats import Positives, QuerySideStats

logger = logging.getLogger(__name__)


def train_query_encoder(model_path_or_st_model: Any, queries: Sequence[str], positives: Sequence[Positives],
                        corpus_vectors: np.ndarray, corpus_keys: Sequence[str],
                        negatives: Sequence[Sequence[str]] | None = None, cfg: QueryConfig | None = None,
                        query_prompt: str = "", *, seed: int = 42, device: str | None = None,
                        on_epoch: Callable[[float, Any], None] | None = None, stop_after: float | None = None,
                        deadline: float | None = None) -> tuple[Any, QuerySideStats]:
    """Fine-tune the query encoder against frozen stored passage vectors.

    Only a copy of the query route learns; the passage side is ``corpus_vectors`` and is never
    encoded. Each step: a batch of queries, a softmax cross-entropy (``cfg.scale``) of each query
    against the in-memory corpus (see :class:`QueryConfig`). After each epoch the model is
    scored (nDCG@10) on a seeded validation slice of the training queries; the best epoch is kept
    (the best trained epoch, even when the live model scored higher: ``stats.beats_live`` says so and
    the golden gate decides). With ``cfg.refit`` the model is then trained
    again from the start on all training queries for the chosen number of epochs.

    Args:
        model_path_or_st_model: the live model (a SentenceTransformer, which is not modified, or a path).
        queries: training query texts (never golden queries).
        positives: per query, its positive passage keys, or key -> grade (several allowed).
        corpus_vectors: (N, d) stored passage vectors, in ``corpus_keys`` order (may be a memory map).
        corpus_keys: key of each stored vector.
        negatives: optional per-query hard-negative keys (used for the pool of a corpus too big to hold).
        cfg: the query-side settings (:class:`~vectune.config.sections.QueryConfig`; its defaults when None).
        query_prompt: prefix the live model puts before queries ('' for none).
        seed: seed of the validation slice, the shuffles, dropout and the pool's sample.
        device: torch device (default: CUDA when present, else the CPU).
        on_epoch: called as ``on_epoch(epoch, model)`` after every epoch of the selection run (and where the
            time budget cuts one short): how cross-fitting scores a fold model on its held-out fold
            (:mod:`vectune.pipeline.crossfit`). The model is in eval mode during the call.
        stop_after: stop after this many epochs, with the learning-rate schedule still planned over
            ``cfg.epochs`` (the cross-fit's final fit: the fold models' chosen epoch, on all labels).
        deadline: a ``time.perf_counter()`` value to stop at, if earlier than the time budget's.

    Returns:
        ``(model, stats)``: the tuned query encoder (a plain SentenceTransformer of the query
        route) and what the training did.

    Raises:
        BadInput: mismatched inputs, or fewer than 2 queries with a positive in the corpus.
    """

    cfg = cfg or QueryConfig()
    device = pick_device(device)
    live = load_model(model_path_or_st_model, device)
    texts_all = [query_prompt + str(q) for q in queries]
    base = trainable_query_model(live, device, cfg.freeze_embeddings)

    def live_vecs(idx: list[int]) -> np.ndarray:
        return embed_eval(base, [texts_all[i] for i in idx]).cpu().numpy()

    data = prepare(positives, len(queries), corpus_vectors, corpus_keys, negatives, cfg, seed, live_vecs, device)
    tr, va = split_slice(len(data.kept), cfg.val_fraction, seed)
    stats = QuerySideStats(kind="encoder", train_queries=len(tr), val_queries=len(va), dropped_queries=data.dropped,
                           train_indices=[data.kept[i] for i in tr], val_indices=[data.kept[i] for i in va],
                           corpus_in_memory=int(data.corpus.shape[0]), pooled=data.pooled,
                           frozen_params=sum(p.numel() for p in base.parameters() if not p.requires_grad))
    with torch_threads(cfg.threads) as stats.threads:
        t0 = time.perf_counter()
        deadline = min(t0 + cfg.time_budget_s if cfg.time_budget_s > 0 else math.inf,
                       math.inf if deadline is None else deadline)

        val_texts = [texts_all[data.kept[i]] for i in va]
        val_rows = [data.pos_rows[i] for i in va]
        val_gain = [data.pos_gain[i] for i in va]

        new_docs = new_doc_mask(data, tr, va)
        stats.val_new_docs = int(new_docs.sum())

        def score(model) -> tuple[float, float | None]:
            per = slice_ndcg10(embed_eval(model, val_texts), data.corpus, val_rows, val_gain)
            return float(per.mean()), (float(per[new_docs].mean()) if new_docs.any() else None)

        model = copy.deepcopy(base)
        best_state = None
        if len(va):
            stats.val_live, new = score(model)
            stats.val_best = stats.val_live
            stats.val_curve.append([0.0, stats.val_live])
            if new is not None:
                stats.val_curve_new_docs.append([0.0, new])
        run = _run(model, tr, data, texts_all, cfg, seed, stop_after or cfg.epochs, deadline, stats,
                   score if len(va) else None, planned_epochs=cfg.epochs, on_epoch=on_epoch)
        best_state = run["best_state"]
        stats.epochs_run, stats.stopped_by = run["epochs"], run["stopped_by"]
        stats.epoch_loss = run["epoch_loss"]
        if len(va):
            stats.chosen_epoch, stats.val_best = run["best_epoch"], run["best_value"]
        else:  # no slice to choose on: the last state
            stats.chosen_epoch = run["epochs"]

        if len(va):
            stats.beats_live = stats.val_best > stats.val_live
            if not stats.beats_live:
                logger.info("query encoder: no epoch beat the live model on the training slice (nDCG@10 %.4f, "
                            "best epoch %.4f); the gate decides", stats.val_live, stats.val_best)
        if len(va) and best_state is None:
            model = copy.deepcopy(base)
        elif cfg.refit and len(va) and run["epoch_seconds"]:
            refit_epochs = stats.chosen_epoch
            need = run["epoch_seconds"] * refit_epochs * (len(data.kept) / max(1, len(tr)))
            if time.perf_counter() + need <= deadline:
                model = copy.deepcopy(base)
                every = np.arange(len(data.kept))
                rr = _run(model, every, data, texts_all, cfg, seed, refit_epochs, deadline, stats, None,
                          planned_epochs=cfg.epochs)
                stats.refit, stats.refit_epochs = rr["stopped_by"] == "epochs", rr["epochs"]
                if not stats.refit:  # cut short by the budget: fall back to the selected checkpoint
                    logger.info("query encoder: the refit ran out of budget; keeping the selected checkpoint")
                    model.load_state_dict(best_state)
            else:
                logger.info("query encoder: no time left to refit on all training queries (%.0f s needed)", need)
                model.load_state_dict(best_state)
        elif best_state is not None:
            model.load_state_dict(best_state)
    model.eval()
    stats.seconds = time.perf_counter() - t0
    stats.examples_per_s = stats.examples / stats.seconds if stats.seconds else 0.0
    logger.info("query encoder: %d steps, %d examples in %.1f s (%.1f ex/s); chosen epoch %s, slice nDCG@10 "
                "%s -> %s", stats.steps, stats.examples, stats.seconds, stats.examples_per_s, stats.chosen_epoch,
                stats.val_live, stats.val_best)
    return model, stats


def _run(model, positions: np.ndarray, data: TrainingData, texts_all: list[str], cfg: QueryConfig, seed: int,
         epochs: float, deadline: float, stats: QuerySideStats, score, planned_epochs: float | None = None,
         on_epoch: Callable[[float, Any], None] | None = None) -> dict:
    """One training run over ``positions`` (indices into ``data.kept``); evaluates after each epoch."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n = len(positions)
    per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total = max(1, int(math.ceil(epochs * per_epoch)))
    if cfg.max_steps > 0:
        total = min(total, cfg.max_steps)
    planned = max(total, int(math.ceil((planned_epochs or epochs) * per_epoch)))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(planned, cfg.warmup_ratio))
    model.train()
    out = {"best_state": None, "best_epoch": 0.0, "best_value": None, "epochs": 0.0,
           "stopped_by": "epochs", "epoch_loss": [], "epoch_seconds": 0.0}
    step, order, losses = 0, np.array([], dtype=np.int64), []
    t_epoch = time.perf_counter()
    while step < total:
        if step % per_epoch == 0:
            order = positions[rng.permutation(n)]
        b = step % per_epoch
        batch = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        q = embed(model, [texts_all[data.kept[i]] for i in batch])
        loss = softmax_loss(q, data.corpus, [data.pos_rows[i] for i in batch], [data.pos_gain[i] for i in batch],
                     cfg.scale, cfg.multi_positive)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        stats.steps += 1
        stats.examples += int(sum(len(data.pos_rows[i]) for i in batch))
        losses.append(float(loss.detach()))
        end_of_epoch = step % per_epoch == 0 or step == total
        over = time.perf_counter() > deadline
        if end_of_epoch or over:
            out["epochs"] = step / per_epoch
            out["epoch_loss"].append(float(np.mean(losses)))
            losses = []
            if step % per_epoch == 0:
                out["epoch_seconds"] = (time.perf_counter() - t_epoch) / (step / per_epoch)
            if score is not None:
                value, new = score(model)
                stats.val_curve.append([out["epochs"], value])
                if new is not None:
                    stats.val_curve_new_docs.append([out["epochs"], new])
                if out["best_value"] is None or value > out["best_value"]:
                    out["best_value"], out["best_epoch"] = value, out["epochs"]
                    out["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
                model.train()
            if on_epoch is not None:
                model.eval()
                on_epoch(out["epochs"], model)
                model.train()
            logger.info("query encoder%s: epoch %.2f, loss %.4f, slice nDCG@10 %s, %.0f s", "" if score else " (refit)",
                        out["epochs"], out["epoch_loss"][-1],
                        f"{stats.val_curve[-1][1]:.4f}" if score is not None else "-", time.perf_counter() - t_epoch)
        if over and step < total:
            out["stopped_by"] = "time"
            break
    else:
        if cfg.max_steps > 0 and total == cfg.max_steps and total < int(math.ceil(epochs * per_epoch)):
            out["stopped_by"] = "max_steps"
    return out
