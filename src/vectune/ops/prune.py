"""`vectune prune`: delete old versions of an alias on request, never the live one or the rollback target.

The plan and the deletions are retention's (:mod:`vectune.ops.retention`): under the alias lease,
each collection is marked for deletion, then the lease and the alias are re-checked, then it is
deleted (:mod:`vectune.qdrant.deletion`), so a prune that freezes at any point cannot delete a
collection another operator made live meanwhile.
"""

from __future__ import annotations

import logging

from vectune.config.settings import Settings
from vectune.errors import BadInput
from vectune.models.store import ModelStore
from vectune.observe.history import History
from vectune.ops import retention
from vectune.ops.session import hold
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
        if dry_run:
            p = retention.plan(store, alias, keep)
            gone = retention.models_unused(p, p.doomed, models) if delete_models else []
            return {"kept": sorted(p.kept), "deleted": p.doomed, "models_deleted": gone, "dry_run": True}
        # Plan and delete under the lock, each delete in two phases (marked, re-checked, deleted).
        with hold(store, settings, alias, "prune", recover_first=False) as session:
            out = retention.apply(store, models, alias, keep, session.lock, delete_models=delete_models,
                                  why="prune")
    if out["deleted"]:
        History(settings.work_dir, alias).append({"event": "prune", "deleted": out["deleted"],
                                                  "models_deleted": out["models_deleted"]})
    return {"kept": sorted(out["kept"]), "deleted": out["deleted"], "models_deleted": out["models_deleted"],
            "dry_run": False}
