"""Feedback from the app's own traffic: logged in Qdrant, read back by the cycle.

An app records what its users did with a search result — a click, a citation in a
RAG answer, a thumbs-up or thumbs-down, a result shown but skipped — in one small
payload-only collection on the same Qdrant (``vectune_feedback``, one per server,
the alias in each payload)::

    from qdrant_client import QdrantClient
    from vectune.qdrant import feedback

    client = QdrantClient(url="http://localhost:6333")
    feedback.log(client, "docs", "how do I rotate keys?", ["doc-17"], signal="click")
    feedback.log_many(client, [{"alias": "docs", "query": "...", "relevant_ids": ["doc-3"], "signal": "cite"}])

Ids are the external ids given at ``vectune index`` time (or Qdrant point ids):
both map to the same point through :func:`vectune.qdrant.store.point_id_for`.

Signals: ``click``, ``cite``, ``thumbs_up`` are positive (the ids answer the query);
``thumbs_down`` and ``skip`` (shown but skipped) are negative (the ids do not).
``negative_ids`` adds ids that were shown and passed over to any event. Each point's
id is a UUID5 of (alias, query, ids, signal, time), so importing the same events
twice writes them once.

The cycle reads feedback with :func:`read_for_cycle`, only ever by scrolling (a
second operator reading at the same time is fine): queries are deduplicated on
normalised text, ids resolved against the live collection (ids whose points are
gone are dropped and counted), and the split is by time — the newest share is the
golden set, the older rest the training pairs, so no query is on both sides.
Negative signals become explicit hard negatives of their query.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import unicodedata
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping, Sequence

from vectune.errors import BadInput, QdrantUnavailable
from vectune.pipeline.pairs.labeled import QUERY_KEYS, RELEVANT_KEYS, LabeledQuery
from vectune.qdrant.store import Store, point_id_for

logger = logging.getLogger(__name__)

#: The payload-only collection holding every alias's feedback (one per Qdrant server).
FEEDBACK_COLLECTION = "vectune_feedback"
#: Signals that say "these ids answer the query".
POSITIVE_SIGNALS = ("click", "cite", "thumbs_up")
#: Signals that say "these ids do not answer the query" (``skip``: shown but skipped).
NEGATIVE_SIGNALS = ("thumbs_down", "skip")
SIGNALS = POSITIVE_SIGNALS + NEGATIVE_SIGNALS
#: Longest query text accepted (a longer one is most likely a whole prompt, not a query).
MAX_QUERY_CHARS = 4000
#: Most ids one event may carry.
MAX_IDS = 1000

_NS = uuid.UUID("3d0d6a52-4b8e-4f0c-9a51-0c7e5f2b9d13")
_PAYLOAD_VERSION = 1


class BadFeedback(BadInput, ValueError):
    """A feedback event that cannot be recorded (also a ``ValueError`` for apps).

    Attributes:
        reason: a short key for counting skips (``no_query``, ``no_ids``, ``unknown_signal``, ...).
    """

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------- Qdrant access
def as_store(target: Any) -> Store:
    """A :class:`~vectune.qdrant.store.Store` for a ``Store`` or a plain ``QdrantClient`` (the app's own).

    The wrapped client is not closed by vectune: the app owns it.
    """
    if isinstance(target, Store):
        return target
    if hasattr(target, "scroll") and hasattr(target, "upsert"):
        return Store.from_client(target)
    raise TypeError(f"expected a vectune Store or a qdrant_client.QdrantClient, got {type(target).__name__}")


def ensure_collection(store: Store, collection: str = FEEDBACK_COLLECTION) -> None:
    """Create the feedback collection (payload only) with a keyword index on ``alias``, unless it exists.

    Embedded Qdrant ignores payload indexes, so none is made there.
    """
    if store.collection_exists(collection):
        return
    store.create_payload_collection(collection)
    store.index_keyword(collection, "alias")  # on a server only; a failure is only logged


def scroll_filtered(store: Store, collection: str, flt: Any = None, batch: int = 256) -> Iterator[Any]:
    """Every record of ``collection`` matching ``flt`` (payload only), page by page, by scroll alone."""
    for records, _ in store.scroll(collection, batch=batch, where=flt):
        yield from records


def existing_ids(store: Store, collection: str, keys: Iterable[str], batch: int = 256) -> set[str]:
    """The subset of point keys (string point ids) that exist in ``collection`` (no payloads fetched)."""
    keys = sorted(set(keys))
    found: set[str] = set()
    for i in range(0, len(keys), batch):
        part = keys[i:i + batch]
        recs = store.retrieve(collection, [point_id_for(k) for k in part], payload=False)
        found.update(str(r.id) for r in recs)
    return found


def _alias_filter(alias: str | None):
    if alias is None:
        return None
    from qdrant_client import models

    return models.Filter(must=[models.FieldCondition(key="alias", match=models.MatchValue(value=alias))])


# --------------------------------------------------------------------------- events
def normalize_query(text: str) -> str:
    """The form two queries must share to count as one: NFKC, case-folded, single spaces, no final ``?.!``."""
    t = unicodedata.normalize("NFKC", text).casefold()
    t = re.sub(r"\s+", " ", t).strip()
    return t.rstrip("?.! ").strip()


def _parse_ts(ts: Any) -> datetime:
    if ts is None:
        return datetime.now(timezone.utc)
    if isinstance(ts, datetime):
        dt = ts
    elif isinstance(ts, (int, float)) and not isinstance(ts, bool):
        if not math.isfinite(ts):
            raise BadFeedback(f"ts must be a finite epoch time, got {ts!r}", "bad_ts")
        try:
            dt = datetime.fromtimestamp(float(ts), timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise BadFeedback(f"ts {ts!r} is out of range", "bad_ts") from None
    elif isinstance(ts, str):
        s = ts.strip()
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            try:
                return _parse_ts(float(s))
            except (ValueError, BadFeedback):
                raise BadFeedback(f"ts {ts!r} is neither an ISO 8601 time nor an epoch number", "bad_ts") from None
    else:
        raise BadFeedback(f"ts must be a datetime, an ISO 8601 string or epoch seconds, got {type(ts).__name__}",
                          "bad_ts")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def _ids(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise BadFeedback(f"{what} must be a list of ids, got {type(value).__name__}", "bad_ids")
    out: list[str] = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (str, int)) or (isinstance(v, int) and v < 0):
            raise BadFeedback(f"{what}: {v!r} is not an id (a string or a non-negative integer)", "bad_ids")
        s = str(v).strip()
        if not s:
            raise BadFeedback(f"{what}: empty id", "bad_ids")
        if s not in out:
            out.append(s)
    if len(out) > MAX_IDS:
        raise BadFeedback(f"{what}: {len(out)} ids in one event (at most {MAX_IDS})", "too_many_ids")
    return out


def make_event(alias: str, query: str, relevant_ids: Any, *, signal: str = "click", weight: float = 1.0,
               ts: Any = None, negative_ids: Any = ()) -> tuple[str, dict]:
    """Validate one event and build its point id and payload.

    Args:
        alias: the alias whose search produced the results.
        query: what the user asked.
        relevant_ids: ids the signal is about (external doc ids or point ids).
        signal: one of :data:`SIGNALS`.
        weight: how much this event counts (> 0).
        ts: when it happened (datetime, ISO string or epoch seconds; default: now, UTC).
        negative_ids: ids shown alongside and passed over.

    Returns:
        ``(point_id, payload)``.

    Raises:
        BadFeedback: empty query or ids, unknown signal, bad weight or time.
    """
    if not isinstance(alias, str) or not alias.strip():
        raise BadFeedback("feedback needs a non-empty alias", "no_alias")
    if not isinstance(query, str) or not query.strip():
        raise BadFeedback("feedback needs a non-empty query string", "no_query")
    query = query.strip()
    if len(query) > MAX_QUERY_CHARS:
        raise BadFeedback(f"query of {len(query)} characters (at most {MAX_QUERY_CHARS}): log the user's query, "
                          "not a whole prompt", "query_too_long")
    if signal not in SIGNALS:
        raise BadFeedback(f"unknown signal {signal!r}: use one of {', '.join(SIGNALS)}", "unknown_signal")
    ids = _ids(relevant_ids, "relevant_ids")
    if not ids:
        raise BadFeedback("feedback needs at least one id in relevant_ids", "no_ids")
    neg = [i for i in _ids(negative_ids, "negative_ids") if i not in ids]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
        raise BadFeedback(f"weight must be a positive finite number, got {weight!r}", "bad_weight")
    dt = _parse_ts(ts)
    iso = dt.isoformat(timespec="microseconds")
    key = json.dumps([alias, query, sorted(ids), sorted(neg), signal, iso], ensure_ascii=False)
    pid = str(uuid.uuid5(_NS, key))
    payload = {
        "alias": alias, "query": query, "ids": ids, "negative_ids": neg, "signal": signal,
        "polarity": "positive" if signal in POSITIVE_SIGNALS else "negative", "weight": float(weight),
        "ts": iso, "ts_epoch": dt.timestamp(), "v": _PAYLOAD_VERSION,
    }
    return pid, payload


def _write(store: Store, collection: str, events: Sequence[tuple[str, dict]], batch: int = 256) -> None:
    from qdrant_client import models

    created = False
    for i in range(0, len(events), batch):
        points = [models.PointStruct(id=pid, vector={}, payload=p) for pid, p in events[i:i + batch]]
        try:
            store.upsert(collection, points)
        except (BadInput, QdrantUnavailable):
            if created or store.collection_exists(collection):
                raise
            ensure_collection(store, collection)  # first event on this server: create it, then retry once
            created = True
            store.upsert(collection, points)


def log(client: Any, alias: str, query: str, relevant_ids: Any, *, signal: str = "click", weight: float = 1.0,
        ts: Any = None, negative_ids: Any = (), collection: str = FEEDBACK_COLLECTION) -> str:
    """Record one feedback event.

    Args:
        client: the app's ``QdrantClient`` (or a vectune Store).
        alias: the alias the app searched.
        query: the user's query.
        relevant_ids: ids the signal is about: for ``click``/``cite``/``thumbs_up`` the answers, for
            ``thumbs_down``/``skip`` results that did not answer.
        signal: ``click`` (default), ``cite``, ``thumbs_up``, ``thumbs_down`` or ``skip``.
        weight: how much the event counts (> 0, default 1).
        ts: when (datetime, ISO string or epoch seconds; default now, UTC).
        negative_ids: results shown and passed over (become hard negatives).
        collection: the feedback collection.

    Returns:
        The event's point id (deterministic: logging the same event again overwrites it).

    Raises:
        BadFeedback: bad event (also a ``ValueError``).
    """
    pid, payload = make_event(alias, query, relevant_ids, signal=signal, weight=weight, ts=ts,
                              negative_ids=negative_ids)
    _write(as_store(client), collection, [(pid, payload)])
    return pid


def _event_from_row(row: Mapping, alias: str | None = None) -> tuple[str, dict]:
    """Build an event from a dict (``log_many`` rows, JSONL lines)."""
    query = next((row.get(k) for k in QUERY_KEYS if row.get(k) is not None), None)
    ids = next((row.get(k) for k in RELEVANT_KEYS if row.get(k) is not None), None)
    return make_event(alias or row.get("alias"), query, ids, signal=row.get("signal", "click"),
                      weight=row.get("weight", 1.0), ts=row.get("ts"), negative_ids=row.get("negative_ids") or ())


def log_many(client: Any, rows: Iterable[Mapping], *, collection: str = FEEDBACK_COLLECTION,
             batch: int = 256) -> int:
    """Record many events in batched upserts; every row is validated before anything is written.

    Args:
        client: the app's ``QdrantClient`` (or a vectune Store).
        rows: dicts with ``alias``, ``query``, ``relevant_ids`` (or ``ids``/``relevant``) and optionally
            ``signal``, ``weight``, ``ts``, ``negative_ids`` — the arguments of :func:`log`.
        collection: the feedback collection.
        batch: points per upsert.

    Returns:
        How many events were written.

    Raises:
        BadFeedback: a bad row (named by its index); nothing is written then.
    """
    events = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise BadFeedback(f"feedback row {i}: expected a dict, got {type(row).__name__}", "not_an_object")
        try:
            events.append(_event_from_row(row))
        except BadFeedback as e:
            raise BadFeedback(f"feedback row {i}: {e}", e.reason) from None
    _write(as_store(client), collection, events, batch)
    return len(events)


# --------------------------------------------------------------------------- reading
@dataclass
class _Row:
    alias: str
    query: str
    ids: list[str]
    negative_ids: list[str]
    signal: str
    weight: float
    ts: str
    ts_epoch: float
    point_id: str

    def to_json(self) -> dict:
        return {"alias": self.alias, "query": self.query, "ids": self.ids, "negative_ids": self.negative_ids,
                "signal": self.signal, "weight": self.weight, "ts": self.ts}


def _row_from_record(rec: Any) -> _Row | None:
    """A stored event, or None when its payload is not one (written by hand or by something else)."""
    p = rec.payload or {}
    try:
        pid, ev = make_event(p.get("alias"), p.get("query"), p.get("ids"), signal=p.get("signal"),
                             weight=p.get("weight", 1.0), ts=p.get("ts") or p.get("ts_epoch"),
                             negative_ids=p.get("negative_ids") or ())
    except BadFeedback:
        return None
    return _Row(ev["alias"], ev["query"], ev["ids"], ev["negative_ids"], ev["signal"], ev["weight"], ev["ts"],
                ev["ts_epoch"], str(rec.id))


def read_rows(store_or_client: Any, alias: str | None = None, *,
              collection: str = FEEDBACK_COLLECTION) -> tuple[list[_Row], int]:
    """Every stored event (of one alias, or all), oldest first, by scroll only.

    Returns:
        ``(rows, malformed)``: the events, and how many stored points were not valid events.
    """
    store = as_store(store_or_client)
    if not store.collection_exists(collection):
        return [], 0
    rows, bad = [], 0
    for rec in scroll_filtered(store, collection, _alias_filter(alias)):
        row = _row_from_record(rec)
        if row is None:
            bad += 1
        else:
            rows.append(row)
    rows.sort(key=lambda r: (r.ts_epoch, r.point_id))
    return rows, bad


# --------------------------------------------------------------------------- import / export / stats
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
                    pending.append(_event_from_row(obj, alias or (None if obj.get("alias") else default_alias)))
                except BadFeedback as e:
                    skip(n, e.reason, str(e))
                    continue
                if len(pending) >= batch:
                    _write(store, collection, pending, batch)
                    res.imported += len(pending)
                    pending.clear()
    except (OSError, EOFError) as e:  # a truncated .gz or an unreadable file: keep what was read
        skip(res.rows + 1, "unreadable", f"file unreadable from here on ({e})")
    if pending:
        _write(store, collection, pending, batch)
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


def export_rows(rows: Sequence[_Row], f: IO[str]) -> int:
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


def no_feedback_message(alias: str, collection: str = FEEDBACK_COLLECTION) -> str:
    return (f"no feedback logged for alias '{alias}' (collection '{collection}'): record some from the app with "
            f"vectune.qdrant.feedback.log(client, '{alias}', query, ids, signal='click') or import a file with "
            f"`vectune feedback import FILE.jsonl --alias {alias}`")


# --------------------------------------------------------------------------- the cycle's view
@dataclass
class FeedbackSplit:
    """Feedback turned into evidence and training data for one cycle.

    Attributes:
        enough: True when there is enough feedback for both a golden set and training pairs.
        message: one human sentence for the report and the log (why it falls back, or what it found).
        golden: the newest queries, with the keys (string point ids) that answer them.
        train: the older queries (when not ``enough``: every usable query, as there is no golden set).
        negatives: explicit hard negatives of training queries, ``{query text: [keys]}``, strongest veto first.
        counts: rows, malformed, queries, usable, golden, train, negatives, negative_queries, dropped_missing
            (distinct ids whose points are gone), dropped_refs, without_positive, conflicts,
            window {first, last}, golden_since.
    """

    enough: bool
    message: str
    golden: list[LabeledQuery] = field(default_factory=list)
    train: list[LabeledQuery] = field(default_factory=list)
    negatives: dict[str, list[str]] = field(default_factory=dict)
    counts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """For the run report."""
        return {"enough": self.enough, "message": self.message, **self.counts}

    def train_queries(self, max_per_query: int = 1, source: str = "feedback") -> list:
        """Training pairs as :class:`~vectune.pipeline.pairs.teachers.base.Query` objects (one per positive, up to a cap)."""
        from vectune.pipeline.pairs.teachers.base import Query

        return [Query(q.text, k, source) for q in self.train for k in sorted(q.relevant)[:max_per_query]]

    def relevant(self) -> dict[str, set[str]]:
        """Every known answer of each training query (never mined as a negative)."""
        return {q.text: set(q.relevant) for q in self.train}


@dataclass
class _Group:
    text: str = ""
    text_ts: tuple = ()
    last: float = -math.inf
    last_iso: str = ""
    score: dict = field(default_factory=lambda: defaultdict(float))


def read_for_cycle(store: Any, alias: str, live_collection: str, *, golden_fraction: float = 0.3,
                   min_golden: int = 20, min_train: int = 20, seed: int = 42,
                   collection: str = FEEDBACK_COLLECTION) -> FeedbackSplit:
    """Read an alias's feedback and split it by time into a golden set and training pairs.

    Reads only by scroll. Queries are merged on :func:`normalize_query`; per (query, id) the weights of
    positive events add and those of negative events subtract: a net positive id is an answer, a net negative
    one an explicit hard negative, a tie is dropped (``conflicts``). Ids are resolved against
    ``live_collection``; ids whose points are gone are dropped (``dropped_missing``). Queries with an answer
    are ordered by their newest event: the newest ``golden_fraction`` (at least ``min_golden``) are the golden
    set, the rest train — a query is on one side only. Equal times are ordered by a seeded hash.

    Args:
        store: a vectune Store (or a ``QdrantClient``).
        alias: the alias.
        live_collection: the collection the alias points at now.
        golden_fraction: newest share for the golden set (0 ≤ f < 1; 0 = training only).
        min_golden: fewest golden queries worth deciding on.
        min_train: fewest training queries worth training on.
        seed: orders events with equal times.
        collection: the feedback collection.

    Returns:
        The split; ``enough`` is False (and ``message`` says why) when there is too little feedback.
    """
    if not 0 <= golden_fraction < 1:
        raise BadInput(f"golden_fraction must be in [0, 1), got {golden_fraction}")
    store = as_store(store)
    rows, malformed = read_rows(store, alias, collection=collection)
    groups: dict[str, _Group] = {}
    for r in rows:
        g = groups.setdefault(normalize_query(r.query), _Group())
        if (r.ts_epoch, r.point_id) > (g.text_ts or (-math.inf, "")):
            g.text, g.text_ts = r.query, (r.ts_epoch, r.point_id)  # the newest wording stands for the group
        if r.ts_epoch > g.last:
            g.last, g.last_iso = r.ts_epoch, r.ts
        sign = 1.0 if r.signal in POSITIVE_SIGNALS else -1.0
        for i in r.ids:
            g.score[str(point_id_for(i))] += sign * r.weight
        for i in r.negative_ids:
            g.score[str(point_id_for(i))] -= r.weight

    keys = {k for g in groups.values() for k in g.score}
    present = existing_ids(store, live_collection, keys) if keys else set()
    counts: dict[str, Any] = {
        "rows": len(rows), "malformed": malformed, "queries": len(groups), "usable": 0, "golden": 0, "train": 0,
        "negatives": 0, "negative_queries": 0, "dropped_missing": len(keys - present), "dropped_refs": 0,
        "without_positive": 0, "conflicts": 0,
        "window": {"first": rows[0].ts if rows else None, "last": rows[-1].ts if rows else None},
        "golden_since": None,
    }
    usable: list[tuple[tuple, str, set[str], list[str], str]] = []  # (order, text, answers, negatives, ts)
    for norm, g in groups.items():
        pos, neg = set(), []
        for k, s in g.score.items():
            if k not in present:
                counts["dropped_refs"] += 1
            elif s > 0:
                pos.add(k)
            elif s < 0:
                neg.append(k)
            else:
                counts["conflicts"] += 1
        if not pos:
            counts["without_positive"] += 1
            continue
        tie = hashlib.sha256(f"{seed}\x1f{norm}".encode("utf-8", "surrogatepass")).hexdigest()
        neg.sort(key=lambda k: (g.score[k], k))  # the strongest veto first
        usable.append(((g.last, tie), g.text, pos, neg, g.last_iso))
    usable.sort(key=lambda u: u[0])
    n = len(usable)
    counts["usable"] = n
    n_golden = max(min_golden, int(round(golden_fraction * n))) if golden_fraction > 0 else 0
    enough = n_golden <= n and n - n_golden >= max(1, min_train) and (golden_fraction == 0 or n_golden >= 1)
    if not enough:
        train_part, golden_part = usable, []
    else:
        train_part, golden_part = usable[:n - n_golden], usable[n - n_golden:]
    golden = [LabeledQuery(text, pos) for _, text, pos, _, _ in golden_part]
    train = [LabeledQuery(text, pos) for _, text, pos, _, _ in train_part]
    negatives = {text: neg for _, text, _, neg, _ in train_part if neg}
    counts.update(golden=len(golden), train=len(train), negatives=sum(len(v) for v in negatives.values()),
                  negative_queries=len(negatives), golden_since=golden_part[0][4] if golden_part else None)
    gone = f"; {counts['dropped_missing']} ids no longer in '{live_collection}' dropped" \
        if counts["dropped_missing"] else ""
    if not rows:
        message = no_feedback_message(alias, collection) + ": falling back to the configured teacher"
    elif not enough:
        need = (f"at least {min_golden} golden (newest {golden_fraction:.0%}) + {max(1, min_train)} training "
                "queries" if golden_fraction > 0 else f"at least {max(1, min_train)} training queries")
        message = (f"too little feedback for alias '{alias}': {n} usable queries from {len(rows)} rows{gone}; "
                   f"need {need}: falling back to the configured teacher")
    else:
        message = (f"feedback for alias '{alias}': {len(rows)} rows, {n} usable queries -> {len(golden)} golden "
                   f"(newest, since {counts['golden_since']}), {len(train)} training, {counts['negatives']} "
                   f"explicit negatives{gone}")
    logger.info("%s", message)
    return FeedbackSplit(enough, message, golden, train, negatives, counts)


def few_shot_examples(split: FeedbackSplit, n: int = 5, seed: int = 42, max_chars: int = 300) -> list[str]:
    """A few real queries from the training side (never the golden side) to show the teacher how users ask.

    Args:
        split: from :func:`read_for_cycle`.
        n: how many.
        seed: which ones (seeded sample).
        max_chars: longer queries are not shown.

    Returns:
        Up to ``n`` query texts, in a stable order (part of the teacher's cache key).
    """
    golden = {normalize_query(q.text) for q in split.golden}
    pool = sorted({q.text for q in split.train if len(q.text) <= max_chars and normalize_query(q.text) not in golden})
    if len(pool) <= n:
        return pool
    return sorted(random.Random(seed).sample(pool, n))


def few_shot_fingerprint(examples: Sequence[str]) -> str:
    """A short hash of the few-shot examples, for the teacher's cache key."""
    return hashlib.sha256(json.dumps(list(examples), ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- negatives into training
def negative_texts(store: Any, live_collection: str, split: FeedbackSplit, text_field: str) -> dict[str, list[str]]:
    """The passages of the split's explicit negatives, ``{query text: [passage texts]}``."""
    from vectune.pipeline.pairs.negatives import texts_from_records

    store = as_store(store)
    keys = sorted({k for ks in split.negatives.values() for k in ks})
    texts: dict[str, str] = {}
    for i in range(0, len(keys), 256):
        texts.update(texts_from_records(store.retrieve(live_collection, [point_id_for(k) for k in keys[i:i + 256]]),
                                        text_field))
    return {q: [texts[k] for k in ks if k in texts] for q, ks in split.negatives.items()}


def merge_negatives(examples: Sequence[Any], explicit: Mapping[str, Sequence[str]],
                    num_negatives: int) -> tuple[list[Any], int]:
    """Put users' explicit negatives first in each example's hard negatives (mined ones fill the rest).

    The number of negatives per example stays ``num_negatives`` (MNRL needs fixed columns); with 0 the
    examples are returned unchanged.

    Args:
        examples: :class:`~vectune.pipeline.pairs.negatives.Example` objects (``anchor``, ``positive``, ``negatives``).
        explicit: ``{query text: [negative passage texts]}`` (from :func:`negative_texts`).
        num_negatives: hard negatives per example.

    Returns:
        ``(examples, applied)``: new examples and how many explicit negatives went in.
    """
    from dataclasses import replace

    if num_negatives <= 0 or not explicit:
        return list(examples), 0
    out, applied = [], 0
    for ex in examples:
        mine_ = [t for t in explicit.get(ex.anchor, ()) if t != ex.positive]
        if not mine_:
            out.append(ex)
            continue
        taken = list(dict.fromkeys(mine_))[:num_negatives]
        rest = [t for t in ex.negatives if t not in taken]
        applied += len(taken)
        out.append(replace(ex, negatives=(taken + rest)[:num_negatives]))
    return out, applied
