"""Pairs and queries people vetoed: the rejections store later cycles never train on.

A reviewer vetoes a pair (or a whole query) by setting ``"reject": true`` (or
``"reject": "query"``) in the exported JSONL, or by listing pair ids / query texts
one per line, and hands the file to ``vectune pairs reject`` (:func:`reject_file`); the
review page does the same with a click. Rejections live next to the run state in
``<run_dir>/rejections.jsonl`` (append-only, fsynced), and :meth:`Rejections.filter` keeps
every later cycle from training on them again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vectune.core.chunks import text_hash
from vectune.errors import BadInput
from vectune.pipeline.pairs.review import PAIR_ID, REJECTIONS_FILE, KeyOf, lookup, pair_id, pos_ref
from vectune.qdrant.feedback import normalize_query

logger = logging.getLogger(__name__)


def reject_file(path: Path | str) -> tuple[list[dict], int]:
    """Read a reviewer's rejections.

    Accepted: an exported sample (JSONL) where bad rows carry ``"reject": true`` (that pair) or
    ``"reject": "query"`` (every pair of that query); or a plain list, one entry per line (or a JSON array),
    where a 16-hex-digit entry is a pair id and anything else a whole query text.

    Returns:
        ``(records, skipped)``: rejection records, and how many marked rows could not be used.

    Raises:
        BadInput: the file does not exist or holds no rejection.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"rejection file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    entries: list[Any] = []
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
            entries = list(data) if isinstance(data, list) else [data]
        except ValueError:
            entries = text.splitlines()
    else:
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except ValueError:
                entries.append(line)
    records, skipped = [], 0
    for e in entries:
        if isinstance(e, str):
            e = e.strip()
            if not e:
                continue
            records.append(_record("pair", pair_id_=e) if PAIR_ID.match(e) else _record("query", query=e))
        elif isinstance(e, Mapping):
            flag = e.get("reject")
            if isinstance(flag, str):
                flag = flag.strip().lower()
            if flag in (None, False, 0, "", "false", "no"):
                continue
            query = e.get("query") if isinstance(e.get("query"), str) and e.get("query").strip() else None
            if flag == "query" or e.get("reject_query") is True:
                if query is None:
                    skipped += 1
                    continue
                records.append(_record("query", query=query))
                continue
            ref = e.get("positive_key")
            if ref is None and e.get("positive_hash"):
                ref = f"sha:{e['positive_hash']}"
            pid = e.get("pair_id") if isinstance(e.get("pair_id"), str) else None
            if pid is None and query and ref is not None:
                pid = pair_id(query, ref)
            if pid is None:
                skipped += 1
                continue
            records.append(_record("pair", pair_id_=pid, query=query, positive_key=e.get("positive_key"),
                                   positive_hash=e.get("positive_hash")))
        else:
            skipped += 1
    if not records:
        raise BadInput(f"{path} marks no pair or query as rejected (set \"reject\": true on a row, or list pair "
                       "ids / query texts one per line)" + (f"; {skipped} marked rows unusable" if skipped else ""))
    return records, skipped


def _record(kind: str, *, pair_id_: str | None = None, query: str | None = None, positive_key: Any = None,
            positive_hash: str | None = None, note: str | None = None) -> dict:
    rec: dict[str, Any] = {"kind": kind}
    if pair_id_:
        rec["pair_id"] = pair_id_
    if query:
        rec["query"] = query
        rec["query_norm"] = normalize_query(query)
    if positive_key is not None:
        rec["positive_key"] = str(positive_key)
    if positive_hash:
        rec["positive_hash"] = positive_hash
    if note:
        rec["note"] = note
    return rec


class Rejections:
    """A run directory's vetoed pairs and queries (``rejections.jsonl``, append-only).

    Args:
        run_dir: the alias's run directory (``settings.run_dir(alias)``).
    """

    def __init__(self, run_dir: Path | str):
        self.path = Path(run_dir) / REJECTIONS_FILE
        self.pair_ids: set[str] = set()
        self.queries: set[str] = set()
        self.pair_hashes: set[tuple[str, str]] = set()
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:  # a torn last line after a crash: the rest still counts
                logger.warning("%s:%d: not JSON, ignored", self.path, n)
                continue
            if isinstance(rec, dict):
                self._index(rec)

    def _index(self, rec: Mapping) -> None:
        if rec.get("kind") == "query" and rec.get("query"):
            self.queries.add(normalize_query(rec["query"]))
        elif rec.get("kind") == "pair":
            if rec.get("pair_id"):
                self.pair_ids.add(rec["pair_id"])
            if rec.get("query") and rec.get("positive_key") is not None:  # match by key too, whatever the id was
                self.pair_ids.add(pair_id(rec["query"], str(rec["positive_key"])))
            if rec.get("query") and rec.get("positive_hash"):
                self.pair_hashes.add((normalize_query(rec["query"]), rec["positive_hash"]))

    def _known(self, rec: Mapping) -> bool:
        if rec.get("kind") == "query":
            return normalize_query(rec.get("query") or "") in self.queries
        return rec.get("pair_id") in self.pair_ids

    def add(self, records: Iterable[Mapping]) -> int:
        """Append new rejections (already known ones are not repeated); returns how many were new."""
        new = []
        for rec in records:
            rec = dict(rec)
            if rec.get("kind") not in ("pair", "query") or self._known(rec):
                continue
            rec.setdefault("time", datetime.now(UTC).isoformat(timespec="seconds"))
            self._index(rec)
            new.append(rec)
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                for rec in new:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        return len(new)

    def add_pair(self, query: str, positive_key: Any = None, *, positive_text: str | None = None,
                 note: str | None = None) -> int:
        """Veto one pair, named by its query and its positive's key (or text)."""
        ref = pos_ref(positive_key, positive_text)
        if ref is None:
            raise BadInput("a rejected pair needs its positive's key or text")
        return self.add([_record("pair", pair_id_=pair_id(query, ref), query=query, positive_key=positive_key,
                                 positive_hash=text_hash(positive_text) if positive_text else None, note=note)])

    def add_query(self, query: str, note: str | None = None) -> int:
        """Veto every pair of a query."""
        if not query or not query.strip():
            raise BadInput("a rejected query needs its text")
        return self.add([_record("query", query=query, note=note)])

    def add_row(self, row: Mapping, whole_query: bool = False, note: str | None = None) -> int:
        """Veto a sample row (see :func:`sample_pairs`): its pair, or with ``whole_query`` every pair of its query.

        Returns:
            1 when the rejection is new, 0 when it was already known.
        """
        if whole_query:
            return self.add_query(row.get("query") or "", note=note)
        ref = row.get("positive_key")
        if ref is None and row.get("positive_hash"):
            ref = f"sha:{row['positive_hash']}"
        pid = row.get("pair_id") or (pair_id(row["query"], ref) if row.get("query") and ref is not None else None)
        if not pid:
            raise BadInput("a rejected row needs its pair id, or its query and positive key")
        return self.add([_record("pair", pair_id_=pid, query=row.get("query"), positive_key=row.get("positive_key"),
                                 positive_hash=row.get("positive_hash"), note=note)])

    def counts(self) -> dict:
        return {"pairs": len(self.pair_ids), "queries": len(self.queries)}

    def __len__(self) -> int:
        return len(self.pair_ids) + len(self.queries)

    def is_rejected(self, query: str, positive_key: Any = None, positive_text: str | None = None,
                    positive_hash: str | None = None) -> bool:
        """True if the whole query, or this (query, positive) pair, was vetoed."""
        norm = normalize_query(query)
        if norm in self.queries:
            return True
        if positive_key is not None and pair_id(query, str(positive_key)) in self.pair_ids:
            return True
        h = text_hash(positive_text) if positive_text else positive_hash
        if h and ((norm, h) in self.pair_hashes or pair_id(query, f"sha:{h}") in self.pair_ids):
            return True
        return False

    def row_rejected(self, row: Mapping) -> bool:
        """True if a sample row (see :func:`sample_pairs`) was vetoed, by its id, key, text hash or query."""
        return row.get("pair_id") in self.pair_ids or self.is_rejected(
            row.get("query") or "", row.get("positive_key"), positive_hash=row.get("positive_hash"))

    def filter(self, examples: Sequence[Any], key_of: KeyOf = None) -> tuple[list[Any], int]:
        """Drop vetoed pairs and queries.

        Works on :class:`~vectune.pipeline.pairs.negatives.Example` (``anchor``/``positive``), on
        :class:`~vectune.pipeline.pairs.teachers.base.Query` (``text``/``chunk_id``), on
        :class:`~vectune.pipeline.pairs.labeled.LabeledQuery` (``text``/``relevant``: vetoed keys are removed, the query
        dropped when none is left) and on sample rows (dicts).

        Args:
            examples: the items.
            key_of: passage text → chunk key, to match vetoed pair ids on ``Example`` objects.

        Returns:
            ``(kept, rejected)``: the items left (in order) and how many were dropped.
        """
        if not len(self):
            return list(examples), 0
        kept, dropped = [], 0
        for ex in examples:
            if isinstance(ex, Mapping):
                if self.row_rejected(ex):
                    dropped += 1
                else:
                    kept.append(ex)
                continue
            query = getattr(ex, "anchor", None) or getattr(ex, "text", "") or ""
            text = getattr(ex, "positive", None)
            key = getattr(ex, "chunk_id", None)
            if key is None and text is not None:
                key = lookup(key_of, text)
            relevant = getattr(ex, "relevant", None)
            if isinstance(relevant, (set, frozenset)):
                if normalize_query(query) in self.queries:
                    dropped += 1
                    continue
                left = {k for k in relevant if pair_id(query, str(k)) not in self.pair_ids}
                if not left:
                    dropped += 1
                    continue
                kept.append(ex if left == relevant else replace(ex, relevant=left))
                continue
            if self.is_rejected(query, key, text):
                dropped += 1
            else:
                kept.append(ex)
        if dropped:
            logger.info("left out %d vetoed training pairs/queries (%s)", dropped, self.path)
        return kept, dropped
