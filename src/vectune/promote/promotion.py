"""Promote stage: build a model-tagged collection, sync it, verify it, swap the alias.

One package, one entry point for the cycle (:func:`promote`), and the resumable
pieces that crash recovery calls (:func:`build_and_publish`, :func:`publish_checkpointed`):

* :mod:`.build` — stream every point into the new collection, re-embedded (constant
  memory, resumable from a scroll offset); the engine (local or Ray) is chosen here;
* :mod:`.sync` — delta passes (payload + every vector, conditioned on vectune's revision marker,
  :mod:`.mark`) and :mod:`.window` — post-swap reconciliation of the writes made in the window;
* :mod:`.publish` — catch-up, verification, final pass from a snapshot, one atomic
  alias swap, reconciliation of the writes made in the window.

One mechanism serves promotion, rollback and roll-forward: :func:`.publish.publish`.
A checkpoint (:class:`vectune.promote.checkpoint.Checkpoint`) is written before anything is built
and updated as the promotion goes, so a killed run is resumed by the next one.
Apps need only write through the alias.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from vectune.qdrant import lineage
from vectune.core.hashing import payload_hash
from vectune.promote.build import build, embed_points
from vectune.promote.publish import publish, verify
from vectune.promote.stats import SyncStats
from vectune.promote.sync import delta, fingerprints, reconcile, sync, sync_once
from vectune.qdrant.lease import NO_FENCE
from vectune.config.settings import Settings
from vectune.qdrant.store import DenseSpec, Store, point_with_vector

logger = logging.getLogger(__name__)

#: Kept for callers of the first layout (``from vectune.promote.promotion import make_point``).
make_point = point_with_vector


@dataclass
class Promotion:
    """What the promote stage did.

    Attributes:
        collection: the new collection, now behind the alias.
        model_path: where the tuned model was saved.
        counts: ``{"build": ..., "catch_up": ..., "verify": ...}`` for the run report.
    """

    collection: str
    model_path: str
    counts: dict = field(default_factory=dict)


def promote(store: Store, settings: Settings, alias: str, read, cand, outcome, decision, *, evidence: str,
            teacher: str, data: dict, run_id: str, stage=None, lock=None) -> Promotion:
    """Save the candidate, build ``<alias>--<tag>`` from the live collection, publish it behind ``alias``.

    Args:
        store: Qdrant access (the caller holds the alias lock).
        settings: all settings.
        alias: the alias.
        read: the read stage's result (live collection, lineage, spec).
        cand: the candidate (:class:`vectune.pipeline.train.stage.Candidate`).
        outcome: the evaluation (:class:`vectune.pipeline.evaluate.EvalOutcome`): its scores go into the lineage
            and its candidate embeddings are reused for the matching points.
        decision: the gate's decision.
        evidence: which evidence decided.
        teacher: the teacher's name.
        data: data counts recorded in the manifest and the lineage.
        run_id: this run.
        stage: ``stage(name)`` context manager for timings (``save_model``, ``reindex``).
        lock: the alias lease (:class:`vectune.qdrant.lease.AliasLock`), fenced before every state change.

    Returns:
        The new collection, the model's path and the reindex counts.
    """
    from vectune.models.store import ModelStore

    stage = stage or (lambda name: nullcontext())
    meta, live, spec = read.meta, read.live, read.spec
    base = meta.get("base_model") or meta["model_ref"]
    # A query-side candidate keeps the live passage model: its vectors are copied, never re-encoded.
    passages = cand.tag if cand.reencodes else lineage.passage_model(meta)
    with stage("save_model"):
        path = ModelStore.from_settings(settings).save(cand.encoder, cand.tag, {
            "parent_model": meta["model_ref"], "base_model": base, "parent_collection": live, "alias": alias,
            "eval": decision.to_dict(), "data": data, "teacher": teacher, "kind": cand.kind,
            "passage_model": passages})
    target = lineage.collection_name(alias, cand.tag)
    record = lineage.record(alias=alias, model_ref=cand.tag, model_tag=cand.tag, created_by="promote",
                            dense_vector=spec.name, query_prompt=cand.encoder.query_prompt, base_model=base,
                            parent_model=meta["model_ref"], parent_collection=live, evaluation={
                                "evidence": evidence, "gate": decision.to_dict(), "metrics": outcome.to_dict()},
                            data=data, model_path=str(path), run_id=run_id, query_model=cand.tag,
                            passage_model=passages, mode="full" if cand.reencodes else "query", kind=cand.kind,
                            max_seq_length=(cand.encoder.max_seq_length if cand.reencodes
                                            else meta.get("max_seq_length") or cand.encoder.max_seq_length),
                            text_field=settings.collection.text_field)
    with stage("reindex"):
        store.create_like(live, target, spec, cand.encoder.dim, record)
        if cand.reencodes:
            pre = {c.key: (c.text, v) for c, v in zip(outcome.corpus, outcome.candidate_corpus)}
            counts = build_and_publish(store, settings, alias, cand.encoder, live, target, spec, record,
                                       precomputed=pre, run_id=run_id, lock=lock)
        else:
            counts = build_and_publish(store, settings, alias, None, live, target, spec, record,
                                       run_id=run_id, lock=lock)
    return Promotion(target, str(path), counts)


def build_and_publish(store: Store, settings: Settings, alias: str, encoder, live: str, target: str,
                      spec: DenseSpec, record: dict, precomputed: dict | None = None, start_offset: Any = None,
                      ckpt=None, run_id: str = "", lock=None) -> dict:
    """Build ``target`` from ``live`` (resumable, checkpointed), then publish it behind ``alias``.

    Returns:
        ``{"build": ..., "catch_up": ..., "verify": ...}`` counts for the report.
    """
    from vectune.promote.checkpoint import Checkpoint

    lock = lock or NO_FENCE
    ckpt = ckpt or Checkpoint(settings, alias)
    state = {"run_id": run_id, "alias": alias, "target": target, "parent": live, "model_tag": record["model_ref"],
             "dense_vector": spec.name, "text_field": settings.collection.text_field, "offset": start_offset,
             "done": 0, "stage": "building", "copy": encoder is None, **lock.stamp()}
    ckpt.save(state)

    def on_page(offset, done):
        state.update(offset=offset, done=done)
        lock.check("checkpoint")
        ckpt.save(state)

    bstats = _build_with_engine(store, settings, alias, encoder, live, target, spec, record, precomputed,
                                start_offset, on_page, lock)
    state.update(stage="built", offset=None)
    ckpt.save(state)
    sstats, vinfo = publish_checkpointed(store, settings, alias, encoder, live, target, spec, record, ckpt, state,
                                         lock)
    return {"build": bstats.to_dict(), "catch_up": sstats.to_dict(), "verify": vinfo}


def _build_with_engine(store, settings, alias, encoder, live, target, spec, record, precomputed, start_offset,
                       on_page, lock) -> SyncStats:
    """The engine choice: Ray Data on a cluster, or the local pipelined build (always, to copy vectors)."""
    if settings.promote.engine == "ray" and encoder is not None:
        from vectune.promote.engines.ray_engine import build_ray

        # resumable through its own per-partition progress file in the run dir
        return build_ray(settings, record["model_ref"],
                         {"query_prompt": record.get("query_prompt"), "max_seq_length": record.get("max_seq_length")},
                         live, target, spec, settings.collection.text_field, settings.promote.upsert_batch,
                         partitions=settings.promote.ray_partitions, progress_dir=settings.run_dir(alias), store=store)
    return build(store, encoder, live, target, spec, settings.collection.text_field, settings.promote.upsert_batch,
                 precomputed=precomputed, start_offset=start_offset, on_page=on_page, lock=lock)


def publish_checkpointed(store: Store, settings: Settings, alias: str, encoder, live: str, target: str,
                         spec: DenseSpec, record: dict, ckpt, state: dict, lock=None) -> tuple[SyncStats, dict]:
    """:func:`publish` with the checkpoint and the lineage states kept up to date; retires ``live``."""
    lock = lock or NO_FENCE

    def mark(what: str, info: dict) -> None:
        if what == "snapshot":
            ckpt.save_snapshot(info["snapshot"])
            return
        record["state"] = what
        if what == "verified":
            record["verify"] = info
        store.set_metadata(target, record)
        if what == "live":  # exactly one live collection, during reconciliation too
            lineage.set_state(store, live, "retired", retired_at=lineage.now())
        state["stage"] = "swapped" if what == "live" else what
        ckpt.save(state)

    sstats, vinfo = publish(store, encoder, live, target, alias, spec, settings.collection.text_field, settings.promote.upsert_batch,
                            settings.promote.verify_sample, mark=mark, lock=lock)
    ckpt.clear()
    return sstats, vinfo


__all__ = ["Promotion", "SyncStats", "build", "build_and_publish", "delta", "embed_points", "fingerprints",
           "make_point", "payload_hash", "promote", "publish", "publish_checkpointed", "reconcile", "sync", "sync_once", "verify"]
