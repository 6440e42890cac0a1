"""The history of an alias: every promotion, rejection, rollback, prune and crash, one JSON line each.

``<work_dir>/history/<alias>.jsonl``: appended with an fsync per event, read by ``status``,
``history``, the history page and the metrics. The latest event is also kept on the collection's
lineage (:mod:`vectune.qdrant.lineage`). A line that cannot be read is never skipped silently: a
run stops on it (exit code 3) and ``vectune recover`` moves it aside.
"""

from __future__ import annotations

import json
from pathlib import Path

from vectune.core.clock import now
from vectune.core.jsonl import append_durable, write_atomic
from vectune.errors import TornState


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
        event = {"time": now(), "alias": self.alias, **event}
        line = (json.dumps(event, default=str) + "\n").encode("utf-8")
        if self._ends_torn():
            line = b"\n" + line  # a damaged last line without its newline stays on its own line, readable or not
        append_durable(self.path, line)  # one write: the line lands whole or not at all
        return event

    def _ends_torn(self) -> bool:
        try:
            with open(self.path, "rb") as f:
                f.seek(0, 2)
                if f.tell() == 0:
                    return False
                f.seek(-1, 2)
                return f.read(1) != b"\n"
        except FileNotFoundError:
            return False

    def read(self, strict: bool = True) -> list[dict]:
        """Every event, oldest first.

        Args:
            strict: raise on a line that is not a JSON object; False skips such lines (``status``
                and ``history`` show them with :meth:`problems` instead).

        Raises:
            TornState: a line cannot be read (named by number, with what to do).
        """
        events, bad = self._scan()
        if bad and strict:
            n, why = bad[0]
            raise TornState(self.path, f"the history {self.path} has {len(bad)} unreadable line(s) (line {n}: "
                                       f"{why}). Run `vectune recover --alias {self.alias}`: it moves them to "
                                       f"{self.path.name}.torn-<time> beside it and keeps every readable event")
        return events

    def problems(self) -> list[str]:
        """``"<path>:<line>: <why>"`` for each unreadable line (none when the history reads whole)."""
        return [f"{self.path}:{n}: {why}" for n, why in self._scan()[1]]

    def set_aside_torn(self, stamp: str) -> Path | None:
        """Move unreadable lines to ``<name>.torn-<stamp>`` and rewrite the history with the readable ones.

        Returns:
            The file holding the lines set aside, or None when every line was readable.
        """
        if not self.path.exists():
            return None
        good: list[bytes] = []
        torn: list[bytes] = []
        for raw in self.path.read_bytes().splitlines():
            if not raw.strip():
                continue
            try:
                ok = isinstance(json.loads(raw.decode("utf-8")), dict)
            except ValueError:
                ok = False
            (good if ok else torn).append(raw)
        if not torn:
            return None
        aside = self.path.with_name(f"{self.path.name}.torn-{stamp}")
        write_atomic(aside, b"\n".join(torn) + b"\n")
        write_atomic(self.path, b"".join(line + b"\n" for line in good))
        return aside

    def _scan(self) -> tuple[list[dict], list[tuple[int, str]]]:
        if not self.path.exists():
            return [], []
        events, bad = [], []
        for n, raw in enumerate(self.path.read_bytes().splitlines(), 1):
            if not raw.strip():
                continue
            try:
                event = json.loads(raw.decode("utf-8"))
            except ValueError as e:
                bad.append((n, f"not JSON ({type(e).__name__})"))
                continue
            if not isinstance(event, dict):
                bad.append((n, "not a JSON object"))
                continue
            events.append(event)
        return events, bad
