"""Rollback, roll-forward and retention (prune) of an alias's versions.

A rollback never loses what apps wrote after the promotion: it goes through the same
checkpointed publish path as a promotion (:func:`vectune.promote.publish.publish`) — the
target is brought up to date with the live collection (every point added or changed since,
payload and every vector, re-embedded with the *target's own* passage model, or copied
verbatim when both collections hold vectors of the same passage model; every point deleted
since removed), verified, swapped atomically, and the writes made in the window are
reconciled. A crash at any point is finished by the next ``vectune run`` or ``vectune
rollback`` (:func:`vectune.promote.checkpoint.recover`). After the swap the target is marked ``live``
and the old collection ``retired`` at once: exactly one collection of the alias is live.
"""

from __future__ import annotations

import logging
import uuid

from vectune.qdrant import lineage
from vectune.observe.history import History
from vectune.errors import BadInput
from vectune.models.store import ModelStore
from vectune.config.settings import Settings
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)


def passage_model(meta: dict) -> str | None:
    """The model whose passage vectors a collection holds (``passage_model``, else ``model_ref``)."""
    return meta.get("passage_model") or meta.get("model_ref")


def rollback_target(store: Store, alias: str, live: str) -> str | None:
    """The default rollback target: the live collection's parent, else the newest older version."""
    parent = store.metadata(live).get("parent_collection")
    if parent and store.collection_exists(parent):
        return parent
    older = [name for name, _ in lineage.versions(store, alias) if name != live]
    return older[-1] if older else None


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
    from vectune.qdrant.lease import AliasLock, default_owner
    from vectune.promote.checkpoint import Checkpoint, recover

    run_id = "rollback-" + uuid.uuid4().hex[:6]
    with Store.open(settings) as store:
        live = store.resolve_alias(alias)
        pending = Checkpoint(settings, alias).load() or {}
        if pending.get("kind") != "rollback":
            _target(store, alias, live, to)  # clear errors before waiting for the lock
        with AliasLock(store, alias, default_owner(run_id), settings.lock.ttl_s,
                       clock_skew_s=settings.lock.clock_skew_s) as lock:
            if store.on_server:
                lock.start_heartbeat()
            if store.resolve_alias(alias) != live:
                raise BadInput(f"alias '{alias}' moved while waiting; run the rollback again")
            # First finish whatever a crashed run left (a promotion or rollback to reconcile or resume).
            rec = recover(store, settings, alias, live, lock)
            now = store.resolve_alias(alias)
            done = rec.found.get("finished_rollback") or {}
            if done and now == done.get("to") and to in (None, now):
                # this very rollback, interrupted by a crash: finished now
                event = History(settings.work_dir, alias).read()[-1]
                return {"alias": alias, "from": done.get("from"), "to": now, "model": done.get("model"),
                        "synced": event.get("synced"), "verify": None, "time": event.get("time"), "resumed": True}
            if now != live:
                raise BadInput(f"alias '{alias}' now points at '{now}': a crashed run was finished first "
                               f"({rec.reason or rec.found}); run the rollback again if still needed")
            target, meta = _target(store, alias, live, to)
            live_meta = store.metadata(live)
            model = passage_model(meta)
            copy = bool(model) and model == passage_model(live_meta)
            spec = store.dense_spec(target, meta.get("dense_vector") or None)
            text_field = settings.for_collection(meta).text_field
            syncable = copy or (bool(model) and ModelStore.from_settings(settings).has(model))
            if not syncable and not force:
                raise BadInput(f"cannot roll back to '{target}': its model {model!r} is not in the model store "
                               f"({settings.model_dir}), so points written since cannot be re-embedded "
                               "with it. Restore the model, or --force to swap without syncing (loses those writes)")
            stats = None
            if syncable:
                enc = None if copy else ModelStore.from_settings(settings).load_lineage(meta, ref=model)
                ckpt = Checkpoint(settings, alias)
                state = {"kind": "rollback", "run_id": run_id, "alias": alias, "target": target, "parent": live,
                         "model_tag": model, "dense_vector": spec.name, "text_field": text_field,
                         "copy": copy, "stage": "publishing", **lock.stamp()}
                ckpt.save(state)
                stats, vinfo = publish_rollback(store, settings.for_collection(meta), alias, enc, live, target, spec,
                                                ckpt, state, lock)
            else:
                logger.warning("model %r of '%s' is not in the model store: swapping WITHOUT syncing; points "
                               "written since it was live are missing from it", model, target)
                vinfo = {"points": store.count(target), "sampled": 0, "synced": False}
                lock.fence("swap")
                store.swap_alias(alias, target)
                _mark_swapped(store, live, target)
    synced = stats.to_dict() if stats else None
    event = History(settings.work_dir, alias).append({"event": "rollback", "from": live, "to": target, "model": model,
                                                   "synced": synced, "forced": bool(force and not stats)})
    return {"alias": alias, "from": live, "to": target, "model": model, "synced": synced, "verify": vinfo,
            "time": event["time"]}


def _mark_swapped(store: Store, live: str, target: str) -> None:
    lineage.set_state(store, target, "live", rolled_back_at=lineage.now(), rolled_back_from=live)
    lineage.set_state(store, live, "retired", retired_at=lineage.now())


def publish_rollback(store: Store, settings: Settings, alias: str, encoder, live: str, target: str, spec, ckpt,
                     state: dict, lock=None):
    """Publish ``target`` behind ``alias`` in place of ``live``, checkpointed (resumable at any point).

    Args:
        store: Qdrant access (the caller holds the alias lease).
        settings: batch sizes, verification sample, the target's text field.
        alias: the alias.
        encoder: the target's passage model, or None to copy vectors verbatim.
        live: the collection the alias points at now.
        target: the version to put back.
        spec: the tuned dense vector.
        ckpt: the alias's :class:`~vectune.promote.checkpoint.Checkpoint` (``state`` already saved in it).
        state: the checkpoint's state (``kind: rollback``), updated as the publish goes.
        lock: the alias lease.

    Returns:
        The publish's sync statistics and verification result.
    """
    from vectune.qdrant.lease import NO_FENCE
    from vectune.promote.publish import publish

    lock = lock or NO_FENCE

    def mark(what: str, info: dict) -> None:
        if what == "snapshot":
            ckpt.save_snapshot(info["snapshot"])
            return
        if what == "live":
            _mark_swapped(store, live, target)
        state["stage"] = "swapped" if what == "live" else what
        ckpt.save(state)

    stats, vinfo = publish(store, encoder, live, target, alias, spec, settings.collection.text_field, settings.promote.upsert_batch,
                           settings.promote.verify_sample, mark=mark, lock=lock)
    ckpt.clear()
    return stats, vinfo


def prune(settings: Settings, alias: str, keep: int, delete_models: bool = False, dry_run: bool = False) -> dict:
    """Delete old versions of an alias; never the live one or the rollback target.

    Args:
        settings: connection and model store.
        alias: the alias.
        keep: how many versions to keep (newest first; live and rollback target always kept).
        delete_models: also delete model-store directories no kept version uses.
        dry_run: only say what would be deleted.

    Returns:
        ``{"kept": [...], "deleted": [...], "models_deleted": [...]}``.
    """
    import shutil

    if keep < 1:
        raise BadInput("--keep must be at least 1")
    from vectune.qdrant.lease import NO_FENCE, AliasLock, default_owner

    with Store.open(settings) as store:
        store.resolve_alias(alias)  # a clear error for a missing alias
        # Plan and delete under the lock: a rollback that finishes meanwhile cannot make a doomed
        # collection live. Each delete re-reads the alias and the rollback target right before it.
        lock = NO_FENCE if dry_run else AliasLock(store, alias, default_owner("prune"), settings.lock.ttl_s,
                                                  clock_skew_s=settings.lock.clock_skew_s).acquire()
        try:
            live = store.resolve_alias(alias)
            protected = {live}
            target = rollback_target(store, alias, live)
            if target:
                protected.add(target)
            versions = lineage.versions(store, alias)
            newest_first = [name for name, _ in reversed(versions)]
            kept = set(protected)
            for name in newest_first:
                if len(kept) >= keep:
                    break
                kept.add(name)
            doomed = [name for name in newest_first if name not in kept]
            deleted = []
            if not dry_run:
                for name in doomed:
                    lock.fence(f"delete {name}")
                    live_now = store.resolve_alias(alias)
                    if name in (live_now, rollback_target(store, alias, live_now)):
                        logger.warning("not deleting %s: it became live or the rollback target", name)
                        kept.add(name)
                        continue
                    store.delete_collection(name)
                    deleted.append(name)
                    logger.info("deleted %s", name)
                doomed = deleted
        finally:
            if lock is not NO_FENCE:
                lock.release()
        models_in_use = {ref for name, meta in versions if name in kept
                         for ref in (meta.get("model_ref"), lineage.passage_model(meta), lineage.query_model(meta))}
        models_deleted = []
        if delete_models:
            for name, meta in versions:
                ref = meta.get("model_ref")
                path = settings.model_dir / str(ref)
                if name in doomed and ref not in models_in_use and (path / "manifest.json").exists():
                    models_deleted.append(ref)
                    if not dry_run:
                        shutil.rmtree(path)
    if doomed and not dry_run:
        History(settings.work_dir, alias).append({"event": "prune", "deleted": doomed, "models_deleted": models_deleted})
    return {"kept": sorted(kept), "deleted": doomed, "models_deleted": models_deleted, "dry_run": dry_run}
