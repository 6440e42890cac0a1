"""Bad input: one clear message, a distinct non-zero exit, and the live alias untouched."""

from __future__ import annotations

import json

import pytest

from tests.helpers.cli import PERMISSIVE, invoke, qdrant


def _make_collection(name, points, size=384, alias=None, vectors=True):
    """Write a collection directly with qdrant-client (as another tool would)."""
    from qdrant_client import models

    with qdrant() as c:
        if c.collection_exists(name):
            c.delete_collection(name)
        c.create_collection(name, vectors_config=models.VectorParams(size=size, distance=models.Distance.COSINE)
                            if vectors else {})
        if points:
            c.upsert(name, points)
        if alias:
            c.update_collection_aliases(change_aliases_operations=[
                models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=name, alias_name=alias))])


def _aliases():
    with qdrant() as c:
        return {a.alias_name: a.collection_name for a in c.get_aliases().aliases}


def test_missing_alias(home):
    out = invoke("run", "--alias", "nope", expect=3)
    assert "alias 'nope' does not exist" in out.output


def test_collection_without_lineage_asks_to_adopt(home):
    from qdrant_client import models

    _make_collection("raw", [models.PointStruct(id=1, vector=[0.1] * 384, payload={"text": "x" * 50})], alias="raw-a")
    out = invoke("run", "--alias", "raw-a", expect=3)
    assert "vectune adopt" in out.output


def test_payload_field_missing_on_some_points(indexed):
    from qdrant_client import models

    with qdrant() as c:
        name = {a.alias_name: a.collection_name for a in c.get_aliases().aliases}["docs"]
        c.upsert(name, [models.PointStruct(id=999, vector=[0.1] * 384, payload={"body": "no text field here"}),
                        models.PointStruct(id=998, vector=[0.1] * 384, payload={"text": 12345})])
    out = invoke("run", "--alias", "docs", *PERMISSIVE, expect=3)
    assert "cannot be used" in out.output and "missing_field" in out.output and "not_a_string" in out.output
    assert _aliases()["docs"] == name


def test_wrong_text_field_everywhere(indexed):
    out = invoke("run", "--alias", "docs", "--text-field", "page_content", *PERMISSIVE, expect=3)
    assert "page_content" in out.output


def test_collection_with_no_vectors(home):
    _make_collection("novec", [], vectors=False, alias="nv")
    out = invoke("adopt", "--collection", "novec", "--alias", "nv2", "--model", "bundled:all-MiniLM-L6-v2", expect=3)
    assert "no dense vectors" in out.output


def test_empty_collection(home):
    _make_collection("empty", [])
    invoke("adopt", "--collection", "empty", "--alias", "e", "--model", "bundled:all-MiniLM-L6-v2", "--force")
    out = invoke("run", "--alias", "e", *PERMISSIVE, expect=3)
    assert "empty" in out.output


def test_too_few_chunks(home, tmp_path, corpus_records):
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps(r) + "\n" for r in corpus_records[:4]))
    invoke("index", small, "--alias", "small")
    out = invoke("run", "--alias", "small", *PERMISSIVE, expect=3)
    assert "only 4 usable chunks" in out.output
    assert _aliases()["small"] == "small--all-minilm-l6-v2"


def test_unreachable_qdrant(home, monkeypatch):
    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:9")
    out = invoke("run", "--alias", "docs", expect=4)
    assert "cannot reach Qdrant" in out.output


def test_model_that_does_not_load(home, corpus_file, tmp_path):
    out = invoke("index", corpus_file, "--alias", "x", "--model", tmp_path / "no-such-model", expect=3)
    assert "does not load" in out.output


def test_bad_corpus_and_eval_set(home, tmp_path, indexed):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "1", "text": "fine"}\nnot json\n')
    out = invoke("index", bad, "--alias", "b", expect=3)
    assert "bad.jsonl:2" in out.output
    ev = tmp_path / "ev.jsonl"
    ev.write_text('{"query": "q"}\n')
    out = invoke("run", "--alias", "docs", "--eval-set", ev, expect=3)
    assert "relevant" in out.output
    out = invoke("run", "--alias", "docs", "--eval-set", tmp_path / "missing.jsonl", expect=3)
    assert "not found" in out.output


def test_adopt_refuses_wrong_model(home, corpus_records):
    """Vectors written by another model (here random) are caught before any training."""
    import numpy as np
    from qdrant_client import models

    rng = np.random.default_rng(0)
    pts = [models.PointStruct(id=i, vector=rng.normal(size=384).tolist(), payload={"text": r["text"]})
           for i, r in enumerate(corpus_records[:10])]
    _make_collection("foreign", pts)
    out = invoke("adopt", "--collection", "foreign", "--alias", "f", "--model", "bundled:all-MiniLM-L6-v2", expect=3)
    assert "do not match" in out.output
    assert "f" not in _aliases()


def test_index_refuses_to_clobber_alias(indexed, corpus_file):
    out = invoke("index", corpus_file, "--alias", "docs", expect=3)
    assert "already exists" in out.output


@pytest.mark.parametrize("args", [["rollback", "--alias", "docs"], ["prune", "--alias", "docs", "--keep", "0"]])
def test_rollback_and_prune_bad_requests(indexed, args):
    out = invoke(*args, expect=3)
    assert "error:" in out.output
    assert _aliases()["docs"] == "docs--all-minilm-l6-v2"
