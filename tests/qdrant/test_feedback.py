"""Feedback events as stored (vectune.qdrant.feedback): what is not an event.

Real embedded Qdrant (in memory), no mocks.
"""

from __future__ import annotations

import pytest

from tests.helpers.feedback import ts
from vectune.apps.feedback import FEEDBACK_COLLECTION, log
from vectune.config.settings import Settings
from vectune.qdrant.feedback import read_rows
from vectune.qdrant.store import Store


@pytest.fixture
def store():
    s = Store.open(Settings(qdrant_path=":memory:"))
    yield s
    s.close()


def test_stored_points_that_are_not_events_are_counted_not_fatal(store):
    from qdrant_client import models

    log(store, "docs", "good", ["a"], ts=ts(0))
    store.upsert(FEEDBACK_COLLECTION, [models.PointStruct(id=1, vector={}, payload={"alias": "docs", "query": 5})])
    rows, bad = read_rows(store, "docs")
    assert len(rows) == 1 and bad == 1
