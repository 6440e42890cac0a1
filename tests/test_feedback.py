"""Feedback logged in Qdrant: the app API, import/export/stats, and the cycle's time split.

Real embedded Qdrant (in memory, or the CLI's on-disk folder), no mocks.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone

import pytest

from types import SimpleNamespace

from vectune.apps import feedback as _apps_fb
from vectune.ops import feedback as _ops_fb
from vectune.pipeline.pairs import feedback as _cycle_fb
from vectune.qdrant import feedback as _store_fb

fb = SimpleNamespace(**{**vars(_store_fb), **vars(_cycle_fb), **vars(_ops_fb), **vars(_apps_fb)})  # TODO split
from vectune.qdrant.store import Store, point_id_for

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def ts(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


@pytest.fixture
def store():
    from vectune.config.settings import Settings

    s = Store.open(Settings(qdrant_path=":memory:"))
    yield s
    s.close()


def make_live(store: Store, n: int = 60, name: str = "live", alias: str | None = "docs") -> list[str]:
    """A small live collection: points doc-0..doc-{n-1} (external ids, as `vectune index` stores them)."""
    from qdrant_client import models

    store.create_collection(name, 4)
    ids = [f"doc-{i}" for i in range(n)]
    store.upsert(name, [models.PointStruct(id=point_id_for(d), vector=[1.0, float(i), 0.5, 0.0],
                                           payload={"doc_id": d, "text": f"passage number {i} about topic {i % 7}"})
                        for i, d in enumerate(ids)])
    if alias:
        store.swap_alias(alias, name)
    return ids


def key(doc: str) -> str:
    return str(point_id_for(doc))


# --------------------------------------------------------------------------- writing
def test_log_round_trip_with_the_apps_own_client_is_idempotent():
    from qdrant_client import QdrantClient

    client = QdrantClient(location=":memory:")
    pid = fb.log(client, "docs", "  How do I rotate keys? ", ["doc-1", 7], signal="cite", weight=2.5, ts=ts(0))
    again = fb.log(client, "docs", "How do I rotate keys?", ["doc-1", 7], signal="cite", weight=2.5, ts=ts(0))
    assert pid == again  # same event, same point: a retry or a re-import writes it once
    fb.log(client, "docs", "How do I rotate keys?", ["doc-1"], signal="thumbs_down", ts=ts(1), negative_ids=["doc-9"])
    fb.log(client, "other", "unrelated", ["x"])
    rows, bad = fb.read_rows(client, "docs")
    assert bad == 0 and len(rows) == 2
    first = rows[0]
    assert first.query == "How do I rotate keys?" and first.ids == ["doc-1", "7"] and first.signal == "cite"
    assert first.weight == 2.5 and first.ts.startswith("2025-01-01T00:00:00")
    assert rows[1].signal == "thumbs_down" and rows[1].negative_ids == ["doc-9"]
    rec = client.retrieve(fb.FEEDBACK_COLLECTION, [pid], with_payload=True)[0]
    assert rec.payload["alias"] == "docs" and rec.payload["polarity"] == "positive"
    assert rec.payload["ts_epoch"] == pytest.approx(T0.timestamp())
    assert len(fb.read_rows(client, None)[0]) == 3  # every alias shares the one collection


def test_default_time_is_now_utc():
    from qdrant_client import QdrantClient

    client = QdrantClient(location=":memory:")
    before = datetime.now(timezone.utc).timestamp()
    fb.log(client, "docs", "q", ["a"])
    (row,), _ = fb.read_rows(client, "docs")
    assert before - 1 <= row.ts_epoch <= datetime.now(timezone.utc).timestamp() + 1
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
def test_bad_events_are_refused_with_a_clear_value_error(store, kwargs, words):
    args = {"alias": "docs", "query": "q", "relevant_ids": ["a"], **kwargs}
    with pytest.raises(ValueError, match=words) as e:
        fb.log(store, args.pop("alias"), args.pop("query"), args.pop("relevant_ids"), **args)
    assert isinstance(e.value, fb.BadFeedback) and e.value.exit_code == 3
    assert not store.collection_exists(fb.FEEDBACK_COLLECTION)  # nothing written


def test_log_many_batches_and_writes_nothing_when_a_row_is_bad(store):
    rows = [{"alias": "docs", "query": f"question {i}", "relevant_ids": [f"doc-{i % 9}"], "ts": ts(i)}
            for i in range(600)]
    assert fb.log_many(store, rows, batch=256) == 600
    assert store.count(fb.FEEDBACK_COLLECTION) == 600
    bad = [{"alias": "docs", "query": "new one", "ids": ["doc-1"]}, {"alias": "docs", "query": "", "ids": ["x"]}]
    with pytest.raises(fb.BadFeedback, match="feedback row 1: .*query"):
        fb.log_many(store, bad)
    assert store.count(fb.FEEDBACK_COLLECTION) == 600


def test_stored_points_that_are_not_events_are_counted_not_fatal(store):
    from qdrant_client import models

    fb.log(store, "docs", "good", ["a"], ts=ts(0))
    store.upsert(fb.FEEDBACK_COLLECTION, [models.PointStruct(id=1, vector={}, payload={"alias": "docs", "query": 5})])
    rows, bad = fb.read_rows(store, "docs")
    assert len(rows) == 1 and bad == 1


# --------------------------------------------------------------------------- import / export / stats
def test_import_counts_malformed_rows_and_reimport_is_idempotent(store, tmp_path):
    lines = [
        json.dumps({"alias": "docs", "query": "ok one", "ids": ["doc-1"], "ts": ts(0)}),
        json.dumps({"query": "ok two", "relevant": ["doc-2"], "signal": "thumbs_up", "ts": ts(1)}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"query": "", "ids": ["doc-3"]}),
        json.dumps({"query": "no ids", "ids": []}),
        json.dumps({"query": "bad signal", "ids": ["doc-3"], "signal": "love"}),
        json.dumps({"query": "bad time", "ids": ["doc-3"], "ts": "tomorrow"}),
        "",
        json.dumps({"query": "ok three", "ids": [4], "signal": "skip", "ts": 1735700000}),
    ]
    path = tmp_path / "fb.jsonl"
    path.write_text("\n".join(lines) + "\n")
    res = fb.import_jsonl(store, path, default_alias="docs")
    assert res.rows == 9 and res.imported == 3
    assert res.skipped == {"not_json": 1, "not_an_object": 1, "no_query": 1, "no_ids": 1, "unknown_signal": 1,
                           "bad_ts": 1}
    assert res.examples[0].startswith("line 3:")
    assert fb.import_jsonl(store, path, default_alias="docs").imported == 3
    assert store.count(fb.FEEDBACK_COLLECTION) == 3  # same events, same points

    out = tmp_path / "out.jsonl"
    assert fb.export(store, out, "docs") == 3
    exported = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["query"] for r in exported] == ["ok one", "ok two", "ok three"]  # oldest first
    from qdrant_client import QdrantClient

    other = QdrantClient(location=":memory:")  # a second server: the export imports there as it was
    gz = tmp_path / "out.jsonl.gz"
    gz.write_bytes(gzip.compress(out.read_bytes()))
    assert fb.import_jsonl(other, gz).imported == 3
    assert [r.to_json() for r in fb.read_rows(other, "docs")[0]] == exported


def test_import_alias_override_and_missing_file(store, tmp_path):
    path = tmp_path / "fb.jsonl"
    path.write_text(json.dumps({"alias": "a", "query": "q", "ids": ["x"], "ts": ts(0)}) + "\n"
                    + json.dumps({"query": "r", "ids": ["y"], "ts": ts(1)}) + "\n")
    res = fb.import_jsonl(store, path)
    assert res.imported == 1 and res.skipped == {"no_alias": 1}
    assert fb.import_jsonl(store, path, alias="b").imported == 2
    assert len(fb.read_rows(store, "b")[0]) == 2
    with pytest.raises(fb.BadInput, match="not found"):
        fb.import_jsonl(store, tmp_path / "nope.jsonl")


def test_stats_counts_signals_window_and_usable_share(store):
    make_live(store, 10)
    fb.log(store, "docs", "a", ["doc-1"], ts=ts(0))
    fb.log(store, "docs", "a", ["doc-2"], signal="cite", ts=ts(5))
    fb.log(store, "docs", "b", ["gone-1"], signal="thumbs_down", ts=ts(9))
    fb.log(store, "docs", "c", ["doc-3", "gone-2"], signal="skip", ts=ts(10))
    st = fb.stats(store, "docs")
    assert st["rows"] == 4 and st["queries"] == 3
    assert st["by_signal"] == {"cite": 1, "click": 1, "skip": 1, "thumbs_down": 1}
    assert st["positive"] == 2 and st["negative"] == 2
    assert st["window"]["first"].startswith("2025-01-01T00:00") and st["window"]["last"].startswith("2025-01-01T00:10")
    assert st["live_collection"] == "live" and st["usable_rows"] == 3 and st["usable_share"] == 0.75
    assert st["missing_ids"] == 2


def test_stats_for_an_alias_without_feedback_says_so(store):
    st = fb.stats(store, "nothing-here")
    assert st["rows"] == 0
    assert "no feedback logged for alias 'nothing-here'" in st["message"]
    assert "vectune feedback import" in st["message"]


# --------------------------------------------------------------------------- the cycle's split
def log_queries(store: Store, n: int, start: float = 0.0) -> list[str]:
    texts = [f"user question number {i}" for i in range(n)]
    fb.log_many(store, [{"alias": "docs", "query": t, "ids": [f"doc-{i % 50}"], "ts": ts(start + i)}
                        for i, t in enumerate(texts)])
    return texts


def test_time_split_is_newest_golden_disjoint_and_deterministic(store):
    make_live(store, 60)
    texts = log_queries(store, 50)
    # the same query again, newer and with different case/spacing: one query, on one side only
    fb.log(store, "docs", "USER  question number 3?", ["doc-40"], signal="cite", ts=ts(1000))
    split = fb.read_for_cycle(store, "docs", "live", golden_fraction=0.3, min_golden=5, min_train=5, seed=1)
    assert split.enough, split.message
    assert split.counts["rows"] == 51 and split.counts["queries"] == 50 and split.counts["usable"] == 50
    assert len(split.golden) == 15 and len(split.train) == 35
    golden = {fb.normalize_query(q.text) for q in split.golden}
    train = {fb.normalize_query(q.text) for q in split.train}
    assert not golden & train
    # newest 14 plain queries + the re-asked one (its newest event is the latest of all)
    assert golden == {fb.normalize_query(t) for t in texts[36:]} | {"user question number 3"}
    q3 = next(q for q in split.golden if fb.normalize_query(q.text) == "user question number 3")
    assert q3.text == "USER  question number 3?" and q3.relevant == {key("doc-3"), key("doc-40")}  # ids united
    assert split.counts["golden_since"].startswith("2025-01-01T00:36")
    assert split.counts["window"]["last"].startswith("2025-01-01T16:40")
    again = fb.read_for_cycle(store, "docs", "live", golden_fraction=0.3, min_golden=5, min_train=5, seed=1)
    assert [(q.text, q.relevant) for q in again.golden] == [(q.text, q.relevant) for q in split.golden]
    assert [(q.text, q.relevant) for q in again.train] == [(q.text, q.relevant) for q in split.train]
    queries = split.train_queries()
    assert len(queries) == 35 and {q.source for q in queries} == {"feedback"}
    assert all(q.chunk_id in split.relevant()[q.text] for q in queries)


def test_equal_times_split_by_a_seeded_order(store):
    make_live(store, 60)
    fb.log_many(store, [{"alias": "docs", "query": f"same time {i}", "ids": [f"doc-{i}"], "ts": ts(0)}
                        for i in range(40)])
    a = fb.read_for_cycle(store, "docs", "live", min_golden=5, min_train=5, seed=1)
    b = fb.read_for_cycle(store, "docs", "live", min_golden=5, min_train=5, seed=1)
    c = fb.read_for_cycle(store, "docs", "live", min_golden=5, min_train=5, seed=2)
    gold = lambda s: sorted(q.text for q in s.golden)  # noqa: E731
    assert len(a.golden) == 12 and gold(a) == gold(b) and gold(a) != gold(c)
    assert not set(gold(c)) & {q.text for q in c.train}


def test_min_golden_raises_the_golden_share(store):
    make_live(store, 60)
    log_queries(store, 40)
    split = fb.read_for_cycle(store, "docs", "live", golden_fraction=0.1, min_golden=15, min_train=5)
    assert split.enough and len(split.golden) == 15 and len(split.train) == 25


def test_deleted_points_are_dropped_and_counted(store):
    make_live(store, 60)
    log_queries(store, 40)  # queries i point at doc-(i % 50)
    fb.log(store, "docs", "only gone answers", ["doc-55"], ts=ts(1))
    fb.log(store, "docs", "points at nothing known", ["never-indexed"], ts=ts(2))
    store.delete_points("live", [point_id_for(d) for d in ("doc-3", "doc-4", "doc-55")])
    split = fb.read_for_cycle(store, "docs", "live", min_golden=5, min_train=5)
    c = split.counts
    assert c["dropped_missing"] == 4  # doc-3, doc-4, doc-55 deleted; never-indexed never there
    assert c["without_positive"] == 4 and c["usable"] == 38 and c["queries"] == 42
    gone = {key(d) for d in ("doc-3", "doc-4", "doc-55", "never-indexed")}
    assert not any(q.relevant & gone for q in split.golden + split.train)
    assert "4 ids no longer in 'live' dropped" in split.message


def test_negative_feedback_becomes_explicit_hard_negatives(store):
    from vectune.pipeline.pairs.negatives import Example

    make_live(store, 60)
    log_queries(store, 30, start=100)  # newest: the golden side
    old = "how does topic one work"
    fb.log(store, "docs", old, ["doc-1"], ts=ts(0), negative_ids=["doc-2"])  # shown and passed over
    fb.log(store, "docs", old, ["doc-5"], signal="thumbs_down", ts=ts(1))
    fb.log(store, "docs", old, ["doc-6"], signal="skip", ts=ts(2))
    fb.log(store, "docs", "conflicted", ["doc-7"], ts=ts(3))
    fb.log(store, "docs", "conflicted", ["doc-8"], ts=ts(3))
    fb.log(store, "docs", "conflicted", ["doc-7"], signal="thumbs_down", ts=ts(4))  # cancels the click: neither
    fb.log(store, "docs", "only negative", ["doc-9"], signal="thumbs_down", ts=ts(5))
    split = fb.read_for_cycle(store, "docs", "live", golden_fraction=0.3, min_golden=5, min_train=5)
    assert split.enough
    assert sorted(split.negatives[old]) == sorted([key("doc-2"), key("doc-5"), key("doc-6")])
    trained = {q.text: q.relevant for q in split.train}
    assert trained[old] == {key("doc-1")} and trained["conflicted"] == {key("doc-8")}
    assert "conflicted" not in split.negatives
    assert split.counts["negatives"] == 3 and split.counts["negative_queries"] == 1
    assert split.counts["conflicts"] == 1 and split.counts["without_positive"] == 1

    fb.log(store, "docs", old, ["doc-6"], signal="thumbs_down", weight=3, ts=ts(6))  # now the strongest veto
    split = fb.read_for_cycle(store, "docs", "live", golden_fraction=0.3, min_golden=5, min_train=5)
    assert split.negatives[old][0] == key("doc-6")
    texts = fb.negative_texts(store, "live", split, "text")
    assert texts[old][0] == "passage number 6 about topic 6"
    assert sorted(texts[old]) == ["passage number 2 about topic 2", "passage number 5 about topic 5",
                                  "passage number 6 about topic 6"]
    mined = [Example(old, "passage number 1 about topic 1", ["mined a", "mined b"], "feedback"),
             Example("other", "p", ["mined c", "mined d"], "offline:title")]
    merged, applied = fb.merge_negatives(mined, texts, num_negatives=2)
    assert applied == 2
    assert merged[0].negatives == texts[old][:2]
    assert merged[1].negatives == ["mined c", "mined d"] and mined[0].negatives == ["mined a", "mined b"]
    assert fb.merge_negatives(mined, texts, num_negatives=0) == (mined, 0)


def test_too_little_feedback_falls_back_with_a_message(store):
    make_live(store, 60)
    log_queries(store, 12)
    split = fb.read_for_cycle(store, "docs", "live", golden_fraction=0.3, min_golden=20, min_train=20)
    assert not split.enough and split.golden == []
    assert "too little feedback for alias 'docs': 12 usable queries from 12 rows" in split.message
    assert "need at least 20 golden" in split.message and "falling back to the configured teacher" in split.message
    assert len(split.train) == 12  # still usable as few-shot examples: there is no golden side
    assert split.to_dict()["enough"] is False and split.to_dict()["usable"] == 12

    empty = fb.read_for_cycle(store, "nobody", "live")
    assert not empty.enough and empty.counts["rows"] == 0
    assert "no feedback logged for alias 'nobody'" in empty.message and "falling back" in empty.message


def test_reading_never_writes(store):
    make_live(store, 5)
    fb.read_for_cycle(store, "docs", "live")
    fb.stats(store, "docs")
    assert not store.collection_exists(fb.FEEDBACK_COLLECTION)


def test_bad_golden_fraction(store):
    with pytest.raises(fb.BadInput, match="golden_fraction"):
        fb.read_for_cycle(store, "docs", "live", golden_fraction=1.0)


def test_training_only_mode_keeps_every_query_for_training(store):
    make_live(store, 60)
    log_queries(store, 30)
    split = fb.read_for_cycle(store, "docs", "live", golden_fraction=0, min_golden=0, min_train=5)
    assert split.enough and split.golden == [] and len(split.train) == 30


def test_few_shot_examples_come_from_the_training_side_only(store):
    make_live(store, 60)
    log_queries(store, 40)
    split = fb.read_for_cycle(store, "docs", "live", min_golden=5, min_train=5)
    ex = fb.few_shot_examples(split, n=5, seed=3)
    assert len(ex) == 5 and ex == fb.few_shot_examples(split, n=5, seed=3)
    assert set(ex) <= {q.text for q in split.train} and not set(ex) & {q.text for q in split.golden}
    assert fb.few_shot_examples(split, n=5, seed=4) != ex
    assert fb.few_shot_fingerprint(ex) == fb.few_shot_fingerprint(list(ex))
    assert fb.few_shot_fingerprint(ex) != fb.few_shot_fingerprint(fb.few_shot_examples(split, n=5, seed=4))
