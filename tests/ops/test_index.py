"""Bootstrap indexing (vectune.ops.index.index) of tiny JSONL and BEIR corpora into embedded Qdrant."""

from __future__ import annotations

import gzip
import json
import uuid

import numpy as np
import pytest

from vectune.errors import BadInput
from vectune.ops.index import corpus_file, index, iter_records
from vectune.qdrant.store import point_id_for

DOCS = [
    {"_id": "doc-a", "title": "Sorting", "text": "Python's sort is a stable hybrid of merge sort and insertion sort."},
    {"_id": "17", "title": "", "text": "The garbage collector finds reference cycles that refcounting cannot free."},
    {"_id": "doc-c", "title": "Dicts", "text": "Dictionaries keep insertion order since Python 3.7."},
    {"_id": "doc-d", "text": "   "},  # no usable text: skipped
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _points(store, name):
    recs = []
    for page, _ in store.scroll(name, vectors=True, batch=64):
        recs.extend(page)
    return {str(r.id): r for r in recs}


def test_index_jsonl_ids_payload_and_vectors(settings, store, tmp_path, bundled_encoder):
    store.close()  # index() opens its own connection to the embedded store
    summary = index(settings, _jsonl(tmp_path / "c.jsonl", DOCS), "docs")
    assert summary == {"alias": "docs", "collection": "docs--all-minilm-l6-v2", "points": 3, "skipped_records": 1,
                       "model": "bundled:all-MiniLM-L6-v2"}
    from vectune.qdrant.store import Store

    with Store.open(settings) as s:
        assert s.aliases() == {"docs": "docs--all-minilm-l6-v2"}
        pts = _points(s, "docs--all-minilm-l6-v2")
        meta = s.metadata("docs--all-minilm-l6-v2")
    a = str(uuid.uuid5(uuid.UUID("6f1c1f3e-9a43-4c55-9d38-6c1b8a5e0a11"), "doc-a"))
    assert set(pts) == {a, "17", str(point_id_for("doc-c"))}
    assert pts[a].payload == {"title": "Sorting", "text": DOCS[0]["text"], "doc_id": "doc-a"}  # _id moved to doc_id
    assert pts["17"].payload["doc_id"] == "17"
    want = bundled_encoder.encode_passages([DOCS[0]["text"], DOCS[1]["text"]])
    got = np.asarray([pts[a].vector, pts["17"].vector], dtype=np.float32)
    assert got.shape == (2, 384)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert meta["state"] == "live" and meta["created_by"] == "index" and meta["model_tag"] == "all-minilm-l6-v2"
    assert meta["data"] == {"points": 3, "skipped_records": 1}
    assert meta["text_field"] == "text" and meta["max_seq_length"] == 96


def test_index_beir_folder_with_title_and_named_vector(home, tmp_path, monkeypatch):
    monkeypatch.setenv("VECTUNE_VECTOR_NAME", "dense")
    from vectune.config.settings import load_settings
    from vectune.qdrant.store import Store

    beir = tmp_path / "beir"
    beir.mkdir()
    with gzip.open(beir / "corpus.jsonl.gz", "wt", encoding="utf-8") as f:
        for r in DOCS[:3]:
            f.write(json.dumps(r) + "\n")
    settings = load_settings()
    out = index(settings, beir, "sci", with_title=True)
    assert out["points"] == 3 and out["skipped_records"] == 0
    with Store.open(settings) as s:
        pts = _points(s, out["collection"])
        spec = s.dense_spec(out["collection"], "dense")
    assert spec.name == "dense" and spec.size == 384
    a = pts[str(point_id_for("doc-a"))]
    assert a.payload["text"] == "Sorting. " + DOCS[0]["text"]
    assert pts["17"].payload["text"] == DOCS[1]["text"]  # empty title: text unchanged
    assert set(a.vector) == {"dense"} and len(a.vector["dense"]) == 384


def test_existing_alias_needs_replace_and_live_collection_is_protected(settings, tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", DOCS[:2])
    index(settings, path, "docs")
    with pytest.raises(BadInput, match="alias 'docs' already exists"):
        index(settings, path, "docs")
    with pytest.raises(BadInput, match="is live behind 'docs': refusing to overwrite"):
        index(settings, path, "docs", replace=True)


def test_bad_corpus_inputs(settings, tmp_path):
    with pytest.raises(BadInput, match="corpus not found"):
        index(settings, tmp_path / "missing.jsonl", "docs")
    (tmp_path / "empty-beir").mkdir()
    with pytest.raises(BadInput, match="folder without corpus.jsonl"):
        corpus_file(tmp_path / "empty-beir")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(DOCS[0]) + "\n{oops\n")
    with pytest.raises(BadInput, match=r"corpus .*bad.jsonl:2: not valid JSON"):
        index(settings, bad, "docs")
    notext = _jsonl(tmp_path / "notext.jsonl", [{"_id": "x", "body": "no text field"}, {"id": 3, "text": ""}])
    with pytest.raises(BadInput, match="no record in .* has a non-empty 'text' field"):
        index(settings, notext, "docs")
    from vectune.qdrant.store import Store

    with Store.open(settings) as s:
        assert s.collections() == [] and s.aliases() == {}  # the empty collection was removed


def test_iter_records_id_keys_and_line_numbers(tmp_path):
    p = _jsonl(tmp_path / "c.jsonl", [{"_id": "a"}, {"id": 5}, {"doc_id": "d"}, {"_id": "", "text": "t"}])
    assert [rid for rid, _ in iter_records(p)] == ["a", "5", "d", "3"]  # no id: line index
