"""Crash recovery: finish, resume or drop what a killed run left behind.

A promotion — and a rollback or roll-forward, which publish through the same path —
checkpoints itself (:mod:`vectune.promote.checkpoint`). The next run (holding the alias lease) then:

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

import logging
from dataclasses import dataclass, field

from vectune.config.settings import Settings
from vectune.errors import BadInput, TornState
from vectune.models.store import ModelStore
from vectune.observe.history import History
from vectune.ops.integrity import require_readable_state
from vectune.promote.checkpoint import InFlight
from vectune.promote.promotion import Promoter
from vectune.promote.stats import SyncStats
from vectune.promote.window import reconcile, withdraw
from vectune.qdrant import deletion, lineage
from vectune.qdrant.lease import NO_FENCE
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)


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
    lock = lock or NO_FENCE
    require_readable_state(settings, alias)  # a damaged state file stops here (exit 3), named
    lock.fence("recover")
    out = Recovery()
    recovered = out.found
    marker = InFlight(settings.run_dir(alias)).load()
    if marker:
        recovered["previous_run"] = marker
        how = f"was stopped by {marker['interrupted_by']}" if marker.get("interrupted_by") else "died"
        History(settings.work_dir, alias).append({"event": "crash", "run_id": marker.get("run_id"),
                                                  "stage": marker.get("stage"),
                                                  "reason": f"run {marker.get('run_id')} {how} during stage "
                                                            f"'{marker.get('stage')}'"})
        logger.warning("previous run %s %s during stage '%s'", marker.get("run_id"), how, marker.get("stage"))
    promoter = Promoter(store, alias, settings.promote, ModelStore.from_settings(settings), settings.run_dir(alias),
                        lock)
    ckpt = promoter.ckpt
    if deletion.clear_live_mark(store, alias, live, lock):
        recovered["deletion_mark_cleared"] = live
    state = ckpt.load()
    if state:
        _resume(store, settings, alias, live, lock, promoter, state, out)
    # Orphans: any collection of this alias still building/verified that is not live, and any marked for
    # deletion by a deleter that stopped between its two phases; each deleted in two phases itself.
    orphans = []
    live_now = store.resolve_alias(alias)
    for name, meta in lineage.versions(store, alias):
        if name != live_now and meta.get("state") in ("building", "verified"):
            if deletion.retire(store, alias, name, lock, "recovery: leftover of a stopped run"):
                orphans.append(name)
    pending = deletion.finish_marked(store, alias, lock)
    if pending:
        recovered["pending_deletions_finished"] = pending
        logger.warning("finished deleting %d collection(s) of '%s' marked for deletion: %s", len(pending), alias,
                       pending)
    if orphans:
        recovered["orphans_deleted"] = orphans
        logger.warning("deleted %d leftover collection(s) of '%s': %s", len(orphans), alias, orphans)
    return out


def _resume(store: Store, settings: Settings, alias: str, live: str, lock, promoter: Promoter, state: dict,
            out: Recovery) -> None:
    """Finish, resume or drop the checkpointed promotion or rollback (see module doc)."""
    ckpt = promoter.ckpt
    models = promoter.models
    recovered = out.found
    kind = state.get("kind") or "promotion"
    target, parent = state.get("target"), state.get("parent")
    exists = bool(target) and store.collection_exists(target)
    snapshot = ckpt.load_snapshot()
    copy = bool(state.get("copy")) or state.get("mode") == "copy" or bool(snapshot and snapshot.copy)
    model = str(state.get("model_tag"))
    model_ok = copy or models.has(model)
    s2 = settings.for_collection({"text_field": state.get("text_field")})
    if exists and live != target and lineage.doom_mark(store, target):
        # Marked for deletion meanwhile (by prune or retention): never made live; the publish is dropped.
        lock.fence("withdraw the migration")
        withdraw(store, live, target)
        recovered["abandoned_" + ("rollback" if kind == "rollback" else "promotion")] = {
            "from": live, "to": target, "model": model, "reason": "its target is marked for deletion"}
        logger.warning("dropped the interrupted %s of '%s' to %s: that collection is marked for deletion", kind,
                       alias, target)
        ckpt.clear()
        return
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
                    f"which is not in the model store ({settings.model_dir}). Restore the model and run "
                    f"again. To give up on those writes instead, run `vectune recover --alias {alias} "
                    f"--abandon-window` (they are then missing from '{target}'; they are still in '{parent}')")
            enc = None if (copy or finished) else models.load_lineage(store.metadata(target), ref=model)
            reconcile(store, enc, parent, target, spec, s2.collection.text_field, snapshot,
                      settings.promote.upsert_batch, stats, lock)
            recovered["reconciled"] = stats.to_dict()
        else:
            raise TornState(ckpt.snapshot_path, (
                f"the {kind} of run {state.get('run_id')} swapped '{alias}' to '{target}' but its snapshot "
                f"{ckpt.snapshot_path} is missing: the writes made in its window cannot be found. Restore it from "
                f"a backup and run again, or run `vectune recover --alias {alias} --abandon-window` to give those "
                f"writes up (they stay in '{parent}')"))
        lock.fence("set state")
        extra = {"rolled_back_at": lineage.now(), "rolled_back_from": parent} if kind == "rollback" else {}
        lineage.set_state(store, target, "live", **extra)
        if parent and store.collection_exists(parent):
            lineage.set_state(store, parent, "retired", retired_at=lineage.now())
        ckpt.clear()
        if kind == "rollback":
            recovered["finished_rollback"] = {"from": parent, "to": target, "model": model}
            History(settings.work_dir, alias).append({"event": "rollback", "from": parent, "to": target, "model": model,
                                                   "synced": stats.to_dict(), "forced": False,
                                                   "resumed": f"run {state.get('run_id')} crashed after its swap"})
        else:
            out.done, out.new_collection, out.live_collection = True, target, parent
            out.reason = f"finished the promotion of run {state.get('run_id')} after its crash (post-swap)"
        return
    if exists and model_ok and live == parent:
        stopped_at, done_before = state.get("stage"), state.get("done")  # the publish below moves state on
        logger.info("resuming the %s to %s (stage %s, %s points done)", kind, target, stopped_at, done_before)
        meta = store.metadata(target)
        enc = None if copy else models.load_lineage(meta, ref=model)
        spec = store.dense_spec(target, state.get("dense_vector") or None)
        if kind == "rollback":
            sstats, _ = promoter.publish_rollback(enc, live, target, spec, s2.collection.text_field, state)
            recovered["finished_rollback"] = {"from": live, "to": target, "model": model, "from_stage": stopped_at}
            History(settings.work_dir, alias).append({"event": "rollback", "from": live, "to": target, "model": model,
                                                   "synced": sstats.to_dict(), "forced": False,
                                                   "resumed": f"run {state.get('run_id')} crashed before its swap"})
            return
        if stopped_at == "building":
            counts = promoter.build_and_publish(enc, live, target, spec, meta, s2.collection.text_field,
                                                start_offset=state.get("offset"), run_id=str(state.get("run_id")))
        else:
            sstats, vinfo = promoter.publish_promotion(enc, live, target, spec, meta, s2.collection.text_field, state)
            counts = {"build": None, "catch_up": sstats.to_dict(), "verify": vinfo}
        recovered["resumed_promotion"] = {"target": target, "from_stage": stopped_at,
                                          "points_done_before": done_before}
        out.done, out.new_collection, out.live_collection = True, target, live
        out.candidate_model, out.reindex = model, counts
        out.reason = (f"resumed the promotion of run {state.get('run_id')} (killed during "
                      f"'{stopped_at}') and completed it")
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
