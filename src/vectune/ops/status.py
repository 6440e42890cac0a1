"""``vectune status``: the live collection, its lineage, every version, the last run and recent events."""

from __future__ import annotations

from vectune.config.settings import Settings
from vectune.models.store import ModelStore
from vectune.observe.history import History
from vectune.observe.report import latest
from vectune.qdrant import lineage
from vectune.qdrant.lineage import rollback_target
from vectune.qdrant.store import Store


def status(settings: Settings, alias: str) -> dict:
    """The alias's live collection, its lineage, and every version with its scores."""
    models = ModelStore.from_settings(settings)
    with Store.open(settings) as store:
        live = store.resolve_alias(alias)
        versions = []
        for name, meta in lineage.versions(store, alias):
            gate = (meta.get("eval") or {}).get("gate") or {}
            versions.append({
                "collection": name, "live": name == live, "state": meta.get("state"),
                "model": meta.get("model_ref"), "query_model": lineage.query_model(meta),
                "passage_model": lineage.passage_model(meta), "mode": meta.get("mode", "full"),
                "parent_collection": meta.get("parent_collection"),
                "created_by": meta.get("created_by"), "created_at": meta.get("created_at"),
                "points": store.count(name), "model_available": models.has(str(meta.get("model_ref"))),
                "gate": {k: gate.get(k) for k in ("metric", "evidence", "live", "candidate", "delta") if k in gate},
            })
        live_meta = store.metadata(live)
        target = rollback_target(store, alias, live)
    last = latest(settings.work_dir / "reports" / alias)
    last_run = None
    if last is not None:
        last_run = {k: getattr(last, k) for k in ("run_id", "status", "reason", "started_at", "duration_s",
                                                   "new_collection")}
    return {"alias": alias, "live_collection": live, "lineage": live_meta, "rollback_target": target,
            "versions": versions, "last_run": last_run, "history": History(settings.work_dir, alias).read()[-10:]}
