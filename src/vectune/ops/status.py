"""``vectune status``: the live collection, its lineage, every version, the last run and recent events.

Also what each version takes (points, and the disk or memory footprint where Qdrant reports one),
whether retention will make room for the next promotion (:mod:`vectune.ops.space`), and every
damaged state file (status still answers; a run would stop on them: ``vectune recover``).
"""

from __future__ import annotations

from vectune.config.settings import Settings
from vectune.models.store import ModelStore
from vectune.observe.history import History
from vectune.observe.report import latest
from vectune.ops import space
from vectune.ops.integrity import state_problems
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
            doom = lineage.doom_mark(store, name)
            if doom:
                versions[-1]["marked_for_deletion"] = doom
        live_meta = store.metadata(live)
        target = rollback_target(store, alias, live)
        space_now = space.summary(store, settings, alias)
    sizes = {row["collection"]: row for row in space_now["versions"]}
    for v in versions:
        row = sizes.get(v["collection"]) or {}
        v.update(disk_bytes=row.get("disk_bytes"), ram_bytes=row.get("ram_bytes"))
    last = latest(settings.work_dir / "reports" / alias)
    last_run = None
    if last is not None:
        last_run = {k: getattr(last, k) for k in ("run_id", "status", "reason", "started_at", "duration_s",
                                                   "new_collection")}
    history = History(settings.work_dir, alias)
    return {"alias": alias, "live_collection": live, "lineage": live_meta, "rollback_target": target,
            "versions": versions, "last_run": last_run, "history": history.read(strict=False)[-10:],
            "retention": {"policy": settings.promote.retention, "keep_versions": settings.promote.keep_versions,
                          "next_promotion": space_now["next_promotion"]},
            "state_problems": [str(e) for e in state_problems(settings, alias)]}
