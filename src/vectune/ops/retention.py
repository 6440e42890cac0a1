"""Retention: which versions of an alias are kept, and deleting the others — by `prune` and by the cycle itself.

The plan (:func:`plan`) keeps the live collection, the rollback target, and then the newest other
versions up to ``keep``. Everything else is deleted in two phases under the alias lease
(:func:`vectune.qdrant.deletion.retire`: marked, then the lease and the alias re-checked, then
deleted), with the models no kept version uses unless told otherwise.

`vectune prune` applies it on request (:mod:`vectune.ops.prune`); with ``retention`` on (the
default), every promotion and every rollback applies it with ``keep_versions`` right after the
swap, under the same lease (:func:`after_publish`). ``VECTUNE_RETENTION=off`` turns that off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from vectune.config.settings import Settings
from vectune.errors import VectuneError
from vectune.models.store import ModelStore
from vectune.observe.history import History
from vectune.ops import space
from vectune.qdrant import deletion, lineage
from vectune.qdrant.lease import NO_FENCE, LockLost
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)


@dataclass
class Plan:
    """What retention keeps and deletes.

    Attributes:
        live: the collection behind the alias.
        target: the rollback target (None when there is no other version).
        kept: the versions kept, newest first.
        doomed: the versions to delete, newest first.
        versions: every version with its lineage record, oldest first.
    """

    live: str
    target: str | None
    kept: list[str] = field(default_factory=list)
    doomed: list[str] = field(default_factory=list)
    versions: list[tuple[str, dict]] = field(default_factory=list)


def plan(store: Store, alias: str, keep: int) -> Plan:
    """Keep the live collection, the rollback target, then the newest versions up to ``keep`` in all.

    Versions already marked for deletion are never kept (a deleter stopped between its phases: they
    are deleted now).
    """
    live = store.resolve_alias(alias)
    target = lineage.rollback_target(store, alias, live)
    versions = lineage.versions(store, alias)
    out = Plan(live, target, versions=versions)
    protected = [live] + ([target] if target else [])
    kept = list(protected)
    for name, _ in reversed(versions):
        if name in kept:
            continue
        if len(kept) < keep and not lineage.doom_mark(store, name):
            kept.append(name)
        else:
            out.doomed.append(name)
    order = {name: i for i, (name, _) in enumerate(reversed(versions))}
    out.kept = sorted(kept, key=lambda n: order.get(n, -1))
    return out


def models_unused(p: Plan, deleted: list[str], models: ModelStore) -> list[str]:
    """The stored models of ``deleted`` versions that no kept version uses (its query or passage model)."""
    kept = set(p.kept)
    in_use = {ref for name, meta in p.versions if name in kept
              for ref in (meta.get("model_ref"), lineage.passage_model(meta), lineage.query_model(meta))}
    out: list[str] = []
    for name, meta in p.versions:
        if name not in deleted:
            continue
        for ref in (meta.get("model_ref"), lineage.passage_model(meta), lineage.query_model(meta)):
            if ref and ref not in in_use and ref not in out and models.stored(str(ref)):
                out.append(str(ref))
    return out


def apply(store: Store, models: ModelStore, alias: str, keep: int, lock=NO_FENCE, *, delete_models: bool,
          why: str) -> dict:
    """Delete what :func:`plan` does not keep (two phases each), then the models no kept version uses.

    Args:
        store: Qdrant access (the caller holds the alias lease).
        models: the model store.
        alias: the alias.
        keep: versions to keep (the live one and the rollback target always).
        lock: the alias lease.
        delete_models: also delete the stored models no kept version uses.
        why: what deletes (``prune``, ``retention``), recorded in each deletion mark.

    Returns:
        ``{"kept": [...], "deleted": [...], "models_deleted": [...]}``.
    """
    p = plan(store, alias, keep)
    deleted = []
    for name in p.doomed:
        if deletion.retire(store, alias, name, lock, why):
            deleted.append(name)
        else:
            p.kept.append(name)
    gone = models_unused(p, deleted, models) if delete_models else []
    for ref in gone:
        models.delete(ref)
        logger.info("deleted model %s (no kept version of '%s' uses it)", ref, alias)
    return {"kept": p.kept, "deleted": deleted, "models_deleted": gone}


def after_publish(store: Store, settings: Settings, alias: str, lock=NO_FENCE) -> dict | None:
    """Retention by policy, right after a promotion or a rollback, under the caller's lease.

    Returns:
        What was kept and deleted, or None with ``retention`` off.
    """
    mode = settings.promote.retention
    if mode == "off":
        return None
    out = apply(store, ModelStore.from_settings(settings), alias, settings.promote.keep_versions, lock,
                delete_models=mode == "on", why="retention")
    if out["deleted"]:
        logger.info("retention kept %d version(s) of '%s' and deleted %s", len(out["kept"]), alias, out["deleted"])
        History(settings.work_dir, alias).append({"event": "retention", "keep_versions":
                                                  settings.promote.keep_versions, **out})
    return out




def after_run(store: Store, settings: Settings, alias: str, lock=NO_FENCE, *, moved: bool) -> dict:
    """The end of a held run: retention when the alias moved (a promotion, a finished rollback), then sizes.

    A failure here does not undo what the run did: it is logged as an error and kept in the result
    (``error``); a lost lease is raised.

    Returns:
        ``{"kept", "deleted", "models_deleted"}`` (when retention ran) with ``versions`` (points and
        footprint of each kept version) and ``next_promotion`` (:func:`vectune.ops.space.next_promotion`).
    """
    out: dict = {"policy": settings.promote.retention, "keep_versions": settings.promote.keep_versions}
    try:
        if moved:
            out.update(after_publish(store, settings, alias, lock) or {})
        out.update({k: v for k, v in space.summary(store, settings, alias).items() if k in ("versions",
                                                                                            "next_promotion")})
    except LockLost:
        raise
    except VectuneError as e:
        logger.error("after the run on '%s': retention or sizing failed: %s", alias, e)
        out["error"] = str(e)
    return out


__all__ = ["Plan", "after_publish", "after_run", "apply", "models_unused", "plan"]
