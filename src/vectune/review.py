"""Training pairs people can read and veto.

Practitioners' first rule for synthetic pairs: sample a hundred and read them. Each
cycle keeps a seeded sample of its training pairs — query, a snippet of the
positive, the hard negative, and where the pair came from (``feedback``,
``teacher``, ``offline`` or ``train-set``) — in ``<run_dir>/pairs-sample.jsonl``
(:func:`write_run_sample`). ``vectune pairs`` prints or exports it as JSONL or
Markdown.

A reviewer vetoes a pair (or a whole query) by setting ``"reject": true`` (or
``"reject": "query"``) in the exported JSONL, or by listing pair ids / query texts
one per line, and hands the file to ``vectune pairs reject``. Rejections live next
to the run state in ``<run_dir>/rejections.jsonl`` (append-only, fsynced), and
:meth:`Rejections.filter` keeps every later cycle from training on them again.

A pair's id is a stable hash of the normalised query and the positive's key, so the
same pair gets the same id in every cycle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Mapping, Sequence

from vectune.chunks import text_hash
from vectune.errors import BadInput
from vectune.feedback import normalize_query

logger = logging.getLogger(__name__)

SAMPLE_FILE = "pairs-sample.jsonl"
REJECTIONS_FILE = "rejections.jsonl"
SOURCES = ("feedback", "teacher", "offline", "train-set")
_PAIR_ID = re.compile(r"^[0-9a-f]{16}$")

KeyOf = Callable[[str], Any] | Mapping[str, Any] | None


# --------------------------------------------------------------------------- ids and sources
def pair_id(query: str, positive_key: Any) -> str:
    """Stable id of a (query, positive) pair: the same in every cycle and on every machine.

    Args:
        query: the query text (normalised before hashing: case and spacing do not matter).
        positive_key: the positive chunk's key, or ``"sha:<text hash>"`` when the key is unknown.
    """
    raw = f"{normalize_query(query)}\x1f{positive_key}"
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def source_kind(source: str | None) -> str:
    """Map a query's detailed source (``offline:title``, ``openai``, ``train-set`` ...) to one of :data:`SOURCES`."""
    s = (source or "").lower()
    if s.startswith("feedback"):
        return "feedback"
    if s.startswith(("train-set", "train_set")):
        return "train-set"
    if s.startswith("offline"):
        return "offline"
    return "teacher"


def _lookup(key_of: KeyOf, text: str | None) -> Any:
    if key_of is None or text is None:
        return None
    if callable(key_of):
        return key_of(text)
    return key_of.get(text)


def _pos_ref(key: Any, text: str | None) -> Any:
    if key is not None:
        return str(key)
    return f"sha:{text_hash(text)}" if text else None


def snippet(text: str | None, chars: int = 240) -> str | None:
    """One line of at most ``chars`` characters."""
    if text is None:
        return None
    t = re.sub(r"\s+", " ", text).strip()
    return t if len(t) <= chars else t[: chars - 1].rstrip() + "…"


# --------------------------------------------------------------------------- sampling and writing
def sample_pairs(examples: Sequence[Any], k: int = 100, seed: int = 42, *, key_of: KeyOf = None,
                 snippet_chars: int = 240) -> list[dict]:
    """A seeded sample of training pairs, as rows a person can read.

    Args:
        examples: :class:`~vectune.negatives.Example` objects (``anchor``, ``positive``, ``negatives``,
            ``source``) or :class:`~vectune.generate.base.Query` objects (``text``, ``chunk_id``, ``source``).
        k: how many rows at most.
        seed: which ones.
        key_of: passage text → chunk key (a dict or a function), to name positives and negatives by key.
        snippet_chars: length of the passage snippets.

    Returns:
        Rows ``{pair_id, query, positive_key, positive_hash, positive_snippet, negative_key, negative_snippet,
        source, source_detail, reject}`` in the examples' order; ``source`` is one of :data:`SOURCES`.
    """
    rows = []
    for ex in subsample(examples, k, seed):
        query = getattr(ex, "anchor", None) or getattr(ex, "text", "")
        pos_text = getattr(ex, "positive", None)
        pos_key = getattr(ex, "chunk_id", None)
        if pos_key is None:
            pos_key = _lookup(key_of, pos_text)
        negs = list(getattr(ex, "negatives", None) or [])
        neg_text = negs[0] if negs else None
        ref = _pos_ref(pos_key, pos_text)
        src = getattr(ex, "source", "") or ""
        rows.append({
            "pair_id": pair_id(query, ref),
            "query": query,
            "positive_key": None if pos_key is None else str(pos_key),
            "positive_hash": text_hash(pos_text) if pos_text else None,
            "positive_snippet": snippet(pos_text, snippet_chars),
            "negative_key": None if neg_text is None or _lookup(key_of, neg_text) is None
            else str(_lookup(key_of, neg_text)),
            "negative_snippet": snippet(neg_text, snippet_chars),
            "source": source_kind(src),
            "source_detail": src,
            "reject": False,
        })
    return rows


def subsample(rows: Sequence[Any], k: int, seed: int = 42) -> list[Any]:
    """At most ``k`` of ``rows``, seeded, in their original order."""
    if k < 0:
        raise BadInput(f"sample size must be >= 0, got {k}")
    if len(rows) <= k:
        return list(rows)
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), k))]


def write_jsonl(rows: Iterable[Mapping], out: Path | str | IO[str]) -> int:
    """Write rows as JSONL to a path or an open text file; returns how many."""
    if isinstance(out, (str, Path)):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            return write_jsonl(rows, f)
    n = 0
    for r in rows:
        out.write(json.dumps(dict(r), ensure_ascii=False) + "\n")
        n += 1
    return n


def _cell(value: Any) -> str:
    s = "" if value is None else str(value)
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(rows: Sequence[Mapping], title: str | None = None) -> str:
    """The rows as a Markdown table (for reading and for the run report)."""
    md = [f"# {title}", ""] if title else []
    md += ["| # | source | query | positive | hard negative | pair id |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        mark = " **(rejected)**" if r.get("rejected") else ""
        md.append(f"| {i} | {_cell(r.get('source'))} | {_cell(r.get('query'))}{mark} "
                  f"| {_cell(r.get('positive_snippet'))} | {_cell(r.get('negative_snippet'))} "
                  f"| `{_cell(r.get('pair_id'))}` |")
    md += ["", "To veto pairs: export as JSONL, set `\"reject\": true` on a bad pair (or `\"reject\": \"query\"` to "
           "drop every pair of its query), then run `vectune pairs reject FILE --alias ALIAS`."]
    return "\n".join(md) + "\n"


def write_markdown(rows: Sequence[Mapping], out: Path | str | IO[str], title: str | None = None) -> int:
    """Write rows as a Markdown table to a path or an open text file; returns how many."""
    text = markdown(rows, title)
    if isinstance(out, (str, Path)):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
    else:
        out.write(text)
    return len(rows)


def write_run_sample(run_dir: Path | str, rows: Sequence[Mapping]) -> Path:
    """Keep a run's pair sample in ``<run_dir>/pairs-sample.jsonl`` (atomically replaced); returns the path."""
    path = Path(run_dir) / SAMPLE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        write_jsonl(rows, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_run_sample(run_dir: Path | str, alias: str | None = None) -> list[dict]:
    """The last run's pair sample.

    Raises:
        BadInput: no run has written one yet.
    """
    path = Path(run_dir) / SAMPLE_FILE
    if not path.is_file():
        who = f" for alias '{alias}'" if alias else ""
        raise BadInput(f"no training-pair sample{who} yet ({path} is missing): run a cycle first "
                       "(`vectune run`), then `vectune pairs` shows its pairs")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                logger.warning("%s:%d: not JSON, skipped", path, n)
    return rows


# --------------------------------------------------------------------------- rejections
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
            records.append(_record("pair", pair_id_=e) if _PAIR_ID.match(e) else _record("query", query=e))
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
            rec.setdefault("time", datetime.now(timezone.utc).isoformat(timespec="seconds"))
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
        ref = _pos_ref(positive_key, positive_text)
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

        Works on :class:`~vectune.negatives.Example` (``anchor``/``positive``), on
        :class:`~vectune.generate.base.Query` (``text``/``chunk_id``), on
        :class:`~vectune.labeled.LabeledQuery` (``text``/``relevant``: vetoed keys are removed, the query
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
                key = _lookup(key_of, text)
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
