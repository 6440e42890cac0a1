"""Cross-fitted evidence: every labeled query trains and testifies.

Without a fixed eval set, holding out a golden share wastes labels twice: the golden queries never
train, and a gate on a small golden set rarely passes. Cross-fitting uses each label for both:

1. **Folds.** The labeled queries are split into K folds (:func:`make_plan`): blocked by time for
   feedback (each fold a stretch of time, the newest last), seeded for a train set; a query text is
   in exactly one fold.
2. **Fold models.** For each fold, every candidate trains on the other folds only (the query side with
   no epoch-choice slice of its own: every label of those folds trains) and is scored on its fold after
   every epoch (:class:`Probe`) with the gate's own scoring (:func:`vectune.pipeline.evaluate.evaluate`).
3. **The epoch count** comes from those curves, and no fold chooses on its own queries: fold k's
   scores are taken at the training point (epoch; for the linear map, epoch and identity pull) that
   is best over the *other* folds' held-out queries (:func:`choose_points`). The per-query
   candidate − live deltas of all folds, pooled, are what the gate's paired test decides on
   (evidence ``cross-fitted``).
4. **The final fit.** The promoted candidate is trained once more on *all* labels, for the point that
   is best over all folds' held-out queries, the learning-rate schedule as the fold models had it.
5. **The final fit's check** (:meth:`CrossFit.check`): no query is left to score it on fairly, so it
   is checked against the fold models, which the gate judged: (a) on the labeled queries, the final
   fit (which trained on them) must not score significantly below the fold models' held-out scores of
   the same queries (it learned at least what they learned); (b) on the teacher's held-out queries,
   which no model trained on, it must not score significantly below the fold models' average. A
   failed check keeps the live model.

K+1 trainings per candidate. All of them share one time budget (``LabelsConfig.budget_s``): a final-fit
reserve, the rest in equal shares per fold (see :class:`Budget`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vectune.config.sections import FullConfig, GateConfig, LabelsConfig, QueryConfig
from vectune.core.vectors import normalize
from vectune.errors import BadInput
from vectune.models.encoder import Encoder
from vectune.models.store import ModelStore, new_model_tag
from vectune.pipeline.evaluate import EvalOutcome, EvalQuery, EvalResult, eval_corpus, evaluate, scan_top, score
from vectune.pipeline.gate import one_sided_p
from vectune.pipeline.pairs.labeled import LabeledQuery
from vectune.pipeline.train.candidate import Candidate
from vectune.pipeline.train.full import fine_tune
from vectune.pipeline.train.query.candidates import query_training_set, stored_corpus, train_one
from vectune.pipeline.train.query.linear import apply_linear
from vectune.pipeline.train.query.router import embed_eval

logger = logging.getLogger(__name__)

#: The evidence name of cross-fitted results (``EvalOutcome.results`` key, ``Decision.evidence``).
EVIDENCE = "cross-fitted"
#: Teacher held-out queries (never trained on by any model) the final fit's check scores, at most.
CHECK_QUERIES = 200
#: A training point: ``(identity pull or None, epoch)``; ``(None, 0.0)`` is the live model.
Point = tuple
LIVE: Point = (None, 0.0)
#: The point of a fold model that chose its own epoch on its trainer's slice (``epoch_choice="slice"``).
SLICE: Point = ("slice", 1.0)


# ----------------------------------------------------------------------------- folds
@dataclass
class Plan:
    """The labeled queries and the fold of each.

    Attributes:
        labels: distinct labeled queries (oldest first when blocked by time).
        fold_of: the fold of each label.
        folds: K.
        by: ``time`` (feedback: contiguous stretches of time) or ``seeded`` (a train set).
    """

    labels: list[LabeledQuery]
    fold_of: list[int]
    folds: int
    by: str

    def members(self, k: int) -> list[int]:
        """Indices of fold ``k``'s labels."""
        return [i for i, f in enumerate(self.fold_of) if f == k]

    def to_dict(self) -> dict:
        out = {"folds": self.folds, "by": self.by, "queries": len(self.labels),
               "sizes": [len(self.members(k)) for k in range(self.folds)]}
        if self.by == "time":
            out["spans"] = [[self.labels[m[0]].ts, self.labels[m[-1]].ts] if m else None
                            for m in (self.members(k) for k in range(self.folds))]
        return out


def dedupe(labels: Sequence[LabeledQuery]) -> list[LabeledQuery]:
    """One label per query text (their answers, grades and events merged), in first-seen order."""
    by_text: dict[str, LabeledQuery] = {}
    for q in labels:
        have = by_text.get(q.text)
        if have is None:
            by_text[q.text] = LabeledQuery(q.text, set(q.relevant), dict(q.grades) if q.grades else None, q.ts,
                                           tuple(q.events))
            continue
        have.relevant |= set(q.relevant)
        if q.grades:
            have.grades = {**(have.grades or {k: 1.0 for k in have.relevant}), **q.grades}
        have.ts = max(filter(None, (have.ts, q.ts)), default=None)
        have.events = tuple(sorted(set(have.events) | set(q.events)))
    return list(by_text.values())


def make_plan(labels: Sequence[LabeledQuery], cfg: LabelsConfig, *, by_time: bool, seed: int = 42) -> Plan:
    """Split labeled queries into ``cfg.folds`` folds.

    Args:
        labels: the labeled queries; for ``by_time`` in time order, oldest first.
        cfg: the labels settings (``folds``; the minimum is :meth:`LabelsConfig.crossfit_minimum`).
        by_time: contiguous stretches of time (feedback), else a seeded shuffle dealt round-robin.
        seed: the shuffle's seed.

    Returns:
        The plan.

    Raises:
        BadInput: fewer distinct labeled queries than the cross-fit needs.
    """
    labels = dedupe(labels)
    n, k = len(labels), cfg.folds
    if n < cfg.crossfit_minimum():
        raise BadInput(f"{n} distinct labeled queries: cross-fitting with {k} folds needs at least "
                       f"{cfg.crossfit_minimum()} (fewer folds: VECTUNE_CROSSFIT_FOLDS; or give a fixed --eval-set)")
    if by_time:
        fold_of = [min(k - 1, i * k // n) for i in range(n)]
    else:
        order = list(range(n))
        random.Random(seed + 11).shuffle(order)
        fold_of = [0] * n
        for pos, i in enumerate(order):
            fold_of[i] = pos % k
    return Plan(labels, fold_of, k, "time" if by_time else "seeded")


# ----------------------------------------------------------------------------- the time budget
@dataclass
class Budget:
    """One time budget for all of a cross-fit's trainings.

    With ``total`` seconds and K folds, the final fit keeps a reserve of ``total * r / (K + r)`` with
    ``r = K / (K - 1)`` (it trains on K/(K-1) as many queries as a fold model, for no more epochs); the
    rest is shared in equal, cumulative shares per fold (time a fold leaves over goes to the next), and
    inside a fold each candidate gets an equal share of what remains (the cheap linear map first, so the
    query encoder gets nearly all of it). ``total = 0`` sets no deadline (each training still stops at
    ``query_time_budget_s``).
    """

    total: float
    folds: int
    start: float = field(default_factory=time.perf_counter)

    @property
    def reserve(self) -> float:
        r = self.folds / (self.folds - 1)
        return self.total * r / (self.folds + r)

    def fold_deadline(self, k: int) -> float:
        if self.total <= 0:
            return math.inf
        return self.start + (k + 1) * (self.total - self.reserve) / self.folds

    def share(self, until: float, left: int) -> float:
        """A deadline for the next of ``left`` trainings that share the time up to ``until``."""
        if not math.isfinite(until):
            return math.inf
        now = time.perf_counter()
        return now + max(0.0, until - now) / max(1, left)

    def final_deadline(self) -> float:
        """The final fit's deadline: what is left of the budget, and at least its reserve."""
        if self.total <= 0:
            return math.inf
        return max(self.start + self.total, time.perf_counter() + self.reserve)


# ----------------------------------------------------------------------------- scoring the fold models
class Probe:
    """Scores one fold's models on its held-out queries (and on the check queries) at each training point.

    Query-side models score against the same stored vectors as the live model (nothing re-encoded); a full
    model against the evaluation corpus re-encoded with it.

    Args:
        corpus: the evaluation corpus's chunks (sorted by key).
        corpus_vectors: their stored, normalised vectors.
        held: the fold's labeled queries.
        check: teacher held-out queries no model trains on.
        extra: more queries scored at every point for measurement only (a benchmark's never-seen test
            queries, say); they decide nothing. Their results: :attr:`extra_points`.
    """

    def __init__(self, corpus: list, corpus_vectors: np.ndarray, held: list[EvalQuery], check: list[EvalQuery],
                 extra: list[EvalQuery] | None = None):
        self.corpus, self.vectors = corpus, corpus_vectors
        self.keys = [c.key for c in corpus]
        self.held, self.check, self.extra = held, check, list(extra or [])
        self.texts = [q.text for q in held] + [q.text for q in check] + [q.text for q in self.extra]
        self.points: dict[str, dict[Point, tuple[EvalResult, EvalResult | None]]] = {}
        self.extra_points: dict[str, dict[Point, EvalResult]] = {}
        self.held_vectors: dict[str, dict[Point, np.ndarray]] = {}  # against stored vectors: rescored on the whole
        self.reached: dict[str, dict[Point, float]] = {}  # seconds into the kind's training when a point was scored
        self.started: dict[str, float] = {}
        self.seconds = 0.0

    def start(self, kind: str) -> None:
        """Mark the start of ``kind``'s training (:attr:`reached` counts from here, scoring time excluded)."""
        self.started[kind] = time.perf_counter()
        self._scoring = 0.0

    def score(self, kind: str, point: Point, query_vectors: np.ndarray,
              corpus_vectors: np.ndarray | None = None) -> None:
        """Record ``kind``'s results at ``point`` from its vectors of :attr:`texts`."""
        t0 = time.perf_counter()
        qv = np.asarray(query_vectors, dtype=np.float32)
        cv = self.vectors if corpus_vectors is None else corpus_vectors
        nh, nc = len(self.held), len(self.check)
        h = evaluate(qv[:nh], cv, self.keys, self.held)
        c = evaluate(qv[nh:nh + nc], cv, self.keys, self.check) if self.check else None
        self.points.setdefault(kind, {})[point] = (h, c)
        if corpus_vectors is None:
            self.held_vectors.setdefault(kind, {})[point] = qv[:nh].copy()
        if self.extra:
            self.extra_points.setdefault(kind, {})[point] = evaluate(qv[nh + nc:], cv, self.keys, self.extra)
        spent = time.perf_counter() - t0
        self.seconds += spent
        if kind in self.started:
            self._scoring += spent
            self.reached.setdefault(kind, {})[point] = round(t0 - self.started[kind] - (self._scoring - spent), 2)


def _point_order(p: Point) -> tuple:
    """Ties go to the earliest epoch, then the strongest identity pull."""
    return (p[1], -(p[0] if isinstance(p[0], (int, float)) else math.inf))


def choose_points(per_fold: list[dict[Point, EvalResult]], metric: str) -> tuple[list[Point], Point, list]:
    """Each fold's point chosen on the other folds' held-out queries, and the final fit's on all of them.

    Args:
        per_fold: for each fold, its held-out results at every training point it reached.
        metric: the gate metric.

    Returns:
        ``(points, final, curve)``: fold k's point (best mean over the queries of every other fold), the
        final fit's point (best mean over all queries), and the pooled curve ``[[pull, epoch, mean], ...]``
        over the points every fold reached.
    """
    common = set(per_fold[0])
    for d in per_fold[1:]:
        common &= set(d)
    points = sorted(common, key=_point_order)
    sums = np.array([[d[p].per_query[metric].sum() for p in points] for d in per_fold])  # (K, P)
    sizes = np.array([d[points[0]].queries for d in per_fold], dtype=np.float64)
    total, n = sums.sum(axis=0), sizes.sum()

    def best(values: np.ndarray) -> Point:
        return points[int(np.argmax(values))]  # the first maximum: the earliest point

    chosen = [best((total - sums[k]) / max(1.0, n - sizes[k])) for k in range(len(per_fold))]
    curve = [[p[0], p[1], round(float(v), 4)] for p, v in zip(points, total / max(1.0, n))]
    return chosen, best(total / max(1.0, n)), curve


def _pool(results: list[EvalResult], corpus: int) -> EvalResult:
    per = {m: np.concatenate([r.per_query[m] for r in results]) for m in results[0].per_query}
    n = int(sum(r.queries for r in results))
    return EvalResult({m: float(v.mean()) if n else 0.0 for m, v in per.items()}, per, queries=n, corpus=corpus)


# ----------------------------------------------------------------------------- the cross-fit
@dataclass
class FoldStats:
    """What cross-fitting did for one candidate (the report's ``train`` of a cross-fitted candidate)."""

    kind: str
    folds: list[dict] = field(default_factory=list)
    chosen: list = field(default_factory=list)
    final_point: list | None = None
    curve: list = field(default_factory=list)
    seconds: float = 0.0
    final: dict | None = None
    check: dict | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class CrossFit:
    """Trains every candidate on K folds, pools their held-out evidence, then fits and checks the chosen one.

    Args:
        store: Qdrant access (chunks the labels point at are fetched).
        read: the read stage's result.
        pairs: the pairs stage's result (training queries of every label, examples, the teacher's held-out
            queries used as check queries).
        live_enc: the live model.
        plan: the folds (:func:`make_plan`).
        kinds: the candidates, cheapest first (``linear``, ``query``, ``full``).
        query: query-side settings (its ``val_fraction`` and ``refit`` do not apply: the folds choose the epoch).
        full: full-training settings.
        gate: the gate settings (metric, corpus cap, test and level of the final fit's check).
        models: the model store (full training starts from the live model in it).
        budget_s: the budget for all trainings (:class:`Budget`).
        seed: the seed of every training and sample.
        device: torch device.
        epoch_choice: ``folds`` (the default: the fold curves choose) or ``slice`` (each fold model chooses
            on its trainer's own slice, as without cross-fitting; for measurements).
        extra: queries scored at every training point for measurement only (:class:`Probe`); they decide nothing.
    """

    def __init__(self, store, read, pairs, live_enc: Encoder, plan: Plan, *, kinds: Sequence[str], query: QueryConfig,
                 full: FullConfig, gate: GateConfig, models: ModelStore, budget_s: float, seed: int = 42,
                 device: str | None = None, epoch_choice: str = "folds", extra: list[EvalQuery] | None = None):
        self.store, self.read, self.pairs, self.live_enc, self.plan = store, read, pairs, live_enc, plan
        self.kinds, self.query, self.full, self.gate, self.models = list(kinds), query, full, gate, models
        self.seed, self.device, self.epoch_choice = seed, device, epoch_choice
        self.extra = list(extra or [])
        self.budget = Budget(budget_s, plan.folds)
        self.stats = {k: FoldStats(k) for k in self.kinds}
        self.dropped = 0
        self._prepare()

    # --- setup --------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        read, plan = self.read, self.plan
        read.ensure(self.store, {k for q in plan.labels for k in q.relevant})
        known = set(read.by_key)
        self.eval_q: list[EvalQuery | None] = []
        for q in plan.labels:
            rel = q.relevant & known
            self.eval_q.append(EvalQuery(q.text, rel, EVIDENCE, q.grades) if rel else None)
        self.dropped = sum(q is None for q in self.eval_q)
        self.folds = [[i for i in plan.members(k) if self.eval_q[i] is not None] for k in range(plan.folds)]
        if any(not f for f in self.folds):
            raise BadInput(f"a cross-fit fold has no labeled query that points at a chunk of '{read.live}' "
                           f"({self.dropped} of {len(plan.labels)} labels point at no known chunk)")
        check = [q for q in self.pairs.eval_queries if q.relevant & known]
        if len(check) > CHECK_QUERIES:
            check = random.Random(self.seed + 5).sample(check, CHECK_QUERIES)
        self.check_q = check
        must = {k for q in self.eval_q if q for k in q.relevant} | {k for q in check + self.extra for k in q.relevant}
        self.corpus = eval_corpus(read.chunks, read.by_key, must, self.gate.eval_corpus_cap, self.seed)
        self.corpus_vectors = normalize(np.stack([c.vector for c in self.corpus]))
        self.probes: list[Probe] = []
        self._live: dict[str, np.ndarray] = {}

    def live_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """The live model's query vectors of ``texts``, each text encoded once for the whole cross-fit."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._live))
        if missing:
            self._live.update(zip(missing, self.live_enc.encode_queries(missing)))
        return np.stack([self._live[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)

    def _held(self, k: int) -> list[EvalQuery]:
        return [q for q in (self.eval_q[i] for i in self.folds[k]) if q is not None]

    def _training_queries(self, exclude: set[str]):
        return [q for q in self.pairs.queries if q.text not in exclude]

    # --- the fold models ------------------------------------------------------------------------------
    def run_folds(self) -> None:
        """Train every candidate on each fold's complement and score it on the fold."""
        for k in range(self.plan.folds):
            held = self._held(k)
            probe = Probe(self.corpus, self.corpus_vectors, held, self.check_q, self.extra)
            live = self.live_vectors(probe.texts)
            exclude = {self.plan.labels[i].text for i in self.plan.members(k)}
            until = self.budget.fold_deadline(k)
            for i, kind in enumerate(self.kinds):
                probe.score(kind, LIVE, live)
                probe.start(kind)
                t0 = time.perf_counter()
                info = self._train_fold(kind, k, probe, live, exclude, self.budget.share(until, len(self.kinds) - i))
                info.update(fold=k, held_out=len(held), seconds=round(time.perf_counter() - t0, 1))
                self.stats[kind].folds.append(info)
                self.stats[kind].seconds += time.perf_counter() - t0
            self.probes.append(probe)
            logger.info("cross-fit fold %d/%d: %d held-out queries, %s", k + 1, self.plan.folds, len(held),
                        ", ".join(f"{s.kind} {s.folds[-1]['seconds']} s" for s in self.stats.values()))

    def _train_fold(self, kind: str, k: int, probe: Probe, live: np.ndarray, exclude: set[str],
                    deadline: float) -> dict:
        if kind == "full":
            examples = [ex for ex in self.pairs.examples if ex.anchor not in exclude]
            cand = fine_tune(self.read.meta, self.live_enc, examples, self.full, self.models, self.seed)
            enc = cand.encoder
            probe.score(kind, (None, float(self.full.epochs)), enc.encode_queries(probe.texts),
                        enc.encode_passages([c.text for c in self.corpus]))
            return {"train_queries": len({ex.anchor for ex in examples}), "examples": len(examples),
                    "epochs_run": float(self.full.epochs)}
        texts, positives = query_training_set(self._training_queries(exclude), self.pairs.relevant)
        keys, vectors = stored_corpus(self.read, positives, self.query.corpus_max)
        if self.epoch_choice == "slice":  # the trainer's own slice chooses; the fold model is scored once
            cand = train_one(kind, self.read, texts, positives, keys, vectors, self.live_enc, self.query,
                             seed=self.seed, device=self.device, deadline=deadline)
            s = cand.stats
            assert cand.encoder is not None
            probe.score(kind, SLICE, cand.encoder.encode_queries(probe.texts))
            return {"train_queries": s.train_queries, "epochs_run": s.epochs_run, "stopped_by": s.stopped_by,
                    "slice_choice": [s.identity_weight if kind == "linear" else None, s.chosen_epoch]}
        cfg = self.query.model_copy(update={"val_fraction": 0.0, "refit": False})
        if kind == "linear":
            def on_epoch(epoch: float, w: np.ndarray, weight: float) -> None:
                if _probe_linear(epoch):
                    probe.score(kind, (float(weight), float(epoch)), apply_linear(w, live))
        else:
            prompted = [self.live_enc.query_prompt + t for t in probe.texts]

            def on_epoch(epoch: float, model) -> None:  # type: ignore[misc]
                probe.score(kind, (None, float(epoch)), embed_eval(model, prompted).cpu().numpy())
        extra = {"query_vectors": self.live_vectors(texts)} if kind == "linear" else {}
        cand = train_one(kind, self.read, texts, positives, keys, vectors, self.live_enc, cfg, seed=self.seed,
                         device=self.device, package=False, on_epoch=on_epoch, deadline=deadline, **extra)
        s = cand.stats
        return {"train_queries": s.train_queries, "epochs_run": round(s.epochs_run, 3), "stopped_by": s.stopped_by,
                "examples_per_s": round(s.examples_per_s, 1)}

    # --- pooled evidence -----------------------------------------------------------------------------
    def outcomes(self) -> dict[str, EvalOutcome]:
        """Per candidate, the pooled cross-fitted ``(live, candidate)`` results: what the gate decides on."""
        metric = self.gate.metric
        out, chosen_by = {}, {}
        for kind in self.kinds:
            per_fold = [{p: hc[0] for p, hc in pr.points[kind].items()} for pr in self.probes]
            chosen, final, curve = choose_points(per_fold, metric)
            st = self.stats[kind]
            st.chosen = [list(p) for p in chosen]
            st.final_point, st.curve = list(final), curve
            chosen_by[kind] = chosen
        capped = self.read.stats.usable > len(self.corpus)
        whole = self._whole(chosen_by) if capped and self.gate.whole_collection else {}
        for kind in self.kinds:
            chosen = chosen_by[kind]
            if kind in whole:
                (live, cand), size = whole[kind], whole["size"]
                corpus = {"size": size, "whole": True, "capped": False, "cap": self.gate.eval_corpus_cap,
                          "scan_s": whole["scan_s"]}
            else:
                live = _pool([pr.points[kind][LIVE][0] for pr in self.probes], len(self.corpus))
                cand = _pool([pr.points[kind][p][0] for pr, p in zip(self.probes, chosen)], len(self.corpus))
                corpus = {"size": len(self.corpus), "capped": capped, "cap": self.gate.eval_corpus_cap}
            out[kind] = EvalOutcome({EVIDENCE: (live, cand)}, self.corpus, None, {
                "eval_set": {"queries": len(self.plan.labels), "usable": live.queries,
                             "unknown_ids": self.dropped},
                "eval_corpus": corpus})
        return out

    def _whole(self, chosen_by: dict[str, list[Point]]) -> dict:
        """Every query-side kind's pooled evidence at its chosen points, rescored on the whole live collection.

        The epochs were chosen on the capped corpus (a choice, cheap to make every epoch); what the gate decides
        on, each fold's held-out queries at the chosen point and the live model's, is scored exactly against
        every stored vector in one streamed pass (:func:`vectune.pipeline.evaluate.scan_top`).
        """
        kinds = [k for k in self.kinds if all(k in pr.held_vectors and p in pr.held_vectors[k]
                                              for pr, p in zip(self.probes, chosen_by[k]))]
        if not kinds:
            return {}
        mats = {}
        for f, pr in enumerate(self.probes):
            mats[(LIVE, f)] = pr.held_vectors[kinds[0]][LIVE]
            for kind in kinds:
                mats[(kind, f)] = pr.held_vectors[kind][chosen_by[kind][f]]
        t0 = time.perf_counter()
        keys, top, seen = scan_top(self.store, self.read.live, self.read.spec, mats)
        scan_s = round(time.perf_counter() - t0, 2)
        logger.info("cross-fitted evidence judged on the whole collection '%s': %d points in %.1f s",
                    self.read.live, seen, scan_s)

        def pooled(name) -> EvalResult:
            parts = [score(top[(name, f)], keys, pr.held) for f, pr in enumerate(self.probes)]
            return _pool(parts, seen)

        live = pooled(LIVE)
        return {"size": seen, "scan_s": scan_s, **{kind: (live, pooled(kind)) for kind in kinds}}

    def placeholders(self) -> list[Candidate]:
        """The candidates as the gate sees them before any final fit (no encoder yet; stats = the cross-fit's)."""
        return [Candidate(None, new_model_tag(self.read.meta["model_ref"], None if k == "full" else k),
                          self.stats[k], k) for k in self.kinds]

    # --- the final fit and its check -----------------------------------------------------------------
    def final_fit(self, kind: str) -> Candidate | None:
        """Train ``kind`` on every label for its final point (None when no training point beat live)."""
        st = self.stats[kind]
        weight, epoch = st.final_point or LIVE
        if epoch <= 0:
            return None
        t0 = time.perf_counter()
        deadline = self.budget.final_deadline()
        if kind != "full" and self.epoch_choice == "slice":  # the trainer chooses (and refits) as without folds
            texts, positives = query_training_set(self.pairs.queries, self.pairs.relevant)
            keys, vectors = stored_corpus(self.read, positives, self.query.corpus_max)
            cand = train_one(kind, self.read, texts, positives, keys, vectors, self.live_enc, self.query,
                             seed=self.seed, device=self.device, deadline=deadline)
        elif kind == "full":
            cand = fine_tune(self.read.meta, self.live_enc, self.pairs.examples, self.full, self.models, self.seed)
        else:
            texts, positives = query_training_set(self.pairs.queries, self.pairs.relevant)
            keys, vectors = stored_corpus(self.read, positives, self.query.corpus_max)
            update: dict = {"val_fraction": 0.0, "refit": False}
            if kind == "linear":
                update.update(identity_weight=[float(weight)], linear_epochs=max(1, int(round(epoch))))
            cfg = self.query.model_copy(update=update)
            kw = {"stop_after": float(epoch)} if kind == "query" else {"query_vectors": self.live_vectors(texts)}
            cand = train_one(kind, self.read, texts, positives, keys, vectors, self.live_enc, cfg, seed=self.seed,
                             device=self.device, deadline=deadline, **kw)
        s = cand.stats
        reached = float(getattr(s, "epochs_run", epoch))
        st.final = {"point": [weight, epoch], "train_queries": getattr(s, "train_queries", None),
                    "epochs_run": round(reached, 3), "stopped_by": getattr(s, "stopped_by", "epochs"),
                    "seconds": round(time.perf_counter() - t0, 1)}
        st.seconds += time.perf_counter() - t0
        cand.stats = st
        return cand

    def check(self, kind: str, cand: Candidate, outcome: EvalOutcome) -> dict:
        """Check the final fit against the fold models the gate judged (see the module doc).

        Args:
            kind: the candidate kind.
            cand: its final fit.
            outcome: its pooled outcome (from :meth:`outcomes`); the final fit's results on the check
                queries are added to it (``synthetic``) and, for a full model, its corpus embeddings.

        Returns:
            ``{"ok": bool, "reason": ..., "labeled": {...}, "unseen": {...}, "seconds": ...}``.
        """
        t0 = time.perf_counter()
        metric, alpha, tol = self.gate.metric, (1 - self.gate.confidence) / 2, max(0.0, self.gate.min_delta)
        enc = cand.encoder
        assert enc is not None
        corpus_vecs = self.corpus_vectors
        if cand.reencodes:
            corpus_vecs = enc.encode_passages([c.text for c in self.corpus])
            outcome.candidate_corpus = corpus_vecs
        order = [i for k in range(self.plan.folds) for i in self.folds[k]]
        labeled = [self.eval_q[i] for i in order]
        keys = [c.key for c in self.corpus]
        mine = evaluate(enc.encode_queries([q.text for q in labeled]), corpus_vecs, keys, labeled)  # type: ignore
        # the fold models on the same (capped) corpus as the final fit here, even when the gate judged on the whole
        pooled = _pool([pr.points[kind][tuple(p)][0] for pr, p in zip(self.probes, self.stats[kind].chosen)],
                       len(self.corpus))
        a, b = pooled.per_query[metric], mine.per_query[metric]
        p_in = one_sided_p(self.gate.test, b, a, self.gate.samples)  # pooled held-out above the final fit?
        res: dict = {"labeled": {"queries": len(labeled), "final_in_sample": round(float(b.mean()), 4),
                                 "folds_held_out": round(float(a.mean()), 4),
                                 "delta": round(float(b.mean() - a.mean()), 4), "p_below": round(p_in, 4)}}
        fails = []
        if b.mean() - a.mean() < -tol and p_in < alpha:
            fails.append(f"on the labeled queries it trained on, the final fit scores {metric} {b.mean():.4f}, "
                         f"significantly below the fold models' held-out {a.mean():.4f} (p = {p_in:.4f})")
        if self.check_q:
            st = self.stats[kind]
            mean_folds = np.mean([pr.points[kind][tuple(p)][1].per_query[metric]  # type: ignore[union-attr]
                                  for pr, p in zip(self.probes, st.chosen)], axis=0)
            live_chk = self.probes[0].points[kind][LIVE][1]
            chk = evaluate(enc.encode_queries([q.text for q in self.check_q]), corpus_vecs, keys, self.check_q)
            c = chk.per_query[metric]
            p_out = one_sided_p(self.gate.test, c, mean_folds, self.gate.samples)
            res["unseen"] = {"queries": len(self.check_q), "source": "teacher held-out (no model trained on them)",
                             "live": round(float(live_chk.means[metric]), 4) if live_chk else None,
                             "fold_models_mean": round(float(mean_folds.mean()), 4),
                             "final": round(float(c.mean()), 4), "delta": round(float(c.mean() - mean_folds.mean()), 4),
                             "p_below": round(p_out, 4)}
            if c.mean() - mean_folds.mean() < -tol and p_out < alpha:
                fails.append(f"on {len(self.check_q)} teacher queries no model trained on, the final fit scores "
                             f"{metric} {c.mean():.4f}, significantly below the fold models' {mean_folds.mean():.4f} "
                             f"(p = {p_out:.4f})")
            if live_chk is not None:
                outcome.results["synthetic"] = (live_chk, chk)
        else:
            res["unseen"] = None
        res["ok"] = not fails
        res["reason"] = "; ".join(fails) if fails else (
            "the final fit scores at least as the fold models on the labeled queries and not significantly below "
            "them on unseen ones")
        res["seconds"] = round(time.perf_counter() - t0, 1)
        self.stats[kind].check = res
        return res

    def report(self) -> dict:
        """The cross-fit for the run report: the folds, the budget, every candidate's fold facts."""
        return {**self.plan.to_dict(), "dropped": self.dropped, "check_queries": len(self.check_q),
                "epoch_choice": self.epoch_choice,
                "budget": {"total_s": self.budget.total, "final_reserve_s": round(self.budget.reserve, 1)},
                "probe_s": round(sum(p.seconds for p in self.probes), 1),
                "candidates": {k: s.to_dict() for k, s in self.stats.items()}}


def _probe_linear(epoch: float) -> bool:
    """The linear map's epochs the probe scores: each of the first 10, then every 5th to 30, then every 10th."""
    e = int(round(epoch))
    return abs(epoch - e) < 1e-9 and (e <= 10 or (e <= 30 and e % 5 == 0) or e % 10 == 0)


__all__ = ["CHECK_QUERIES", "EVIDENCE", "LIVE", "Budget", "CrossFit", "FoldStats", "Plan", "Probe",
           "choose_points", "dedupe", "make_plan"]
