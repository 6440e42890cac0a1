"""Feedback events as stored (vectune.qdrant.feedback): the event model, its reason codes, what is not an event.

Real embedded Qdrant (in memory), no mocks.
"""

from __future__ import annotations

from typing import get_args

import pytest

from tests.helpers.feedback import ts
from vectune.apps.feedback import FEEDBACK_COLLECTION, log
from vectune.qdrant.feedback import REASONS, SIGNALS, BadFeedback, FeedbackEvent, make_event, read_rows


def test_stored_points_that_are_not_events_are_counted_not_fatal(memory_store):
    from qdrant_client import models

    log(memory_store, "docs", "good", ["a"], ts=ts(0))
    not_an_event = models.PointStruct(id=1, vector={}, payload={"alias": "docs", "query": 5})
    memory_store.upsert(FEEDBACK_COLLECTION, [not_an_event])
    rows, bad = read_rows(memory_store, "docs")
    assert len(rows) == 1 and bad == 1


# --------------------------------------------------------------------------- the event model
@pytest.mark.parametrize("kwargs, reason, words", [
    ({"alias": "  "}, "no_alias", "alias"),
    ({"alias": None}, "no_alias", "alias"),
    ({"query": 5}, "no_query", "non-empty query"),
    ({"query": " " + "x" * 4001}, "query_too_long", "not a whole prompt"),
    ({"signal": None}, "unknown_signal", "unknown signal None"),
    ({"relevant_ids": {"a": 1}}, "bad_ids", "relevant_ids"),
    ({"relevant_ids": ["a", -1]}, "bad_ids", "-1 is not an id"),
    ({"relevant_ids": ["a", "  "]}, "bad_ids", "relevant_ids"),
    ({"relevant_ids": None}, "no_ids", "at least one id"),
    ({"relevant_ids": [f"d{i}" for i in range(1001)]}, "too_many_ids", "1001 ids"),
    ({"negative_ids": [1.5]}, "bad_ids", "negative_ids: 1.5"),
    ({"negative_ids": list(range(1001))}, "too_many_ids", "negative_ids"),
    ({"weight": "1"}, "bad_weight", "weight"),
    ({"weight": True}, "bad_weight", "weight"),
    ({"weight": float("inf")}, "bad_weight", "weight"),
    ({"ts": 1735700000000}, "bad_ts", "ts"),  # milliseconds are not taken for seconds
    ({"ts": float("nan")}, "bad_ts", "ts"),
    ({"ts": [1]}, "bad_ts", "ts"),
    # several fields bad: the first in field order names the reason
    ({"query": "", "relevant_ids": [], "weight": 0}, "no_query", "query"),
    ({"signal": "love", "ts": "tomorrow"}, "unknown_signal", "love"),
])
def test_every_reason_code(kwargs, reason, words):
    args = {"alias": "docs", "query": "q", "relevant_ids": ["a"], **kwargs}
    with pytest.raises(BadFeedback, match=words) as e:
        make_event(args.pop("alias"), args.pop("query"), args.pop("relevant_ids"), **args)
    assert e.value.reason == reason


def test_point_ids_are_stable_across_versions():
    """The point id is the event's identity: a re-import must land on the points earlier versions wrote."""
    pid, payload = make_event("docs", " How do I rotate keys? ", ["doc-1", 7, "doc-1"], signal="cite", weight=2,
                              ts="2025-01-01T01:00:00+01:00", negative_ids=["doc-9", 7])
    assert pid == "d85fed87-a982-5674-a304-035daa794b03"  # as the hand-validated make_event made it
    assert payload == {"alias": "docs", "query": "How do I rotate keys?", "ids": ["doc-1", "7"],
                       "negative_ids": ["doc-9"], "signal": "cite", "polarity": "positive", "weight": 2.0,
                       "ts": "2025-01-01T00:00:00.000000+00:00", "ts_epoch": 1735689600.0, "v": 1}
    pid, payload = make_event("docs", "q", "x", ts=1735700000.123457)  # epoch seconds, rounded as before
    assert pid == "2e6f2455-db2a-5389-b22b-0e8d549b1f5d"
    assert payload["ts"] == "2025-01-01T02:53:20.123457+00:00" and payload["negative_ids"] == []


def test_signals_match_the_model():
    assert get_args(FeedbackEvent.model_fields["signal"].annotation) == SIGNALS
    assert {r for r, _ in REASONS.values()} == {"no_alias", "no_query", "query_too_long", "unknown_signal", "bad_ids",
                                                  "no_ids", "too_many_ids", "bad_weight", "bad_ts"}
