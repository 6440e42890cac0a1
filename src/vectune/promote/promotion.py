"""Publishing a collection behind an alias, checkpointed: promotion, rollback, roll-forward and their resumption.

:class:`Promoter` is the promote stage's entry (:meth:`Promoter.promote`) and the mechanism
crash recovery and rollback call: one checkpointed path for every publish.

* :mod:`.build` streams every point into the new collection, re-embedded or copied (constant
  memory, resumable from a scroll offset); the engine (local or Ray) is chosen here;
* :mod:`.sync` runs delta passes (payload + every vector, conditioned on vectune's revision
  marker, :mod:`.mark`) and :mod:`.window` reconciles the writes made in the window after the swap;
* :mod:`.publish` does catch-up, verification, the final pass from a snapshot, and one atomic
  alias swap.

A checkpoint (:class:`~vectune.promote.checkpoint.Checkpoint`) is written before anything is built
and updated as the publish goes, so a killed run is resumed by the next one
(:mod:`vectune.ops.recover`). Apps need only write through the alias.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vectune.config.sections import PromoteConfig
from vectune.models.store import ModelStore
from vectune.promote.build import build
from vectune.promote.checkpoint import Checkpoint
from vectune.promote.publish import publish
from vectune.promote.stats import SyncStats
from vectune.qdrant import lineage
from vectune.qdrant.lease import NO_FENCE
from vectune.qdrant.store import DenseSpec, Store

logger = logging.getLogger(__name__)


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


class Promoter:
    """Publishes collections behind one alias, checkpointed in the alias's run folder.

    Args:
        store: Qdrant access (the caller holds the alias lease).
        alias: the alias.
        cfg: batches, verification sample, engine.
        models: the model store (tuned models are saved there; the Ray engine loads from it).
        run_dir: the alias's run folder (checkpoint, snapshot, reconciliation journal, Ray progress).
        lock: the alias lease (:class:`~vectune.qdrant.lease.AliasLock`), fenced before every state change.
    """

    def __init__(self, store: Store, alias: str, cfg: PromoteConfig, models: ModelStore, run_dir: Path,
                 lock=None):
        self.store, self.alias, self.cfg, self.models = store, alias, cfg, models
        self.run_dir = Path(run_dir)
        self.ckpt = Checkpoint(self.run_dir)
        self.lock = lock or NO_FENCE

    # --- the promote stage ------------------------------------------------------------
    def promote(self, read, cand, outcome, decision, *, text_field: str, evidence: str, teacher: str, data: dict,
                run_id: str, stage=None, labels: dict | None = None) -> Promotion:
        """Save the candidate, build ``<alias>--<tag>`` from the live collection, publish it behind the alias.

        Args:
            read: the read stage's result (live collection, lineage, spec).
            cand: the candidate (:class:`vectune.pipeline.train.candidate.Candidate`).
            outcome: the evaluation (:class:`vectune.pipeline.evaluate.EvalOutcome`): its scores go into
                the lineage and its candidate embeddings are reused for the matching points.
            decision: the gate's decision.
            text_field: the collection's text field.
            evidence: which evidence decided.
            teacher: the teacher's name.
            data: data counts recorded in the manifest and the lineage.
            run_id: this run.
            stage: ``stage(name)`` context manager for timings (``save_model``, ``reindex``).
            labels: which labels the model trained on and was gated on
                (:func:`vectune.pipeline.pairs.provenance.provenance`): the whole record goes into the model's
                manifest, its summary (without the id lists) into the lineage.

        Returns:
            The new collection, the model's path and the reindex counts.
        """
        stage = stage or (lambda name: nullcontext())
        meta, live, spec = read.meta, read.live, read.spec
        base = meta.get("base_model") or meta["model_ref"]
        # A query-side candidate keeps the live passage model: its vectors are copied, never re-encoded.
        passages = cand.tag if cand.reencodes else lineage.passage_model(meta)
        with stage("save_model"):
            path = self.models.save(cand.encoder, cand.tag, {
                "parent_model": meta["model_ref"], "base_model": base, "parent_collection": live, "alias": self.alias,
                "eval": decision.to_dict(), "data": data, "teacher": teacher, "kind": cand.kind,
                "passage_model": passages, **({"labels": labels} if labels else {})})
        target = lineage.collection_name(self.alias, cand.tag)
        record = lineage.record(alias=self.alias, model_ref=cand.tag, model_tag=cand.tag, created_by="promote",
                                dense_vector=spec.name, query_prompt=cand.encoder.query_prompt, base_model=base,
                                parent_model=meta["model_ref"], parent_collection=live, evaluation={
                                    "evidence": evidence, "gate": decision.to_dict(), "metrics": outcome.to_dict()},
                                data=data, model_path=str(path), run_id=run_id, query_model=cand.tag,
                                passage_model=passages, mode="full" if cand.reencodes else "query", kind=cand.kind,
                                max_seq_length=(cand.encoder.max_seq_length if cand.reencodes
                                                else meta.get("max_seq_length") or cand.encoder.max_seq_length),
                                text_field=text_field)
        if labels:
            record["labels"] = _without_lists(labels)
        with stage("reindex"):
            self.store.create_like(live, target, spec, cand.encoder.dim, record)
            if cand.reencodes:
                pre = {c.key: (c.text, v) for c, v in zip(outcome.corpus, outcome.candidate_corpus)}
                counts = self.build_and_publish(cand.encoder, live, target, spec, record, text_field,
                                                precomputed=pre, run_id=run_id)
            else:
                counts = self.build_and_publish(None, live, target, spec, record, text_field, run_id=run_id)
        return Promotion(target, str(path), counts)

    # --- the resumable pieces ---------------------------------------------------------
    def build_and_publish(self, encoder, live: str, target: str, spec: DenseSpec, record: dict, text_field: str,
                          precomputed: dict | None = None, start_offset: Any = None, run_id: str = "") -> dict:
        """Build ``target`` from ``live`` (resumable, checkpointed), then publish it behind the alias.

        Args:
            encoder: the target's passage model, or None to copy the vectors (query side).
            live: the collection the alias points at.
            target: the collection to build (created already).
            spec: the tuned dense vector.
            record: the target's lineage record.
            text_field: the collection's text field.
            precomputed: ``{key: (text, vector)}`` encoded already (by the evaluation).
            start_offset: resume the build from this scroll offset.
            run_id: the run that started the promotion.

        Returns:
            ``{"build": ..., "catch_up": ..., "verify": ...}`` counts for the report.
        """
        state = {"run_id": run_id, "alias": self.alias, "target": target, "parent": live,
                 "model_tag": record["model_ref"], "dense_vector": spec.name, "text_field": text_field,
                 "offset": start_offset, "done": 0, "stage": "building", "copy": encoder is None, **self.lock.stamp()}
        self.ckpt.save(state)

        def on_page(offset, done):
            state.update(offset=offset, done=done)
            self.lock.check("checkpoint")
            self.ckpt.save(state)

        bstats = self._build(encoder, live, target, spec, record, text_field, precomputed, start_offset, on_page)
        state.update(stage="built", offset=None)
        self.ckpt.save(state)
        sstats, vinfo = self.publish_promotion(encoder, live, target, spec, record, text_field, state)
        return {"build": bstats.to_dict(), "catch_up": sstats.to_dict(), "verify": vinfo}

    def _build(self, encoder, live, target, spec, record, text_field, precomputed, start_offset,
               on_page) -> SyncStats:
        """The engine choice: Ray Data on a cluster, or the local pipelined build (always, to copy vectors)."""
        if self.cfg.engine == "ray" and encoder is not None:
            from vectune.promote.engines.ray_engine import build_ray  # deferred: Ray is an optional extra

            # resumable through its own per-partition progress file in the run dir
            return build_ray(self.models, self.store.cfg, record["model_ref"],
                             {"query_prompt": record.get("query_prompt"),
                              "max_seq_length": record.get("max_seq_length")},
                             live, target, spec, text_field, self.cfg.upsert_batch,
                             partitions=self.cfg.ray_partitions, progress_dir=self.run_dir, store=self.store)
        return build(self.store, encoder, live, target, spec, text_field, self._batch(encoder),
                     precomputed=precomputed, start_offset=start_offset, on_page=on_page, lock=self.lock)

    def _batch(self, encoder) -> int:
        """Points per page: ``upsert_batch`` when re-encoding, ``copy_batch`` when only vectors move."""
        return self.cfg.upsert_batch if encoder is not None else max(self.cfg.upsert_batch, self.cfg.copy_batch)

    def publish_promotion(self, encoder, live: str, target: str, spec: DenseSpec, record: dict, text_field: str,
                          state: dict) -> tuple[SyncStats, dict]:
        """Publish a built ``target`` in place of ``live``, keeping checkpoint and lineage states; retires ``live``."""

        def mark(what: str, info: dict) -> None:
            if what == "snapshot":
                self.ckpt.save_snapshot(info["snapshot"])
                return
            record["state"] = what
            if what == "verified":
                record["verify"] = info
            self.store.set_metadata(target, record)
            if what == "live":  # exactly one live collection, during reconciliation too
                lineage.set_state(self.store, live, "retired", retired_at=lineage.now())
            state["stage"] = "swapped" if what == "live" else what
            self.ckpt.save(state)

        sstats, vinfo = publish(self.store, encoder, live, target, self.alias, spec, text_field, self._batch(encoder),
                                self.cfg.verify_sample, mark=mark, lock=self.lock)
        self.ckpt.clear()
        return sstats, vinfo

    def publish_rollback(self, encoder, live: str, target: str, spec: DenseSpec, text_field: str,
                         state: dict) -> tuple[SyncStats, dict]:
        """Publish an existing version ``target`` in place of ``live`` (a rollback or roll-forward), checkpointed.

        Args:
            encoder: the target's passage model, or None to copy vectors verbatim.
            live: the collection the alias points at now.
            target: the version to put back.
            spec: the tuned dense vector.
            text_field: the target's text field.
            state: the checkpoint's state (``kind: rollback``, saved already), updated as the publish goes.

        Returns:
            The publish's sync statistics and verification result.
        """

        def mark(what: str, info: dict) -> None:
            if what == "snapshot":
                self.ckpt.save_snapshot(info["snapshot"])
                return
            if what == "live":
                mark_rolled_back(self.store, live, target)
            state["stage"] = "swapped" if what == "live" else what
            self.ckpt.save(state)

        stats, vinfo = publish(self.store, encoder, live, target, self.alias, spec, text_field, self._batch(encoder),
                               self.cfg.verify_sample, mark=mark, lock=self.lock)
        self.ckpt.clear()
        return stats, vinfo


def mark_rolled_back(store: Store, live: str, target: str) -> None:
    """Lineage after a rollback's swap: ``target`` live (rolled back from ``live``), ``live`` retired."""
    lineage.set_state(store, target, "live", rolled_back_at=lineage.now(), rolled_back_from=live)
    lineage.set_state(store, live, "retired", retired_at=lineage.now())


__all__ = ["Promoter", "Promotion", "mark_rolled_back"]


def _without_lists(labels: dict) -> dict:
    """A label record for the lineage: collection metadata keeps no per-event or per-query lists."""
    return {k: v for k, v in labels.items() if not isinstance(v, list)}
