"""Retention: delete old versions of an alias, never the live one or the rollback target."""

from __future__ import annotations

import logging
from contextlib import nullcontext

from vectune.config.settings import Settings
from vectune.errors import BadInput
from vectune.models.store import ModelStore
from vectune.observe.history import History
from vectune.ops.session import Session, hold
from vectune.qdrant import lineage
from vectune.qdrant.lease import NO_FENCE
from vectune.qdrant.lineage import rollback_target
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)


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
    if keep < 1:
        raise BadInput("--keep must be at least 1")
    models = ModelStore.from_settings(settings)
    with Store.open(settings) as store:
        store.resolve_alias(alias)  # a clear error for a missing alias
        # Plan and delete under the lock: a rollback that finishes meanwhile cannot make a doomed
        # collection live. Each delete re-reads the alias and the rollback target right before it.
        held = nullcontext(Session(NO_FENCE)) if dry_run else hold(store, settings, alias, "prune",
                                                                     recover_first=False)
        with held as session:
            lock = session.lock
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
        models_in_use = {ref for name, meta in versions if name in kept
                         for ref in (meta.get("model_ref"), lineage.passage_model(meta), lineage.query_model(meta))}
        models_deleted = []
        if delete_models:
            for name, meta in versions:
                ref = meta.get("model_ref")
                if name in doomed and ref not in models_in_use and models.stored(str(ref)):
                    models_deleted.append(ref)
                    if not dry_run:
                        models.delete(str(ref))
    if doomed and not dry_run:
        History(settings.work_dir, alias).append({"event": "prune", "deleted": doomed,
                                                  "models_deleted": models_deleted})
    return {"kept": sorted(kept), "deleted": doomed, "models_deleted": models_deleted, "dry_run": dry_run}
