"""The watch: the live model judged on the feedback that came after its promotion.

Unit tests build collections and lineage by hand on a real embedded Qdrant (no training); the
end-to-end tests (slow) run real cycles on the tiny corpus through the real CLI. A "worse" model is
made on purpose: promoted through a permissive gate after training on deliberately wrong labels;
fresh feedback with the right labels then condemns it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tests.helpers.cli import PERMISSIVE, invoke, qdrant
from tests.helpers.feedback import make_live, ts
from vectune.apps.feedback import log_many
from vectune.ops.watch import WatchResult, _verdict, cutoff, not_watched, watch
from vectune.pipeline.condemned import WatchState
from vectune.qdrant import lineage

# --------------------------------------------------------------------------- unit: what is watched, since when


def _promoted(store, alias="docs", *, feedback_until=None, parent="live"):
    """A collection 'v1' made by a promotion from ``parent``, live behind the alias."""
    from qdrant_client import models as qm

    from vectune.qdrant.store import point_id_for

    store.create_collection("v1", 4)
    store.upsert("v1", [qm.PointStruct(id=point_id_for(f"doc-{i}"), vector=[1.0, float(i), 0.5, 0.0],
                                       payload={"doc_id": f"doc-{i}", "text": f"passage number {i}"})
                        for i in range(60)])
    store.set_metadata(parent, lineage.record(alias=alias, model_ref="bundled:all-MiniLM-L6-v2",
                                              model_tag="all-minilm-l6-v2", created_by="index", dense_vector=""))
    store.set_metadata("v1", lineage.record(alias=alias, model_ref="m1", model_tag="m1", created_by="promote",
                                            dense_vector="", parent_collection=parent, state="live",
                                            data={"feedback_until": feedback_until}))
    store.swap_alias(alias, "v1")


def test_cutoff_is_the_newest_feedback_the_promotion_saw_else_its_time():
    assert cutoff({"data": {"feedback_until": ts(5)}, "created_at": ts(900)}, {}) == ts(5)
    assert cutoff({"created_at": ts(900)}, {}) == ts(900)  # learned from no feedback: the promotion time
    # a target trained on newer feedback (a roll-forward's parent): fresh for both means after both
    assert cutoff({"data": {"feedback_until": ts(5)}}, {"data": {"feedback_until": ts(7)}}) == ts(7)
    assert cutoff({}, {}) is None
    # a cycle that records its labels' provenance: the later of the newest label it used and the newest event it
    # read (a thumbs-down at 9 removed a label: it changed what the model learned, so it is not fresh)
    assert cutoff({"labels": {"last_ts": ts(8)}, "data": {"feedback_until": ts(9)}}, {}) == ts(9)
    assert cutoff({"labels": {"last_ts": ts(8)}, "data": {"feedback_until": ts(6)}}, {}) == ts(8)
    assert cutoff({"labels": {"last_ts": ts(8)}}, {}) == ts(8)


def test_only_a_promotion_live_through_it_is_watched(store):
    make_live(store)
    meta = store.metadata("live")
    assert "not made by a promotion" in not_watched(store, "live", meta)
    _promoted(store)
    assert not_watched(store, "v1", store.metadata("v1")) is None
    lineage.set_state(store, "v1", "live", rolled_back_at=lineage.now(), rolled_back_from="v2")
    assert "put back by a rollback" in not_watched(store, "v1", store.metadata("v1"))
    assert "is gone" in not_watched(store, "v1", {"created_by": "promote", "parent_collection": "nope"})


def test_too_little_fresh_feedback_does_nothing_and_says_why(store, settings, home):
    make_live(store, alias=None)
    _promoted(store, feedback_until=ts(10))
    rows = [{"alias": "docs", "query": f"old question {i}", "ids": [f"doc-{i}"], "ts": ts(i)} for i in range(11)]
    rows += [{"alias": "docs", "query": f"new question {i}", "ids": [f"doc-{i}"], "ts": ts(100 + i)} for i in range(4)]
    rows += [{"alias": "docs", "query": "old question 3", "ids": ["doc-3"], "ts": ts(200)}]  # asked again: not fresh
    log_many(store, rows)
    s = settings.replace(watch_min_queries=5)
    res = watch(store, s, "docs", run_id="r1")
    assert res.verdict == "too-few" and not res.rolled_back
    assert res.queries == 4 and res.fresh["repeated"] == 1
    assert "4 fresh queries" in res.reason and "at least 5" in res.reason and "VECTUNE_WATCH_MIN_QUERIES" in res.reason
    assert store.resolve_alias("docs") == "v1"
    assert not (home / "work" / "history" / "docs.jsonl").exists()  # nothing recorded: nothing happened


def test_off_is_off(store, settings):
    make_live(store, alias=None)
    _promoted(store)
    res = watch(store, settings.replace(watch=False), "docs", run_id="r1")
    assert res.verdict == "off" and "VECTUNE_WATCH=off" in res.reason


def _scored(live, target):
    res = WatchResult("inconclusive", "", since=ts(0))
    res.scores = {"metric": "ndcg@10", "queries": len(live), "corpus": 100, "live": {"ndcg@10": float(np.mean(live))},
                  "target": {"ndcg@10": float(np.mean(target))}, "per_query": {"live": live, "target": target}}
    return res


@pytest.mark.parametrize("live,target,verdict", [
    ([0.2] * 30 + [0.9] * 10, [0.9] * 40, "worse"),
    ([0.9] * 40, [0.2] * 30 + [0.9] * 10, "confirmed"),
    ([0.5, 0.6] * 20, [0.6, 0.5] * 20, "inconclusive"),
    ([0.9] * 40, [0.9] * 40, "inconclusive"),
])
def test_the_verdict_is_the_gates_paired_test_both_ways(settings, live, target, verdict):
    res = _scored(live, target)
    _verdict(res, settings.watch, "ndcg@10", 1000)
    assert res.verdict == verdict, res.reason
    assert res.scores["delta"] == pytest.approx(np.mean(live) - np.mean(target), abs=1e-4)


def test_a_small_loss_below_the_margin_is_not_worse(settings):
    res = _scored([0.897] * 40, [0.9] * 40)
    _verdict(res, settings.watch, "ndcg@10", 1000)
    assert res.verdict == "inconclusive"


# --------------------------------------------------------------------------- end to end: real cycles
def _rows(records, *, words, wrong=False, day=0, n=None):
    """One click per record: query = some words of the passage; answer = the record, or another one."""
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day)
    out = []
    for i, r in enumerate(records[:n]):
        text = " ".join(r["text"].split()[words[0]:words[1]])
        answer = records[(i + 7) % len(records)]["_id"] if wrong else r["_id"]
        out.append({"alias": "docs", "query": f"{r['title']}: {text}" if words[0] < 12 else text,
                    "relevant_ids": [answer], "signal": "click", "ts": (start + timedelta(minutes=i)).isoformat()})
    return out


def _log(rows):
    from vectune.apps import feedback

    with qdrant() as c:
        return feedback.log_many(c, rows)


def _latest(home):
    return json.loads((home / "work" / "reports" / "docs" / "latest.json").read_text())


def _history(home):
    return [json.loads(x) for x in (home / "work" / "history" / "docs.jsonl").read_text().splitlines()]


def _live():
    with qdrant() as c:
        return {a.alias_name: a.collection_name for a in c.get_aliases().aliases}["docs"]


#: Training strong enough that deliberately wrong labels really hurt; held-out evidence (a cross-fit would see
#: that no epoch of wrong labels beats the live model on other folds and refuse even through a permissive gate).
STRONG = ["--mode", "query", "--candidates", "query", "--query-epochs", "4", "--no-crossfit"]


def _promote_wrong(home, corpus_records, monkeypatch):
    """Promote, through a permissive gate, a query encoder trained on deliberately wrong labels."""
    monkeypatch.setenv("VECTUNE_FEEDBACK_MIN_GOLDEN", "5")
    monkeypatch.setenv("VECTUNE_QUERY_LEARNING_RATE", "5e-4")
    monkeypatch.setenv("VECTUNE_QUERY_BATCH_SIZE", "8")
    _log(_rows(corpus_records, words=(3, 12), wrong=True))
    base = _live()
    invoke("run", "--alias", "docs", *STRONG, *PERMISSIVE)
    rep = _latest(home)
    assert rep["status"] == "promoted", rep["reason"]
    assert rep["watch"]["verdict"] == "skipped"  # the indexed collection: nothing to judge
    monkeypatch.delenv("VECTUNE_QUERY_LEARNING_RATE")
    return base, rep["new_collection"]


@pytest.mark.slow
def test_a_worse_promotion_is_rolled_back_by_the_next_run_and_never_flaps(indexed, home, corpus_records, monkeypatch,
                                                                         tmp_path):
    monkeypatch.setenv("VECTUNE_WATCH_MIN_QUERIES", "20")
    monkeypatch.setenv("VECTUNE_METRICS_DIR", str(tmp_path / "metrics"))
    base, bad = _promote_wrong(home, corpus_records, monkeypatch)

    # too little fresh feedback: nothing happens, and the run says why (--no-feedback: the cycle skips training)
    _log(_rows(corpus_records, words=(12, 24), day=1, n=5))
    invoke("run", "--alias", "docs", "--no-feedback")
    rep = _latest(home)
    assert rep["watch"]["verdict"] == "too-few" and "5 fresh queries" in rep["watch"]["reason"]
    assert _live() == bad

    # fresh feedback with the right labels shows the promoted model worse: rolled back, exit code 7
    _log(_rows(corpus_records, words=(12, 24), day=1)[5:])
    out = invoke("run", "--alias", "docs", expect=7)
    assert "ROLLED BACK by the watch" in out.output
    rep = _latest(home)
    assert rep["status"] == "rolled-back" and rep["watch"]["verdict"] == "worse" and rep["watch"]["rolled_back"]
    fresh = rep["watch"]["queries"]
    assert fresh >= 35 and rep["watch"]["scores"]["delta"] < 0  # 40 clicks; queries with the same words merge
    assert "the same stored vectors" in rep["watch"]["vectors"]["target"]  # query side: same passage vectors
    assert _live() == base
    event = _history(home)[-1]
    assert event["event"] == "rollback" and event["by"] == "watch" and event["from"] == bad and event["to"] == base
    assert event["condemned_model"] in bad and event["watch"]["delta"] < 0
    assert "by the watch" in invoke("history", "--alias", "docs").output
    prom = (tmp_path / "metrics" / "vectune_docs.prom").read_text()
    assert 'vectune_watch_rolled_back{alias="docs"} 1' in prom
    assert 'vectune_last_run_status{alias="docs",status="rolled-back"} 1' in prom
    assert 'vectune_watch_verdict{alias="docs",verdict="worse"} 1' in prom
    condemned = WatchState(home / "work" / "runs" / "docs").condemned
    assert condemned is not None and condemned.collection == bad and len(condemned.queries) == fresh
    with qdrant() as c:
        from vectune.qdrant.store import Store

        assert Store.from_client(c).metadata(bad)["condemned"]["queries"] == fresh

    # no flapping: the next run (default gate) must win on the condemning queries, which it cannot
    invoke("run", "--alias", "docs")
    rep = _latest(home)
    assert rep["watch"]["verdict"] == "skipped"  # live was put back by a rollback: never judged (no roll-forward)
    assert rep["counts"]["condemned"]["condemning"] == fresh
    assert rep["counts"]["eval_set"]["queries"] >= fresh  # they decided, never trained
    # no fold model may train on a condemning query: no cross-fit while the condemnation is pending
    assert rep["evidence"] == "golden" and "condemned it" in rep["counts"]["crossfit"]["skipped"]
    assert rep["status"] == "kept" and _live() == base
    assert [e["event"] for e in _history(home)].count("promotion") == 1

    # a later promotion (the permissive gate here) decided on evidence that includes them clears it
    invoke("run", "--alias", "docs", *PERMISSIVE)
    rep = _latest(home)
    assert rep["status"] == "promoted" and rep["counts"]["condemned"]["cleared"]
    assert WatchState(home / "work" / "runs" / "docs").condemned is None


@pytest.mark.slow
def test_fresh_feedback_that_agrees_leaves_the_promotion_and_confirms_it(indexed, home, corpus_records, monkeypatch):
    monkeypatch.setenv("VECTUNE_WATCH_MIN_QUERIES", "20")
    _, bad = _promote_wrong(home, corpus_records, monkeypatch)
    # users correct it: thumbs down on the wrong answers (those queries drop out), clicks on the right ones;
    # a second promotion learns from them, over the damaged model (its rollback target)
    day1 = datetime(2026, 1, 2, 12, tzinfo=UTC)
    vetoes = [{**r, "signal": "thumbs_down", "ts": (day1 + timedelta(minutes=i)).isoformat()}
              for i, r in enumerate(_rows(corpus_records, words=(3, 12), wrong=True))]
    _log(vetoes + _rows(corpus_records, words=(12, 24), day=1))
    monkeypatch.setenv("VECTUNE_QUERY_LEARNING_RATE", "5e-4")
    invoke("run", "--alias", "docs", "--no-watch", *STRONG, *PERMISSIVE)
    monkeypatch.delenv("VECTUNE_QUERY_LEARNING_RATE")
    rep = _latest(home)
    assert rep["status"] == "promoted" and rep["watch"]["verdict"] == "off"
    assert rep["counts"]["feedback"]["without_positive"] >= 35  # the vetoed queries no longer train
    good = rep["new_collection"]
    with qdrant() as c:
        from vectune.qdrant.store import Store

        meta = Store.from_client(c).metadata(good)
    assert meta["parent_collection"] == bad and meta["data"]["feedback_until"].startswith("2026-01-02T12:39")

    # fresh: the next day, users ask much the same (one word shifted: new queries, never trained on)
    _log(_rows(corpus_records, words=(13, 25), day=2))
    invoke("run", "--alias", "docs", "--no-feedback")  # exit 0 (--no-feedback: the cycle itself skips training)
    rep = _latest(home)
    w = rep["watch"]
    assert w["verdict"] == "confirmed", w["reason"]
    assert w["live"] == good and w["target"] == bad and w["scores"]["delta"] > 0
    assert w["since"].startswith("2026-01-02T12:39") and w["fresh"]["repeated"] == 0
    assert _live() == good
    events = _history(home)
    assert [e.get("verdict") for e in events if e["event"] == "watch"] == ["confirmed"]
    assert not [e for e in events if e["event"] == "rollback"]

    # nothing new since: the next run reuses the verdict instead of scoring again
    invoke("run", "--alias", "docs", "--no-feedback")
    w2 = _latest(home)["watch"]
    assert w2["verdict"] == "confirmed" and w2["cached_from"] == rep["run_id"]
    assert [e["event"] for e in _history(home)].count("watch") == 1
