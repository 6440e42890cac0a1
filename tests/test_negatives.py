"""Hard-negative mining (vectune.negatives.mine) with hand-made vectors and a scripted search."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vectune.generate.base import Query
from vectune.negatives import count_sources, mine


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
