"""Feedback files and counts for operators: import and export JSONL, statistics per alias (``vectune feedback``)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from vectune.errors import BadInput
from vectune.qdrant.feedback import (
    FEEDBACK_COLLECTION,
    NEGATIVE_SIGNALS,
    POSITIVE_SIGNALS,
    BadFeedback,
    Row,
    as_store,
    event_from_row,
    existing_ids,
    no_feedback_message,
    normalize_query,
    read_rows,
    write_events,
)
from vectune.qdrant.store import point_id_for

logger = logging.getLogger(__name__)


@dataclass
class ImportResult:
    """What ``import_jsonl`` did.

    Attributes:
        rows: non-blank lines read.
        imported: events written.
        skipped: malformed lines by reason.
        examples: the first few skipped lines as ``"line N: reason"``.
    """

    rows: int = 0
    imported: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"rows": self.rows, "imported": self.imported, "skipped": dict(self.skipped),
                "examples": list(self.examples)}


def import_jsonl(store_or_client: Any, path: Path | str, alias: str | None = None, *,
                 default_alias: str | None = None, collection: str = FEEDBACK_COLLECTION,
                 batch: int = 256) -> ImportResult:
    """Import events from a JSONL (or ``.jsonl.gz``) file; a malformed line is a counted skip.

    Each line: ``{"alias", "query", "ids" (or "relevant"/"relevant_ids"), "signal", "weight", "ts",
    "negative_ids"}`` — the format :func:`export` writes. Importing a file twice writes its events once.

    Args:
        store_or_client: a vectune Store or a ``QdrantClient``.
        path: the file.
        alias: the alias for every line (overrides a line's own ``alias``).
        default_alias: the alias of lines without one (when ``alias`` is not given); else such a line is skipped.
        collection: the feedback collection.
        batch: points per upsert.

    Returns:
        The counts, with skip reasons.

    Raises:
        BadInput: the file does not exist.
    """
    import gzip

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"feedback file not found: {path}")
    store = as_store(store_or_client)
    res = ImportResult()
    pending: list[tuple[str, dict]] = []

    def skip(n: int, reason: str, detail: str) -> None:
        res.skipped[reason] += 1
        if len(res.examples) < 5:
            res.examples.append(f"line {n}: {detail}")

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                res.rows += 1
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    skip(n, "not_json", f"not valid JSON ({getattr(e, 'msg', e)})")
                    continue
                if not isinstance(obj, dict):
                    skip(n, "not_an_object", "not a JSON object")
                    continue
                try:
                    pending.append(event_from_row(obj, alias or (None if obj.get("alias") else default_alias)))
                except BadFeedback as e:
                    skip(n, e.reason, str(e))
                    continue
                if len(pending) >= batch:
                    write_events(store, collection, pending, batch)
                    res.imported += len(pending)
                    pending.clear()
    except (OSError, EOFError) as e:  # a truncated .gz or an unreadable file: keep what was read
        skip(res.rows + 1, "unreadable", f"file unreadable from here on ({e})")
    if pending:
        write_events(store, collection, pending, batch)
        res.imported += len(pending)
    if res.skipped:
        logger.warning("feedback import %s: skipped %d of %d lines %s", path, sum(res.skipped.values()), res.rows,
                       dict(res.skipped))
    return res


def export(store_or_client: Any, out: Path | str | IO[str], alias: str | None = None, *,
           collection: str = FEEDBACK_COLLECTION) -> int:
    """Write events (of one alias, or all) as JSONL, oldest first, in the format :func:`import_jsonl` reads.

    Args:
        store_or_client: a vectune Store or a ``QdrantClient``.
        out: a path or an open text file.
        alias: only this alias (default: every alias).
        collection: the feedback collection.

    Returns:
        How many events were written.
    """
    rows, _ = read_rows(store_or_client, alias, collection=collection)
    if isinstance(out, (str, Path)):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            return export_rows(rows, f)
    return export_rows(rows, out)


def export_rows(rows: Sequence[Row], f: IO[str]) -> int:
    for r in rows:
        f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
    return len(rows)


def stats(store_or_client: Any, alias: str, *, collection: str = FEEDBACK_COLLECTION,
          live_collection: str | None = None) -> dict:
    """Counts by signal, time span and usable share of an alias's feedback.

    A row is *usable* when at least one of its ids is a point of the alias's live collection.

    Args:
        store_or_client: a vectune Store or a ``QdrantClient``.
        alias: the alias.
        collection: the feedback collection.
        live_collection: the collection to resolve ids in (default: where the alias points).

    Returns:
        ``{alias, collection, rows, malformed, by_signal, positive, negative, queries, window, live_collection,
        usable_rows, usable_share, missing_ids, message}``; ``rows`` is 0 (and ``message`` says so) when the
        alias has no feedback.
    """
    store = as_store(store_or_client)
    rows, bad = read_rows(store, alias, collection=collection)
    out: dict[str, Any] = {
        "alias": alias, "collection": collection, "rows": len(rows), "malformed": bad,
        "by_signal": dict(sorted(Counter(r.signal for r in rows).items())),
        "positive": sum(r.signal in POSITIVE_SIGNALS for r in rows),
        "negative": sum(r.signal in NEGATIVE_SIGNALS for r in rows),
        "queries": len({normalize_query(r.query) for r in rows}),
        "window": {"first": rows[0].ts if rows else None, "last": rows[-1].ts if rows else None},
        "live_collection": None, "usable_rows": None, "usable_share": None, "missing_ids": None, "message": "",
    }
    if not rows:
        out["message"] = no_feedback_message(alias, collection)
        return out
    live = live_collection
    if live is None:
        try:
            live = store.resolve_alias(alias)
        except BadInput as e:
            out["message"] = f"usable share unknown: {e}"
            return out
    keys = {str(point_id_for(i)) for r in rows for i in r.ids + r.negative_ids}
    present = existing_ids(store, live, keys)
    usable = sum(any(str(point_id_for(i)) in present for i in r.ids) for r in rows)
    out.update(live_collection=live, usable_rows=usable, usable_share=round(usable / len(rows), 4),
               missing_ids=len(keys - present))
    return out


# --------------------------------------------------------------------------- the cycle's view
