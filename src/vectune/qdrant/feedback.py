"""Feedback events as Qdrant stores them: the schema, validation, writes and reads.

An app's feedback (:mod:`vectune.apps.feedback`: ``log``/``log_many``) lives in one small
payload-only collection on the same Qdrant (``vectune_feedback``, one per server, the alias in
each payload). Ids are the external ids given at ``vectune index`` time (or Qdrant point ids):
both map to the same point through :func:`vectune.qdrant.store.point_id_for`.

Signals: ``click``, ``cite``, ``thumbs_up`` are positive (the ids answer the query);
``thumbs_down`` and ``skip`` (shown but skipped) are negative (the ids do not).
``negative_ids`` adds ids that were shown and passed over to any event. Each point's
id is a UUID5 of (alias, query, ids, signal, time), so importing the same events
twice writes them once. Reads only ever scroll (a second reader at the same time is fine).
Who reads them: the cycle (:mod:`vectune.pipeline.pairs.feedback`), the CLI's import, export and
stats (:mod:`vectune.ops.feedback`).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, StringConstraints, ValidationError
from pydantic_core import PydanticCustomError

from vectune.core.labels import QUERY_KEYS, RELEVANT_KEYS
from vectune.errors import BadInput, QdrantUnavailable
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


def _when(ts: Any) -> Any:
    """None is now; ISO 8601 strings and epoch seconds (a number or a numeric string) become datetimes."""
    if isinstance(ts, str):
        try:
            return datetime.fromisoformat(ts.strip())
        except ValueError:
            ts = float(ts)  # not a number either: this ValueError is the error
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        try:
            return datetime.fromtimestamp(ts, UTC)
        except (OverflowError, OSError) as exc:
            raise ValueError(str(exc)) from None
    return datetime.now(UTC) if ts is None else ts


def _unique(ids: list[str]) -> list[str]:
    if len(ids := list(dict.fromkeys(ids))) > MAX_IDS:
        raise PydanticCustomError("too_many_ids", "{n} ids in one event (at most {most})", {"n": len(ids),
                                                                                           "most": MAX_IDS})
    return ids


_Id = Annotated[Annotated[str, Field(strict=True)] | Annotated[int, Field(strict=True, ge=0)],
                AfterValidator(lambda v: str(v).strip()), Field(min_length=1)]
_Ids = Annotated[list[_Id], BeforeValidator(lambda v: [] if v is None else [v] if isinstance(v, (str, int)) else v),
                 AfterValidator(_unique)]
_NOT_IDS = "{name}: {input!r} is not an id (a string or a non-negative integer) or a list of them"
#: Reason code and message of a field that fails (``field`` or ``field.error_type``), checked in field order.
REASONS = {
    "alias": ("no_alias", "feedback needs a non-empty alias"),
    "query": ("no_query", "feedback needs a non-empty query string"),
    "query.string_too_long": ("query_too_long", f"query of more than {MAX_QUERY_CHARS} characters: log the user's "
                                                "query, not a whole prompt"),
    "signal": ("unknown_signal", f"unknown signal {{input!r}}: use one of {', '.join(SIGNALS)}"),
    "ids": ("bad_ids", _NOT_IDS),
    "ids.too_short": ("no_ids", "feedback needs at least one id in relevant_ids"),
    "ids.too_many_ids": ("too_many_ids", "{name}: {msg}"),
    "negative_ids": ("bad_ids", _NOT_IDS),
    "negative_ids.too_many_ids": ("too_many_ids", "{name}: {msg}"),
    "weight": ("bad_weight", "weight must be a positive finite number, got {input!r}"),
    "ts": ("bad_ts", "ts {input!r} is neither a datetime, an ISO 8601 time nor epoch seconds"),
}


class FeedbackEvent(BaseModel):
    """One feedback event as stored (``ids``: the relevant ids); build it with :meth:`check`."""

    alias: Annotated[str, Field(strict=True, pattern=r"\S")]
    query: Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1,
                                            max_length=MAX_QUERY_CHARS)]
    signal: Literal["click", "cite", "thumbs_up", "thumbs_down", "skip"] = "click"
    ids: Annotated[_Ids, Field(min_length=1)]
    negative_ids: _Ids = []
    weight: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] = 1.0
    ts: Annotated[datetime, BeforeValidator(_when), AfterValidator(lambda t: t.replace(tzinfo=t.tzinfo or UTC))]

    @classmethod
    def check(cls, **fields: Any) -> FeedbackEvent:
        """The event, or :class:`BadFeedback` with the reason (:data:`REASONS`) of the first field that fails."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
        field = str(err["loc"][0])  # an error inside a list (one bad id) counts for the field
        reason, message = REASONS.get(f"{field}.{err['type']}" if len(err["loc"]) == 1 else field) or REASONS[field]
        name = "relevant_ids" if field == "ids" else field
        raise BadFeedback(message.format(name=name, input=err["input"], msg=err["msg"]), reason) from None

    def point(self) -> tuple[str, dict]:
        """``(point_id, payload)``: the id is a UUID5 of the event, so the same event is written once."""
        neg, ts = [i for i in self.negative_ids if i not in self.ids], self.ts.astimezone(UTC)
        iso = ts.isoformat(timespec="microseconds")
        key = json.dumps([self.alias, self.query, sorted(self.ids), sorted(neg), self.signal, iso], ensure_ascii=False)
        return str(uuid.uuid5(_NS, key)), {
            "alias": self.alias, "query": self.query, "ids": self.ids, "negative_ids": neg, "signal": self.signal,
            "polarity": "positive" if self.signal in POSITIVE_SIGNALS else "negative", "weight": self.weight,
            "ts": iso, "ts_epoch": ts.timestamp(), "v": _PAYLOAD_VERSION,
        }


def make_event(alias: Any, query: Any, relevant_ids: Any, *, signal: Any = "click", weight: Any = 1.0,
               ts: Any = None, negative_ids: Any = ()) -> tuple[str, dict]:
    """``(point_id, payload)`` of one event (see :class:`FeedbackEvent`); ``ts``: datetime, ISO string or epoch seconds
    (default now, UTC); ``negative_ids``: shown and passed over. Raises :class:`BadFeedback`."""
    return FeedbackEvent.check(alias=alias, query=query, ids=relevant_ids, signal=signal, weight=weight, ts=ts,
                       negative_ids=negative_ids).point()


def write_events(store: Store, collection: str, events: Sequence[tuple[str, dict]], batch: int = 256) -> None:
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


def event_from_row(row: Mapping, alias: str | None = None) -> tuple[str, dict]:
    """Build an event from a dict (``log_many`` rows, JSONL lines)."""
    query = next((row.get(k) for k in QUERY_KEYS if row.get(k) is not None), None)
    ids = next((row.get(k) for k in RELEVANT_KEYS if row.get(k) is not None), None)
    return make_event(alias or row.get("alias"), query, ids, signal=row.get("signal", "click"),
                      weight=row.get("weight", 1.0), ts=row.get("ts"), negative_ids=row.get("negative_ids") or ())



@dataclass
class Row:
    alias: str
    query: str
    ids: list[str]
    negative_ids: list[str]
    signal: str
    weight: float
    ts: str
    ts_epoch: float
    point_id: str

    def votes(self) -> list[tuple[str, float]]:
        """``(point key, vote)`` for each id the event names: ``+weight`` for a relevant id of a positive signal,
        ``-weight`` for one of a negative signal and for every explicit negative id. A query's answers are the
        ids whose votes add up above 0."""
        sign = 1.0 if self.signal in POSITIVE_SIGNALS else -1.0
        return ([(str(point_id_for(i)), sign * self.weight) for i in self.ids]
                + [(str(point_id_for(i)), -self.weight) for i in self.negative_ids])

    def to_json(self) -> dict:
        return {"alias": self.alias, "query": self.query, "ids": self.ids, "negative_ids": self.negative_ids,
                "signal": self.signal, "weight": self.weight, "ts": self.ts}


def row_from_record(rec: Any) -> Row | None:
    """A stored event, or None when its payload is not one (written by hand or by something else)."""
    p = rec.payload or {}
    try:
        pid, ev = make_event(p.get("alias"), p.get("query"), p.get("ids"), signal=p.get("signal"),
                             weight=p.get("weight", 1.0), ts=p.get("ts") or p.get("ts_epoch"),
                             negative_ids=p.get("negative_ids") or ())
    except BadFeedback:
        return None
    return Row(ev["alias"], ev["query"], ev["ids"], ev["negative_ids"], ev["signal"], ev["weight"], ev["ts"],
                ev["ts_epoch"], str(rec.id))


def read_rows(store_or_client: Any, alias: str | None = None, *,
              collection: str = FEEDBACK_COLLECTION) -> tuple[list[Row], int]:
    """Every stored event (of one alias, or all), oldest first, by scroll only.

    Returns:
        ``(rows, malformed)``: the events, and how many stored points were not valid events.
    """
    store = as_store(store_or_client)
    if not store.collection_exists(collection):
        return [], 0
    rows, bad = [], 0
    for rec in scroll_filtered(store, collection, _alias_filter(alias)):
        row = row_from_record(rec)
        if row is None:
            bad += 1
        else:
            rows.append(row)
    rows.sort(key=lambda r: (r.ts_epoch, r.point_id))
    return rows, bad


# --------------------------------------------------------------------------- import / export / stats


def no_feedback_message(alias: str, collection: str = FEEDBACK_COLLECTION) -> str:
    return (f"no feedback logged for alias '{alias}' (collection '{collection}'): record some from the app with "
            f"vectune.qdrant.feedback.log(client, '{alias}', query, ids, signal='click') or import a file with "
            f"`vectune feedback import FILE.jsonl --alias {alias}`")
