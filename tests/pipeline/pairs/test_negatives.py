"""Hard-negative mining (vectune.pipeline.pairs.negatives.mine) with hand-made vectors and a scripted search."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vectune.pipeline.pairs.negatives import count_sources, mine
from vectune.pipeline.pairs.teachers.base import Query


def _unit(n: int, dim: int = 4) -> np.ndarray:
    v = np.zeros((n, dim), dtype=np.float32)
    v[:, 0] = 1.0
    return v


def _run_bounded(fn, seconds: float = 5.0):
    """Run ``fn`` in a daemon thread; fail (instead of hanging the suite) if it does not return in time."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"mine() did not return within {seconds} s (endless fill-in loop)"
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_fill_in_ends_when_every_pool_key_is_banned():
    # Two chunks; each query's only other chunk is listed as relevant, so no random
    # fill-in is possible. The search finds nothing usable either.
    queries = [Query("what is alpha", "a", "t"), Query("what is beta", "b", "t")]
    positives = {"a": "alpha passage", "b": "beta passage"}
    relevant = {"what is alpha": {"b"}, "what is beta": {"a"}}

    def search(vectors, limit):
        return [[("a", 0.9), ("b", 0.8)], [("b", 0.9), ("a", 0.8)]]

    examples, stats = _run_bounded(lambda: mine(
        queries, _unit(2), _unit(2), positives, search, lambda keys: {}, num_negatives=1, relevant=relevant))

    assert [(e.anchor, e.positive, e.negatives) for e in examples] == [
        ("what is alpha", "alpha passage", []),
        ("what is beta", "beta passage", []),
    ]
    assert stats.without_hard_negative == 2
    assert stats.filled_random == 0
    assert stats.negatives == 0
    assert stats.short_of_negatives == 2


class Scripted:
    """A search that returns fixed candidates per query and records what it was asked."""

    def __init__(self, per_query: list[list[tuple[str, float]]]):
        self.per_query = per_query
        self.limits: list[int] = []
        self.fetched: list[list[str]] = []

    def search(self, vectors, limit):
        self.limits.append(limit)
        assert len(vectors) == len(self.per_query)
        return [c[:limit] for c in self.per_query]

    def fetch(self, keys):
        self.fetched.append(list(keys))
        return {k: f"text of {k}" for k in keys}


def _vectors(pos_scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Query vectors and positive vectors whose dot products are ``pos_scores``."""
    q = _unit(len(pos_scores))
    p = np.zeros_like(q)
    p[:, 0] = pos_scores
    return q, p


def _one(cands, pos_score=0.8, positives=None, **kw):
    s = Scripted([cands])
    qv, pv = _vectors([pos_score])
    positives = positives or {"p": "the positive passage"}
    examples, stats = mine([Query("the query", "p", "src")], qv, pv, positives, s.search, s.fetch, **kw)
    return examples[0], stats, s


def test_margin_guard_drops_candidates_scoring_near_the_positive():
    # positive scores 0.8; with margin 0.05 a candidate must score below 0.76
    ex, stats, s = _one([("n1", 0.79), ("n2", 0.76), ("n3", 0.75), ("n4", 0.1)], relative_margin=0.05)
    assert ex.negatives == ["text of n3"]
    assert stats.dropped_false_negative == 2
    assert s.fetched == [["n3"]]
    assert stats.filled_random == 0 and stats.without_hard_negative == 0


def test_zero_margin_keeps_everything_below_the_positive():
    ex, stats, _ = _one([("n1", 0.79), ("n2", 0.5)], relative_margin=0.0, num_negatives=2)
    assert ex.negatives == ["text of n1", "text of n2"]
    assert stats.dropped_false_negative == 0
    assert stats.negatives == 2


def test_same_text_as_the_positive_is_never_a_negative():
    s = Scripted([[("dup", 0.3), ("n2", 0.2)]])
    qv, pv = _vectors([0.9])
    fetch = lambda keys: {"dup": "the positive passage", "n2": "another passage"}  # noqa: E731
    examples, stats = mine([Query("q", "p", "src")], qv, pv, {"p": "the positive passage"}, s.search, fetch,
                           num_negatives=2)
    assert examples[0].negatives == ["another passage"]
    assert stats.dropped_same_text == 1
    assert stats.negatives == 1
    assert stats.short_of_negatives == 1  # only one chunk in the pool: nothing to fill in with


def test_relevant_keys_and_the_own_chunk_are_excluded():
    ex, stats, _ = _one([("p", 0.95), ("r1", 0.3), ("n1", 0.2)], pos_score=0.9,
                        relevant={"the query": {"r1"}})
    assert ex.negatives == ["text of n1"]
    assert stats.dropped_false_negative == 0  # the own chunk is skipped before the margin check


def test_skip_top_skips_ranks_after_banned_keys_and_depth_sets_the_limit():
    cands = [("p", 0.99), ("n1", 0.5), ("n2", 0.4), ("n3", 0.3), ("n4", 0.2)]
    ex, _, s = _one(cands, pos_score=0.9, skip_top=2, depth=7)
    assert s.limits == [7 + 2 + 1]
    assert ex.negatives == ["text of n3"]  # n1, n2 are the two skipped ranks; p does not count as a rank


def test_negatives_among_the_positives_are_not_fetched():
    s = Scripted([[("b", 0.1)], [("a", 0.1)]])
    qv, pv = _vectors([0.9, 0.9])
    examples, stats = mine([Query("qa", "a", "s"), Query("qb", "b", "s")], qv, pv,
                           {"a": "passage A", "b": "passage B"}, s.search, s.fetch)
    assert [e.negatives for e in examples] == [["passage B"], ["passage A"]]
    assert s.fetched == []
    assert stats.to_dict()["negatives"] == 2


def test_missing_negatives_are_filled_with_random_allowed_chunks_deterministically():
    positives = {k: f"passage {k}" for k in "abcdef"}
    queries = [Query(f"q{k}", k, "s") for k in positives]
    qv, pv = _vectors([0.9] * len(queries))
    relevant = {"qa": {"b", "c", "d", "e"}}  # qa may only get f

    def run():
        s = Scripted([[] for _ in queries])
        return mine(queries, qv, pv, positives, s.search, s.fetch, num_negatives=2, relevant=relevant, seed=7)

    (ex1, st1), (ex2, st2) = run(), run()
    assert [e.negatives for e in ex1] == [e.negatives for e in ex2]
    assert ex1[0].negatives == ["passage f", "passage f"]
    for q, e in zip(queries, ex1):
        assert len(e.negatives) == 2
        assert f"passage {q.chunk_id}" not in e.negatives
    assert st1.without_hard_negative == 6
    assert st1.filled_random == 12
    assert st1.short_of_negatives == 0
    assert st1.to_dict() == st2.to_dict()


def test_no_negatives_wanted_gives_plain_pairs_without_searching():
    def search(vectors, limit):
        raise AssertionError("no search when num_negatives is 0")

    q = [Query("q1", "a", "src1", positive="cloze passage"), Query("q2", "b", "src2")]
    examples, stats = mine(q, _unit(2), _unit(2), {"a": "A", "b": "B"}, search, lambda k: {}, num_negatives=0)
    assert [(e.anchor, e.positive, e.negatives, e.source) for e in examples] == [
        ("q1", "cloze passage", [], "src1"), ("q2", "B", [], "src2")]
    assert stats.queries == 2 and stats.negatives == 0
    assert count_sources(examples) == {"src1": 1, "src2": 1}


def test_texts_from_records_skips_unusable_payloads():
    from types import SimpleNamespace as R

    from vectune.pipeline.pairs.negatives import texts_from_records

    recs = [R(id=1, payload={"text": " one "}), R(id="u", payload={"text": ""}), R(id=3, payload=None),
            R(id=4, payload={"meta": {"text": "nested"}})]
    assert texts_from_records(recs, "text") == {"1": "one"}
    assert texts_from_records(recs, "meta.text") == {"4": "nested"}


@pytest.mark.parametrize("bad", [{"qa": {"b"}}, {"qa": {"b", "zzz"}}])
def test_relevant_keys_outside_the_pool_do_not_hide_allowed_ones(bad):
    # pool {a, b, c}: with b relevant, c is still allowed; an unknown relevant key changes nothing
    positives = {"a": "A", "b": "B", "c": "C"}
    s = Scripted([[]])
    qv, pv = _vectors([0.9])
    examples, stats = _run_bounded(lambda: mine([Query("qa", "a", "s")], qv, pv, positives, s.search, s.fetch,
                                                num_negatives=1, relevant=bad))
    assert examples[0].negatives == ["C"]
    assert stats.short_of_negatives == 0
