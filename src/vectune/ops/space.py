"""Space: what an alias's versions take, and whether the next promotion fits.

Each version's point count, and its disk or memory footprint where Qdrant reports one
(:meth:`vectune.qdrant.store.Store.footprints`: the storage folder of embedded Qdrant, the
telemetry of a server). ``status``, every run's report and the metrics show them.

**The next promotion's need** is estimated as what it adds before retention runs: one more copy
of the live collection — its reported footprint (disk, else memory), or, where Qdrant reports
none, its raw vectors (points × every dense vector's dimensions × 4 bytes, a lower bound) — plus
one saved model, as large as the live query model's folder. It is compared with the headroom:
``space_headroom_gb`` when set, else the free space of embedded Qdrant's disk; against a server
without a configured headroom nothing is compared. Above it, the run logs a warning and the
report, ``status`` and the metrics (``vectune_space_warning``) say so.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from vectune.config.settings import Settings
from vectune.models.store import ModelStore
from vectune.qdrant import lineage
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)

GB = 1024 ** 3


def _folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _raw_vector_bytes(store: Store, name: str, points: int) -> int:
    """Points × the dimensions of every dense vector × 4 bytes (sparse vectors not counted)."""
    vectors = store.info(name).config.params.vectors
    dims = sum(v.size for v in vectors.values()) if isinstance(vectors, dict) else int(getattr(vectors, "size", 0))
    return points * dims * 4


def versions(store: Store, alias: str, names: list[str] | None = None) -> list[dict]:
    """Each version of ``alias`` (or each of ``names``): points and footprint where Qdrant reports one.

    Returns:
        ``[{"collection", "points", "disk_bytes", "ram_bytes", "footprint_source"}]``, newest first.
    """
    if names is None:
        names = [name for name, _ in reversed(lineage.versions(store, alias))]
    sizes = store.footprints(names)
    out = []
    for name in names:
        if not store.collection_exists(name):
            continue
        fp = sizes.get(name) or {}
        out.append({"collection": name, "points": store.count(name), "disk_bytes": fp.get("disk_bytes"),
                    "ram_bytes": fp.get("ram_bytes"), "footprint_source": fp.get("source")})
    return out


def next_promotion(store: Store, settings: Settings, alias: str, live: str, sized: list[dict] | None = None) -> dict:
    """Estimate what the next promotion needs and compare it with the headroom (see module doc).

    Args:
        store: Qdrant access.
        settings: the headroom setting, the model store.
        alias: the alias.
        live: the collection behind it.
        sized: :func:`versions` already measured (to measure once).

    Returns:
        ``{"needs_bytes", "collection_bytes", "model_bytes", "how", "headroom_bytes", "headroom_from",
        "warning"}``; ``warning`` is None when it fits or nothing could be compared.
    """
    row = next((r for r in (sized or []) if r["collection"] == live), None) or versions(store, alias, [live])[0]
    if row.get("disk_bytes") is not None:
        coll, how = int(row["disk_bytes"]), f"a copy of '{live}' ({row['footprint_source']}: disk)"
    elif row.get("ram_bytes") is not None:
        coll, how = int(row["ram_bytes"]), f"a copy of '{live}' ({row['footprint_source']}: memory)"
    else:
        coll = _raw_vector_bytes(store, live, int(row["points"]))
        how = f"a copy of '{live}' (no footprint reported: its raw vectors, points x dimensions x 4 bytes)"
    models = ModelStore.from_settings(settings)
    ref = str(lineage.query_model(store.metadata(live)) or "")
    try:
        model = _folder_bytes(Path(models.path(ref))) if ref else 0
    except Exception:  # noqa: BLE001 - a model reference that cannot be sized counts as nothing
        model = 0
    need = coll + model
    headroom, source = None, None
    if settings.promote.space_headroom_gb is not None:
        headroom, source = int(settings.promote.space_headroom_gb * GB), "space_headroom_gb"
    elif store.embedded_folder is not None:
        headroom, source = shutil.disk_usage(store.embedded_folder).free, "free space on embedded Qdrant's disk"
    out = {"needs_bytes": need, "collection_bytes": coll, "model_bytes": model, "how": f"{how} + one model",
           "headroom_bytes": headroom, "headroom_from": source, "warning": None}
    if headroom is not None and need > headroom:
        out["warning"] = (f"the next promotion of '{alias}' needs about {need / GB:.2f} GB ({how}, plus a model of "
                          f"{model / GB:.2f} GB), more than the headroom of {headroom / GB:.2f} GB ({source}). "
                          f"Free space, lower VECTUNE_KEEP_VERSIONS (now {settings.promote.keep_versions}), or "
                          f"raise VECTUNE_SPACE_HEADROOM_GB")
        logger.warning("%s", out["warning"])
    return out


def summary(store: Store, settings: Settings, alias: str) -> dict:
    """Every version's size, the rollback target, and the next promotion's estimate (status and reports)."""
    live = store.resolve_alias(alias)
    sized = versions(store, alias)
    target = lineage.rollback_target(store, alias, live)
    for row in sized:
        row["live"] = row["collection"] == live
        row["rollback_target"] = row["collection"] == target
    return {"versions": sized, "keep_versions": settings.promote.keep_versions,
            "retention": settings.promote.retention, "next_promotion": next_promotion(store, settings, alias, live,
                                                                                       sized)}


__all__ = ["next_promotion", "summary", "versions"]
