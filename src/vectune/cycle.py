"""One operator cycle: read → pairs → fine-tune → evaluate → gate → promote.

This module only wires the stages; each lives in its own module and returns a
typed result (:class:`~vectune.read.ReadResult`, :class:`~vectune.pairs.Pairs`,
:class:`~vectune.train.Candidate`, :class:`~vectune.evaluate.EvalOutcome`,
:class:`~vectune.gate.Decision`, :class:`~vectune.promote.Promotion`). Data flows
one way. The alias is touched once, at the very end, by one atomic request, and
only after the new collection was verified.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

from vectune import faults, labeled, lineage
from vectune import report as report_mod
from vectune.errors import BadInput, LockHeld, VectuneError
from vectune.lock import LockLost
from vectune.gate import judge
from vectune.hashing import file_hash
from vectune.jsonl import write_json_atomic
from vectune.report import RunReport
from vectune.settings import Settings
from vectune.store import Store

logger = logging.getLogger(__name__)

#: Settings that change what a cycle would produce (for the no-op check).
CONFIG_KEYS = ("text_field", "min_chars", "max_chars", "max_train_chunks", "queries_per_chunk", "max_train_pairs",
               "eval_fraction",
               "seed", "hard_negatives", "negatives_skip_top", "negatives_depth", "relative_margin", "epochs",
               "batch_size", "learning_rate", "max_steps", "gate_metric", "min_delta", "bootstrap",
               "allow_synthetic_gate", "eval_corpus_cap", "max_eval_queries", "gate_test", "mode", "auto_full", "query_epochs",
               "query_max_steps", "query_learning_rate", "query_batch_size", "query_val_fraction", "query_refit",
               "linear_epochs", "linear_learning_rate", "linear_identity_weight", "query_candidates")


class Timings(dict):
    """Seconds per stage; ``on_stage`` is told when a stage starts (lock renewal, in-flight marker)."""

    on_stage = None

    @contextmanager
    def stage(self, name: str):
        if self.on_stage:
            self.on_stage(name)
        faults.point(name)
        t0 = time.perf_counter()
        logger.info("stage %s ...", name)
        try:
            yield
        finally:
            self[name] = round(time.perf_counter() - t0, 2)


def run(settings: Settings, alias: str, dry_run: bool = False) -> RunReport:
    """Run one cycle on ``alias``.

    Args:
        settings: all settings.
        alias: the alias apps query.
        dry_run: stop after evaluation; never touch the alias.

    Returns:
        The run report (also written to the work directory).
    """
    started = datetime.now(timezone.utc)
    timings = Timings()
    rep = RunReport(run_id=started.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6], alias=alias,
                    started_at=started.isoformat(timespec="seconds"), dry_run=dry_run, timings=timings)
    try:
        with Store(settings) as store:
            if dry_run:  # reads only: no lock, no recovery
                _cycle(store, settings, alias, rep, timings)
            else:
                _locked_cycle(store, settings, alias, rep, timings)
    except LockHeld as e:
        rep.end("locked", str(e))
        _finish(settings, rep, started)
        raise
    except Exception as e:  # a handled failure or a bug: leave a report and metrics behind, then surface it
        bug = not isinstance(e, VectuneError)
        rep.end("failed", f"unexpected {type(e).__name__}: {e}" if bug else str(e))
        rep.error_type = type(e).__name__
        _finish(settings, rep, started)
        raise
    _finish(settings, rep, started)
    return rep


def _locked_cycle(store: Store, settings: Settings, alias: str, rep: RunReport, timings: Timings) -> None:
    """Hold the alias lock, recover from a crashed run, then run the cycle."""
    from vectune.lock import AliasLock, default_owner
    from vectune.resume import InFlight, recover

    live = store.resolve_alias(alias)  # a clear error for a missing alias before anything else
    lock = AliasLock(store, alias, default_owner(rep.run_id), settings.lock_ttl_s,
                     clock_skew_s=settings.lock_clock_skew_s).acquire()
    if store.on_server:
        lock.start_heartbeat()
    inflight = InFlight(settings, alias)
    try:
        rec = recover(store, settings, alias, live, lock)
        rep.recovered = rec.found or None
        if rec.done:
            rep.new_collection, rep.live_collection = rec.new_collection, rec.live_collection
            rep.candidate_model = rec.candidate_model or rep.candidate_model
            if rec.reindex is not None:
                rep.counts["reindex"] = rec.reindex
            rep.end("promoted", rec.reason)
            inflight.clear()
            return
        inflight.set(rep.run_id, "read")

        def on_stage(name: str) -> None:
            lock.renew()
            inflight.set(rep.run_id, name)

        timings.on_stage = on_stage
        _cycle(store, settings, alias, rep, timings, lock)
        inflight.clear()
    except LockLost:
        raise  # another operator holds the alias now: touch nothing, leave the marker
    except VectuneError:
        inflight.clear()  # a handled failure leaves a report, not a crash marker
        raise
    finally:
        timings.on_stage = None
        lock.release()


def _cycle(store: Store, settings: Settings, alias: str, rep: RunReport, timings: Timings, lock=None) -> None:
    from vectune.evaluate import evaluate_candidate
    from vectune.generate import make_generator
    from vectune.models import load_lineage_encoder, save_model
    from vectune.pairs import add_negatives, make_queries, split_chunks
    from vectune.read import check_live_vectors, read

    with timings.stage("read"):
        rd = read(store, alias, settings)
    settings = rd.settings  # the effective text field of this collection
    rep.live_collection, rep.live_model = rd.live, rd.meta.get("model_ref")
    rep.dense_vector = rd.spec.name or "(default)"
    rep.counts["read"] = rd.stats.to_dict()

    golden = labeled.load(settings.eval_set, "eval set") if settings.eval_set else None
    trainset = labeled.load(settings.train_set, "train set") if settings.train_set else None
    fb = _feedback(store, alias, rd, settings, rep) if not (golden or trainset) else None
    if fb is not None:
        golden, trainset = (fb.golden or None), (fb.train or None)
    examples = ()
    if fb is not None and settings.few_shot:
        from vectune.feedback import few_shot_examples

        examples = few_shot_examples(fb, settings.few_shot, settings.seed)
    generator = make_generator(settings, examples)
    fingerprint = _fingerprint(rd, generator, settings, fb)
    state_file = settings.run_dir(alias) / "last_cycle.json"
    if not rep.dry_run and (last := _last_state(state_file, fingerprint)):
        return rep.end("noop", f"collection content and settings unchanged since run {last.get('run_id')} "
                               f"({last.get('status')}); nothing to learn")

    split = split_chunks(rd, settings)
    rep.counts["split"] = split.counts()
    rep.evidence = evidence = "golden" if golden else ("synthetic" if generator.synthetic else "teacher")
    if evidence == "synthetic" and not settings.allow_synthetic_gate and not rep.dry_run:
        rep.end("kept", "no trusted evidence to promote on: the offline teacher's queries are synthetic and no "
                        "golden set was given. Pass --eval-set with real queries (recommended), accept the risk "
                        "with --allow-synthetic-gate, or use --dry-run to see synthetic scores. Training skipped.")
        return _save_state(state_file, fingerprint, rep)

    with timings.stage("load_live_model"):
        live_enc = load_lineage_encoder(rd.meta, settings)
        rep.counts["live_vector_check"] = round(check_live_vectors(live_enc, split.pool, rd.live), 4)
    from vectune.review import Rejections

    full = settings.mode == "full" or (settings.mode == "auto" and (settings.auto_full or _cuda()))
    with timings.stage("generate"):
        pairs = make_queries(store, rd, split, generator, live_enc, settings, trainset,
                             label_source="feedback" if fb is not None else "train-set",
                             rejections=Rejections(settings.run_dir(alias)), teacher_train=full or not trainset)
    rep.teacher = pairs.teacher
    rep.counts.update(pairs.counts)
    with timings.stage("mine"):
        add_negatives(store, rd, pairs, live_enc, settings, explicit=_explicit_negatives(store, rd, fb))
    rep.counts.update({k: pairs.counts[k] for k in ("pairs", "negatives")})
    rep.pairs_sample = _pairs_sample(rd, pairs, settings, alias)

    rep.mode = settings.mode
    cands = []
    with timings.stage("train"):
        from vectune.train import fine_tune, train_query_side

        if settings.mode in ("auto", "query"):
            cands += train_query_side(rd, pairs.queries, pairs.relevant, live_enc, settings,
                                      kinds=settings.candidate_kinds)
        if full:
            cands.append(fine_tune(rd.meta, live_enc, pairs.examples, settings))

    if not cands:
        raise BadInput(f"no candidate to train: mode '{settings.mode}' with query candidates "
                       f"{settings.candidate_kinds} (set VECTUNE_QUERY_CANDIDATES or --mode full)")
    with timings.stage("evaluate"):
        held = "synthetic" if generator.synthetic else "teacher"
        live_side: dict = {}  # the live model's scores: computed once, shared by every candidate
        outcomes = {c.kind: evaluate_candidate(store, rd, pairs, live_enc, c.encoder, settings, golden, held,
                                               reencode=c.reencodes, live=live_side) for c in cands}
    verdict = judge(cands, outcomes, evidence, settings)
    cand, outcome, decision = verdict.candidate, verdict.outcome, verdict.decision
    rep.candidate_model, rep.evaluation, rep.gate = cand.tag, outcome.to_dict(), decision.to_dict()
    rep.counts["train"] = cand.stats.to_dict()
    rep.counts.update(outcome.counts)
    rep.candidates, rep.choice = verdict.report()
    if rep.dry_run:
        return rep.end("dry-run", f"dry run; the gate would {'promote' if decision.promote else 'keep live'}: "
                                  f"{decision.reason}")
    if not decision.promote:
        rep.end("kept", decision.reason)
        if settings.keep_candidate:
            rep.candidate_saved = str(save_model(cand.encoder, cand.tag, settings, {
                "parent_model": rd.meta["model_ref"], "parent_collection": rd.live, "alias": alias,
                "state": "rejected", "eval": rep.gate, "teacher": generator.name}))
        return _save_state(state_file, fingerprint, rep)

    from vectune.promote import promote

    data = {"chunks_read": rd.stats.points, "usable": rd.stats.usable, "train_examples": len(pairs.examples),
            "eval_queries": outcome.results[evidence][0].queries}
    rep.new_collection = lineage.collection_name(alias, cand.tag)
    done = promote(store, settings, alias, rd, cand, outcome, decision, evidence=evidence, teacher=generator.name,
                   data=data, run_id=rep.run_id, stage=timings.stage, lock=lock)
    rep.counts["reindex"] = done.counts
    rep.end("promoted", decision.reason)
    _save_state(state_file, fingerprint, rep)


# --------------------------------------------------------------------------- the run's records
def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _finish(settings: Settings, rep: RunReport, started: datetime) -> None:
    """Write the report, export metrics, append the history event."""
    rep.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rep.duration_s = round((datetime.now(timezone.utc) - started).total_seconds(), 1)
    try:
        paths = report_mod.write(rep, settings.resolved_work_dir / "reports" / rep.alias,
                                 lineage.read_history(settings, rep.alias))
        rep.report_files = {k: str(v) for k, v in paths.items()}
    except OSError as e:
        logger.warning("could not write the run report: %s", e)
    if settings.metrics_dir or settings.pushgateway_url:
        from vectune import metrics

        metrics.export(rep, textfile_dir=settings.metrics_dir, pushgateway_url=settings.pushgateway_url)
    if rep.status in ("promoted", "kept", "failed"):
        lineage.append_event(settings, rep.alias, {
            "event": {"promoted": "promotion", "kept": "rejection", "failed": "failure"}[rep.status],
            "run_id": rep.run_id, "live_collection": rep.live_collection, "new_collection": rep.new_collection,
            "live_model": rep.live_model, "candidate_model": rep.candidate_model, "reason": rep.reason,
            "gate": rep.gate})


def _feedback(store: Store, alias: str, rd, settings: Settings, rep: RunReport):
    """The alias's logged feedback as golden + training queries (None when feedback is off)."""
    if not settings.feedback:
        return None
    from vectune.feedback import read_for_cycle

    fb = read_for_cycle(store, alias, rd.live, golden_fraction=settings.feedback_golden_fraction,
                        min_golden=settings.feedback_min_golden, min_train=settings.feedback_min_train,
                        seed=settings.seed, collection=settings.feedback_collection)
    rep.counts["feedback"] = fb.to_dict()
    if not fb.counts.get("rows"):
        rep.counts["feedback"] = {"rows": 0}
        return None
    if not fb.enough:
        logger.warning("%s", fb.message)
        return fb if fb.train else None
    return fb


def _explicit_negatives(store: Store, rd, fb) -> dict:
    """Users' explicit negatives (thumbs down, skipped) as passage texts per training query."""
    if fb is None or not fb.negatives:
        return {}
    from vectune.feedback import negative_texts

    return negative_texts(store, rd.live, fb, rd.settings.text_field)


def _pairs_sample(rd, pairs, settings: Settings, alias: str) -> list[dict]:
    """A seeded sample of the training pairs, kept with the run state for people to read and veto."""
    if not settings.pairs_sample:
        return []
    from vectune.review import sample_pairs, write_run_sample

    rows = sample_pairs(pairs.examples, settings.pairs_sample, settings.seed,
                        key_of={c.text: c.key for c in rd.by_key.values()})
    write_run_sample(settings.run_dir(alias), rows)
    return rows[:20]


def _fingerprint(rd, generator, settings: Settings, fb=None) -> str:
    """What this cycle would learn from: the collection's content and every setting that matters."""
    cfg = {k: getattr(settings, k) for k in CONFIG_KEYS}
    cfg.update(generator=generator.fingerprint(), eval_set=file_hash(settings.eval_set),
               train_set=file_hash(settings.train_set), base=rd.meta.get("base_model"))
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


__all__ = ["run", "RunReport", "Timings"]
