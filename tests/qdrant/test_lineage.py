"""Lineage records in collection metadata and the per-alias event history, on embedded Qdrant."""

from __future__ import annotations

from vectune.qdrant import lineage


def _rec(alias, tag, **kw):
    return lineage.record(alias=alias, model_ref=f"models/{tag}", model_tag=tag, created_by="test",
                          dense_vector="", **kw)


def test_record_fields_and_defaults():
    r = lineage.record(alias="docs", model_ref="bundled:m", model_tag="m-1", created_by="index",
                       dense_vector="dense", query_prompt="query: ", source="corpus.jsonl")
    assert r["alias"] == "docs" and r["model_tag"] == "m-1" and r["created_by"] == "index"
    assert r["base_model"] == "bundled:m"  # defaults to the model itself
    assert r["parent_model"] is None and r["parent_collection"] is None
    assert r["eval"] == {} and r["data"] == {} and r["state"] == "building"
    assert r["dense_vector"] == "dense" and r["query_prompt"] == "query: " and r["source"] == "corpus.jsonl"
    assert r["created_at"].endswith("+00:00")
    r2 = lineage.record(alias="docs", model_ref="t", model_tag="t", created_by="cycle", dense_vector="",
                        base_model="bundled:m", parent_model="bundled:m", parent_collection="docs--m",
                        evaluation={"ndcg": 0.5}, data={"chunks": 3}, state="verified")
    assert (r2["base_model"], r2["parent_collection"], r2["eval"], r2["data"], r2["state"]) == (
        "bundled:m", "docs--m", {"ndcg": 0.5}, {"chunks": 3}, "verified")


def test_collection_name():
    assert lineage.collection_name("docs", "all-minilm-l6-v2") == "docs--all-minilm-l6-v2"


def test_versions_lists_only_the_alias_oldest_first(store):
    for name, rec in [("docs--b", {**_rec("docs", "b"), "created_at": "2024-01-02T00:00:00+00:00"}),
                      ("docs--a", {**_rec("docs", "a"), "created_at": "2024-01-03T00:00:00+00:00"}),
                      ("docs--c", {**_rec("docs", "c"), "created_at": "2024-01-02T00:00:00+00:00"}),
                      ("other--a", _rec("other", "a"))]:
        store.create_collection(name, 4, "Cosine", rec)
    store.create_collection("foreign", 4, "Cosine", None)  # not vectune's: no record
    got = lineage.versions(store, "docs")
    assert [name for name, _ in got] == ["docs--b", "docs--c", "docs--a"]  # time, then name
    assert got[0][1]["model_tag"] == "b"
    assert [name for name, _ in lineage.versions(store, "other")] == ["other--a"]
    assert lineage.versions(store, "nobody") == []


def test_set_state_keeps_the_record_and_adds_fields(store):
    store.create_collection("docs--a", 4, "Cosine", _rec("docs", "a", evaluation={"ndcg": 0.4}))
    meta = lineage.set_state(store, "docs--a", "retired", retired_at="2024-05-01T00:00:00+00:00")
    stored = store.metadata("docs--a")
    assert stored == meta
    assert stored["state"] == "retired" and stored["retired_at"] == "2024-05-01T00:00:00+00:00"
    assert stored["eval"] == {"ndcg": 0.4} and stored["model_tag"] == "a"
