"""Checkpoints and in-flight markers: what a killed run leaves for the next one.

A promotion — and a rollback or roll-forward, which publish through the same path —
writes ``<run_dir>/promotion.json`` before it builds anything and updates it as it goes
(scroll offset after each page, verified, snapshot, swapped; reconciliation journals
each batch of window writes it carried over). A run's stage is kept in ``inflight.json``.
What the next run does with them: :mod:`vectune.ops.recover`.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path

from vectune.core.clock import now
from vectune.core.jsonl import write_atomic, write_json_atomic
from vectune.promote.window import Snapshot

logger = logging.getLogger(__name__)


def _read_json(path: Path) -> dict | None:
    """A JSON state file, or None when it is missing or torn."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class Checkpoint:
    """The promotion (or rollback) checkpoint file of one alias, its snapshot and reconciliation journal."""

    def __init__(self, run_dir: Path):
        run_dir = Path(run_dir)
        self.path = run_dir / "promotion.json"
        self.snapshot_path = run_dir / "promotion-snapshot.json.gz"
        self.journal_path = run_dir / "promotion-reconciled.jsonl.gz"

    def load(self) -> dict | None:
        return _read_json(self.path)

    def save(self, data: dict) -> None:
        write_json_atomic(self.path, data)

    def save_snapshot(self, snapshot) -> None:
        """Persist the swap's :class:`~vectune.promote.window.Snapshot` (and journal its reconciliation here)."""
        data = snapshot.to_json() if hasattr(snapshot, "to_json") else snapshot
        write_atomic(self.snapshot_path, gzip.compress(json.dumps(data).encode("utf-8"), compresslevel=6))
        self.journal_path.unlink(missing_ok=True)  # a new snapshot: nothing reconciled yet
        if hasattr(snapshot, "journal"):
            snapshot.journal = self.journal_path

    def load_snapshot(self):
        """The saved :class:`~vectune.promote.window.Snapshot` (journalled), or None."""
        try:
            with gzip.open(self.snapshot_path, "rt", encoding="utf-8") as f:
                snap = Snapshot.from_json(json.load(f))
        except (OSError, ValueError, EOFError):
            return None
        snap.journal = self.journal_path
        return snap

    def clear(self) -> None:
        for p in (self.path, self.snapshot_path, self.journal_path, self.path.with_name("ray-partitions.json")):
            p.unlink(missing_ok=True)


class InFlight:
    """A marker that a run is in progress, with its current stage (left behind by a crash)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "inflight.json"

    def load(self) -> dict | None:
        return _read_json(self.path)

    def set(self, run_id: str, stage: str) -> None:
        write_json_atomic(self.path, {"run_id": run_id, "stage": stage, "pid": os.getpid(), "time": now()})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def interrupted(self, signal_name: str) -> None:
        """Note on the marker that the run was stopped by ``signal_name`` (not killed), keeping its stage."""
        marker = self.load()
        if marker:
            write_json_atomic(self.path, {**marker, "interrupted_by": signal_name, "interrupted_at": now()})
