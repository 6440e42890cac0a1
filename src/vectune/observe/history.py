"""The history of an alias: every promotion, rejection, rollback, prune and crash, one JSON line each.

``<work_dir>/history/<alias>.jsonl``: appended with an fsync per event, read by ``status``,
``history``, the history page and the metrics. The latest event is also kept on the collection's
lineage (:mod:`vectune.qdrant.lineage`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vectune.core.clock import now


class History:
    """The event log of one alias.

    Args:
        work_dir: vectune's run-state folder (``VECTUNE_WORK_DIR``).
        alias: the alias.
    """

    def __init__(self, work_dir: Path | str, alias: str):
        self.alias = alias
        self.path = Path(work_dir) / "history" / f"{alias}.jsonl"

    def append(self, event: dict) -> dict:
        """Append an event (``{"event": "promotion", ...}``); returns it with its time and alias."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        event = {"time": now(), "alias": self.alias, **event}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return event

    def read(self) -> list[dict]:
        """Every event, oldest first."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line after a crash
        return out
