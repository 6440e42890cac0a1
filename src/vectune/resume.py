"""Checkpoints, in-flight markers and crash recovery.

A promotion — and a rollback or roll-forward, which publish through the same path —
writes ``<run_dir>/promotion.json`` before it builds anything and updates it as it goes
(scroll offset after each page, verified, snapshot, swapped; reconciliation journals
each batch of window writes it carried over).
A run that is killed — at any point, SIGKILL included — leaves that file and an
in-flight marker behind. The next run (holding the alias lock) then:

* reports the crash (``status``/``history`` show which run died in which stage);
* resumes the promotion where it stopped — the reindex from its last offset, or
  the catch-up/verify/swap, or the post-swap reconciliation — instead of
  training again, as long as the alias still points where it did; a rollback
  likewise;
* never drops a swapped promotion's or rollback's reconciliation: when the model it
  needs to re-embed the window's writes is gone it stops loudly and keeps the
  checkpoint (a copy-mode publish needs no model);
* otherwise deletes the leftover collection: no unverified or half-built
  collection of the alias survives a run (orphans are never kept). After a
  post-swap finish exactly one collection of the alias is marked ``live``.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from vectune import lineage
from vectune.errors import BadInput
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
    """The promotion (or rollback) checkpoint file of one alias, its snapshot and reconciliation journal."""

    def __init__(self, settings: Settings, alias: str):
        self.path = settings.run_dir(alias) / "promotion.json"
        self.snapshot_path = settings.run_dir(alias) / "promotion-snapshot.json.gz"
        self.journal_path = settings.run_dir(alias) / "promotion-reconciled.jsonl.gz"

    def load(self) -> dict | None:
        return _read_json(self.path)

    def save(self, data: dict) -> None:
        write_json_atomic(self.path, data)

    def save_snapshot(self, snapshot) -> None:
        """Persist the swap's :class:`~vectune.promote.window.Snapshot` (and journal its reconciliation here)."""
        data = snapshot.to_json() if hasattr(snapshot, "to_json") else snapshot
        write_atomic(self.snapshot_path, gzip.compress(json.dumps(data).encode("utf-8"), compresslevel=6))
        self.journal_path.unlink(missing_ok=True)  # a new snapshot: nothing reconciled yet
        if hasattr(snapshot, "journal"):
            snapshot.journal = self.journal_path

    def load_snapshot(self):
        """The saved :class:`~vectune.promote.window.Snapshot` (journalled), or None."""
        from vectune.promote.window import Snapshot

        try:
            with gzip.open(self.snapshot_path, "rt", encoding="utf-8") as f:
                snap = Snapshot.from_json(json.load(f))
        except (OSError, ValueError, EOFError):
            return None
        snap.journal = self.journal_path
        return snap

    def clear(self) -> None:
        for p in (self.path, self.snapshot_path, self.journal_path, self.path.with_name("ray-partitions.json")):
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

    def interrupted(self, signal_name: str) -> None:
        """Note on the marker that the run was stopped by ``signal_name`` (not killed), keeping its stage."""
        marker = self.load()
        if marker:
            write_json_atomic(self.path, {**marker, "interrupted_by": signal_name, "interrupted_at": lineage.now()})


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

    lock = lock or NO_FENCE
    lock.fence("recover")
    out = Recovery()
    recovered = out.found
    marker = InFlight(settings, alias).load()
    if marker:
        recovered["previous_run"] = marker
        how = f"was stopped by {marker['interrupted_by']}" if marker.get("interrupted_by") else "died"
        lineage.append_event(settings, alias, {"event": "crash", "run_id": marker.get("run_id"),
                                               "stage": marker.get("stage"),
                                               "reason": f"run {marker.get('run_id')} {how} during stage "
                                                         f"'{marker.get('stage')}'"})
        logger.warning("previous run %s %s during stage '%s'", marker.get("run_id"), how, marker.get("stage"))
    ckpt = Checkpoint(settings, alias)
    state = ckpt.load()
    if state:
        _resume(store, settings, alias, live, lock, ckpt, state, out)
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


def _resume(store: Store, settings: Settings, alias: str, live: str, lock, ckpt: Checkpoint, state: dict,
            out: Recovery) -> None:
    """Finish, resume or drop the checkpointed promotion or rollback (see module doc)."""
    from vectune.promote import build_and_publish, publish_checkpointed
    from vectune.promote.stats import SyncStats
    from vectune.promote.window import reconcile, withdraw

    recovered = out.found
    kind = state.get("kind") or "promotion"
    target, parent = state.get("target"), state.get("parent")
    exists = bool(target) and store.collection_exists(target)
    snapshot = ckpt.load_snapshot()
    copy = bool(state.get("copy")) or state.get("mode") == "copy" or bool(snapshot and snapshot.copy)
    model = str(state.get("model_tag"))
    model_ok = copy or has_model(model, settings)
    s2 = settings.for_collection({"text_field": state.get("text_field")})
    if exists and live == target:
        # Swapped before the crash: finish the post-swap reconciliation, whatever it takes.
        spec = store.dense_spec(target, state.get("dense_vector") or None)
        stats = SyncStats()
        if snapshot is not None:
            finished = snapshot.done()[1]
            if not (model_ok or finished):
                raise BadInput(
                    f"the {kind} of run {state.get('run_id')} swapped '{alias}' to '{target}' and then stopped before "
                    f"carrying over the writes made in its window; that needs model {model!r} (to re-embed them), "
                    f"which is not in the model store ({settings.resolved_model_dir}). Restore the model and run "
                    f"again. To give up on those writes instead, delete {ckpt.path} (they are then missing from "
                    f"'{target}'; they are still in '{parent}')")
            enc = None if (copy or finished) else load_lineage_encoder(store.metadata(target), settings, ref=model)
            reconcile(store, enc, parent, target, spec, s2.text_field, snapshot, settings.upsert_batch, stats, lock)
            recovered["reconciled"] = stats.to_dict()
        else:
            logger.error("the %s of run %s swapped '%s' to '%s' but its snapshot is missing: the writes made in "
                         "its window cannot be found", kind, state.get("run_id"), alias, target)
            recovered["unreconciled"] = {"target": target, "parent": parent, "reason": "snapshot missing"}
        lock.fence("set state")
        extra = {"rolled_back_at": lineage.now(), "rolled_back_from": parent} if kind == "rollback" else {}
        lineage.set_state(store, target, "live", **extra)
        if parent and store.collection_exists(parent):
            lineage.set_state(store, parent, "retired", retired_at=lineage.now())
        ckpt.clear()
        if kind == "rollback":
            recovered["finished_rollback"] = {"from": parent, "to": target, "model": model}
            lineage.append_event(settings, alias, {"event": "rollback", "from": parent, "to": target, "model": model,
                                                   "synced": stats.to_dict(), "forced": False,
                                                   "resumed": f"run {state.get('run_id')} crashed after its swap"})
        else:
            out.done, out.new_collection, out.live_collection = True, target, parent
            out.reason = f"finished the promotion of run {state.get('run_id')} after its crash (post-swap)"
        return
    if exists and model_ok and live == parent:
        logger.info("resuming the %s to %s (stage %s, %s points done)", kind, target, state.get("stage"),
                    state.get("done"))
        meta = store.metadata(target)
        enc = None if copy else load_lineage_encoder(meta, settings, ref=model)
        spec = store.dense_spec(target, state.get("dense_vector") or None)
        if kind == "rollback":
            from vectune.rollback import publish_rollback

            sstats, _ = publish_rollback(store, s2, alias, enc, live, target, spec, ckpt, state, lock)
            recovered["finished_rollback"] = {"from": live, "to": target, "model": model,
                                              "from_stage": state.get("stage")}
            lineage.append_event(settings, alias, {"event": "rollback", "from": live, "to": target, "model": model,
                                                   "synced": sstats.to_dict(), "forced": False,
                                                   "resumed": f"run {state.get('run_id')} crashed before its swap"})
            return
        if state.get("stage") == "building":
            counts = build_and_publish(store, s2, alias, enc, live, target, spec, meta,
                                       start_offset=state.get("offset"), ckpt=ckpt,
                                       run_id=str(state.get("run_id")), lock=lock)
        else:
            sstats, vinfo = publish_checkpointed(store, s2, alias, enc, live, target, spec, meta, ckpt, state, lock)
            counts = {"build": None, "catch_up": sstats.to_dict(), "verify": vinfo}
        recovered["resumed_promotion"] = {"target": target, "from_stage": state.get("stage"),
                                          "points_done_before": state.get("done")}
        out.done, out.new_collection, out.live_collection = True, target, live
        out.candidate_model, out.reindex = model, counts
        out.reason = (f"resumed the promotion of run {state.get('run_id')} (killed during "
                      f"'{state.get('stage')}') and completed it")
        return
    # Not swapped and not resumable (the alias moved, the collection or its model is gone): drop it.
    if parent and target:
        lock.fence("withdraw the migration")
        withdraw(store, parent, target)
    if kind == "rollback" and exists and live == parent:
        recovered["abandoned_rollback"] = {"from": parent, "to": target, "model": model,
                                           "reason": "its model is not in the model store"}
        logger.warning("dropped the interrupted rollback of '%s' to %s: model %r is not in the model store",
                       alias, target, model)
    ckpt.clear()
