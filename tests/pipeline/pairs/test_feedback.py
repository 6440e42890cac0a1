"""Feedback as a cycle's labels (vectune.pipeline.pairs.feedback): the time split, negatives, few-shot.

Real embedded Qdrant (in memory), no mocks.
"""

from __future__ import annotations

import pytest

from tests.helpers.feedback import key, log_queries, make_live, ts
from vectune.apps.feedback import FEEDBACK_COLLECTION, log, log_many
from vectune.errors import BadInput
from vectune.ops.feedback import stats
from vectune.pipeline.pairs.feedback import (
    few_shot_examples,
    few_shot_fingerprint,
    merge_negatives,
    negative_texts,
    read_for_cycle,
)
from vectune.qdrant.feedback import normalize_query
from vectune.qdrant.store import point_id_for


def test_time_split_is_newest_golden_disjoint_and_deterministic(memory_store):
    make_live(memory_store, 60)
    texts = log_queries(memory_store, 50)
    # the same query again, newer and with different case/spacing: one query, on one side only
    log(memory_store, "docs", "USER  question number 3?", ["doc-40"], signal="cite", ts=ts(1000))
    split = read_for_cycle(memory_store, "docs", "live", golden_fraction=0.3, min_golden=5, min_train=5, seed=1)
    assert split.enough, split.message
    assert split.counts["rows"] == 51 and split.counts["queries"] == 50 and split.counts["usable"] == 50
    assert len(split.golden) == 15 and len(split.train) == 35
    golden = {normalize_query(q.text) for q in split.golden}
    train = {normalize_query(q.text) for q in split.train}
    assert not golden & train
    # newest 14 plain queries + the re-asked one (its newest event is the latest of all)
    assert golden == {normalize_query(t) for t in texts[36:]} | {"user question number 3"}
    q3 = next(q for q in split.golden if normalize_query(q.text) == "user question number 3")
    assert q3.text == "USER  question number 3?" and q3.relevant == {key("doc-3"), key("doc-40")}  # ids united
    assert split.counts["golden_since"].startswith("2025-01-01T00:36")
    assert split.counts["window"]["last"].startswith("2025-01-01T16:40")
    again = read_for_cycle(memory_store, "docs", "live", golden_fraction=0.3, min_golden=5, min_train=5, seed=1)
    assert [(q.text, q.relevant) for q in again.golden] == [(q.text, q.relevant) for q in split.golden]
    assert [(q.text, q.relevant) for q in again.train] == [(q.text, q.relevant) for q in split.train]
    queries = split.train_queries()
    assert len(queries) == 35 and {q.source for q in queries} == {"feedback"}
    assert all(q.chunk_id in split.relevant()[q.text] for q in queries)


def test_equal_times_split_by_a_seeded_order(memory_store):
    make_live(memory_store, 60)
    log_many(memory_store, [{"alias": "docs", "query": f"same time {i}", "ids": [f"doc-{i}"], "ts": ts(0)}
                        for i in range(40)])
    a = read_for_cycle(memory_store, "docs", "live", min_golden=5, min_train=5, seed=1)
    b = read_for_cycle(memory_store, "docs", "live", min_golden=5, min_train=5, seed=1)
    c = read_for_cycle(memory_store, "docs", "live", min_golden=5, min_train=5, seed=2)
    gold = lambda s: sorted(q.text for q in s.golden)  # noqa: E731
    assert len(a.golden) == 12 and gold(a) == gold(b) and gold(a) != gold(c)
    assert not set(gold(c)) & {q.text for q in c.train}


def test_min_golden_raises_the_golden_share(memory_store):
    make_live(memory_store, 60)
    log_queries(memory_store, 40)
    split = read_for_cycle(memory_store, "docs", "live", golden_fraction=0.1, min_golden=15, min_train=5)
    assert split.enough and len(split.golden) == 15 and len(split.train) == 25


def test_deleted_points_are_dropped_and_counted(memory_store):
    make_live(memory_store, 60)
    log_queries(memory_store, 40)  # queries i point at doc-(i % 50)
    log(memory_store, "docs", "only gone answers", ["doc-55"], ts=ts(1))
    log(memory_store, "docs", "points at nothing known", ["never-indexed"], ts=ts(2))
    memory_store.delete_points("live", [point_id_for(d) for d in ("doc-3", "doc-4", "doc-55")])
    split = read_for_cycle(memory_store, "docs", "live", min_golden=5, min_train=5)
    c = split.counts
    assert c["dropped_missing"] == 4  # doc-3, doc-4, doc-55 deleted; never-indexed never there
    assert c["without_positive"] == 4 and c["usable"] == 38 and c["queries"] == 42
    gone = {key(d) for d in ("doc-3", "doc-4", "doc-55", "never-indexed")}
    assert not any(q.relevant & gone for q in split.golden + split.train)
    assert "4 ids no longer in 'live' dropped" in split.message


def test_negative_feedback_becomes_explicit_hard_negatives(memory_store):
    from vectune.pipeline.pairs.negatives import Example

    make_live(memory_store, 60)
    log_queries(memory_store, 30, start=100)  # newest: the golden side
    old = "how does topic one work"
    log(memory_store, "docs", old, ["doc-1"], ts=ts(0), negative_ids=["doc-2"])  # shown and passed over
    log(memory_store, "docs", old, ["doc-5"], signal="thumbs_down", ts=ts(1))
    log(memory_store, "docs", old, ["doc-6"], signal="skip", ts=ts(2))
    log(memory_store, "docs", "conflicted", ["doc-7"], ts=ts(3))
    log(memory_store, "docs", "conflicted", ["doc-8"], ts=ts(3))
    log(memory_store, "docs", "conflicted", ["doc-7"], signal="thumbs_down", ts=ts(4))  # cancels the click: neither
    log(memory_store, "docs", "only negative", ["doc-9"], signal="thumbs_down", ts=ts(5))
    split = read_for_cycle(memory_store, "docs", "live", golden_fraction=0.3, min_golden=5, min_train=5)
    assert split.enough
    assert sorted(split.negatives[old]) == sorted([key("doc-2"), key("doc-5"), key("doc-6")])
    trained = {q.text: q.relevant for q in split.train}
    assert trained[old] == {key("doc-1")} and trained["conflicted"] == {key("doc-8")}
    assert "conflicted" not in split.negatives
    assert split.counts["negatives"] == 3 and split.counts["negative_queries"] == 1
    assert split.counts["conflicts"] == 1 and split.counts["without_positive"] == 1

    log(memory_store, "docs", old, ["doc-6"], signal="thumbs_down", weight=3, ts=ts(6))  # now the strongest veto
    split = read_for_cycle(memory_store, "docs", "live", golden_fraction=0.3, min_golden=5, min_train=5)
    assert split.negatives[old][0] == key("doc-6")
    texts = negative_texts(memory_store, "live", split, "text")
    assert texts[old][0] == "passage number 6 about topic 6"
    assert sorted(texts[old]) == ["passage number 2 about topic 2", "passage number 5 about topic 5",
                                  "passage number 6 about topic 6"]
    mined = [Example(old, "passage number 1 about topic 1", ["mined a", "mined b"], "feedback"),
             Example("other", "p", ["mined c", "mined d"], "offline:title")]
    merged, applied = merge_negatives(mined, texts, num_negatives=2)
    assert applied == 2
    assert merged[0].negatives == texts[old][:2]
    assert merged[1].negatives == ["mined c", "mined d"] and mined[0].negatives == ["mined a", "mined b"]
    assert merge_negatives(mined, texts, num_negatives=0) == (mined, 0)


def test_too_little_feedback_falls_back_with_a_message(memory_store):
    make_live(memory_store, 60)
    log_queries(memory_store, 12)
    split = read_for_cycle(memory_store, "docs", "live", golden_fraction=0.3, min_golden=20, min_train=20)
    assert not split.enough and split.golden == []
    assert "too little feedback for alias 'docs': 12 usable queries from 12 rows" in split.message
    assert "need at least 20 golden" in split.message and "falling back to the configured teacher" in split.message
    assert len(split.train) == 12  # still usable as few-shot examples: there is no golden side
    assert split.to_dict()["enough"] is False and split.to_dict()["usable"] == 12

    empty = read_for_cycle(memory_store, "nobody", "live")
    assert not empty.enough and empty.counts["rows"] == 0
    assert "no feedback logged for alias 'nobody'" in empty.message and "falling back" in empty.message


def test_reading_never_writes(memory_store):
    make_live(memory_store, 5)
    read_for_cycle(memory_store, "docs", "live")
    stats(memory_store, "docs")
    assert not memory_store.collection_exists(FEEDBACK_COLLECTION)


def test_bad_golden_fraction(memory_store):
    with pytest.raises(BadInput, match="golden_fraction"):
        read_for_cycle(memory_store, "docs", "live", golden_fraction=1.0)


def test_training_only_mode_keeps_every_query_for_training(memory_store):
    make_live(memory_store, 60)
    log_queries(memory_store, 30)
    split = read_for_cycle(memory_store, "docs", "live", golden_fraction=0, min_golden=0, min_train=5)
    assert split.enough and split.golden == [] and len(split.train) == 30


def test_few_shot_examples_come_from_the_training_side_only(memory_store):
    make_live(memory_store, 60)
    log_queries(memory_store, 40)
    split = read_for_cycle(memory_store, "docs", "live", min_golden=5, min_train=5)
    ex = few_shot_examples(split, n=5, seed=3)
    assert len(ex) == 5 and ex == few_shot_examples(split, n=5, seed=3)
    assert set(ex) <= {q.text for q in split.train} and not set(ex) & {q.text for q in split.golden}
    assert few_shot_examples(split, n=5, seed=4) != ex
    assert few_shot_fingerprint(ex) == few_shot_fingerprint(list(ex))
    assert few_shot_fingerprint(ex) != few_shot_fingerprint(few_shot_examples(split, n=5, seed=4))


def test_cross_fitted_labels_are_every_usable_query_oldest_first_with_their_events(store):
    from vectune.config.sections import LabelsConfig
    from vectune.pipeline.pairs.feedback import labels_from_feedback

    make_live(store, 60)
    log_queries(store, 30)
    log(store, "docs", "user question number 3", ["doc-41"], signal="cite", ts=ts(1000))  # asked again, newest
    fb, counts = labels_from_feedback(store, "docs", "live", LabelsConfig(), seed=1, crossfit=True)
    assert fb.enough and fb.golden == [] and len(fb.train) == 30 and counts["golden"] == 0
    assert "cross-fitted in 5 folds blocked by time" in fb.message
    assert [q.ts for q in fb.train] == sorted(q.ts for q in fb.train)  # oldest first: the folds are stretches
    q3 = fb.train[-1]
    assert normalize_query(q3.text) == "user question number 3" and len(q3.events) == 2
    assert len({e for q in fb.train for e in q.events}) == 31  # every event, each with its query

    few, _ = labels_from_feedback(store, "docs", "live", LabelsConfig(folds=20), crossfit=True)
    assert few is not None and not few.enough  # 30 usable < 2 per fold x 20
    assert "cross-fitting in 20 folds needs at least 40" in few.message and "falling back" in few.message


def test_provenance_records_what_a_model_used_and_fresh_rows_leave_it_out(store):
    from vectune.config.sections import LabelsConfig
    from vectune.pipeline.pairs.feedback import labels_from_feedback
    from vectune.pipeline.pairs.provenance import LISTS, fresh_rows, provenance, summary
    from vectune.qdrant.feedback import read_rows

    make_live(store, 60)
    log_queries(store, 25)
    fb, _ = labels_from_feedback(store, "docs", "live", LabelsConfig(), crossfit=True)
    rec = provenance(fb.train, source="feedback", evidence="cross-fitted", split={"folds": 5})
    assert rec["queries"] == 25 and rec["events"] == 25 and len(rec["event_ids"]) == 25
    assert rec["last_ts"] == max(q.ts for q in fb.train) and rec["last_epoch"] > 0
    assert set(summary(rec)) == set(rec) - set(LISTS) and summary(None) is None
    log(store, "docs", "a question nobody asked before", ["doc-50"], ts=ts(5000))
    log(store, "docs", "User question number 4?", ["doc-4"], ts=ts(5001))  # a label asked again: not fresh
    rows, _ = read_rows(store, "docs")
    fresh = fresh_rows(rows, rec)
    assert [r.query for r in fresh] == ["a question nobody asked before"]
    assert len(fresh_rows(rows, None)) == 27
