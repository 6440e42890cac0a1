"""``vectune report``: rewrite an alias's history page and a run's report page from what is on disk.

Every run writes both pages already; this brings them up to date after events that are not
runs (a rollback by hand, a watch) and prints where they are.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from vectune.config.settings import Settings
from vectune.errors import BadInput
from vectune.observe import pages
from vectune.observe.history import History

logger = logging.getLogger(__name__)


def reports_dir(settings: Settings, alias: str) -> Path:
    """``<work_dir>/reports/<alias>``: where a run's JSON, Markdown and pages are written."""
    return settings.work_dir / "reports" / alias


def refresh(settings: Settings, alias: str, run_id: str | None = None) -> dict:
    """Rewrite ``history.html`` and one run's page (the latest by default).

    Returns:
        ``{"history": path, "run": path or None, "run_id": id or None}``.

    Raises:
        BadInput: the alias has no run report and no history yet, or ``run_id`` has no report.
    """
    folder = reports_dir(settings, alias)
    events = History(settings.work_dir, alias).read(strict=False)  # pages show what reads; runs stop on the rest
    runs = pages.read_reports(folder) if folder.is_dir() else []
    if not runs and not events:
        raise BadInput(f"no run report or history for alias '{alias}' yet (looked in {folder}): run a cycle first")
    run = None
    if run_id:
        path = folder / f"{run_id}.json"
        if not path.is_file():
            raise BadInput(f"no report for run {run_id} of alias '{alias}' ({path} is missing)")
        run = json.loads(path.read_text(encoding="utf-8"))
    elif runs:
        run = max(runs, key=lambda r: (r.get("started_at") or "", r.get("run_id") or ""))
    folder.mkdir(parents=True, exist_ok=True)
    page = pages.write_report_page(run, folder, events) if run else None
    undone = {ev.get("from") for ev in events if ev.get("event") == "rollback"}
    for r in runs:  # a promotion rolled back since its page was written: say so on its page
        if r is not run and r.get("status") == "promoted" and r.get("new_collection") in undone:
            pages.write_report_page(r, folder, events)
    return {"history": pages.write_history_page(folder, alias, events), "run": page,
            "run_id": run.get("run_id") if run else None}


def refresh_pages(settings: Settings, alias: str) -> None:
    """:func:`refresh` after an event that is not a run (a rollback); never fails the operation that called it."""
    try:
        refresh(settings, alias)
    except Exception as e:  # noqa: BLE001 - the pages are for people; the operation itself is done
        logger.warning("could not rewrite the history page of '%s': %s", alias, e)
