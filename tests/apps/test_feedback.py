"""The app's feedback API (vectune.apps.feedback): log, log_many, validation.

Real embedded Qdrant (in memory), no mocks.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.helpers.feedback import T0, ts
from vectune.apps.feedback import FEEDBACK_COLLECTION, log, log_many
from vectune.qdrant.feedback import BadFeedback, read_rows


# --------------------------------------------------------------------------- writing
def test_log_round_trip_with_the_apps_own_client_is_idempotent():
    from qdrant_client import QdrantClient

    client = QdrantClient(location=":memory:")
    pid = log(client, "docs", "  How do I rotate keys? ", ["doc-1", 7], signal="cite", weight=2.5, ts=ts(0))
    again = log(client, "docs", "How do I rotate keys?", ["doc-1", 7], signal="cite", weight=2.5, ts=ts(0))
    assert pid == again  # same event, same point: a retry or a re-import writes it once
    log(client, "docs", "How do I rotate keys?", ["doc-1"], signal="thumbs_down", ts=ts(1), negative_ids=["doc-9"])
    log(client, "other", "unrelated", ["x"])
    rows, bad = read_rows(client, "docs")
    assert bad == 0 and len(rows) == 2
    first = rows[0]
    assert first.query == "How do I rotate keys?" and first.ids == ["doc-1", "7"] and first.signal == "cite"
    assert first.weight == 2.5 and first.ts.startswith("2025-01-01T00:00:00")
    assert rows[1].signal == "thumbs_down" and rows[1].negative_ids == ["doc-9"]
    rec = client.retrieve(FEEDBACK_COLLECTION, [pid], with_payload=True)[0]
    assert rec.payload["alias"] == "docs" and rec.payload["polarity"] == "positive"
    assert rec.payload["ts_epoch"] == pytest.approx(T0.timestamp())
    assert len(read_rows(client, None)[0]) == 3  # every alias shares the one collection


def test_default_time_is_now_utc():
    from qdrant_client import QdrantClient

    client = QdrantClient(location=":memory:")
    before = datetime.now(UTC).timestamp()
    log(client, "docs", "q", ["a"])
    (row,), _ = read_rows(client, "docs")
    assert before - 1 <= row.ts_epoch <= datetime.now(UTC).timestamp() + 1
    assert row.ts.endswith("+00:00")


@pytest.mark.parametrize("kwargs, words", [
    ({"query": "   "}, "non-empty query"),
    ({"relevant_ids": []}, "at least one id"),
    ({"relevant_ids": [True]}, "not an id"),
    ({"signal": "like"}, "unknown signal 'like'"),
    ({"weight": 0}, "weight"),
    ({"weight": float("nan")}, "weight"),
    ({"ts": "yesterday"}, "ISO 8601"),
    ({"alias": ""}, "alias"),
])
def test_bad_events_are_refused_with_a_clear_value_error(memory_store, kwargs, words):
    args = {"alias": "docs", "query": "q", "relevant_ids": ["a"], **kwargs}
    with pytest.raises(ValueError, match=words) as e:
        log(memory_store, args.pop("alias"), args.pop("query"), args.pop("relevant_ids"), **args)
    assert isinstance(e.value, BadFeedback) and e.value.exit_code == 3
    assert not memory_store.collection_exists(FEEDBACK_COLLECTION)  # nothing written


def test_log_many_batches_and_writes_nothing_when_a_row_is_bad(memory_store):
    rows = [{"alias": "docs", "query": f"question {i}", "relevant_ids": [f"doc-{i % 9}"], "ts": ts(i)}
            for i in range(600)]
    assert log_many(memory_store, rows, batch=256) == 600
    assert memory_store.count(FEEDBACK_COLLECTION) == 600
    bad = [{"alias": "docs", "query": "new one", "ids": ["doc-1"]}, {"alias": "docs", "query": "", "ids": ["x"]}]
    with pytest.raises(BadFeedback, match="feedback row 1: .*query"):
        log_many(memory_store, bad)
    assert memory_store.count(FEEDBACK_COLLECTION) == 600
