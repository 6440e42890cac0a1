"""Fresh feedback: queries whose every event came after a promotion's cutoff, answers resolved as the cycle does."""

from __future__ import annotations

import math

from tests.helpers.feedback import key, make_live, ts
from vectune.apps.feedback import log_many
from vectune.pipeline.pairs.fresh import epoch, fresh_labels


def test_epoch_reads_iso_times_and_treats_none_as_the_beginning():
    assert epoch(ts(0)) == epoch("2025-01-01T00:00:00Z") == epoch("2025-01-01T00:00:00")
    assert epoch(None) == -math.inf and epoch("not a time") == -math.inf


def test_only_queries_after_the_cutoff_and_never_asked_before_are_fresh(store):
    make_live(store)
    log_many(store, [
        {"alias": "docs", "query": "seen before", "ids": ["doc-1"], "ts": ts(1)},
        {"alias": "docs", "query": "Seen before?", "ids": ["doc-2"], "ts": ts(20)},   # asked again: not fresh
        {"alias": "docs", "query": "new one", "ids": ["doc-3"], "ts": ts(11)},
        {"alias": "docs", "query": "new one", "ids": ["doc-3"], "signal": "thumbs_down", "ts": ts(12)},  # net 0
        {"alias": "docs", "query": "new two", "ids": ["doc-4", "gone-doc"], "negative_ids": ["doc-5"], "ts": ts(13)},
        {"alias": "docs", "query": "new three", "ids": ["doc-6"], "ts": ts(14)},
        {"alias": "docs", "query": "at the cutoff", "ids": ["doc-7"], "ts": ts(10)},  # not after it
        {"alias": "other", "query": "another alias", "ids": ["doc-8"], "ts": ts(15)},
    ])
    fresh = fresh_labels(store, "docs", "live", ts(10))
    assert [q.text for q in fresh.queries] == ["new two", "new three"]  # oldest first
    assert fresh.queries[0].relevant == {key("doc-4")}  # the missing id is dropped, the skipped one is no answer
    c = fresh.counts
    assert c["repeated"] == 1 and c["without_positive"] == 1 and c["dropped_missing"] == 1
    assert c["queries"] == 3 and c["usable"] == 2 and c["fresh_rows"] == 4
    assert c["window"]["first"].startswith("2025-01-01T00:11") and c["window"]["last"].startswith("2025-01-01T00:14")
    # no cutoff: everything is fresh
    assert len(fresh_labels(store, "docs", "live", None).queries) == 4
