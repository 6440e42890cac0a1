"""Feedback events as stored (vectune.qdrant.feedback): what is not an event.

Real embedded Qdrant (in memory), no mocks.
"""

from __future__ import annotations

from tests.helpers.feedback import ts
from vectune.apps.feedback import FEEDBACK_COLLECTION, log
from vectune.qdrant.feedback import read_rows


def test_stored_points_that_are_not_events_are_counted_not_fatal(memory_store):
    from qdrant_client import models

    log(memory_store, "docs", "good", ["a"], ts=ts(0))
    not_an_event = models.PointStruct(id=1, vector={}, payload={"alias": "docs", "query": 5})
    memory_store.upsert(FEEDBACK_COLLECTION, [not_an_event])
    rows, bad = read_rows(memory_store, "docs")
    assert len(rows) == 1 and bad == 1
