"""One operator cycle: read → mine → fine-tune → evaluate → gate → promote.

This module only wires the stages; each lives in its own module. Data flows one
way. The alias is touched once, at the very end, by one atomic request, and only
after the new collection was verified.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from vectune import faults, labeled, lineage
from vectune import report as report_mod
from vectune.chunks import Chunk, ReadStats, extract_text, filter_chunks, sample, split
from vectune.errors import BadInput, LockHeld, VectuneError
from vectune.evaluate import EvalQuery, evaluate
from vectune.gate import decide
from vectune.generate import make_generator
from vectune.generate.base import Query
from vectune.models import Encoder, load_encoder, load_lineage_encoder, new_model_tag, save_model
from vectune.settings import Settings
from vectune.store import DenseSpec, Store, dense_of, point_id_for

logger = logging.getLogger(__name__)

#: Skip reasons that mean a point cannot be re-embedded at promotion.
UNEMBEDDABLE = ("no_payload", "missing_field", "not_a_string", "empty", "bad_node_content")
#: Settings that change what a cycle would produce (for the no-op check).
CONFIG_KEYS = ("text_field", "min_chars", "max_chars", "max_train_chunks", "queries_per_chunk", "max_train_pairs",
               "eval_fraction",
               "seed", "hard_negatives", "negatives_skip_top", "negatives_depth", "relative_margin", "epochs",
               "batch_size", "learning_rate", "max_steps", "gate_metric", "min_delta", "bootstrap",
               "allow_synthetic_gate", "eval_corpus_cap", "max_eval_queries")


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


# --------------------------------------------------------------------------- read
def read(store: Store, collection: str, spec: DenseSpec, settings: Settings,
         keep: int) -> tuple[list[Chunk], ReadStats, str]:
    """Stream the collection, filter chunks, keep a seeded reservoir sample of ``keep``.

    Returns:
        The sampled chunks (with stored vectors), read stats and a fingerprint of the
        collection's content (ids + text hashes) for the no-op check.
    """
    stats = ReadStats()
    rng = random.Random(settings.seed)
    reservoir: list[Chunk] = []
    fp = hashlib.sha256()
    seen = 0

    def points():
        for records, _ in store.scroll(collection, vectors=[spec.name] if spec.name else True,
                                       batch=settings.scroll_batch):
            for r in records:
                vec = dense_of(r, spec)
                if vec is None:
                    stats.skipped["no_vector"] += 1
                    continue
                if vec.shape[0] != spec.size:
                    stats.skipped["wrong_dimension"] += 1
                    continue
                yield r.id, r.payload, vec

    for chunk in filter_chunks(points(), settings.text_field, settings.min_chars, settings.max_chars, stats):
        fp.update(f"{chunk.key}:{chunk.text_hash};".encode())
        seen += 1
        if len(reservoir) < keep:
            reservoir.append(chunk)
        else:
            j = rng.randrange(seen)
            if j < keep:
                reservoir[j] = chunk
    stats.points += stats.skipped.get("no_vector", 0) + stats.skipped.get("wrong_dimension", 0)
    reservoir.sort(key=lambda c: c.key)
    return reservoir, stats, fp.hexdigest()


def check_live_vectors(encoder: Encoder, chunks: list[Chunk], collection: str, n: int = 8) -> float:
    """Check the stored vectors were made by the live model (cosine of re-encoded samples).

    Raises:
        BadInput: they were not — evaluation and mining would be meaningless.
    """
    picked = chunks[:: max(1, len(chunks) // n)][:n]
    emb = encoder.encode_passages([c.text for c in picked])
    stored = np.stack([c.vector / (np.linalg.norm(c.vector) or 1.0) for c in picked])
    sims = np.einsum("ij,ij->i", emb, stored)
    mean = float(np.median(sims))
    # Same model, other truncation length or hardware: ~0.93-1.0. Another model: far lower.
    if mean < 0.9:
        raise BadInput(f"the vectors stored in '{collection}' do not match model '{encoder.ref}' "
                       f"(median cosine {mean:.3f} on {len(picked)} chunks): is the lineage right? "
                       f"Re-adopt with the model that wrote them (vectune adopt --model ...)")
    return mean


# --------------------------------------------------------------------------- cycle
def run(settings: Settings, alias: str, dry_run: bool = False) -> dict:
    """Run one cycle on ``alias``.

    Args:
        settings: all settings.
        alias: the alias apps query.
        dry_run: stop after evaluation; never touch the alias.

    Returns:
        The run report (also written to the work directory).
    """
    started = datetime.now(timezone.utc)
    run_id = started.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    timings = Timings()
    rep: dict = {"run_id": run_id, "alias": alias, "started_at": started.isoformat(timespec="seconds"),
                 "dry_run": dry_run, "timings": timings, "counts": {}}
    try:
        with Store(settings) as store:
            if dry_run:  # reads only: no lock, no recovery
                _cycle(store, settings, alias, dry_run, rep, timings)
            else:
                _locked_cycle(store, settings, alias, rep, timings)
    except LockHeld as e:
        rep.update(status="locked", reason=str(e))
        _finish(settings, rep, started)
        raise
    except VectuneError as e:
        rep.update(status="failed", reason=str(e), error_type=type(e).__name__)
        _finish(settings, rep, started)
        raise
    except Exception as e:  # a bug: still leave a report and metrics behind, then let it surface
        rep.update(status="failed", reason=f"unexpected {type(e).__name__}: {e}", error_type=type(e).__name__)
        _finish(settings, rep, started)
        raise
    _finish(settings, rep, started)
    return rep


def _locked_cycle(store: Store, settings: Settings, alias: str, rep: dict, timings: Timings) -> None:
    """Hold the alias lock, recover from a crashed run, then run the cycle."""
    from vectune.lock import AliasLock, default_owner
    from vectune.resume import InFlight, recover

    live = store.resolve_alias(alias)  # a clear error for a missing alias before anything else
    lock = AliasLock(store, alias, default_owner(rep["run_id"]), settings.lock_ttl_s).acquire()
    if settings.qdrant_url:
        lock.start_heartbeat()
    inflight = InFlight(settings, alias)
    try:
        if recover(store, settings, alias, live, rep):
            inflight.clear()
            return
        inflight.set(rep["run_id"], "read")

        def on_stage(name: str) -> None:
            lock.renew()
            inflight.set(rep["run_id"], name)

        timings.on_stage = on_stage
        _cycle(store, settings, alias, False, rep, timings)
        inflight.clear()
    except VectuneError:
        inflight.clear()  # a handled failure leaves a report, not a crash marker
        raise
    finally:
        timings.on_stage = None
        lock.release()


def _finish(settings: Settings, rep: dict, started: datetime) -> None:
    rep["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rep["duration_s"] = round((datetime.now(timezone.utc) - started).total_seconds(), 1)
    try:
        paths = report_mod.write(rep, settings.resolved_work_dir / "reports" / rep["alias"])
        rep["report_files"] = {k: str(v) for k, v in paths.items()}
    except OSError as e:
        logger.warning("could not write the run report: %s", e)
    if settings.metrics_dir or settings.pushgateway_url:
        from vectune import metrics

        metrics.export(rep, textfile_dir=settings.metrics_dir, pushgateway_url=settings.pushgateway_url)
    if rep.get("status") in ("promoted", "kept", "failed"):
        lineage.append_event(settings, rep["alias"], {
            "event": {"promoted": "promotion", "kept": "rejection", "failed": "failure"}[rep["status"]],
            "run_id": rep["run_id"], "live_collection": rep.get("live_collection"),
            "new_collection": rep.get("new_collection"), "live_model": rep.get("live_model"),
            "candidate_model": rep.get("candidate_model"), "reason": rep.get("reason"),
            "gate": rep.get("gate")})


def _cycle(store: Store, settings: Settings, alias: str, dry_run: bool, rep: dict, timings: Timings) -> None:
    n = settings.queries_per_chunk
    # ---- 1. read ---------------------------------------------------------------------------
    with timings.stage("read"):
        live = store.resolve_alias(alias)
        meta = store.metadata(live)
        if not meta.get("model_ref"):
            raise BadInput(f"collection '{live}' has no vectune lineage (which model made it?): "
                           f"take it over first with `vectune adopt --collection {live} --alias {alias} --model <model>`")
        if "text_field" not in settings.model_fields_set and meta.get("text_field"):
            settings = settings.model_copy(update={"text_field": meta["text_field"]})  # what adopt/index recorded
        spec = store.dense_spec(live, settings.vector_name or meta.get("dense_vector") or None)
        keep = max(settings.max_train_chunks, min(settings.eval_corpus_cap, 50_000))
        chunks, rstats, content_fp = read(store, live, spec, settings, keep)
    rep.update(live_collection=live, live_model=meta.get("model_ref"), dense_vector=spec.name or "(default)")
    rep["counts"]["read"] = rstats.to_dict()
    if rstats.points == 0:
        raise BadInput(f"collection '{live}' is empty: nothing to learn from")
    bad = {k: v for k, v in rstats.skipped.items() if k in UNEMBEDDABLE or k in ("no_vector", "wrong_dimension")}
    if bad:
        raise BadInput(f"{sum(bad.values())} of {rstats.points} points in '{live}' cannot be used "
                       f"(payload field '{settings.text_field}': {bad}); a promotion would lose them. "
                       "Fix the payloads or choose the right --text-field")
    if rstats.usable < settings.min_train_chunks:
        raise BadInput(f"only {rstats.usable} usable chunks in '{live}' (need at least {settings.min_train_chunks} to train)")

    # ---- no-op check -------------------------------------------------------------------------
    generator = make_generator(settings)
    cfg = {k: getattr(settings, k) for k in CONFIG_KEYS}
    cfg.update(generator=generator.fingerprint(), eval_set=_file_hash(settings.eval_set),
               train_set=_file_hash(settings.train_set), base=meta.get("base_model"))
    cycle_fp = hashlib.sha256(json.dumps([content_fp, cfg], sort_keys=True, default=str).encode()).hexdigest()
    state_file = settings.run_dir(alias) / "last_cycle.json"
    if not dry_run and state_file.exists():
        last = json.loads(state_file.read_text())
        if last.get("fingerprint") == cycle_fp and last.get("status") in ("promoted", "kept"):
            rep.update(status="noop", reason=f"collection content and settings unchanged since run {last.get('run_id')} "
                                             f"({last.get('status')}); nothing to learn")
            return

    # ---- 2. split -----------------------------------------------------------------------------
    pool = sample(chunks, settings.max_train_chunks, settings.seed)
    train_chunks, held = split(pool, settings.eval_fraction, settings.seed)
    # no teacher calls for pairs the training budget would drop anyway
    budget_chunks = -(-settings.max_train_pairs // n)
    if len(train_chunks) > budget_chunks:
        train_chunks = sample(train_chunks, budget_chunks, settings.seed)
    by_key = {c.key: c for c in chunks}
    rep["counts"]["split"] = {"sampled": len(pool), "train_chunks": len(train_chunks), "eval_chunks": len(held)}

    golden = labeled.load(settings.eval_set, "eval set") if settings.eval_set else None
    trainset = labeled.load(settings.train_set, "train set") if settings.train_set else None
    evidence = "golden" if golden else ("synthetic" if generator.synthetic else "teacher")
    can_promote = evidence != "synthetic" or settings.allow_synthetic_gate
    if not can_promote and not dry_run:
        rep.update(status="kept", evidence=evidence,
                   reason="no trusted evidence to promote on: the offline teacher's queries are synthetic and no "
                          "golden set was given. Pass --eval-set with real queries (recommended), accept the risk "
                          "with --allow-synthetic-gate, or use --dry-run to see synthetic scores. Training skipped.")
        _save_state(state_file, cycle_fp, rep)
        return

    with timings.stage("load_live_model"):
        live_enc = load_lineage_encoder(meta, settings)
        rep["counts"]["live_vector_check"] = round(check_live_vectors(live_enc, pool, live), 4)

    def search(vecs, limit):
        hits = store.search_batch(live, vecs, limit, using=spec.name)
        return [[(str(pid), s) for pid, s in h] for h in hits]

    # ---- 3. pairs -----------------------------------------------------------------------------
    with timings.stage("generate"):
        # Eval queries first: when a teacher's budget runs out, it cuts training pairs, not the evidence.
        gen_eval = generator.generate(held, 1)
        gen_train = generator.generate(train_chunks, n)
        train_queries: list[Query] = list(gen_train.queries)
        eval_generated: list[Query] = list(gen_eval.queries)
        roundtrip = None
        if settings.roundtrip_filter and generator.name.startswith("openai"):
            from vectune.generate.roundtrip import roundtrip_filter

            def keys_only(vecs, k):
                return [[key for key, _ in hits] for hits in search(vecs, k)]

            train_queries, dropped_t = roundtrip_filter(train_queries, live_enc.encode_queries, keys_only,
                                                        settings.roundtrip_top_k)
            eval_generated, dropped_e = roundtrip_filter(eval_generated, live_enc.encode_queries, keys_only,
                                                         settings.roundtrip_top_k)
            roundtrip = {"top_k": settings.roundtrip_top_k, "kept": len(train_queries) + len(eval_generated),
                         "dropped": dropped_t + dropped_e}
    rep["teacher"] = generator.name
    rep["counts"]["generate"] = {"train": gen_train.stats.to_dict(), "eval": gen_eval.stats.to_dict(),
                                 "roundtrip_filter": roundtrip}
    relevant: dict[str, set[str]] = {}
    if trainset:
        missing = _ensure_chunks(store, live, spec, settings, {k for q in trainset for k in q.relevant}, by_key)
        used = 0
        for q in trainset:
            keys = [k for k in sorted(q.relevant) if k in by_key]
            relevant[q.text] = set(q.relevant)
            for k in keys[:1]:
                train_queries.append(Query(q.text, k, "train-set"))
                used += 1
        rep["counts"]["train_set"] = {"queries": len(trainset), "pairs": used, "unknown_ids": missing}
    held_keys = {c.key for c in held}
    eval_queries = [EvalQuery(q.text, {q.chunk_id}, q.source) for q in eval_generated if q.chunk_id in held_keys]
    eval_queries = eval_queries[: settings.max_eval_queries]
    if len(train_queries) > settings.max_train_pairs:
        # keep every real labeled pair; sample the synthetic ones down to the budget
        real = [q for q in train_queries if q.source == "train-set"]
        synth = [q for q in train_queries if q.source != "train-set"]
        keep = max(0, settings.max_train_pairs - len(real))
        synth = random.Random(settings.seed + 3).sample(synth, min(keep, len(synth)))
        rep["counts"]["train_pairs_capped"] = {"cap": settings.max_train_pairs, "dropped":
                                               len(train_queries) - len(real) - len(synth)}
        train_queries = real + synth
    if len(train_queries) < 2:
        raise BadInput(f"only {len(train_queries)} training queries could be made from {len(train_chunks)} chunks")

    # ---- 4. hard negatives (live model's query encoder + stored vectors in Qdrant) -----------
    with timings.stage("mine"):
        from vectune.negatives import count_sources, mine, texts_from_records

        qv = live_enc.encode_queries([q.text for q in train_queries])
        pv = np.stack([by_key[q.chunk_id].vector for q in train_queries])
        pv = pv / np.linalg.norm(pv, axis=1, keepdims=True).clip(1e-12)

        def fetch(keys):
            return texts_from_records(store.retrieve(live, [point_id_for(k) for k in keys]), settings.text_field)

        examples, mstats = mine(
            train_queries, qv, pv, {k: c.text for k, c in by_key.items()}, search, fetch,
            num_negatives=settings.hard_negatives, depth=settings.negatives_depth,
            skip_top=settings.negatives_skip_top, relative_margin=settings.relative_margin,
            relevant=relevant, seed=settings.seed)
    rep["counts"]["pairs"] = {"examples": len(examples), "by_source": count_sources(examples)}
    rep["counts"]["negatives"] = mstats.to_dict()

    # ---- 5. fine-tune -------------------------------------------------------------------------
    with timings.stage("train"):
        from vectune.train import train

        cand = load_encoder(meta["model_ref"], settings, query_prompt=live_enc.query_prompt)
        tstats = train(cand, examples, settings)
    rep["counts"]["train"] = tstats.to_dict()
    tag = new_model_tag(meta["model_ref"])
    rep["candidate_model"] = tag

    # ---- 6. evaluate ----------------------------------------------------------------------------
    with timings.stage("evaluate"):
        must = {k for q in eval_queries for k in q.relevant}
        if golden:
            unknown = _ensure_chunks(store, live, spec, settings, {k for q in golden for k in q.relevant}, by_key)
            gq = [EvalQuery(q.text, q.relevant & set(by_key), "golden") for q in golden]
            gq = [q for q in gq if q.relevant]
            rep["counts"]["eval_set"] = {"queries": len(golden), "usable": len(gq), "unknown_ids": unknown}
            if not gq:
                raise BadInput("no query of the eval set points at a chunk of this collection")
            must |= {k for q in gq for k in q.relevant}
        corpus = _eval_corpus(chunks, by_key, must, settings)
        ckeys = [c.key for c in corpus]
        live_corpus = np.stack([c.vector / (np.linalg.norm(c.vector) or 1.0) for c in corpus])
        cand_corpus = cand.encode_passages([c.text for c in corpus])
        evals, results = {}, {}
        sets = {"synthetic" if generator.synthetic else "teacher": eval_queries}
        if golden:
            sets["golden"] = gq
        for name, qs in sets.items():
            lr = evaluate(live_enc.encode_queries([q.text for q in qs]), live_corpus, ckeys, qs)
            cr = evaluate(cand.encode_queries([q.text for q in qs]), cand_corpus, ckeys, qs)
            results[name] = (lr, cr)
            evals[name] = {"live": lr.to_dict(), "candidate": cr.to_dict()}
        capped = rstats.usable > len(corpus)
    rep["evaluation"] = evals
    rep["counts"]["eval_corpus"] = {"size": len(corpus), "capped": capped, "cap": settings.eval_corpus_cap}

    # ---- 7. gate --------------------------------------------------------------------------------
    lr, cr = results[evidence]
    decision = decide(lr, cr, metric=settings.gate_metric, evidence=evidence, min_delta=settings.min_delta,
                      bootstrap=settings.bootstrap, samples=settings.bootstrap_samples,
                      confidence=settings.confidence, allow_synthetic=settings.allow_synthetic_gate)
    rep["gate"] = decision.to_dict()
    rep["evidence"] = evidence
    if dry_run:
        rep.update(status="dry-run", reason=f"dry run; the gate would {'promote' if decision.promote else 'keep live'}: "
                                            f"{decision.reason}")
        return
    if not decision.promote:
        rep.update(status="kept", reason=decision.reason)
        if settings.keep_candidate:
            rep["candidate_saved"] = str(save_model(cand, tag, settings, {
                "parent_model": meta["model_ref"], "parent_collection": live, "alias": alias, "state": "rejected",
                "eval": rep["gate"], "teacher": generator.name}))
        _save_state(state_file, cycle_fp, rep)
        return

    # ---- 8. promote -----------------------------------------------------------------------------
    from vectune.resume import promote

    data_counts = {"chunks_read": rstats.points, "usable": rstats.usable, "train_examples": len(examples),
                   "eval_queries": lr.queries}
    with timings.stage("save_model"):
        path = save_model(cand, tag, settings, {
            "parent_model": meta["model_ref"], "base_model": meta.get("base_model") or meta["model_ref"],
            "parent_collection": live, "alias": alias, "eval": rep["gate"], "data": data_counts,
            "teacher": generator.name})
    target = lineage.collection_name(alias, tag)
    rep["new_collection"] = target
    record = lineage.record(alias=alias, model_ref=tag, model_tag=tag, created_by="promote", dense_vector=spec.name,
                            query_prompt=cand.query_prompt, base_model=meta.get("base_model") or meta["model_ref"],
                            parent_model=meta["model_ref"], parent_collection=live, evaluation={
                                "evidence": evidence, "gate": rep["gate"], "metrics": evals},
                            data=data_counts, model_path=str(path), run_id=rep["run_id"],
                            max_seq_length=cand.max_seq_length, text_field=settings.text_field)
    with timings.stage("reindex"):
        store.create_like(live, target, spec, cand.dim, record)
        pre = {c.key: (c.text, v) for c, v in zip(corpus, cand_corpus)}
        rep["counts"]["reindex"] = promote(store, settings, alias, cand, live, target, spec, record,
                                           precomputed=pre, run_id=rep["run_id"])
    rep.update(status="promoted", reason=decision.reason)
    _save_state(state_file, cycle_fp, rep)


# --------------------------------------------------------------------------- helpers
def _eval_corpus(chunks: list[Chunk], by_key: dict[str, Chunk], must: set[str], settings: Settings) -> list[Chunk]:
    cap = settings.eval_corpus_cap
    required = [by_key[k] for k in sorted(must) if k in by_key]
    sampled = {c.key for c in chunks}
    if len(sampled | must) <= cap:
        out = {c.key: c for c in chunks}
        out.update({c.key: c for c in required})
        return [out[k] for k in sorted(out)]
    rest = [c for c in chunks if c.key not in must]
    random.Random(settings.seed + 7).shuffle(rest)
    picked = {c.key: c for c in required}
    for c in rest:
        if len(picked) >= cap:
            break
        picked[c.key] = c
    return [picked[k] for k in sorted(picked)]


def _ensure_chunks(store: Store, collection: str, spec: DenseSpec, settings: Settings, keys: set[str],
                   by_key: dict[str, Chunk]) -> int:
    """Fetch chunks that labeled queries point at but the sample missed; return how many ids are unknown."""
    need = [k for k in sorted(keys) if k not in by_key]
    unknown = 0
    for i in range(0, len(need), 256):
        batch = need[i:i + 256]
        recs = store.retrieve(collection, [point_id_for(k) for k in batch], vectors=[spec.name] if spec.name else True)
        found = set()
        for r in recs:
            text, _ = extract_text(r.payload, settings.text_field)
            vec = dense_of(r, spec)
            if text and vec is not None:
                by_key[str(r.id)] = Chunk(str(r.id), r.id, text, r.payload or {}, vec)
                found.add(str(r.id))
        unknown += len(set(batch) - found)
    return unknown


def _file_hash(path: Path | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _save_state(path: Path, fingerprint: str, rep: dict) -> None:
    from vectune.jsonl import write_json_atomic

    write_json_atomic(path, {"fingerprint": fingerprint, "run_id": rep["run_id"], "status": rep.get("status"),
                             "live_collection": rep.get("new_collection") or rep.get("live_collection")})


__all__ = ["run", "read", "check_live_vectors"]
