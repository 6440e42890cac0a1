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
import zlib
from pathlib import Path

from vectune.core.clock import now
from vectune.core.jsonl import write_atomic, write_json_atomic
from vectune.errors import TornState
from vectune.promote.window import Snapshot

logger = logging.getLogger(__name__)

#: What a damaged state file's message tells people to do.
RECOVER_HINT = ("Run `vectune recover --alias {alias}`: it sets the damaged file aside (renamed *.torn-<time>, never "
                "deleted) and finishes the job from what is intact")


def _read_json(path: Path, what: str) -> dict | None:
    """A JSON state file; None when it is missing.

    Raises:
        TornState: it exists but cannot be read as a JSON object (named, with what to do).
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise TornState(path, f"{what} {path} cannot be read ({e})") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise TornState(path, f"{what} {path} is damaged (not JSON: {e})") from None
    if not isinstance(data, dict):
        raise TornState(path, f"{what} {path} is damaged (not a JSON object)")
    return data


def _alias_of(run_dir: Path) -> str:
    return Path(run_dir).name


class Checkpoint:
    """The promotion (or rollback) checkpoint file of one alias, its snapshot and reconciliation journal.

    The snapshot is written twice (``promotion-snapshot.json.gz`` and its copy
    ``promotion-snapshot.copy.json.gz``, each atomically): it is the one file whose loss after a
    swap could not be made good from anything else (the writes made in the window are found
    through it), so ``vectune recover`` can finish from the copy when the first is damaged.
    Every reader is strict: a file that exists but cannot be read raises
    :class:`~vectune.errors.TornState` naming it; nothing is skipped or deleted silently.
    """

    def __init__(self, run_dir: Path):
        run_dir = Path(run_dir)
        self.alias = _alias_of(run_dir)
        self.path = run_dir / "promotion.json"
        self.snapshot_path = run_dir / "promotion-snapshot.json.gz"
        self.snapshot_copy_path = run_dir / "promotion-snapshot.copy.json.gz"
        self.journal_path = run_dir / "promotion-reconciled.jsonl.gz"

    def _torn(self, e: TornState) -> TornState:
        return TornState(e.path, f"{e}. {RECOVER_HINT.format(alias=self.alias)}")

    def load(self) -> dict | None:
        """The checkpoint, or None when there is none.

        Raises:
            TornState: ``promotion.json`` exists but is damaged.
        """
        try:
            return _read_json(self.path, "the promotion checkpoint")
        except TornState as e:
            raise self._torn(e) from None

    def save(self, data: dict) -> None:
        write_json_atomic(self.path, data)

    def save_snapshot(self, snapshot) -> None:
        """Persist the swap's :class:`~vectune.promote.window.Snapshot`, twice (and journal its reconciliation here)."""
        data = snapshot.to_json() if hasattr(snapshot, "to_json") else snapshot
        raw = gzip.compress(json.dumps(data).encode("utf-8"), compresslevel=6)
        write_atomic(self.snapshot_path, raw)
        write_atomic(self.snapshot_copy_path, raw)
        self.journal_path.unlink(missing_ok=True)  # a new snapshot: nothing reconciled yet
        if hasattr(snapshot, "journal"):
            snapshot.journal = self.journal_path

    @staticmethod
    def read_snapshot(path: Path) -> Snapshot | None:
        """One snapshot file (None when missing; :class:`TornState` when damaged), without its journal."""
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, zlib.error) as e:
            raise TornState(path, f"the swap's snapshot {path} is damaged ({type(e).__name__}: {e})") from None
        if not isinstance(data, dict):
            raise TornState(path, f"the swap's snapshot {path} is damaged (not a JSON object)")
        return Snapshot.from_json(data)

    def load_snapshot(self, use_copy: bool = False) -> Snapshot | None:
        """The saved :class:`~vectune.promote.window.Snapshot` (journalled), or None when there is none.

        Args:
            use_copy: when the snapshot is damaged, read its copy instead (``vectune recover``).

        Raises:
            TornState: the snapshot is damaged (and, with ``use_copy``, its copy too).
        """
        try:
            snap = self.read_snapshot(self.snapshot_path)
        except TornState as e:
            if not use_copy:
                raise self._torn(e) from None
            try:
                snap = self.read_snapshot(self.snapshot_copy_path)
            except TornState as e2:
                raise TornState(e.path, f"{e}; its copy too: {e2}") from None
            if snap is None:
                raise self._torn(e) from None
            logger.warning("%s; using its copy %s", e, self.snapshot_copy_path)
        if snap is None:
            return None
        snap.journal = self.journal_path
        return snap

    def problems(self) -> list[TornState]:
        """Every damaged file of the checkpoint (promotion.json, the snapshot, the journal), none if all read."""
        out: list[TornState] = []
        for check in (self.load, self.load_snapshot, self.check_journal):
            try:
                check()
            except TornState as e:
                out.append(e)
        return out

    def check_journal(self) -> tuple[set[str], bool]:
        """The journal's progress (keys done, finished); raises :class:`TornState` when it is damaged."""
        if self.journal_path.exists():
            return Snapshot(None, None, None, {}).with_journal(self.journal_path).done()
        return set(), False

    def clear(self) -> None:
        for p in (self.path, self.snapshot_path, self.snapshot_copy_path, self.journal_path,
                  self.path.with_name("ray-partitions.json")):
            p.unlink(missing_ok=True)


class InFlight:
    """A marker that a run is in progress, with its current stage (left behind by a crash)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "inflight.json"
        self.alias = _alias_of(Path(run_dir))

    def load(self) -> dict | None:
        """The marker, or None.

        Raises:
            TornState: ``inflight.json`` exists but is damaged.
        """
        try:
            return _read_json(self.path, "the in-flight marker of a previous run")
        except TornState as e:
            raise TornState(e.path, f"{e}. {RECOVER_HINT.format(alias=self.alias)}") from None

    def set(self, run_id: str, stage: str) -> None:
        write_json_atomic(self.path, {"run_id": run_id, "stage": stage, "pid": os.getpid(), "time": now()})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def interrupted(self, signal_name: str) -> None:
        """Note on the marker that the run was stopped by ``signal_name`` (not killed), keeping its stage."""
        marker = self.load()
        if marker:
            write_json_atomic(self.path, {**marker, "interrupted_by": signal_name, "interrupted_at": now()})
