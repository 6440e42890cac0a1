"""The query-side candidates as the cycle trains them: labels and stored vectors in, :class:`Candidate` out."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from vectune.config.sections import QueryConfig
from vectune.core.vectors import normalize
from vectune.models.encoder import Encoder
from vectune.models.store import new_model_tag
from vectune.pipeline.train.candidate import Candidate
from vectune.pipeline.train.query.encoder import train_query_encoder
from vectune.pipeline.train.query.linear import train_linear_map
from vectune.pipeline.train.query.router import build_asymmetric_model

logger = logging.getLogger(__name__)


def train_query_side(read, queries: Sequence, relevant: dict[str, set[str]], live_enc: Encoder, cfg: QueryConfig,
                     kinds: Sequence[str] = ("linear", "query"), *, seed: int = 42,
                     device: str | None = None) -> list[Candidate]:
    """The query-side candidates: only the query side learns, against the live collection's stored vectors.

    Args:
        read: the read stage's result; its chunks' stored vectors are the passages (never re-encoded).
        queries: training queries (:class:`vectune.pipeline.pairs.teachers.base.Query`). When some are real labels
            (``train-set`` or ``feedback``), only those train: offline pseudo-queries do not help here.
        relevant: every relevant key of a labeled query (several positives per query are used).
        live_enc: the live model; the candidates start from its query side.
        cfg: the query-side settings.
        kinds: which of ``linear`` and ``query`` to train.
        seed: the training seed.
        device: torch device (default: CUDA when present, else the CPU).

    Returns:
        One candidate per kind, each an asymmetric model whose document route is the live passage model.

    Raises:
        BadInput: fewer than two queries have a positive among the stored vectors.
    """
    texts, positives = query_training_set(queries, relevant)
    keys, vectors = stored_corpus(read, positives, cfg.corpus_max)
    return [train_one(kind, read, texts, positives, keys, vectors, live_enc, cfg, seed=seed, device=device)
            for kind in kinds]


def train_one(kind: str, read, texts: list[str], positives: list[set[str]], keys: list[str], vectors: np.ndarray,
              live_enc: Encoder, cfg: QueryConfig, *, seed: int = 42, device: str | None = None,
              package: bool = True, **train_kw) -> Candidate:
    """One query-side candidate trained on ``texts``/``positives`` against the stored ``vectors``.

    Args:
        kind: ``linear`` or ``query``.
        read: the read stage's result (the lineage names the tag's parent).
        texts: distinct training query texts.
        positives: each text's positive keys.
        keys: the stored corpus's keys (:func:`stored_corpus`).
        vectors: their stored, normalised vectors.
        live_enc: the live model.
        cfg: the query-side settings.
        seed: the training seed.
        device: torch device.
        package: build the asymmetric model (False: a fold model that is only scored through ``on_epoch``;
            the candidate's ``encoder`` is then None).
        **train_kw: passed to the trainer (``on_epoch``, ``deadline``; ``stop_after`` for the encoder);
            ``query_vectors``: the live query vectors of ``texts`` when already known (the linear map).

    Returns:
        The candidate.
    """
    qv = train_kw.pop("query_vectors", None)
    if kind == "linear":
        train_kw.pop("stop_after", None)  # the linear map's epochs are cfg.linear_epochs
        qv = live_enc.encode_queries(texts) if qv is None else qv
        w, stats = train_linear_map(qv, positives, vectors, keys, cfg=cfg, seed=seed, device=device, **train_kw)
        model = build_asymmetric_model(live_enc.model, linear=w) if package else None
    elif kind == "query":
        tuned, stats = train_query_encoder(live_enc.model, texts, positives, vectors, keys, cfg=cfg,
                                           query_prompt=live_enc.query_prompt, seed=seed, device=device, **train_kw)
        model = build_asymmetric_model(live_enc.model, tuned_query_model=tuned) if package else None
    else:
        raise ValueError(f"not a query-side candidate: {kind!r}")
    tag = new_model_tag(read.meta["model_ref"], kind)
    enc = (Encoder(model=model, ref=tag, query_prompt=live_enc.query_prompt, batch_size=live_enc.batch_size)
           if model is not None else None)
    logger.info("query-side candidate %s: %s", kind, stats.to_dict())
    return Candidate(enc, tag, stats, kind)


def query_training_set(queries: Sequence, relevant: dict[str, set[str]]) -> tuple[list[str], list[set[str]]]:
    """Distinct query texts with their positive keys; real labels only, when there are any."""
    real = [q for q in queries if q.source in ("train-set", "feedback")]
    by_text: dict[str, set[str]] = {}
    for q in real or queries:
        by_text.setdefault(q.text, set()).add(q.chunk_id)
        by_text[q.text] |= set(relevant.get(q.text, ()))
    texts = sorted(by_text)
    return texts, [by_text[t] for t in texts]


def widen_corpus(store, read, live_enc: Encoder, texts: Sequence[str], per_query: int,
                 known: dict[str, list[str]] | None = None) -> dict:
    """Bring the whole collection's hardest negatives into the query side's training corpus.

    The read stage keeps a sample of the live collection in memory (at most ``eval_corpus_cap`` chunks); the
    query-side trainer's softmax runs over it. In a larger collection the chunks that compete with a query's
    answer are mostly outside that sample, so the trainer never sees them. This asks the live collection's
    own search for each training query's ``per_query`` nearest points (by the live query vectors) and adds
    them, with their stored vectors, to ``read.by_key``: the training corpus becomes the sample plus every
    query's real hard negatives. Nothing happens when the sample already is the whole collection.
    Neighbours mining already found (``known``: query text → keys, best first; :attr:`Pairs.neighbours`) are
    reused: only queries without ``per_query`` of them are encoded and searched.

    Returns:
        What was done (for the run report): queries, those searched (no neighbours from mining), points asked
        for, and added.
    """
    if per_query <= 0 or not texts or read.stats.usable <= len(read.by_key):
        return {}
    known = known or {}
    want = {k for t in texts if len(known.get(t, ())) >= per_query for k in known[t][:per_query]}
    ask = [t for t in texts if len(known.get(t, ())) < per_query]
    if ask:
        hits = store.search_batch(read.live, live_enc.encode_queries(ask), per_query, using=read.spec.name)
        want |= {str(pid) for h in hits for pid, _ in h}
    before = len(read.by_key)
    read.ensure(store, want)
    return {"queries": len(texts), "searched": len(ask), "nearest": len(want), "added": len(read.by_key) - before,
            "corpus": len(read.by_key)}


def stored_corpus(read, positives: list[set[str]], cap: int):
    """Keys and stored (normalised) vectors the query side trains against: every positive, then the rest up to cap.

    The rest is every other chunk the cycle holds (the read stage's sample and the widened neighbours); above
    ``cap`` a seeded random share of it, never the first keys in sort order.
    """
    import random

    need = {k for p in positives for k in p if k in read.by_key}
    rest = sorted(k for k in read.by_key if k not in need)
    room = max(0, cap - len(need))
    if len(rest) > room:
        rest = sorted(random.Random(len(rest)).sample(rest, room))
    keys = sorted(need) + rest
    return keys, normalize(np.stack([read.by_key[k].vector for k in keys]))
