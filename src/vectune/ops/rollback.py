"""Rollback and roll-forward of an alias to another of its versions.

A rollback never loses what apps wrote after the promotion: it goes through the same
checkpointed publish path as a promotion (:meth:`vectune.promote.promotion.Promoter.publish_rollback`) —
the target is brought up to date with the live collection (every point added or changed since,
payload and every vector, re-embedded with the *target's own* passage model, or copied
verbatim when both collections hold vectors of the same passage model; every point deleted
since removed), verified, swapped atomically, and the writes made in the window are
reconciled. A crash at any point is finished by the next ``vectune run`` or ``vectune
rollback`` (:func:`vectune.ops.recover.recover`). After the swap the target is marked ``live``
and the old collection ``retired`` at once: exactly one collection of the alias is live. Then
retention runs under the same lease (:func:`vectune.ops.retention.after_run`). A collection marked for
deletion (:mod:`vectune.qdrant.deletion`) is never rolled back to.
"""

from __future__ import annotations

import logging
import uuid

from vectune.config.settings import Settings
from vectune.errors import BadInput
from vectune.models.store import ModelStore
from vectune.observe.history import History
from vectune.ops import retention
from vectune.ops.report_pages import refresh_pages
from vectune.ops.session import hold
from vectune.promote.checkpoint import Checkpoint
from vectune.promote.promotion import Promoter, mark_rolled_back
from vectune.promote.stats import SyncStats
from vectune.qdrant.deletion import guard_swap
from vectune.qdrant.lineage import doom_mark, passage_model, rollback_target
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)


def _target(store: Store, alias: str, live: str, to: str | None) -> tuple[str, dict]:
    target = to or rollback_target(store, alias, live)
    if not target:
        raise BadInput(f"alias '{alias}' has no previous version to roll back to")
    if target == live:
        raise BadInput(f"'{target}' is already live behind '{alias}'")
    if not store.collection_exists(target):
        raise BadInput(f"collection '{target}' does not exist (see `vectune status --alias {alias}`)")
    meta = store.metadata(target)
    if meta.get("alias") != alias:
        raise BadInput(f"'{target}' is not a version of '{alias}' (its lineage says {meta.get('alias')!r})")
    doom = doom_mark(store, target)
    if doom:
        raise BadInput(f"'{target}' is marked for deletion ({doom.get('why')} by {doom.get('by')} at "
                       f"{doom.get('at')}): it cannot be rolled back to; choose another version "
                       f"(`vectune status --alias {alias}`)")
    return target, meta


def rollback(settings: Settings, alias: str, to: str | None = None, force: bool = False) -> dict:
    """Point ``alias`` back at a previous (or named) version, synced first.

    Args:
        settings: connection, model store, text field.
        alias: the alias.
        to: target collection (default: the live collection's parent).
        force: swap even when the target's model is missing (no sync possible: data written since the
            target was live is then NOT in it — said loudly).

    Returns:
        What happened: from, to, synced counts.
    """
    run_id = "rollback-" + uuid.uuid4().hex[:6]
    history = History(settings.work_dir, alias)
    with Store.open(settings) as store:
        live = store.resolve_alias(alias)
        pending = Checkpoint(settings.run_dir(alias)).load() or {}
        if pending.get("kind") != "rollback":
            _target(store, alias, live, to)  # clear errors before waiting for the lock
        # First finish whatever a crashed run left (a promotion or rollback to reconcile or resume).
        with hold(store, settings, alias, run_id, expect_live=live) as session:
            lock, rec = session.lock, session.recovery
            now = store.resolve_alias(alias)
            done = rec.found.get("finished_rollback") or {}
            if done and now == done.get("to") and to in (None, now):
                # this very rollback, interrupted by a crash: finished now
                event = history.read()[-1]
                kept = retention.after_run(store, settings, alias, lock, moved=True)
                return {"alias": alias, "from": done.get("from"), "to": now, "model": done.get("model"),
                        "synced": event.get("synced"), "verify": None, "time": event.get("time"), "resumed": True,
                        "retention": kept}
            if now != live:
                raise BadInput(f"alias '{alias}' now points at '{now}': a crashed run was finished first "
                               f"({rec.reason or rec.found}); run the rollback again if still needed")
            target, meta = _target(store, alias, live, to)
            stats, vinfo, model = publish_back(store, settings, alias, live, target, meta, lock, run_id, force=force)
            kept = retention.after_run(store, settings, alias, lock, moved=True)
    synced = stats.to_dict() if stats else None
    event = history.append({"event": "rollback", "from": live, "to": target, "model": model, "synced": synced,
                            "forced": bool(force and not stats)})
    refresh_pages(settings, alias)
    return {"alias": alias, "from": live, "to": target, "model": model, "synced": synced, "verify": vinfo,
            "time": event["time"], "retention": kept}


def publish_back(store: Store, settings: Settings, alias: str, live: str, target: str, meta: dict, lock,
                 run_id: str, *, force: bool = False) -> tuple[SyncStats | None, dict, str | None]:
    """Put ``target`` back behind ``alias`` in place of ``live``, synced first; the caller holds the lease.

    The one rollback path: ``vectune rollback`` and the watch (:mod:`vectune.ops.watch`) both call it.

    Args:
        store: Qdrant access.
        settings: model store, text field, promotion batches.
        alias: the alias.
        live: the collection the alias points at now.
        target: the version to put back.
        meta: ``target``'s lineage record.
        lock: the alias lease (fenced before every state change).
        run_id: the run doing it (in the checkpoint).
        force: swap even when the target's model is missing (no sync: writes since are lost).

    Returns:
        ``(sync statistics or None when not synced, verification, the target's passage model)``.

    Raises:
        BadInput: the target's model is missing and ``force`` is not set.
    """
    models = ModelStore.from_settings(settings)
    live_meta = store.metadata(live)
    model = passage_model(meta)
    copy = bool(model) and model == passage_model(live_meta)
    spec = store.dense_spec(target, meta.get("dense_vector") or None)
    text_field = settings.for_collection(meta).collection.text_field
    syncable = copy or (bool(model) and models.has(model))
    if not syncable and not force:
        raise BadInput(f"cannot roll back to '{target}': its model {model!r} is not in the model store "
                       f"({settings.model_dir}), so points written since cannot be re-embedded "
                       "with it. Restore the model, or --force to swap without syncing (loses those writes)")
    if syncable:
        if not copy:
            models.require_intact(str(model), f"the passage model of '{target}'")
        enc = None if copy else models.load_lineage(meta, ref=model)
        promoter = Promoter(store, alias, settings.promote, models, settings.run_dir(alias), lock)
        state = {"kind": "rollback", "run_id": run_id, "alias": alias, "target": target, "parent": live,
                 "model_tag": model, "dense_vector": spec.name, "text_field": text_field,
                 "copy": copy, "stage": "publishing", **lock.stamp()}
        promoter.ckpt.save(state)
        stats, vinfo = promoter.publish_rollback(enc, live, target, spec, text_field, state)
        return stats, vinfo, model
    logger.warning("model %r of '%s' is not in the model store: swapping WITHOUT syncing; points "
                   "written since it was live are missing from it", model, target)
    vinfo = {"points": store.count(target), "sampled": 0, "synced": False}
    lock.fence("swap")
    guard_swap(store, alias, target, lock)
    store.swap_alias(alias, target)
    mark_rolled_back(store, live, target)
    return None, vinfo, model


__all__ = ["publish_back", "rollback", "rollback_target"]
