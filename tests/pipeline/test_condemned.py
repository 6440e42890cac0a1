"""A condemnation: recorded before the rollback, its queries pinned to the evidence, cleared by a promotion."""

from __future__ import annotations

from vectune.pipeline.condemned import Condemnation, WatchState, pin, uncovered
from vectune.pipeline.pairs.labeled import LabeledQuery


def _c() -> Condemnation:
    return Condemnation(run_id="r1", model="m1", collection="docs--m1", restored="docs--base", at="t",
                        since="s", queries=[{"query": "what is x?", "relevant": ["1"]},
                                            {"query": "how y", "relevant": ["2"]},
                                            {"query": "why z", "relevant": ["3"]}], delta=-0.1, p_value=0.001)


def test_the_state_round_trips_and_a_promotion_clears_it(tmp_path):
    state = WatchState(tmp_path / "run")
    assert state.condemned is None and state.last == {} and state.confirmed is None
    state.condemn(_c())
    state.set_last({"key": "k"})
    state.confirm("docs--m0")
    assert state.condemned == _c() and state.last == {"key": "k"} and state.confirmed == "docs--m0"
    assert state.clear(by="r2") == _c()
    assert state.condemned is None and state.load()["cleared"]["cleared_by"] == "r2"
    assert state.load()["cleared"]["queries"] == 3 and state.last == {"key": "k"}


def test_an_unreadable_state_is_no_state(tmp_path):
    (tmp_path / "watch.json").write_text("{not json")
    assert WatchState(tmp_path).condemned is None and WatchState(tmp_path).load() == {}


def test_the_condemning_queries_go_to_the_evidence_never_to_training():
    golden = [LabeledQuery("How y?", {"2", "9"})]
    train = [LabeledQuery("what is X", {"1", "8"}), LabeledQuery("other", {"5"})]
    g, t, counts = pin(_c(), golden, train)
    assert [q.text for q in t] == ["other"]
    assert [q.text for q in g] == ["How y?", "what is X", "why z"]
    assert g[1].relevant == {"1", "8"}  # the cycle's own, newer labels win
    assert counts == {"condemning": 3, "moved": 1, "added": 1, "already": 1}
    assert uncovered(_c(), g) == []
    assert uncovered(_c(), golden) == ["what is x?", "why z"]
    g2, t2, _ = pin(_c(), None, None)  # no labels at all: the condemning queries alone are the evidence
    assert len(g2) == 3 and t2 == []
