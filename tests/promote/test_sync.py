"""Delta sync, build and post-swap reconciliation (vectune.promote) on embedded Qdrant with the real MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from vectune.core.hashing import payload_hash
from vectune.errors import BadInput
from vectune.promote.build import build
from vectune.promote.stats import SyncStats
from vectune.promote.sync import delta, reconcile, sync_once
from vectune.qdrant.store import DenseSpec

SPEC = DenseSpec("", 384, "Cosine")
TEXTS = {
    1: "Python's sort is stable: equal keys keep their original order.",
    2: "The garbage collector frees reference cycles.",
    3: "Dictionaries remember insertion order.",
    4: "Generators produce values lazily with yield.",
    5: "Decorators wrap a function in another function.",
    6: "The with statement calls __enter__ and __exit__.",
}


def _put(store, name, payloads: dict, vector=None):
    """Upsert points ``{id: payload}``; the vector is a fixed dummy (not the tuned model's) unless given."""
    from qdrant_client import models

    vec = vector if vector is not None else [1.0] + [0.0] * 383
    store.upsert(name, [models.PointStruct(id=i, vector=list(vec), payload=p) for i, p in payloads.items()])


def _snapshot(store, name) -> dict:
    """A source snapshot as publish() persists it: ``{key: (point_id, payload_hash)}``."""
    return {str(r.id): (r.id, payload_hash(r.payload)) for page, _ in store.scroll(name) for r in page}


def _all(store, name) -> dict:
    """Every point, with vectune's transient revision marker (``_vectune``) left out of the payload."""
    out = {}
    for page, _ in store.scroll(name, vectors=True, batch=64):
        for r in page:
            r.payload = {k: v for k, v in (r.payload or {}).items() if k != "_vectune"}
            out[r.id] = r
    return out


@pytest.fixture
def pair(store):
    """A source collection with six points and an empty target of the same shape."""
    store.create_collection("src", 384, "Cosine", {"alias": "docs"})
    store.create_collection("dst", 384, "Cosine", {"alias": "docs"})
    _put(store, "src", {i: {"text": t, "n": i} for i, t in TEXTS.items()})
    return store


def _assert_tuned(store, name, ids, encoder):
    pts = _all(store, name)
    want = encoder.encode_passages([pts[i].payload["text"] for i in ids])
    got = np.asarray([pts[i].vector for i in ids], dtype=np.float32)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_delta_finds_missing_changed_and_extra_points(pair):
    _put(pair, "dst", {1: {"text": TEXTS[1], "n": 1}, 2: {"text": TEXTS[2], "n": 999}, 9: {"text": "gone"}})
    upsert, delete = delta(pair, "src", "dst")
    assert sorted(upsert) == [2, 3, 4, 5, 6]  # 1 is identical (payload hash), 2 changed
    assert delete == [9]


def test_sync_once_makes_target_equal_source_with_tuned_vectors(pair, bundled_encoder):
    _put(pair, "dst", {1: {"text": TEXTS[1], "n": 1}, 9: {"text": "gone"}})
    stats = SyncStats()
    changed = sync_once(pair, bundled_encoder, "src", "dst", SPEC, "text", batch=4, stats=stats)
    assert changed == 6  # 5 upserted, 1 deleted
    assert (stats.upserted, stats.deleted, stats.passes, stats.pass_deltas) == (5, 1, 1, [6])
    dst = _all(pair, "dst")
    assert sorted(dst) == [1, 2, 3, 4, 5, 6]
    assert all(dst[i].payload == {"text": TEXTS[i], "n": i} for i in TEXTS)
    _assert_tuned(pair, "dst", [2, 3, 4, 5, 6], bundled_encoder)
    assert dst[1].vector[0] == pytest.approx(1.0)  # unchanged point not re-embedded
    assert sync_once(pair, bundled_encoder, "src", "dst", SPEC, "text", stats=stats) == 0
    assert stats.pass_deltas == [6, 0] and stats.passes == 2


def test_sync_once_works_from_its_own_scan_of_the_source(pair, bundled_encoder):
    # (the final pass's snapshot and the window are publish()'s job: tests/test_exact.py)
    _put(pair, "src", {7: {"text": "written before this pass"}})
    assert sync_once(pair, bundled_encoder, "src", "dst", SPEC, "text") == 7
    assert sorted(_all(pair, "dst")) == [1, 2, 3, 4, 5, 6, 7]


def test_sync_once_refuses_points_without_text(pair, bundled_encoder):
    _put(pair, "src", {8: {"title": "no text field"}})
    with pytest.raises(BadInput, match="point 8 has no usable text in payload field 'text'"):
        sync_once(pair, bundled_encoder, "src", "dst", SPEC, "text")


def test_build_copies_every_point_and_reuses_precomputed_vectors(pair, bundled_encoder):
    pages = []
    pre_vec = np.zeros(384, dtype=np.float32)
    pre_vec[5] = 1.0
    precomputed = {"3": (TEXTS[3], pre_vec), "4": ("an older text", pre_vec)}  # 4's text differs: re-encoded
    stats = build(pair, bundled_encoder, "src", "dst", SPEC, "text", batch=4, precomputed=precomputed,
                  on_page=lambda offset, done: pages.append(done))
    assert stats.upserted == 6 and stats.reused_vectors == 1 and stats.passes == 1
    assert pages == [4, 6]
    dst = _all(pair, "dst")
    assert sorted(dst) == [1, 2, 3, 4, 5, 6]
    assert dst[3].vector[5] == pytest.approx(1.0)
    _assert_tuned(pair, "dst", [1, 2, 4, 5, 6], bundled_encoder)


def test_reconcile_carries_window_writes_and_keeps_newer_alias_writes(pair, bundled_encoder):
    sync_once(pair, bundled_encoder, "src", "dst", SPEC, "text")
    snapshot = _snapshot(pair, "src")
    # the window: writes land on the old collection between the snapshot and the swap
    _put(pair, "src", {1: {"text": "sort changed in the window", "n": 1},
                       7: {"text": "a point added in the window"},
                       5: {"text": "changed in the window, then re-written through the alias"}})
    pair.delete_points("src", [2, 6])
    # after the swap the app re-writes 5 and 6 through the alias (the new collection): newer wins
    _put(pair, "dst", {5: {"text": "newest version of five"}, 6: {"text": "six re-written after the swap"}})
    stats = SyncStats()
    reconcile(pair, bundled_encoder, "src", "dst", SPEC, "text", snapshot, 128, stats)
    dst = _all(pair, "dst")
    assert sorted(dst) == [1, 3, 4, 5, 6, 7]  # 2 deleted; 6 kept (re-written after the swap)
    assert dst[1].payload["text"] == "sort changed in the window"
    assert dst[7].payload["text"] == "a point added in the window"
    assert dst[5].payload["text"] == "newest version of five"
    assert dst[6].payload["text"] == "six re-written after the swap"
    # 5 and 6 were written by the app with a vector that is not their text's encoding: re-encoded (issue 22,
    # item 5: the tuned vector is the encoding of the text the point ends with)
    assert (stats.window_writes, stats.window_conflicts, stats.deleted, stats.upserted) == (5, 2, 1, 2)
    assert stats.text_followed == 2
    _assert_tuned(pair, "dst", [1, 5, 6, 7], bundled_encoder)
