"""After the watch rolled a model back: what condemned it, and what the next promotion must show.

The watch (:mod:`vectune.ops.watch`) keeps its state in ``<run_dir>/watch.json``: its last
verdict (so a run with nothing new does not score again) and, after a rollback, the
*condemnation*: the condemned model and collection and the fresh queries that condemned it.

No flapping: while a condemnation is pending, the cycle (:mod:`vectune.pipeline.cycle`) puts
those queries on the evidence side (:func:`pin`: the golden set, never training), and a
candidate is promoted only when the gate's evidence covered them (:func:`uncovered`). So a new
promotion has to win on the very queries the condemned model lost on, with a model that never
trained on them. The promotion clears the condemnation.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vectune.core.jsonl import write_json_atomic
from vectune.pipeline.pairs.labeled import LabeledQuery
from vectune.qdrant.feedback import normalize_query

logger = logging.getLogger(__name__)


@dataclass
class Condemnation:
    """A model the watch rolled back, and the fresh queries it lost on.

    Attributes:
        run_id: the run whose watch rolled it back.
        model: the condemned model (its tag).
        collection: the condemned collection.
        restored: the collection the alias went back to.
        at: when (ISO time).
        since: the cutoff after which the condemning queries arrived.
        queries: the condemning queries, ``{"query": text, "relevant": [point-id strings]}``.
        delta: live − rollback target on the gate metric, on those queries.
        p_value: the paired test's one-sided p-value.
    """

    run_id: str
    model: str
    collection: str
    restored: str
    at: str
    since: str | None = None
    queries: list[dict] = field(default_factory=list)
    delta: float | None = None
    p_value: float | None = None

    def labeled(self) -> list[LabeledQuery]:
        """The condemning queries as labeled queries."""
        return [LabeledQuery(q["query"], set(q["relevant"])) for q in self.queries]

    def summary(self) -> dict:
        """For reports: everything but the query list."""
        out = {k: v for k, v in asdict(self).items() if k != "queries"}
        out["queries"] = len(self.queries)
        return out


class WatchState:
    """``<run_dir>/watch.json``: the watch's last verdict and a pending condemnation.

    Args:
        run_dir: the alias's run folder.
    """

    def __init__(self, run_dir: Path | str):
        self.path = Path(run_dir) / "watch.json"

    def load(self) -> dict:
        """The whole state (empty when none or unreadable)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict) -> None:
        write_json_atomic(self.path, data)

    @property
    def condemned(self) -> Condemnation | None:
        """The pending condemnation, if any."""
        c = self.load().get("condemned")
        if not isinstance(c, dict):
            return None
        try:
            return Condemnation(**c)
        except TypeError:
            logger.warning("ignoring an unreadable condemnation in %s", self.path)
            return None

    def condemn(self, c: Condemnation) -> None:
        """Record a condemnation (before the rollback starts, so a crash keeps it)."""
        self._save({**self.load(), "condemned": asdict(c)})

    def clear(self, by: str) -> Condemnation | None:
        """Clear the pending condemnation (a promotion that covered its queries); returns it."""
        data = self.load()
        c = self.condemned
        if c is not None:
            data["condemned"] = None
            data["cleared"] = {**c.summary(), "cleared_by": by}
            self._save(data)
        return c

    @property
    def confirmed(self) -> str | None:
        """The last live collection the watch confirmed (its history event is written once)."""
        return self.load().get("confirmed")

    def confirm(self, collection: str) -> None:
        self._save({**self.load(), "confirmed": collection})

    @property
    def last(self) -> dict:
        """The watch's last verdict (with its cache key)."""
        v = self.load().get("last")
        return v if isinstance(v, dict) else {}

    def set_last(self, verdict: dict) -> None:
        self._save({**self.load(), "last": verdict})


def pin(c: Condemnation, golden: list | None, train: list | None) -> tuple[list, list, dict]:
    """Put the condemning queries on the evidence side.

    A condemning query in ``train`` moves to ``golden`` (the cycle's own labels for it win, they may
    have grown since); one in neither is added to ``golden`` from the condemnation.

    Args:
        c: the pending condemnation.
        golden: the cycle's evidence queries (or None).
        train: its training queries (or None).

    Returns:
        ``(golden, train, counts)``: counts of ``condemning`` queries, ``moved`` out of training,
        ``added`` from the condemnation, ``already`` in the evidence.
    """
    golden, train = list(golden or []), list(train or [])
    wanted = {normalize_query(q.text): q for q in c.labeled()}
    in_golden = {normalize_query(q.text) for q in golden}
    moved = [q for q in train if normalize_query(q.text) in wanted and normalize_query(q.text) not in in_golden]
    moved_keys = {normalize_query(q.text) for q in moved}
    train = [q for q in train if normalize_query(q.text) not in wanted]
    added = [q for k, q in wanted.items() if k not in in_golden and k not in moved_keys]
    golden += moved + added
    return golden, train, {"condemning": len(wanted), "moved": len(moved), "added": len(added),
                           "already": len(wanted.keys() & in_golden)}


def uncovered(c: Condemnation, evidence: list) -> list[str]:
    """The condemning queries the deciding evidence did not include (empty: covered).

    Args:
        c: the pending condemnation.
        evidence: the queries the gate decided on (objects with ``text``).
    """
    have = {normalize_query(q.text) for q in evidence}
    return [q["query"] for q in c.queries if normalize_query(q["query"]) not in have]


__all__ = ["Condemnation", "WatchState", "pin", "uncovered"]
