"""One operator cycle: read → pairs → fine-tune → evaluate → gate → promote.

This module only wires the stages; each lives in its own module, takes its own settings
section and returns a typed result (:class:`~vectune.pipeline.read.ReadResult`,
:class:`~vectune.pipeline.pairs.stage.Pairs`, :class:`~vectune.pipeline.train.candidate.Candidate`,
:class:`~vectune.pipeline.evaluate.EvalOutcome`, :class:`~vectune.pipeline.gate.Verdict`,
:class:`~vectune.promote.promotion.Promotion`). Data flows one way. The alias is touched once, at
the very end, by one atomic request, and only after the new collection was verified. Holding
the alias, recovery and the run's records are :mod:`vectune.ops.run`'s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import contextmanager

from vectune.config.settings import Settings
from vectune.core import faults
from vectune.core.hashing import file_hash
from vectune.core.jsonl import write_json_atomic
from vectune.errors import BadInput
from vectune.models.store import ModelStore
from vectune.observe.report import RunReport
from vectune.pipeline.condemned import WatchState, pin, uncovered
from vectune.pipeline.crossfit import EVIDENCE, CrossFit, make_plan
from vectune.pipeline.evaluate import evaluate_candidate
from vectune.pipeline.gate import judge
from vectune.pipeline.pairs import labeled
from vectune.pipeline.pairs.feedback import explicit_negatives, few_shot_examples, labels_from_feedback
from vectune.pipeline.pairs.provenance import provenance, summary
from vectune.pipeline.pairs.rejections import Rejections
from vectune.pipeline.pairs.review import record_sample
from vectune.pipeline.pairs.stage import add_negatives, make_queries, split_chunks
from vectune.pipeline.pairs.teachers import make_generator
from vectune.pipeline.read import check_live_vectors, read
from vectune.pipeline.train.query.candidates import query_training_set, widen_corpus
from vectune.pipeline.train.stage import candidate_kinds, train_candidates, wants_full
from vectune.promote.promotion import Promoter
from vectune.qdrant import lineage
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)

#: Chunks the read stage keeps in memory for evaluation (the gate's corpus is capped below this).
READ_KEEP_MAX = 50_000


class Timings(dict):
    """Seconds per stage; ``on_stage`` is told when a stage starts (lock renewal, in-flight marker)."""

    on_stage = None
    current: str | None = None  # the stage started last (where a SIGTERM stopped the run)

    @contextmanager
    def stage(self, name: str):
        self.current = name
        if self.on_stage:
            self.on_stage(name)
        faults.point(name)
        t0 = time.perf_counter()
        logger.info("stage %s ...", name)
        try:
            yield
        finally:
            self[name] = round(time.perf_counter() - t0, 2)


def cycle(store: Store, settings: Settings, alias: str, rep: RunReport, timings: Timings, lock=None) -> None:
    """Run the stages once on ``alias``, filling ``rep`` (the caller holds the alias and writes the records).

    Args:
        store: Qdrant access.
        settings: all settings; each stage gets its own section.
        alias: the alias apps query.
        rep: the run report to fill in (its ``dry_run`` stops before any change).
        timings: per-stage seconds.
        lock: the alias lease (fenced before every state change of a promotion).
    """
    models = ModelStore.from_settings(settings)
    run_dir = settings.run_dir(alias)
    with timings.stage("read"):
        rd = read(store, alias, settings.read, settings.collection, seed=settings.seed,
                  keep=min(settings.gate.eval_corpus_cap, READ_KEEP_MAX))
    rep.live_collection, rep.live_model = rd.live, rd.meta.get("model_ref")
    rep.dense_vector = rd.spec.name or "(default)"
    rep.counts["read"] = rd.stats.to_dict()

    labels = settings.labels
    golden = labeled.load(labels.eval_set, "eval set") if labels.eval_set else None
    trainset = labeled.load(labels.train_set, "train set") if labels.train_set else None
    fb = None
    condemned = WatchState(run_dir).condemned  # a model the watch rolled back: its queries must be evidence
    # a fixed eval set keeps its meaning: it decides; so do the queries that condemned the last promotion
    crossfit_on = labels.crossfit and golden is None and condemned is None
    if not (golden or trainset):
        fb, fb_counts = labels_from_feedback(store, alias, rd.live, labels, settings.seed, crossfit=crossfit_on)
        if fb_counts:
            rep.counts["feedback"] = fb_counts
    if fb is not None:
        golden, trainset = (fb.golden or None), (fb.train or None)
    if condemned is not None:
        golden, trainset = _pin(condemned, fb, golden, trainset, rep)
        if labels.crossfit and labels.eval_set is None:
            rep.counts["crossfit"] = {"skipped": "the watch rolled the last promotion back: until a promotion wins "
                                                 "on the queries that condemned it, they and the newest feedback are "
                                                 "held out as evidence"}
    plan = None
    if crossfit_on and trainset and (fb is None or fb.enough):
        plan, why = crossfit_plan(trainset, labels, by_time=fb is not None, seed=settings.seed)
        if plan is None:
            rep.counts["crossfit"] = {"skipped": why}
            logger.warning("%s", why)
        else:
            trainset = plan.labels
    examples = few_shot_examples(fb, settings.pairs.few_shot, settings.seed) if fb and settings.pairs.few_shot else ()
    generator = make_generator(settings.teacher, seed=settings.seed, cache_dir=settings.work_dir / "cache" / "teacher",
                               examples=examples)
    fingerprint = _fingerprint(rd, generator, settings, fb, condemned=condemned.run_id if condemned else None)
    state_file = run_dir / "last_cycle.json"
    if not rep.dry_run and (last := _last_state(state_file, fingerprint)):
        return rep.end("noop", f"collection content and settings unchanged since run {last.get('run_id')} "
                               f"({last.get('status')}); nothing to learn")

    split = split_chunks(rd, settings.pairs, max_chunks=settings.read.max_train_chunks, seed=settings.seed)
    rep.counts["split"] = split.counts()
    rep.evidence = evidence = EVIDENCE if plan else (
        "golden" if golden else ("synthetic" if generator.synthetic else "teacher"))
    if evidence == "synthetic" and not settings.gate.allow_synthetic and not rep.dry_run:
        rep.end("kept", "no trusted evidence to promote on: the offline teacher's queries are synthetic and no "
                        "golden set was given. Pass --eval-set with real queries (recommended), accept the risk "
                        "with --allow-synthetic-gate, or use --dry-run to see synthetic scores. Training skipped.")
        return _save_state(state_file, fingerprint, rep)

    with timings.stage("load_live_model"):
        live_enc = models.load_lineage(rd.meta)
        rep.counts["live_vector_check"] = round(check_live_vectors(live_enc, split.pool, rd.live), 4)
    full = wants_full(settings.mode, settings.full)
    with timings.stage("generate"):
        pairs = make_queries(store, rd, split, generator, live_enc, settings.pairs, trainset,
                             label_source="feedback" if fb is not None else "train-set",
                             rejections=Rejections(run_dir), teacher_train=full or not trainset, seed=settings.seed)
    rep.teacher = pairs.teacher
    rep.counts.update(pairs.counts)
    with timings.stage("mine"):
        add_negatives(store, rd, pairs, live_enc, settings.negatives, explicit=explicit_negatives(store, rd, fb),
                      seed=settings.seed)
    rep.counts.update({k: pairs.counts[k] for k in ("pairs", "negatives")})
    rep.pairs_sample = record_sample(rd, pairs, settings.pairs.sample, settings.seed, run_dir)
    if any(k != "full" for k in candidate_kinds(settings.mode, settings.candidate_kinds, settings.full)):
        with timings.stage("widen"):  # a collection larger than the sample: its real hard negatives train too
            texts, _ = query_training_set(pairs.queries, pairs.relevant)
            widened = widen_corpus(store, rd, live_enc, texts, settings.query.pool_negatives, known=pairs.neighbours)
        if widened:
            rep.counts["query_corpus"] = widened

    rep.mode = settings.mode
    cf = None
    if plan is not None:
        cf = CrossFit(store, rd, pairs, live_enc, plan,
                      kinds=candidate_kinds(settings.mode, settings.candidate_kinds, settings.full),
                      query=settings.query, full=settings.full, gate=settings.gate, models=models,
                      budget_s=labels.budget_s, seed=settings.seed, device=settings.model.device)
        with timings.stage("train"):
            cf.run_folds()
        with timings.stage("evaluate"):
            outcomes = cf.outcomes()
        cands = cf.placeholders()
        rep.crossfit = cf.report()
    else:
        with timings.stage("train"):
            cands = train_candidates(rd, pairs, live_enc, mode=settings.mode, kinds=settings.candidate_kinds,
                                     query=settings.query, full=settings.full, models=models, seed=settings.seed,
                                     device=settings.model.device)
        with timings.stage("evaluate"):
            held = "synthetic" if generator.synthetic else "teacher"
            live_side: dict = {}  # the live model's scores: computed once, shared by every candidate
            outcomes = {c.kind: evaluate_candidate(store, rd, pairs, live_enc, c.encoder, settings.gate, golden,
                                                   held, reencode=c.reencodes, live=live_side, seed=settings.seed)
                        for c in cands}
    verdict = judge(cands, outcomes, evidence, settings.gate)
    cand, outcome, decision = verdict.candidate, verdict.outcome, verdict.decision
    sample = outcome.counts.get("eval_corpus") or {}
    if sample.get("capped"):  # full mode must re-encode what it is judged on: a sample, said so
        decision.reason += (f" [judged on a sample of {sample.get('size')} of {rd.stats.usable} chunks: "
                            f"eval_corpus_cap {sample.get('cap')}]")
    rep.candidate_model, rep.evaluation, rep.gate = cand.tag, outcome.to_dict(), decision.to_dict()
    rep.counts["train"] = cand.stats.to_dict()
    rep.counts.update(outcome.counts)
    rep.candidates, rep.choice = verdict.report()
    if rep.dry_run:
        return rep.end("dry-run", f"dry run; the gate would {'promote' if decision.promote else 'keep live'}: "
                                  f"{decision.reason}" + ("; a promotion would first fit it on all labels"
                                                          if cf is not None and decision.promote else ""))
    if decision.promote and cf is not None:  # the judged procedure, once more on every label, then checked
        with timings.stage("final_fit"):
            final = cf.final_fit(cand.kind)
            check = cf.check(cand.kind, final, outcome) if final is not None else None
        rep.crossfit, rep.evaluation = cf.report(), outcome.to_dict()
        rep.candidates, rep.choice = verdict.report()
        if final is None:
            decision.promote = False
            decision.reason = f"{decision.reason}; but no training epoch beat the live model over all folds"
        elif check is not None and not check["ok"]:
            decision.promote = False
            decision.reason = f"the final fit on all labels failed its check: {check['reason']}"
        else:
            cand = final
            rep.candidate_model = cand.tag
        rep.gate = decision.to_dict()
    if decision.promote and condemned is not None and (missing := uncovered(condemned, golden or [])):
        # no flapping: a new promotion must win on the queries that condemned the last one
        decision.promote = False
        decision.reason = (f"the watch rolled '{condemned.model}' back on {len(condemned.queries)} fresh queries; a "
                           f"new promotion needs evidence that includes them, and {len(missing)} were not in it "
                           f"(the gate said: {decision.reason})")
        rep.gate = decision.to_dict()
    if not decision.promote:
        rep.end("kept", decision.reason)
        if settings.promote.keep_candidate and cand.encoder is not None:
            rep.candidate_saved = str(models.save(cand.encoder, cand.tag, {
                "parent_model": rd.meta["model_ref"], "parent_collection": rd.live, "alias": alias,
                "state": "rejected", "eval": rep.gate, "teacher": generator.name}))
        return _save_state(state_file, fingerprint, rep)

    data = {"chunks_read": rd.stats.points, "usable": rd.stats.usable, "train_examples": len(pairs.examples),
            "eval_queries": outcome.results[evidence][0].queries,
            # the newest feedback this cycle read: what arrives after it is fresh for the watch (ops/watch.py)
            "feedback_until": ((rep.counts.get("feedback") or {}).get("window") or {}).get("last")}
    used = _provenance(plan, golden, trainset, fb, labels, evidence)
    rep.labels = summary(used)
    rep.new_collection = lineage.collection_name(alias, cand.tag)
    promoter = Promoter(store, alias, settings.promote, models, run_dir, lock)
    done = promoter.promote(rd, cand, outcome, decision, text_field=rd.text_field, evidence=evidence,
                            teacher=generator.name, data=data, run_id=rep.run_id, stage=timings.stage, labels=used)
    rep.counts["reindex"] = done.counts
    rep.end("promoted", decision.reason)
    if condemned is not None:
        WatchState(run_dir).clear(by=rep.run_id)
        rep.counts["condemned"]["cleared"] = True
    _save_state(state_file, fingerprint, rep)


def _pin(condemned, fb, golden, trainset, rep: RunReport):
    """The queries that condemned the last promotion go to the evidence side, never to training."""
    golden, train, pinned = pin(condemned, golden, trainset)
    if fb is not None:  # the few-shot examples come from the feedback's training side: keep it in step
        fb.golden, fb.train = golden, train
    rep.counts["condemned"] = {**condemned.summary(), **pinned}
    return (golden or None), (train or None)


def crossfit_plan(labels_: list, cfg, *, by_time: bool, seed: int):
    """The cross-fit's folds over ``labels_``, or ``(None, why)`` when there are too few labeled queries."""
    try:
        return make_plan(labels_, cfg, by_time=by_time, seed=seed), None
    except BadInput as e:
        return None, f"not cross-fitted: {e}; the labels train, and the usual evidence rules decide"


def _provenance(plan, golden, trainset, fb, cfg, evidence: str) -> dict | None:
    """Which labels this promotion trained on and was gated on (its model keeps the whole record)."""
    source = "feedback" if fb is not None else ("train-set" if trainset else "eval-set")
    if plan is not None:
        return provenance(plan.labels, source=source, evidence=evidence, split=plan.to_dict())
    used = list(golden or []) + list(trainset or [])
    if not used:
        return None
    split = {"golden": len(golden or []), "train": len(trainset or [])}
    if fb is not None:
        split.update(golden_fraction=cfg.golden_fraction, golden_since=fb.counts.get("golden_since"))
    return provenance(used, source=source, evidence=evidence, split=split)


# --------------------------------------------------------------------------- the no-op check
def _fingerprint(rd, generator, settings: Settings, fb=None, condemned: str | None = None) -> str:
    """What this cycle would learn from: the collection's content and every setting that can change a decision."""
    cfg = settings.decisive()  # config.settings.NOT_DECISIVE lists what is left out, on purpose
    cfg.update(generator=generator.fingerprint(), eval_set=file_hash(settings.labels.eval_set),
               train_set=file_hash(settings.labels.train_set), base=rd.meta.get("base_model"))
    if condemned:
        cfg["condemned"] = condemned  # a pending condemnation changes the evidence
    if fb is not None:
        cfg["feedback"] = sorted((q.text, sorted(q.relevant)) for q in fb.golden + fb.train)
    return hashlib.sha256(json.dumps([rd.fingerprint, cfg], sort_keys=True, default=str).encode()).hexdigest()


def _last_state(path, fingerprint: str) -> dict | None:
    """The last decided cycle, when it saw the same content and settings."""
    if not path.exists():
        return None
    last = json.loads(path.read_text())
    if last.get("fingerprint") == fingerprint and last.get("status") in ("promoted", "kept"):
        return last
    return None


def _save_state(path, fingerprint: str, rep: RunReport) -> None:
    write_json_atomic(path, {"fingerprint": fingerprint, "run_id": rep.run_id, "status": rep.status,
                             "live_collection": rep.new_collection or rep.live_collection})


__all__ = ["Timings", "cycle"]
