"""Pairs stage: split the chunks, ask the teacher for queries, add labeled queries, mine hard negatives.

The split is by chunk (a held-out chunk never trains). Eval queries are generated
first, so a teacher's budget cuts training pairs, not the evidence. Hard negatives
come from the live collection's stored vectors (see :mod:`vectune.pipeline.pairs.negatives`).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import numpy as np

from vectune.config.sections import NegativesConfig, PairsConfig
from vectune.core.chunks import Chunk, sample, split
from vectune.core.vectors import normalize
from vectune.errors import BadInput
from vectune.models.encoder import Encoder
from vectune.pipeline.evaluate import EvalQuery
from vectune.pipeline.pairs.feedback import merge_negatives
from vectune.pipeline.pairs.labeled import LabeledQuery
from vectune.pipeline.pairs.negatives import Example, count_sources, mine, texts_from_records
from vectune.pipeline.pairs.teachers.base import Query, QueryGenerator
from vectune.pipeline.pairs.teachers.roundtrip import roundtrip_filter
from vectune.pipeline.read import ReadResult
from vectune.qdrant.store import Store, point_id_for

logger = logging.getLogger(__name__)

#: Query sources that are real labels (never sampled away by the pair budget).
LABELED = ("train-set", "feedback")


@dataclass
class Split:
    """Chunks for training and held-out chunks for the teacher's eval queries."""

    pool: list[Chunk]
    train: list[Chunk]
    held: list[Chunk]

    def counts(self) -> dict:
        return {"sampled": len(self.pool), "train_chunks": len(self.train), "eval_chunks": len(self.held)}


@dataclass
class Pairs:
    """What the pairs stage made.

    Attributes:
        queries: the training queries (teacher and labeled), each pointing at one chunk.
        eval_queries: the teacher's held-out queries (synthetic or teacher evidence).
        examples: training examples with hard negatives.
        teacher: the generator's name.
        counts: per-step counts for the run report.
        neighbours: each training query's nearest points in the live collection (keys, best first), as mining
            found them with the live query encoder (empty when mining did not search).
    """

    queries: list[Query]
    eval_queries: list[EvalQuery]
    teacher: str
    examples: list[Example] = field(default_factory=list)
    relevant: dict[str, set[str]] = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    neighbours: dict[str, list[str]] = field(default_factory=dict)


def split_chunks(read: ReadResult, cfg: PairsConfig, *, max_chunks: int, seed: int = 42) -> Split:
    """Sample at most ``max_chunks`` chunks and split them by chunk, seeded.

    Training chunks are cut to what the pair budget can use (no teacher calls for pairs
    the budget would drop anyway).

    Args:
        read: the read stage's result.
        cfg: the pairs settings (held-out share, pair budget, queries per chunk).
        max_chunks: chunks sampled at most (``read.max_train_chunks``).
        seed: the sample's seed.
    """
    pool = sample(read.chunks, max_chunks, seed)
    train_chunks, held = split(pool, cfg.eval_fraction, seed)
    budget_chunks = -(-cfg.max_train_pairs // cfg.queries_per_chunk)
    if len(train_chunks) > budget_chunks:
        train_chunks = sample(train_chunks, budget_chunks, seed)
    return Split(pool, train_chunks, held)


def make_queries(store: Store, read: ReadResult, split_: Split, generator: QueryGenerator, live_enc: Encoder,
                 cfg: PairsConfig, trainset: list[LabeledQuery] | None = None, label_source: str = "train-set",
                 rejections=None, teacher_train: bool = True, *, seed: int = 42) -> Pairs:
    """Generate queries, add labeled ones, cap to the budget (hard negatives: :func:`add_negatives`).

    Args:
        store: Qdrant access (nearest neighbours in the live collection).
        read: the read stage's result.
        split_: the chunk split.
        generator: the teacher.
        live_enc: the live model (query side for mining and the round-trip filter).
        cfg: the pairs settings (queries per chunk, budgets, round-trip filter).
        trainset: real labeled queries to train on, if any.
        label_source: where they came from (``train-set`` or ``feedback``).
        rejections: pairs and queries people vetoed (:class:`vectune.pipeline.pairs.rejections.Rejections`): never
            trained on.
        teacher_train: ask the teacher for training queries (False when only the query side learns
            from real labels: it would not use them).
        seed: the seed of the budget's sample.

    Returns:
        The training queries and the eval queries.

    Raises:
        BadInput: fewer than two training queries.
    """
    counts: dict = {}
    search = _searcher(store, read)
    gen_eval = generator.generate(split_.held, 1)
    gen_train = generator.generate(split_.train if teacher_train else [], cfg.queries_per_chunk)
    train_queries: list[Query] = list(gen_train.queries)
    eval_generated: list[Query] = list(gen_eval.queries)
    roundtrip = None
    if cfg.roundtrip_filter and generator.name.startswith("openai"):

        def keys_only(vecs, k):
            return [[key for key, _ in hits] for hits in search(vecs, k)]

        train_queries, dropped_t = roundtrip_filter(train_queries, live_enc.encode_queries, keys_only,
                                                    cfg.roundtrip_top_k)
        eval_generated, dropped_e = roundtrip_filter(eval_generated, live_enc.encode_queries, keys_only,
                                                     cfg.roundtrip_top_k)
        roundtrip = {"top_k": cfg.roundtrip_top_k, "kept": len(train_queries) + len(eval_generated),
                     "dropped": dropped_t + dropped_e}
    counts["generate"] = {"train": gen_train.stats.to_dict(), "eval": gen_eval.stats.to_dict(),
                          "roundtrip_filter": roundtrip}
    relevant: dict[str, set[str]] = {}
    vetoed_labels = 0
    if trainset and rejections is not None and len(rejections):
        trainset, vetoed_labels = rejections.filter(trainset)  # vetoed answers leave the labels too
    if trainset:
        missing = read.ensure(store, {k for q in trainset for k in q.relevant})
        used = 0
        for q in trainset:
            keys = [k for k in sorted(q.relevant) if k in read.by_key]
            relevant[q.text] = set(q.relevant)
            for k in keys[:1]:
                train_queries.append(Query(q.text, k, label_source))
                used += 1
        counts["train_set" if label_source == "train-set" else "feedback_pairs"] = {
            "queries": len(trainset), "pairs": used, "unknown_ids": missing}
    if rejections is not None and len(rejections):
        train_queries, dropped_t = rejections.filter(train_queries)
        eval_generated, dropped_e = rejections.filter(eval_generated)
        counts["rejected"] = {"train": dropped_t, "eval": dropped_e, "labeled_queries": vetoed_labels,
                              "kept_rejections": rejections.counts()}
    held_keys = {c.key for c in split_.held}
    eval_queries = [EvalQuery(q.text, {q.chunk_id}, q.source) for q in eval_generated if q.chunk_id in held_keys]
    eval_queries = eval_queries[: cfg.max_eval_queries]
    if len(train_queries) > cfg.max_train_pairs:
        # keep every real labeled pair; sample the synthetic ones down to the budget
        real = [q for q in train_queries if q.source in LABELED]
        synth = [q for q in train_queries if q.source not in LABELED]
        keep = max(0, cfg.max_train_pairs - len(real))
        synth = random.Random(seed + 3).sample(synth, min(keep, len(synth)))
        counts["train_pairs_capped"] = {"cap": cfg.max_train_pairs,
                                        "dropped": len(train_queries) - len(real) - len(synth)}
        train_queries = real + synth
    if len(train_queries) < 2:
        raise BadInput(f"only {len(train_queries)} training queries could be made from {len(split_.train)} chunks")
    return Pairs(train_queries, eval_queries, generator.name, relevant=relevant, counts=counts)


def add_negatives(store: Store, read: ReadResult, pairs: Pairs, live_enc: Encoder, cfg: NegativesConfig,
                  explicit: dict[str, list[str]] | None = None, *, seed: int = 42) -> Pairs:
    """Mine hard negatives for every training query: the live query encoder against the stored vectors.

    Users' explicit negatives (``explicit``: query text → passage texts they rejected) go first.
    ``cfg`` sets how many per query, how deep to look and the false-negative guard.

    Returns:
        ``pairs`` with its training examples (and their counts) filled in.
    """

    qv = live_enc.encode_queries([q.text for q in pairs.queries])
    pv = normalize(np.stack([read.by_key[q.chunk_id].vector for q in pairs.queries]))

    def fetch(keys):
        return texts_from_records(store.retrieve(read.live, [point_id_for(k) for k in keys]),
                                  read.text_field)

    search = _searcher(store, read)

    def recorded(vecs, limit):  # the neighbours are kept: the query side's corpus is widened with them
        hits = search(vecs, limit)
        if len(hits) == len(pairs.queries):
            for q, h in zip(pairs.queries, hits):
                pairs.neighbours.setdefault(q.text, [k for k, _ in h])
        return hits

    examples, mstats = mine(pairs.queries, qv, pv, {k: c.text for k, c in read.by_key.items()},
                            recorded, fetch, num_negatives=cfg.per_query, depth=cfg.depth,
                            skip_top=cfg.skip_top, relative_margin=cfg.relative_margin, relevant=pairs.relevant,
                            seed=seed)
    if explicit:

        examples, applied = merge_negatives(examples, explicit, cfg.per_query)
        mstats.explicit = applied
    pairs.examples = examples
    pairs.counts["pairs"] = {"examples": len(examples), "by_source": count_sources(examples)}
    pairs.counts["negatives"] = mstats.to_dict()
    return pairs


def _searcher(store: Store, read: ReadResult):
    def search(vecs, limit):
        hits = store.search_batch(read.live, vecs, limit, using=read.spec.name)
        return [[(str(pid), s) for pid, s in h] for h in hits]

    return search
