"""The watch: every run first judges the live model on the feedback that arrived after its promotion.

A promotion was decided on the evidence its cycle had. The queries that arrive afterwards are
evidence neither model trained or was gated on, so each run (:func:`vectune.ops.run.run`),
holding the alias, scores the live model against its rollback target on them before its cycle:

* **Fresh** (:mod:`vectune.pipeline.pairs.fresh`): the promotion records the newest feedback time
  its cycle read (``data.feedback_until`` in the collection's lineage; the promotion time when it
  learned from no feedback). A query is fresh when every event of it is newer than that cutoff
  (and than the rollback target's own, when it was trained on feedback too).
* **Which vectors** each model is scored against is what apps would get from it: the live model's
  query encoder against the live collection's stored vectors; the rollback target's query encoder
  against the target's passage vectors *as a rollback would leave them*. After a query-side
  promotion both collections hold the same passage model's vectors (a rollback copies them), so
  both models are scored against the live collection's stored vectors. When the target holds
  another passage model's vectors (a full-mode promotion), its own stored vectors are used for
  the points whose text is unchanged since, and the points added or changed since are encoded
  with its passage model (what a rollback's sync does). Same corpus, same queries, same metric
  (:func:`vectune.pipeline.evaluate.evaluate`), the gate's paired test
  (:func:`vectune.pipeline.gate.decide`) at the watch's own level.
* **Verdicts**: ``worse`` (the target is significantly better by at least ``watch_min_delta``):
  rolled back through the one fenced rollback path (:func:`vectune.ops.rollback.publish_back`,
  under the lease the run holds), recorded in history (a ``rollback`` event ``by: watch``), the run report
  (``watch``), the metrics, and the run ends ``rolled-back`` with exit code 7; ``confirmed`` (the
  live model is significantly better); ``inconclusive``; ``too-few`` fresh queries (nothing
  judged, the reason says how many); ``skipped`` (nothing to judge: an indexed or adopted
  collection, one put back by a rollback, no rollback target); ``off`` (``VECTUNE_WATCH=off``);
  ``error`` (scoring failed: logged, the cycle runs anyway).
* **No flapping**: before rolling back, the watch records a condemnation
  (:mod:`vectune.pipeline.condemned`) with the fresh queries that condemned the model. Until a
  promotion clears it, every cycle puts those queries on the evidence side and promotes only on
  evidence that covers them. The watch never judges a collection that a rollback put back, so it
  never rolls forward to a condemned model.
* A run with nothing new (same live and target collections, same fresh queries, same settings,
  same collection size) reuses the last verdict instead of scoring again (``cached_from``).

Repeated looks: the watch tests again each night as fresh queries accumulate, which raises the
chance that a model no better and no worse than its target is once found "worse" above the
test's nominal level. Such a rollback costs nothing in quality (the two are equal); a model that
is really better is rolled back only when the fresh queries say otherwise at the watch's level.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vectune.config.settings import Settings
from vectune.core.chunks import extract_text
from vectune.core.clock import now
from vectune.core.vectors import normalize
from vectune.errors import BadInput
from vectune.models.store import ModelStore
from vectune.observe.history import History
from vectune.ops.rollback import publish_back
from vectune.pipeline.condemned import Condemnation, WatchState
from vectune.pipeline.evaluate import EvalQuery, EvalResult, eval_corpus, evaluate
from vectune.pipeline.gate import decide
from vectune.pipeline.pairs.fresh import epoch, fresh_labels
from vectune.pipeline.read import read
from vectune.qdrant import lineage
from vectune.qdrant.lease import NO_FENCE
from vectune.qdrant.store import Store, dense_of, point_id_for

logger = logging.getLogger(__name__)

#: Every verdict of the watch (the metrics export one gauge per verdict).
VERDICTS = ("off", "skipped", "too-few", "inconclusive", "confirmed", "worse", "error")
#: Chunks the watch keeps in memory for its corpus (as the cycle; the corpus is capped below this).
KEEP_MAX = 50_000


@dataclass
class WatchResult:
    """What the watch found and did.

    Attributes:
        verdict: one of :data:`VERDICTS`.
        reason: one sentence for the report and the log.
        live: the live collection judged; target: its rollback target.
        live_model, target_model: their query models.
        since: the cutoff: feedback after it is fresh.
        fresh: counts of the fresh feedback (:class:`vectune.pipeline.pairs.fresh.Fresh`).
        queries: fresh queries judged on.
        scores: the metric means, deltas, CI and p-values (when scored).
        vectors: which vectors each model was scored against.
        rolled_back: the watch rolled the alias back.
        rollback: from, to, synced counts, verification (when rolled back).
        cached_from: the run whose scores were reused (nothing new since).
        seconds: how long the watch took.
    """

    verdict: str
    reason: str
    live: str | None = None
    target: str | None = None
    live_model: str | None = None
    target_model: str | None = None
    since: str | None = None
    fresh: dict | None = None
    queries: int = 0
    scores: dict | None = None
    vectors: dict | None = None
    rolled_back: bool = False
    rollback: dict | None = None
    cached_from: str | None = None
    seconds: float | None = None
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """For the run report (None fields omitted; per-query values stay in the watch's state file)."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        if self.scores:
            out["scores"] = {k: v for k, v in self.scores.items() if k != "per_query"}
        return out


def watch(store: Store, settings: Settings, alias: str, *, run_id: str, lock=None, act: bool = True) -> WatchResult:
    """Judge the live model against its rollback target on fresh feedback; roll it back when worse.

    Args:
        store: Qdrant access (the caller holds the alias's lease when ``act``).
        settings: all settings (``watch``: on/off, minimum, test, confidence, margin, rollback).
        alias: the alias.
        run_id: this run (recorded with a rollback and a condemnation).
        lock: the alias lease (fenced before every state change of a rollback).
        act: roll back a worse model (False for a dry run: judge and report only).

    Returns:
        The verdict and what was done.
    """
    t0 = time.perf_counter()
    res = _watch(store, settings, alias, run_id=run_id, lock=lock or NO_FENCE, act=act)
    res.seconds = round(time.perf_counter() - t0, 2)
    logger.info("watch: %s — %s", res.verdict, res.reason)
    return res


def _watch(store: Store, settings: Settings, alias: str, *, run_id: str, lock, act: bool) -> WatchResult:
    cfg = settings.watch
    if not cfg.enabled:
        return WatchResult("off", "the watch is off (VECTUNE_WATCH=off)")
    live = store.resolve_alias(alias)
    meta = store.metadata(live)
    res = WatchResult("skipped", "", live=live, live_model=lineage.query_model(meta), settings=cfg.model_dump())
    why = not_watched(store, live, meta)
    if why:
        res.reason = why
        return res
    target = str(meta["parent_collection"])
    tmeta = store.metadata(target)
    res.target, res.target_model = target, lineage.query_model(tmeta)
    res.since = since = cutoff(meta, tmeta)
    fresh = fresh_labels(store, alias, live, since, collection=settings.labels.collection)
    res.fresh, res.queries = fresh.counts, len(fresh.queries)
    if len(fresh.queries) < cfg.min_queries:
        res.verdict = "too-few"
        res.reason = (f"{len(fresh.queries)} fresh queries with an answer since {since} (the newest feedback the "
                      f"promotion of '{live}' saw); the watch needs at least {cfg.min_queries} "
                      "(VECTUNE_WATCH_MIN_QUERIES): nothing judged")
        return res

    state = WatchState(settings.run_dir(alias))
    key = _cache_key(store, settings, live, target, fresh.queries)
    last = state.last
    if last.get("key") == key and last.get("scores"):
        res.scores, res.vectors, res.cached_from = last["scores"], last.get("vectors"), last.get("run_id")
    else:
        try:
            res.scores, res.vectors = score(store, settings, alias, meta, tmeta, target, fresh.queries)
        except Exception as e:  # noqa: BLE001 - the watch must not stop the cycle; said loudly
            logger.warning("the watch could not score '%s' against '%s': %s", live, target, e, exc_info=True)
            res.verdict, res.reason = "error", f"could not score the live model against '{target}': {e}"
            return res
        state.set_last({"key": key, "run_id": run_id, "scores": res.scores, "vectors": res.vectors, "at": now()})
    _verdict(res, cfg, settings.gate.metric, settings.gate.samples)
    if res.verdict == "confirmed" and state.confirmed != live and act:
        History(settings.work_dir, alias).append({
            "event": "watch", "verdict": "confirmed", "run_id": run_id, "live_collection": live,
            "live_model": res.live_model, "rollback_target": target, "reason": res.reason, "watch": _brief(res)})
        state.confirm(live)
    if res.verdict == "worse":
        if not cfg.rollback:
            res.reason += "; not rolled back (VECTUNE_WATCH_ROLLBACK=false)"
        elif not act:
            res.reason += "; a real run would roll it back (dry run)"
        else:
            _roll_back(store, settings, alias, res, meta, tmeta, fresh.queries, run_id, lock, state)
    return res


# --------------------------------------------------------------------------- what is watched, since when
def not_watched(store: Store, live: str, meta: dict) -> str | None:
    """Why the live collection is not judged (None: it is).

    Only a collection made by a promotion and live through it is judged, against its parent: an
    indexed or adopted collection has nothing to be judged against, and one a rollback put back was
    chosen by that rollback (judging it could roll forward to a condemned model).
    """
    if meta.get("created_by") != "promote":
        return (f"the live collection '{live}' was not made by a promotion (created by "
                f"{meta.get('created_by') or 'another tool'}): nothing to judge")
    if meta.get("rolled_back_at"):
        return (f"the live collection '{live}' was put back by a rollback at {meta['rolled_back_at']}; the watch "
                "judges promotions only")
    parent = meta.get("parent_collection")
    if not parent or not store.collection_exists(parent):
        return f"the rollback target of '{live}' ({parent or 'none recorded'}) is gone: nothing to judge against"
    return None


def cutoff(meta: dict, target_meta: dict) -> str | None:
    """The time after which feedback is fresh for both models.

    The newest feedback the live model's promotion read (the later of ``labels.last_ts`` and
    ``data.feedback_until``), else its
    creation time (a promotion that learned from no feedback); later still when the rollback
    target was itself trained on newer feedback.
    """
    own = _trained_until(meta) or meta.get("created_at")
    theirs = _trained_until(target_meta)
    times = [t for t in (own, theirs) if t]
    return max(times, key=epoch) if times else None


def _trained_until(meta: dict) -> str | None:
    """The newest feedback a collection's promotion read: the later of its newest label (``labels.last_ts``) and
    the newest feedback event its cycle read (``data.feedback_until``: a thumbs-down that removed a label was read
    too, and changed what the model learned)."""
    times = [t for t in ((meta.get("labels") or {}).get("last_ts"), (meta.get("data") or {}).get("feedback_until"))
             if t]
    return max(times, key=epoch) if times else None


# --------------------------------------------------------------------------- scoring
def score(store: Store, settings: Settings, alias: str, meta: dict, tmeta: dict, target: str,
          queries: list) -> tuple[dict, dict]:
    """Score the live model and the rollback target on the fresh queries, each as apps would get it.

    Returns:
        ``(scores, vectors)``: per-metric means of both, the gate metric's per-query values, and
        which vectors each model was scored against.
    """
    cap = settings.gate.eval_corpus_cap
    models = ModelStore.from_settings(settings)
    rd = read(store, alias, settings.read, settings.collection, seed=settings.seed, keep=min(cap, KEEP_MAX))
    unknown = rd.ensure(store, {k for q in queries for k in q.relevant})
    qs = [EvalQuery(q.text, q.relevant & set(rd.by_key), "fresh") for q in queries]
    qs = [q for q in qs if q.relevant]
    if not qs:
        raise BadInput("no fresh query points at a usable chunk of the live collection")
    corpus = eval_corpus(rd.chunks, rd.by_key, {k for q in qs for k in q.relevant}, cap, settings.seed)
    keys = [c.key for c in corpus]
    live_vecs = normalize(np.stack([np.asarray(c.vector, dtype=np.float32) for c in corpus]))
    live_enc = models.load_lineage(meta)
    target_enc = models.load_lineage(tmeta)
    vectors: dict[str, Any] = {"live": f"the live collection's stored vectors ({rd.live})"}
    if lineage.passage_model(tmeta) == lineage.passage_model(meta):
        target_vecs = live_vecs
        vectors["target"] = (f"the same stored vectors: '{target}' holds the same passage model's vectors "
                             f"({lineage.passage_model(tmeta)}), which a rollback copies")
    else:
        target_vecs, counts = target_vectors(store, settings, target, tmeta, corpus, target_enc)
        vectors["target"] = (f"'{target}''s own stored vectors, and its passage model "
                             f"({lineage.passage_model(tmeta)}) for the points added or changed since")
        vectors["target_counts"] = counts
    texts = [q.text for q in qs]
    lr = evaluate(live_enc.encode_queries(texts), live_vecs, keys, qs)
    tr = evaluate(target_enc.encode_queries(texts), target_vecs, keys, qs)
    metric = settings.gate.metric
    scores = {"metric": metric, "queries": lr.queries, "corpus": len(keys), "unknown_ids": unknown,
              "live": {m: round(v, 4) for m, v in lr.means.items()},
              "target": {m: round(v, 4) for m, v in tr.means.items()},
              "per_query": {"live": lr.per_query[metric].round(6).tolist(),
                            "target": tr.per_query[metric].round(6).tolist()}}
    return scores, vectors


def target_vectors(store: Store, settings: Settings, target: str, tmeta: dict, corpus: list,
                   encoder) -> tuple[np.ndarray, dict]:
    """The rollback target's passage vectors of ``corpus`` as a rollback would leave them.

    Its stored vector where the point is there with the same text; else the text encoded with its
    passage model (what a rollback's sync writes for a point added or changed since).

    Returns:
        ``(vectors, {"stored": n, "encoded": n})``, rows in ``corpus`` order.
    """
    spec = store.dense_spec(target, tmeta.get("dense_vector") or None)
    text_field = settings.for_collection(tmeta).collection.text_field
    stored: dict[str, np.ndarray] = {}
    for i in range(0, len(corpus), 256):
        part = corpus[i:i + 256]
        texts = {c.key: c.text for c in part}
        for r in store.retrieve(target, [point_id_for(c.key) for c in part], vectors=spec.selector):
            text, _ = extract_text(r.payload, text_field)
            vec = dense_of(r, spec)
            if vec is not None and text == texts.get(str(r.id)):
                stored[str(r.id)] = np.asarray(vec, dtype=np.float32)
    missing = [c for c in corpus if c.key not in stored]
    encoded = dict(zip([c.key for c in missing], encoder.encode_passages([c.text for c in missing]))) \
        if missing else {}
    rows = np.stack([stored[c.key] if c.key in stored else np.asarray(encoded[c.key], dtype=np.float32)
                     for c in corpus])
    return normalize(rows), {"stored": len(stored), "encoded": len(missing)}


def _verdict(res: WatchResult, cfg, metric: str, samples: int) -> None:
    """Fill the verdict from the scores: the gate's paired test, both ways, at the watch's level."""
    s = res.scores or {}
    per = s["per_query"]
    live_r = EvalResult(s["live"], {metric: np.asarray(per["live"], dtype=np.float64)}, s["queries"], s["corpus"])
    target_r = EvalResult(s["target"], {metric: np.asarray(per["target"], dtype=np.float64)}, s["queries"],
                          s["corpus"])
    kw = dict(metric=metric, evidence="fresh", min_delta=cfg.min_delta, confidence=cfg.confidence, test=cfg.test,
              samples=samples)
    worse = decide(live_r, target_r, **kw)   # "promote" = the target is significantly better than live
    better = decide(target_r, live_r, **kw)  # "promote" = live is significantly better than the target
    delta = better.delta
    s.update(delta=round(delta, 4), ci_low=better.ci_low and round(better.ci_low, 4),
             ci_high=better.ci_high and round(better.ci_high, 4), test=cfg.test,
             p_worse=worse.p_value and round(worse.p_value, 4), p_better=better.p_value and round(better.p_value, 4))
    ci = f"95% CI [{better.ci_low:+.4f}, {better.ci_high:+.4f}]" if better.ci_low is not None else ""
    head = (f"live − rollback target {metric} {delta:+.4f} on {s['queries']} fresh queries since {res.since} "
            f"({s['live'][metric]:.4f} vs {s['target'][metric]:.4f}; {ci})")
    if worse.promote:
        res.verdict = "worse"
        res.reason = f"the live model is worse than its rollback target on fresh feedback: {head}{_p(worse, cfg)}"
    elif better.promote:
        res.verdict = "confirmed"
        res.reason = f"fresh feedback confirms the promotion: {head}{_p(better, cfg)}"
    else:
        res.verdict = "inconclusive"
        res.reason = f"no significant difference on fresh feedback: {head}"


def _p(d, cfg) -> str:
    return f"; one-sided {cfg.test} p = {d.p_value:.4f}" if d.p_value is not None else ""


def _brief(res: WatchResult) -> dict:
    s = res.scores or {}
    return {k: s.get(k) for k in ("metric", "queries", "delta", "ci_low", "ci_high", "p_worse", "p_better")} | {
        "since": res.since, "live": (s.get("live") or {}).get(s.get("metric")),
        "target": (s.get("target") or {}).get(s.get("metric"))}


def _cache_key(store: Store, settings: Settings, live: str, target: str, queries: list) -> str:
    """What a verdict depends on: both collections, the fresh queries, the settings, the corpus size."""
    data = [live, target, store.count(live), sorted((q.text, sorted(q.relevant)) for q in queries),
            settings.watch.model_dump(mode="json"), settings.gate.metric, settings.gate.samples,
            settings.gate.eval_corpus_cap, settings.read.model_dump(mode="json"),
            settings.collection.model_dump(mode="json"), settings.seed]
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------- acting
def _roll_back(store: Store, settings: Settings, alias: str, res: WatchResult, meta: dict, tmeta: dict,
               queries: list, run_id: str, lock, state: WatchState) -> None:
    """Condemn the live model (recorded first, so a crash keeps it), then roll back through the fenced path."""
    live, target = str(res.live), str(res.target)
    s = res.scores or {}
    condemned = Condemnation(run_id=run_id, model=str(meta.get("model_tag") or res.live_model), collection=live,
                             restored=target, at=now(), since=res.since,
                             queries=[{"query": q.text, "relevant": sorted(q.relevant)} for q in queries],
                             delta=s.get("delta"), p_value=s.get("p_worse"))
    state.condemn(condemned)
    lock.fence("watch rollback")
    try:
        stats, vinfo, passages = publish_back(store, settings, alias, live, target, tmeta, lock, run_id)
    except BadInput:
        state.clear(by=f"{run_id}: the rollback could not start")
        raise
    lock.fence("record the condemnation")
    rec = store.metadata(live)
    rec["condemned"] = condemned.summary()
    store.set_metadata(live, rec)
    synced = stats.to_dict() if stats else None
    res.rolled_back = True
    res.rollback = {"from": live, "to": target, "model": res.target_model, "passage_model": passages,
                    "synced": synced, "verify": vinfo}
    res.reason = f"rolled back '{alias}' from '{live}' to '{target}': {res.reason}"
    History(settings.work_dir, alias).append({
        "event": "rollback", "by": "watch", "run_id": run_id, "from": live, "to": target, "model": res.target_model,
        "condemned_model": condemned.model, "reason": res.reason, "synced": synced, "watch": _brief(res)})


__all__ = ["VERDICTS", "WatchResult", "cutoff", "not_watched", "score", "target_vectors", "watch"]
