"""Query-side candidates: tune only the query encoder against the collection's stored passage vectors.

The collection already holds the costly half of a retrieval model's work: every passage's
vector. A query-side candidate leaves those vectors (and the model that wrote them) untouched
and learns only how queries are encoded, so nothing of the corpus is ever re-encoded — not
for training, not for evaluation, not for promotion. Two candidates:

* :func:`train_query_encoder` fine-tunes a copy of the query encoder (transformer + pooling)
  with a softmax cross-entropy of each query against the stored vectors (the whole corpus
  when it fits in ``max_corpus_vectors``; otherwise its positives, mined hard negatives and a
  random sample of the corpus);
* :func:`train_linear_map` learns a d×d map on the live query embeddings, started at and
  pulled toward the identity — seconds of training, cautious.

Both stop on a step/time budget and keep the best checkpoint by nDCG@10 on a held-out slice
of the *training* queries (never a golden set). :func:`build_asymmetric_model` packages a
candidate as one sentence-transformers model whose ``encode_query`` takes the tuned route and
whose ``encode_document`` is the original, frozen live model (a
``sentence_transformers.models.Router``), so it saves and loads with ``SentenceTransformer(path)``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

import numpy as np

from vectune.errors import BadInput

logger = logging.getLogger(__name__)

#: One query's positives: passage keys (all relevant), or key -> grade (grade > 0 is relevant).
Positives = Union[Sequence[str], Mapping[str, float]]

MULTI_POSITIVE_LOSSES = ("each", "any")


@dataclass
class QuerySideConfig:
    """How the query-side candidates train.

    Attributes:
        epochs: most epochs over the training queries for the query encoder (the best epoch on
            the validation slice is kept, so this is a budget, not a choice).
        max_steps: most optimizer steps (-1: as many as ``epochs`` need).
        time_budget_s: stop training after this many seconds (0: no limit). The refit (see
            ``refit``) only runs when it fits in what is left.
        lr: AdamW learning rate of the query encoder.
        weight_decay: AdamW weight decay of the query encoder.
        warmup_ratio: share of the planned steps with a linear learning-rate warm-up (then linear decay).
        batch_size: queries per step.
        scale: logit scale (inverse temperature) of the softmax over cosine similarities.
        max_corpus_vectors: most stored vectors held in memory; a corpus that fits is used whole
            as the negatives, a larger one is replaced by a pool of the queries' positives, mined
            hard negatives and a random sample of the corpus, up to this many vectors.
        hard_negatives: hard negatives mined per query (with the live query vectors) for the pool
            when the corpus does not fit in memory.
        multi_positive: ``"each"``: mean over a query's positives of the cross-entropy of that
            positive against all non-positives (positives never compete with each other);
            ``"any"``: ``-log`` of the softmax mass on all positives together.
        val_fraction: share of the training queries held out to pick the best checkpoint.
        refit: after the epoch count is chosen on the validation slice, train again from the
            start on all training queries (slice included) for that many epochs.
        seed: seed of the split, the shuffles and dropout.
        linear_epochs: most epochs of the linear map.
        linear_lr: Adam learning rate of the linear map.
        identity_weight: weight of ``||W - I||_F^2`` in the linear map's loss (pull toward identity); with
            several, each is trained and the best on the validation slice is kept (ties: the strongest).
        device: torch device ('' = CUDA when present, else CPU).
        threads: torch CPU threads while training (0 = auto: one when the machine's 1-minute load
            average is at or above its core count — on a shared CPU, extra threads mostly spin —
            else torch's default). Restored afterwards.
        freeze_embeddings: keep the transformer's input (word/position/type) embeddings fixed; over
            half of a small model's weights, their update is costly and rarely needed for queries.
    """

    epochs: float = 6.0
    max_steps: int = -1
    time_budget_s: float = 420.0
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    batch_size: int = 32
    scale: float = 20.0
    max_corpus_vectors: int = 300_000
    hard_negatives: int = 30
    multi_positive: str = "each"
    val_fraction: float = 0.2
    refit: bool = True
    seed: int = 42
    linear_epochs: int = 30
    linear_lr: float = 1e-3
    identity_weight: float | tuple[float, ...] = (1.0, 0.1, 0.01)
    device: str = ""
    threads: int = 0
    freeze_embeddings: bool = False

    def check(self) -> None:
        """Raise BadInput on a setting that cannot work."""
        if self.multi_positive not in MULTI_POSITIVE_LOSSES:
            raise BadInput(f"multi_positive must be one of {MULTI_POSITIVE_LOSSES}, not {self.multi_positive!r}")
        if not 0 <= self.val_fraction < 1:
            raise BadInput(f"val_fraction must be in [0, 1), not {self.val_fraction}")
        if self.batch_size < 1 or self.epochs <= 0 or self.linear_epochs < 0:
            raise BadInput("batch_size and epochs must be positive")
        if self.max_corpus_vectors < 2:
            raise BadInput("max_corpus_vectors must be at least 2")


@dataclass
class QuerySideStats:
    """What one query-side training did.

    Attributes:
        kind: ``"encoder"`` or ``"linear"``.
        train_queries: queries trained on (after the validation slice was taken out).
        val_queries: queries in the validation slice.
        dropped_queries: queries with no positive among the corpus keys (not used).
        train_indices: indices (into the queries passed in) trained on in the selection run.
        val_indices: indices of the validation slice.
        corpus_in_memory: stored vectors the loss ran against.
        pooled: True when the corpus did not fit and a pool stood in for it.
        steps: optimizer steps (selection run + refit).
        examples: query-positive pairs seen in those steps.
        seconds: wall time of the training (both runs, validation included).
        examples_per_s: ``examples / seconds``.
        epochs_run: epochs of the selection run (fractional when a budget stopped it).
        stopped_by: ``"epochs"``, ``"max_steps"`` or ``"time"``.
        chosen_epoch: epoch of the kept checkpoint (0: the live model was best, nothing learned).
        val_metric: the selection metric.
        val_live: its value for the live model on the slice.
        val_best: its value for the kept checkpoint on the slice (selection run).
        val_curve: ``[epoch, value]`` after each evaluation.
        val_new_docs: slice queries none of whose positives is a positive of a training query.
        val_curve_new_docs: ``[epoch, value]`` on those queries alone (reported, not selected on): whether
            the gain reaches documents training never pointed at, or only re-finds known ones.
        epoch_loss: mean training loss per epoch of the selection run.
        refit: True when the returned model was retrained on all training queries.
        refit_epochs: epochs of that refit.
        threads: torch CPU threads used.
        frozen_params: parameters kept fixed (``freeze_embeddings``).
        beats_live: whether the kept checkpoint scored above the live model on the slice (None: no
            slice). The best *trained* checkpoint is returned either way; the golden gate decides.
        identity_weight: the linear map's chosen identity-pull weight.
        weight_scores: slice value of the best epoch for each identity weight tried.
    """

    kind: str
    train_queries: int = 0
    val_queries: int = 0
    dropped_queries: int = 0
    train_indices: list[int] = field(default_factory=list, repr=False)
    val_indices: list[int] = field(default_factory=list, repr=False)
    corpus_in_memory: int = 0
    pooled: bool = False
    steps: int = 0
    examples: int = 0
    seconds: float = 0.0
    examples_per_s: float = 0.0
    epochs_run: float = 0.0
    stopped_by: str = "epochs"
    chosen_epoch: float = 0.0
    val_metric: str = "ndcg@10"
    val_live: float | None = None
    val_best: float | None = None
    val_curve: list[list[float]] = field(default_factory=list)
    val_new_docs: int = 0
    val_curve_new_docs: list[list[float]] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    refit: bool = False
    refit_epochs: float = 0.0
    threads: int = 0
    frozen_params: int = 0
    beats_live: bool | None = None
    identity_weight: float | None = None
    weight_scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready summary (without the index lists)."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("train_indices", "val_indices")}
        for k, v in out.items():
            if isinstance(v, float):
                out[k] = round(v, 4)
        out["val_curve"] = [[round(e, 3), round(v, 4)] for e, v in self.val_curve]
        out["val_curve_new_docs"] = [[round(e, 3), round(v, 4)] for e, v in self.val_curve_new_docs]
        out["epoch_loss"] = [round(v, 4) for v in self.epoch_loss]
        return out


# ----------------------------------------------------------------------------- data
@dataclass
class _Data:
    """Training data resolved to rows of the in-memory corpus tensor."""

    corpus: Any  # torch.Tensor (N, d), L2-normalised, on the device
    pos_rows: list[np.ndarray]  # per kept query: rows of its positives
    pos_gain: list[np.ndarray]  # per kept query: their grades (> 0)
    kept: list[int]  # index into the caller's queries of each kept query
    dropped: int
    pooled: bool


def _normalise_positives(positives: Sequence[Positives], n: int) -> list[dict[str, float]]:
    if len(positives) != n:
        raise BadInput(f"{n} queries but {len(positives)} positive lists: give one per query")
    out = []
    for p in positives:
        if isinstance(p, Mapping):
            out.append({str(k): float(g) for k, g in p.items() if float(g) > 0})
        elif isinstance(p, str):
            out.append({p: 1.0})
        else:
            out.append({str(k): 1.0 for k in p})
    return out


def _as_unit_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 rows with unit norm (a copy only when needed)."""
    arr = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1)
    if arr.size and not np.allclose(norms, 1.0, atol=1e-3):
        logger.info("stored vectors are not unit-norm: normalising a copy for the query-side loss")
        arr = arr / np.maximum(norms[:, None], 1e-12)
    return np.ascontiguousarray(arr)


def _mine_rows(query_vecs: np.ndarray, corpus_vectors: Any, k: int, exclude: list[set[int]],
               chunk: int = 65_536) -> list[np.ndarray]:
    """Top-``k`` corpus rows per query by inner product, skipping each query's ``exclude`` rows.

    Streams the corpus in chunks, so ``corpus_vectors`` may be a memory map larger than memory.
    """
    n = query_vecs.shape[0]
    want = [k + len(e) for e in exclude]
    top_s = [np.empty(0, np.float32) for _ in range(n)]
    top_i = [np.empty(0, np.int64) for _ in range(n)]
    total = corpus_vectors.shape[0]
    for start in range(0, total, chunk):
        block = _as_unit_rows(corpus_vectors[start:start + chunk])
        scores = query_vecs @ block.T
        for q in range(n):
            kk = min(want[q], scores.shape[1])
            part = np.argpartition(-scores[q], kk - 1)[:kk]
            s = np.concatenate([top_s[q], scores[q, part]])
            i = np.concatenate([top_i[q], part + start])
            keep = np.argsort(-s)[:want[q]]
            top_s[q], top_i[q] = s[keep], i[keep]
    return [np.array([r for r in rows if r not in ex][:k], dtype=np.int64) for rows, ex in zip(top_i, exclude)]


def _prepare(positives: Sequence[Positives], n_queries: int, corpus_vectors: Any, corpus_keys: Sequence[str],
             negatives: Sequence[Sequence[str]] | None, cfg: QuerySideConfig, live_query_vecs,
             device: str) -> _Data:
    """Resolve positives to corpus rows and load the corpus (or a pool standing in for it) as a tensor.

    Args:
        positives: per query, its positive keys (or key -> grade).
        n_queries: number of queries.
        corpus_vectors: (N, d) stored vectors (array or memory map).
        corpus_keys: key of each row.
        negatives: optional per-query hard-negative keys (added to the pool).
        cfg: the config.
        live_query_vecs: a callable returning the live query vectors (only called when mining is needed).
        device: torch device.

    Returns:
        The resolved data.
    """
    import torch

    if len(corpus_keys) != corpus_vectors.shape[0]:
        raise BadInput(f"{corpus_vectors.shape[0]} corpus vectors but {len(corpus_keys)} keys")
    if negatives is not None and len(negatives) != n_queries:
        raise BadInput(f"{n_queries} queries but {len(negatives)} negative lists")
    pos = _normalise_positives(positives, n_queries)
    row_of = {str(k): i for i, k in enumerate(corpus_keys)}
    kept, rows, gains = [], [], []
    for qi, p in enumerate(pos):
        found = [(row_of[k], g) for k, g in p.items() if k in row_of]
        if found:
            kept.append(qi)
            rows.append(np.array([r for r, _ in found], dtype=np.int64))
            gains.append(np.array([g for _, g in found], dtype=np.float32))
    dropped = n_queries - len(kept)
    if dropped:
        logger.info("%d of %d queries have no positive among the %d corpus keys: left out", dropped, n_queries,
                    len(corpus_keys))
    if len(kept) < 2:
        raise BadInput(f"only {len(kept)} queries have a positive in the corpus: need at least 2 to train")

    total = corpus_vectors.shape[0]
    if total <= cfg.max_corpus_vectors:
        corpus = torch.from_numpy(_as_unit_rows(corpus_vectors)).to(device)
        return _Data(corpus, rows, gains, kept, dropped, pooled=False)

    # The corpus does not fit: positives + hard negatives (given, and mined with the live query
    # vectors) + a random sample of the rest, up to max_corpus_vectors rows.
    pool: set[int] = set()
    for r in rows:
        pool.update(int(x) for x in r)
    if negatives is not None:
        for qi in kept:
            pool.update(row_of[str(k)] for k in negatives[qi] if str(k) in row_of)
    if cfg.hard_negatives > 0:
        qv = np.asarray(live_query_vecs(kept), dtype=np.float32)
        for mined in _mine_rows(qv, corpus_vectors, cfg.hard_negatives, [set(map(int, r)) for r in rows]):
            pool.update(int(x) for x in mined)
    if len(pool) > cfg.max_corpus_vectors:
        raise BadInput(f"positives and hard negatives alone are {len(pool)} vectors, over max_corpus_vectors "
                       f"({cfg.max_corpus_vectors}): raise it or lower hard_negatives")
    rng = np.random.default_rng(cfg.seed)
    room = cfg.max_corpus_vectors - len(pool)
    if room:
        # draw a few more than the room (some draws are already in the pool), then keep the first new ones
        extra = rng.choice(total, size=min(total, room + len(pool)), replace=False)
        fresh = [int(x) for x in extra if int(x) not in pool][:room]
        pool.update(fresh)
    pool_rows = np.array(sorted(pool), dtype=np.int64)
    remap = {int(r): i for i, r in enumerate(pool_rows)}
    rows = [np.array([remap[int(x)] for x in r], dtype=np.int64) for r in rows]
    corpus = torch.from_numpy(_as_unit_rows(np.asarray(corpus_vectors[pool_rows]))).to(device)
    logger.info("corpus of %d vectors over max_corpus_vectors=%d: training against a pool of %d", total,
                cfg.max_corpus_vectors, len(pool_rows))
    return _Data(corpus, rows, gains, kept, dropped, pooled=True)


def _split(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) positions among ``n`` kept queries."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = 0 if frac <= 0 else min(n - 1, max(1, int(round(frac * n))))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _new_doc_mask(data: _Data, tr: np.ndarray, va: np.ndarray) -> np.ndarray:
    """Which slice queries have no positive that a training query also has."""
    seen: set[int] = set()
    for i in tr:
        seen.update(int(x) for x in data.pos_rows[i])
    return np.array([not seen.intersection(int(x) for x in data.pos_rows[i]) for i in va], dtype=bool)


# ----------------------------------------------------------------------------- loss and metric
def _loss(q, corpus, pos_rows: list[np.ndarray], pos_gain: list[np.ndarray], scale: float, mode: str):
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


def _ndcg10(q, corpus, pos_rows: list[np.ndarray], pos_gain: list[np.ndarray]) -> np.ndarray:
    """Per-query nDCG@10 (grades as gains) of unit query vectors against the corpus tensor."""
    import torch

    k = min(10, corpus.shape[0])
    top = torch.topk(q @ corpus.T, k, dim=1).indices.cpu().numpy()
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.zeros(len(pos_rows))
    for i, (r, g) in enumerate(zip(pos_rows, pos_gain)):
        gain = dict(zip(r.tolist(), g.tolist()))
        dcg = sum(gain.get(int(j), 0.0) * disc[rank] for rank, j in enumerate(top[i]))
        ideal = np.sort(g)[::-1][:k]
        idcg = float((ideal * disc[: ideal.size]).sum())
        out[i] = dcg / idcg if idcg else 0.0
    return out


def _lr_lambda(total_steps: int, warmup_ratio: float):
    warm = max(1, int(math.ceil(total_steps * warmup_ratio))) if warmup_ratio > 0 else 0

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))
    return f


# ----------------------------------------------------------------------------- query encoder
def _load(model_path_or_st_model: Any, device: str):
    from sentence_transformers import SentenceTransformer

    if isinstance(model_path_or_st_model, SentenceTransformer):
        return model_path_or_st_model
    try:
        return SentenceTransformer(str(model_path_or_st_model), device=device, trust_remote_code=False,
                                   model_kwargs={"use_safetensors": True})
    except Exception as e:  # noqa: BLE001 - any load failure is a bad model reference
        raise BadInput(f"model {model_path_or_st_model!r} does not load: {str(e).splitlines()[0][:300]}") from None


def _router(model) -> Any | None:
    from sentence_transformers.sentence_transformer.modules import Router

    first = model[0] if len(model) else None
    return first if isinstance(first, Router) else None


def is_asymmetric(model) -> bool:
    """True when ``model`` routes queries and documents differently (a ``Router`` first module).

    Such a model must be called with ``encode_query`` / ``encode_document`` (or ``encode(..., task=)``):
    its plain ``encode`` takes the default (document) route.

    Args:
        model: a SentenceTransformer.

    Returns:
        Whether it has a query/document router.
    """
    return _router(model) is not None


def query_route(model) -> list:
    """The modules a model encodes queries with (the query route of an asymmetric model, else all).

    Args:
        model: a SentenceTransformer.

    Returns:
        Its query modules, in order (the model's own objects, not copies).
    """
    return _route(model, "query")


def document_route(model) -> list:
    """The modules a model encodes passages (documents) with.

    Args:
        model: a SentenceTransformer.

    Returns:
        Its document modules, in order (the model's own objects, not copies).
    """
    return _route(model, "document")


def _route(model, task: str) -> list:
    router = _router(model)
    if router is None:
        return list(model.children())
    route = router._resolve_route(task=task)
    return list(router.sub_modules[route]) + list(model.children())[1:]


def _query_model(live, device: str, freeze_embeddings: bool = False):
    """A trainable deep copy of ``live``'s query route as a plain SentenceTransformer."""
    import torch
    from sentence_transformers import SentenceTransformer

    mods = copy.deepcopy(query_route(live))
    model = SentenceTransformer(modules=mods, device=device, similarity_fn_name=live.similarity_fn_name)
    if freeze_embeddings:
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):
                module.weight.requires_grad_(False)
    return model


def _embed(model, texts: list[str]):
    """Unit query vectors of ``texts`` (already prompted), with autograd when the model trains."""
    import torch

    prep = getattr(model, "preprocess", None) or model.tokenize
    feats = prep(texts)
    feats = {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in feats.items()}
    out = model(feats)["sentence_embedding"]
    return torch.nn.functional.normalize(out, dim=-1)


def _embed_eval(model, texts: list[str], batch: int = 128):
    import torch

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [_embed(model, texts[i:i + batch]) for i in range(0, len(texts), batch)]
    finally:
        model.train(was)
    return torch.cat(parts) if parts else None


def _device(cfg: QuerySideConfig) -> str:
    if cfg.device:
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def _threads(cfg: QuerySideConfig, stats: "QuerySideStats"):
    """Set torch's CPU threads for the training (see ``QuerySideConfig.threads``), then restore them."""
    import torch

    before = torch.get_num_threads()
    want = cfg.threads
    if want <= 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        try:
            busy = os.getloadavg()[0] >= cores
        except OSError:
            busy = False
        want = 1 if busy and cores > 1 else before
    stats.threads = want
    torch.set_num_threads(want)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_query_encoder(model_path_or_st_model: Any, queries: Sequence[str], positives: Sequence[Positives],
                        corpus_vectors: np.ndarray, corpus_keys: Sequence[str],
                        negatives: Sequence[Sequence[str]] | None = None, cfg: QuerySideConfig | None = None,
                        query_prompt: str = "") -> tuple[Any, QuerySideStats]:
    """Fine-tune the query encoder against frozen stored passage vectors.

    Only a copy of the query route learns; the passage side is ``corpus_vectors`` and is never
    encoded. Each step: a batch of queries, a softmax cross-entropy (``cfg.scale``) of each query
    against the in-memory corpus (see :class:`QuerySideConfig`). After each epoch the model is
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
        cfg: the training config (defaults: :class:`QuerySideConfig`).
        query_prompt: prefix the live model puts before queries ('' for none).

    Returns:
        ``(model, stats)``: the tuned query encoder (a plain SentenceTransformer of the query
        route) and what the training did.

    Raises:
        BadInput: mismatched inputs, or fewer than 2 queries with a positive in the corpus.
    """

    cfg = cfg or QuerySideConfig()
    cfg.check()
    device = _device(cfg)
    live = _load(model_path_or_st_model, device)
    texts_all = [query_prompt + str(q) for q in queries]
    base = _query_model(live, device, cfg.freeze_embeddings)

    def live_vecs(idx: list[int]) -> np.ndarray:
        return _embed_eval(base, [texts_all[i] for i in idx]).cpu().numpy()

    data = _prepare(positives, len(queries), corpus_vectors, corpus_keys, negatives, cfg, live_vecs, device)
    tr, va = _split(len(data.kept), cfg.val_fraction, cfg.seed)
    stats = QuerySideStats(kind="encoder", train_queries=len(tr), val_queries=len(va), dropped_queries=data.dropped,
                           train_indices=[data.kept[i] for i in tr], val_indices=[data.kept[i] for i in va],
                           corpus_in_memory=int(data.corpus.shape[0]), pooled=data.pooled,
                           frozen_params=sum(p.numel() for p in base.parameters() if not p.requires_grad))
    with _threads(cfg, stats):
        t0 = time.perf_counter()
        deadline = t0 + cfg.time_budget_s if cfg.time_budget_s > 0 else math.inf

        val_texts = [texts_all[data.kept[i]] for i in va]
        val_rows = [data.pos_rows[i] for i in va]
        val_gain = [data.pos_gain[i] for i in va]

        new_docs = _new_doc_mask(data, tr, va)
        stats.val_new_docs = int(new_docs.sum())

        def score(model) -> tuple[float, float | None]:
            per = _ndcg10(_embed_eval(model, val_texts), data.corpus, val_rows, val_gain)
            return float(per.mean()), (float(per[new_docs].mean()) if new_docs.any() else None)

        model = copy.deepcopy(base)
        best_state = None
        if len(va):
            stats.val_live, new = score(model)
            stats.val_best = stats.val_live
            stats.val_curve.append([0.0, stats.val_live])
            if new is not None:
                stats.val_curve_new_docs.append([0.0, new])
        run = _run(model, tr, data, texts_all, cfg, cfg.epochs, deadline, stats, score if len(va) else None)
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
                rr = _run(model, every, data, texts_all, cfg, refit_epochs, deadline, stats, None,
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


def _run(model, positions: np.ndarray, data: _Data, texts_all: list[str], cfg: QuerySideConfig, epochs: float,
         deadline: float, stats: QuerySideStats, score, planned_epochs: float | None = None) -> dict:
    """One training run over ``positions`` (indices into ``data.kept``); evaluates after each epoch."""
    import torch

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n = len(positions)
    per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total = max(1, int(math.ceil(epochs * per_epoch)))
    if cfg.max_steps > 0:
        total = min(total, cfg.max_steps)
    planned = max(total, int(math.ceil((planned_epochs or epochs) * per_epoch)))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(planned, cfg.warmup_ratio))
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
        q = _embed(model, [texts_all[data.kept[i]] for i in batch])
        loss = _loss(q, data.corpus, [data.pos_rows[i] for i in batch], [data.pos_gain[i] for i in batch],
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


# ----------------------------------------------------------------------------- linear map
def train_linear_map(query_vectors: np.ndarray, positives: Sequence[Positives], corpus_vectors: np.ndarray,
                     corpus_keys: Sequence[str], negatives: Sequence[Sequence[str]] | None = None,
                     cfg: QuerySideConfig | None = None) -> tuple[np.ndarray, QuerySideStats]:
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

    Returns:
        ``(W, stats)``: the map as a float32 (d, d) array (rows = output dims, as ``nn.Linear.weight``).

    Raises:
        BadInput: mismatched inputs or dimensions.
    """
    import torch

    cfg = cfg or QuerySideConfig()
    cfg.check()
    device = _device(cfg)
    qv_all = _as_unit_rows(query_vectors)
    if qv_all.ndim != 2 or qv_all.shape[1] != corpus_vectors.shape[1]:
        raise BadInput(f"query vectors {qv_all.shape} and stored vectors {corpus_vectors.shape} differ in dimension")
    data = _prepare(positives, qv_all.shape[0], corpus_vectors, corpus_keys, negatives, cfg,
                    lambda idx: qv_all[idx], device)
    tr, va = _split(len(data.kept), cfg.val_fraction, cfg.seed)
    stats = QuerySideStats(kind="linear", train_queries=len(tr), val_queries=len(va), dropped_queries=data.dropped,
                           train_indices=[data.kept[i] for i in tr], val_indices=[data.kept[i] for i in va],
                           corpus_in_memory=int(data.corpus.shape[0]), pooled=data.pooled)
    q_all = torch.from_numpy(qv_all[data.kept]).to(device)
    d = q_all.shape[1]
    eye = torch.eye(d, device=device)
    with _threads(cfg, stats):
        t0 = time.perf_counter()
        deadline = t0 + cfg.time_budget_s if cfg.time_budget_s > 0 else math.inf

        new_docs = _new_doc_mask(data, tr, va)
        stats.val_new_docs = int(new_docs.sum())

        def score(w) -> tuple[float, float | None]:
            with torch.no_grad():
                q = torch.nn.functional.normalize(q_all[va] @ w.T, dim=-1)
                per = _ndcg10(q, data.corpus, [data.pos_rows[i] for i in va], [data.pos_gain[i] for i in va])
            return float(per.mean()), (float(per[new_docs].mean()) if new_docs.any() else None)

        def run(positions: np.ndarray, epochs: int, weight: float, select: bool) -> tuple[torch.Tensor, dict]:
            torch.manual_seed(cfg.seed)
            rng = np.random.default_rng(cfg.seed)
            w = torch.nn.Parameter(eye.clone())
            opt = torch.optim.Adam([w], lr=cfg.linear_lr)
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
                    loss = _loss(q, data.corpus, [data.pos_rows[i] for i in batch], [data.pos_gain[i] for i in batch],
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


def _identity_weights(cfg: QuerySideConfig) -> list[float]:
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


# ----------------------------------------------------------------------------- packaging
def build_asymmetric_model(live_model: Any, tuned_query_model: Any | None = None,
                           linear: np.ndarray | None = None):
    """One SentenceTransformer whose query route is the candidate and whose document route is the live model.

    ``encode_document`` (and plain ``encode``: the default route is ``document``) runs the live
    model's own (document-route) modules, so passages encode exactly as the stored vectors were
    written; ``encode_query`` runs the tuned query encoder, or the live query route followed by a
    bias-free identity-activation ``Dense`` holding the linear map and a ``Normalize``. Modules
    shared by both routes (the linear case) are saved once.

    Args:
        live_model: the live SentenceTransformer (an asymmetric one is fine: its document route is kept).
        tuned_query_model: the model from :func:`train_query_encoder`.
        linear: the map from :func:`train_linear_map` (exclusive with ``tuned_query_model``).

    Returns:
        The asymmetric SentenceTransformer (shares module objects with its inputs; save it with
        ``model.save(path, safe_serialization=True)``).

    Raises:
        BadInput: neither or both candidates given, or a map of the wrong shape.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Router

    if (tuned_query_model is None) == (linear is None):
        raise BadInput("give exactly one of tuned_query_model and linear")
    doc = document_route(live_model)
    if linear is not None:
        w = torch.as_tensor(np.asarray(linear, dtype=np.float32))
        get_dim = getattr(live_model, "get_embedding_dimension", None) or live_model.get_sentence_embedding_dimension
        d = int(get_dim())
        if tuple(w.shape) != (d, d):
            raise BadInput(f"linear map of shape {tuple(w.shape)}: the model's embeddings are {d}-d, so it must be "
                           f"({d}, {d})")
        dense = Dense(d, d, bias=False, activation_function=None, init_weight=w)
        query = query_route(live_model) + [dense, Normalize()]
    else:
        query = list(tuned_query_model.children())
    router = Router.for_query_document(query_modules=query, document_modules=doc)
    model = SentenceTransformer(modules=[router], device=str(live_model.device),
                                similarity_fn_name=live_model.similarity_fn_name,
                                prompts=dict(getattr(live_model, "prompts", {}) or {}),
                                default_prompt_name=getattr(live_model, "default_prompt_name", None))
    return model
