"""Checkpoints, in-flight markers and crash recovery.

A promotion writes ``<run_dir>/promotion.json`` before it builds anything and
updates it as it goes (scroll offset after each page, verified, snapshot, swapped).
A run that is killed — at any point, SIGKILL included — leaves that file and an
in-flight marker behind. The next run (holding the alias lock) then:

* reports the crash (``status``/``history`` show which run died in which stage);
* resumes the promotion where it stopped — the reindex from its last offset, or
  the catch-up/verify/swap, or the post-swap reconciliation — instead of
  training again, as long as the alias still points where it did;
* otherwise deletes the leftover collection: no unverified or half-built
  collection of the alias survives a run (orphans are never kept).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vectune import lineage
from vectune.jsonl import write_atomic, write_json_atomic
from vectune.models import has_model, load_lineage_encoder
from vectune.settings import Settings
from vectune.store import Store

logger = logging.getLogger(__name__)


def _read_json(path: Path) -> dict | None:
    """A JSON state file, or None when it is missing or torn."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class Checkpoint:
    """The promotion checkpoint file of one alias."""

    def __init__(self, settings: Settings, alias: str):
        self.path = settings.run_dir(alias) / "promotion.json"
        self.snapshot_path = settings.run_dir(alias) / "promotion-snapshot.json.gz"

    def load(self) -> dict | None:
        return _read_json(self.path)

    def save(self, data: dict) -> None:
        write_json_atomic(self.path, data)

    def save_snapshot(self, snapshot: dict[str, tuple[Any, str]]) -> None:
        write_atomic(self.snapshot_path, gzip.compress(json.dumps(snapshot).encode("utf-8"), compresslevel=6))

    def load_snapshot(self) -> dict[str, tuple[Any, str]] | None:
        try:
            with gzip.open(self.snapshot_path, "rt", encoding="utf-8") as f:
                return {k: tuple(v) for k, v in json.load(f).items()}
        except (OSError, ValueError):
            return None

    def clear(self) -> None:
        for p in (self.path, self.snapshot_path, self.path.with_name("ray-partitions.json")):
            p.unlink(missing_ok=True)


class InFlight:
    """A marker that a run is in progress, with its current stage (left behind by a crash)."""

    def __init__(self, settings: Settings, alias: str):
        self.path = settings.run_dir(alias) / "inflight.json"

    def load(self) -> dict | None:
        return _read_json(self.path)

    def set(self, run_id: str, stage: str) -> None:
        write_json_atomic(self.path, {"run_id": run_id, "stage": stage, "pid": os.getpid(), "time": lineage.now()})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Recovery:
    """What :func:`recover` found and did.

    Attributes:
        found: for the report: the crashed run, a resumed promotion, reconciliation, orphans deleted.
        done: a resumed promotion completed (the cycle has nothing more to do).
        new_collection: the collection now live, when ``done``.
        live_collection: the collection it replaced, when ``done``.
        candidate_model: the resumed promotion's model, when known.
        reason: why the run ends, when ``done``.
        reindex: the resumed promotion's counts.
    """

    found: dict = field(default_factory=dict)
    done: bool = False
    new_collection: str | None = None
    live_collection: str | None = None
    candidate_model: str | None = None
    reason: str | None = None
    reindex: dict | None = None


def recover(store: Store, settings: Settings, alias: str, live: str, lock=None) -> Recovery:
    """Deal with what a killed run left behind (see module doc).

    Args:
        store: Qdrant access (the caller holds the alias lock).
        settings: settings.
        alias: the alias.
        live: the collection the alias points at now.
        lock: the alias lease this run holds; fenced before every resume, reconcile, state change
            and delete, so recovery never touches work of an operator that holds the lease now.

    Returns:
        What was recovered; ``done`` when a resumed promotion completed.
    """
    from vectune.lock import NO_FENCE
    from vectune.promote import SyncStats, build_and_publish, publish_checkpointed, reconcile

    lock = lock or NO_FENCE
    lock.fence("recover")
    out = Recovery()
    recovered = out.found
    marker = InFlight(settings, alias).load()
    if marker:
        recovered["previous_run"] = marker
        lineage.append_event(settings, alias, {"event": "crash", "run_id": marker.get("run_id"),
                                               "stage": marker.get("stage"),
                                               "reason": f"run {marker.get('run_id')} died during stage "
                                                         f"'{marker.get('stage')}'"})
        logger.warning("previous run %s died during stage '%s'", marker.get("run_id"), marker.get("stage"))
    ckpt = Checkpoint(settings, alias)
    state = ckpt.load()
    if state:
        target = state.get("target")
        exists = bool(target) and store.collection_exists(target)
        model_ok = has_model(str(state.get("model_tag")), settings)
        s2 = settings.for_collection({"text_field": state.get("text_field")})
        if exists and model_ok and live == target:
            # Swapped before the crash: finish the post-swap reconciliation.
            snapshot = ckpt.load_snapshot()
            if snapshot is not None:
                enc = load_lineage_encoder(store.metadata(target), settings, ref=state["model_tag"])
                spec = store.dense_spec(target, state.get("dense_vector") or None)
                stats = SyncStats()
                reconcile(store, enc, state["parent"], target, spec, s2.text_field, snapshot,
                          settings.upsert_batch, stats, lock)
                recovered["reconciled"] = stats.to_dict()
            lock.fence("set state")
            lineage.set_state(store, target, "live")
            lineage.set_state(store, state["parent"], "retired", retired_at=lineage.now())
            ckpt.clear()
            out.done, out.new_collection, out.live_collection = True, target, state["parent"]
            out.reason = f"finished the promotion of run {state.get('run_id')} after its crash (post-swap)"
        elif exists and model_ok and live == state.get("parent"):
            logger.info("resuming the promotion of %s (stage %s, %s points done)", target, state.get("stage"),
                        state.get("done"))
            meta = store.metadata(target)
            enc = load_lineage_encoder(meta, settings, ref=state["model_tag"])
            spec = store.dense_spec(target, state.get("dense_vector") or None)
            if state.get("stage") == "building":
                counts = build_and_publish(store, s2, alias, enc, live, target, spec, meta,
                                           start_offset=state.get("offset"), ckpt=ckpt,
                                           run_id=str(state.get("run_id")), lock=lock)
            else:
                sstats, vinfo = publish_checkpointed(store, s2, alias, enc, live, target, spec, meta, ckpt, state,
                                                     lock)
                counts = {"build": None, "catch_up": sstats.to_dict(), "verify": vinfo}
            recovered["resumed_promotion"] = {"target": target, "from_stage": state.get("stage"),
                                              "points_done_before": state.get("done")}
            out.done, out.new_collection, out.live_collection = True, target, live
            out.candidate_model, out.reindex = state["model_tag"], counts
            out.reason = (f"resumed the promotion of run {state.get('run_id')} (killed during "
                          f"'{state.get('stage')}') and completed it")
        else:
            ckpt.clear()
    # Orphans: any collection of this alias still building/verified that is not live.
    orphans = []
    live_now = store.resolve_alias(alias)
    for name, meta in lineage.versions(store, alias):
        if name != live_now and meta.get("state") in ("building", "verified"):
            lock.fence(f"delete orphan {name}")
            store.delete_collection(name)
            orphans.append(name)
    if orphans:
        recovered["orphans_deleted"] = orphans
        logger.warning("deleted %d leftover collection(s) of '%s': %s", len(orphans), alias, orphans)
    return out
