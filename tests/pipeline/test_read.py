"""read.py: the read stage against a real embedded Qdrant."""

from __future__ import annotations

import pytest

from tests.helpers.cli import qdrant
from vectune.config.settings import load_settings
from vectune.errors import BadInput
from vectune.qdrant.store import Store


def test_read_samples_with_vectors_and_fingerprints(indexed, corpus_records):
    from vectune.pipeline.read import read

    s = load_settings()
    with Store.open(s) as store:
        a = read(store, "docs", s.read, s.collection, seed=s.seed)
        b = read(store, "docs", s.read, s.collection, seed=s.seed)
    assert a.live.startswith("docs--") and a.meta["model_ref"]
    assert a.stats.points == len(corpus_records) and a.stats.usable == len(a.chunks)
    assert all(c.vector is not None and c.vector.shape == (a.spec.size,) for c in a.chunks)
    assert [c.key for c in a.chunks] == sorted(c.key for c in a.chunks)
    assert a.fingerprint == b.fingerprint  # deterministic


def test_fingerprint_changes_with_content(indexed):
    from vectune.pipeline.read import read

    s = load_settings()
    with Store.open(s) as store:
        before = read(store, "docs", s.read, s.collection, seed=s.seed)
        pid = before.chunks[0].point_id
        store.client.set_payload(before.live, {"text": before.chunks[0].text + " (edited)"}, points=[pid])
        after = read(store, "docs", s.read, s.collection, seed=s.seed)
    assert after.fingerprint != before.fingerprint


def test_unusable_points_refuse_before_anything_else(indexed):
    from vectune.pipeline.read import read

    s = load_settings()
    with Store.open(s) as store:
        live = store.resolve_alias("docs")
        first = next(store.scroll(live, batch=1))[0][0]
        store.client.overwrite_payload(live, {"title": "no text"}, points=[first.id])
        with pytest.raises(BadInput, match="cannot be used .*a promotion would lose them"):
            read(store, "docs", s.read, s.collection, seed=s.seed)


def test_no_lineage_is_a_clear_error(home):
    from vectune.pipeline.read import read

    s = load_settings()
    with qdrant() as client:
        from qdrant_client import models

        client.create_collection("raw", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
        client.update_collection_aliases(change_aliases_operations=[models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name="raw", alias_name="raw-alias"))])
    with Store.open(s) as store, pytest.raises(BadInput, match="no vectune lineage"):
        read(store, "raw-alias", s.read, s.collection, seed=s.seed)


def test_ensure_fetches_chunks_outside_the_sample(indexed):
    from vectune.pipeline.read import read

    s = load_settings(max_train_chunks=5, eval_corpus_cap=10)
    with Store.open(s) as store:
        rd = read(store, "docs", s.read, s.collection, seed=s.seed, keep=10)
        assert len(rd.chunks) == 10
        live = rd.live
        all_ids = [str(r.id) for recs, _ in store.scroll(live, batch=64) for r in recs]
        outside = [k for k in all_ids if k not in rd.by_key][:3]
        unknown = rd.ensure(store, set(outside) | {"999999"})
    assert unknown == 1
    assert set(outside) <= set(rd.by_key)
