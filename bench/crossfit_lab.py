"""An in-memory SciFact for studying the gate without Qdrant: the product's own cross-fit and holdout on stored vectors.

Used by ``bench/crossfit.py`` (folds vs time, epoch choice, the final fit's check) and ``bench/gate_power.py``
(cross-fitting against the 30% holdout). The passages are encoded once with the live model and cached in
``bench/work/`` (the same cache as ``bench/query_side.py``: ``title. text``, as ``vectune index --with-title``
stores them); every candidate is a query-side one, trained and scored against those stored vectors with
vectune's own code:

* **cross-fit**: :class:`vectune.pipeline.crossfit.CrossFit` on the labels (seeded folds, as a ``--train-set``),
  gated by :func:`vectune.pipeline.gate.judge` on the pooled evidence, then each candidate's final fit on all
  labels and its check;
* **holdout**: what the cycle did before (and does with ``VECTUNE_CROSSFIT=false``): a seeded 30% of the
  labels is the golden set, the rest trains each candidate with its trainer's own epoch-choice slice and refit
  (:func:`vectune.pipeline.train.query.candidates.train_one`), gated on the golden set.

The never-seen test queries are scored for every model: the truth.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from quality import load_beir
from query_side import corpus_texts, stored_vectors

BENCH = Path(__file__).resolve().parent
WORK = BENCH / "work"


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


@dataclass
class World:
    """SciFact in memory: the stored corpus, the labels pool (train queries), the test queries, check queries."""

    beir: dict
    live: object
    keys: list[str]
    texts: list[str]
    vectors: np.ndarray
    read: SimpleNamespace
    train_ids: list[str]
    test_ids: list[str]
    check: list
    test: list

    def labels(self, qids: list[str]) -> list:
        from vectune.pipeline.pairs.labeled import LabeledQuery

        q = self.beir["queries"]
        return [LabeledQuery(q[i], set(self.beir["train"][i])) for i in qids]

    def pairs(self, labels: list, shuffle: int | None = None) -> SimpleNamespace:
        """The pairs stage's result for these labels, as ``make_queries`` makes it from a train set.

        ``shuffle``: a seed to permute the answers among the queries (a candidate trained on wrong labels).
        """
        from vectune.pipeline.pairs.labeled import LabeledQuery
        from vectune.pipeline.pairs.teachers.base import Query

        if shuffle is not None:
            answers = [q.relevant for q in labels]
            random.Random(shuffle).shuffle(answers)
            labels = [LabeledQuery(q.text, set(a)) for q, a in zip(labels, answers)]
        queries = [Query(q.text, sorted(q.relevant)[0], "train-set") for q in labels]
        return SimpleNamespace(queries=queries, relevant={q.text: set(q.relevant) for q in labels},
                               eval_queries=list(self.check), examples=[])

    def test_gain(self, enc) -> dict:
        """An encoder's nDCG@10 on the test queries against the stored vectors, and the per-query deltas over live."""
        from vectune.pipeline.evaluate import evaluate

        live = self.live_test()
        res = evaluate(enc.encode_queries([q.text for q in self.test]), self.vectors, self.keys, self.test)
        return {"ndcg@10": res.means["ndcg@10"], "per_query": res.per_query["ndcg@10"] - live.per_query["ndcg@10"]}

    def live_test(self):
        if not hasattr(self, "_live_test"):
            from vectune.pipeline.evaluate import evaluate

            self._live_test = evaluate(self.live.encode_queries([q.text for q in self.test]), self.vectors,
                                       self.keys, self.test)
        return self._live_test


def world(data: Path, seed: int = 42, check_queries: bool = True) -> World:
    """Load SciFact, the cached stored vectors, and the teacher's held-out check queries (as the cycle makes them)."""
    from vectune.config.sections import PairsConfig
    from vectune.config.settings import BUNDLED_MODEL, Settings
    from vectune.core.chunks import Chunk
    from vectune.models.store import ModelStore
    from vectune.pipeline.evaluate import EvalQuery
    from vectune.pipeline.pairs.stage import split_chunks
    from vectune.pipeline.pairs.teachers.offline import OfflineGenerator

    beir = load_beir(data)
    live = ModelStore.from_settings(Settings()).load(BUNDLED_MODEL)
    keys, texts = corpus_texts(beir)
    vectors = np.asarray(stored_vectors(data.resolve().name, keys, texts, live, WORK)[0], dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    chunks = [Chunk(key=k, point_id=k, text=t, vector=v) for k, t, v in zip(keys, texts, vectors)]
    read = SimpleNamespace(live="bench", meta={"model_ref": BUNDLED_MODEL, "base_model": BUNDLED_MODEL},
                           chunks=chunks, by_key={c.key: c for c in chunks}, stats=SimpleNamespace(usable=len(chunks)),
                           ensure=lambda store, keys: 0)
    check = []
    if check_queries:
        split = split_chunks(read, PairsConfig(), max_chunks=Settings().read.max_train_chunks, seed=seed)
        made = OfflineGenerator(method="mix", seed=seed).generate(split.held, 1).queries
        check = [EvalQuery(q.text, {q.chunk_id}, q.source) for q in made][:PairsConfig().max_eval_queries]
    test_ids = sorted(beir["test"])
    test = [EvalQuery(beir["queries"][i], set(beir["test"][i]), "test") for i in test_ids]
    return World(beir, live, keys, texts, vectors, read, sorted(beir["train"]), test_ids, check, test)


# ----------------------------------------------------------------------------- the two ways to decide
def crossfit(w: World, qids: list[str], *, kinds, query, gate=None, folds: int = 5, budget_s: float = 0.0,
             seed: int = 42, epoch_choice: str = "folds", extra: bool = True, final: str = "chosen",
             shuffle: int | None = None) -> dict:
    """The product's cross-fit on ``qids`` (seeded folds), its gate, and final fits (``chosen``, ``all`` or ``none``).

    Returns:
        ``{"cf": CrossFit, "outcomes", "verdict", "finals": {kind: {...}}, "seconds": {...}}``.
    """
    from vectune.config.sections import FullConfig, GateConfig, LabelsConfig
    from vectune.pipeline.crossfit import EVIDENCE, CrossFit, make_plan
    from vectune.pipeline.gate import judge

    gate = gate or GateConfig()
    labels = w.labels(qids)
    plan = make_plan(labels, LabelsConfig(folds=folds, min_golden=2, min_train=2), by_time=False, seed=seed)
    cf = CrossFit(None, w.read, w.pairs(plan.labels, shuffle), w.live, plan, kinds=kinds, query=query, full=FullConfig(),
                  gate=gate, models=None, budget_s=budget_s, seed=seed, epoch_choice=epoch_choice,
                  extra=w.test if extra else None)
    t0 = time.perf_counter()
    cf.run_folds()
    t_folds = time.perf_counter() - t0
    outcomes = cf.outcomes()
    verdict = judge(cf.placeholders(), outcomes, EVIDENCE, gate)
    finals = {}
    todo = {"chosen": [verdict.chosen] if verdict.chosen else [], "all": list(kinds), "none": []}[final]
    for kind in todo:
        t1 = time.perf_counter()
        cand = cf.final_fit(kind)
        secs = time.perf_counter() - t1
        if cand is None:
            finals[kind] = {"point": cf.stats[kind].final_point, "note": "no training point beat live"}
            continue
        check = cf.check(kind, cand, outcomes[kind])
        finals[kind] = {"point": cf.stats[kind].final_point, "seconds": round(secs, 1), "check": check,
                        "test": w.test_gain(cand.encoder)}
    return {"cf": cf, "outcomes": outcomes, "verdict": verdict, "finals": finals,
            "seconds": {"folds": round(t_folds, 1), "probe": round(sum(p.seconds for p in cf.probes), 1)}}


def fold_test(cf, kind: str, points=None) -> list[float]:
    """Each fold model's test nDCG@10 at its chosen point (or at ``points``), from the probe's extra queries."""
    pts = points or [tuple(p) for p in cf.stats[kind].chosen]
    return [float(pr.extra_points[kind][tuple(p)].means["ndcg@10"]) for pr, p in zip(cf.probes, pts)]


def holdout_split(items: list, seed: int, golden_fraction: float = 0.3) -> tuple[list, list]:
    """The holdout's seeded split: ``(golden, train)``, the golden share at least one item."""
    order = list(items)
    random.Random(seed + 17).shuffle(order)
    n_golden = max(1, int(round(golden_fraction * len(order))))
    return order[:n_golden], order[n_golden:]


def holdout(w: World, qids: list[str], *, kinds, query, gate=None, golden_fraction: float = 0.3,
            seed: int = 42, shuffle: int | None = None) -> dict:
    """The holdout the cycle used before cross-fitting: a seeded share decides, the rest trains (slice + refit)."""
    from vectune.config.sections import GateConfig
    from vectune.pipeline.evaluate import EvalOutcome, EvalQuery, evaluate
    from vectune.pipeline.gate import judge
    from vectune.pipeline.train.query.candidates import query_training_set, stored_corpus, train_one

    gate = gate or GateConfig()
    golden_ids, train_ids = holdout_split(qids, seed, golden_fraction)
    labels = w.labels(train_ids)
    pairs = w.pairs(labels, shuffle)
    texts, positives = query_training_set(pairs.queries, pairs.relevant)
    keys, vectors = stored_corpus(w.read, positives, query.corpus_max)
    golden = [EvalQuery(q.text, set(q.relevant), "golden") for q in w.labels(golden_ids)]
    live = evaluate(w.live.encode_queries([q.text for q in golden]), w.vectors, w.keys, golden)
    cands, outcomes, tests = [], {}, {}
    for kind in kinds:
        cand = train_one(kind, w.read, texts, positives, keys, vectors, w.live, query, seed=seed)
        res = evaluate(cand.encoder.encode_queries([q.text for q in golden]), w.vectors, w.keys, golden)
        outcomes[kind] = EvalOutcome({"golden": (live, res)}, [], None, {})
        cands.append(cand)
        tests[kind] = w.test_gain(cand.encoder)
    verdict = judge(cands, outcomes, "golden", gate)
    return {"verdict": verdict, "outcomes": outcomes, "tests": tests, "golden": len(golden),
            "train": len(train_ids), "golden_ids": golden_ids, "live": live}


def subsample(pool: list[str], n: int, draw: int, seed: int = 42) -> list[str]:
    """A seeded draw of ``n`` label ids (the same for every method and candidate)."""
    rng = random.Random(seed * 1_000_003 + n * 1_009 + draw)
    return sorted(rng.sample(pool, n))


def dump(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
