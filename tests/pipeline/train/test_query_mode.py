"""Query-side mode end to end: nothing re-encoded, vectors copied verbatim, two models in the lineage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.cli import PERMISSIVE, invoke, qdrant
from vectune.core import faults

pytestmark = pytest.mark.slow


def _latest(home):
    return json.loads((home / "work" / "reports" / "docs" / "latest.json").read_text())


@pytest.fixture
def passage_calls(monkeypatch):
    """Count passage encodings per stage (the cycle announces each stage through faults.point)."""
    from vectune.models.encoder import Encoder

    calls: dict[str, int] = {}
    current = {"stage": "-"}
    real_point = faults.point

    def point(name, **ctx):
        if name in ("read", "load_live_model", "generate", "mine", "train", "evaluate", "save_model", "reindex"):
            current["stage"] = name
        return real_point(name, **ctx)

    real = Encoder.encode_passages

    def counting(self, texts):
        calls[current["stage"]] = calls.get(current["stage"], 0) + len(texts)
        return real(self, texts)

    monkeypatch.setattr(faults, "point", point)
    monkeypatch.setattr(Encoder, "encode_passages", counting)
    return calls


def test_query_mode_never_encodes_passages_and_copies_writes_verbatim(indexed, home, monkeypatch, passage_calls):
    monkeypatch.setenv("VECTUNE_MODE", "query")
    monkeypatch.setenv("VECTUNE_UPSERT_BATCH", "8")  # several pages: the app writes between two of them
    monkeypatch.setenv("VECTUNE_COPY_BATCH", "8")
    written = {}

    def app_write(store, source, target, **_):  # an app writing through the alias mid-copy, any vector it likes
        from qdrant_client import models

        if written:
            return
        v = np.random.default_rng(5).normal(size=384).astype(np.float32)
        v /= np.linalg.norm(v)
        written["vec"] = v
        store.client.upsert("docs", [models.PointStruct(id=987654, vector=v.tolist(), payload={
            "text": "Written by the app during the copy with its own passage model.", "doc_id": "app-1"})])

    faults.HOOKS["reindex_page"].append(app_write)
    try:
        invoke("run", "--alias", "docs", *PERMISSIVE)
    finally:
        faults.HOOKS.clear()
    rep = _latest(home)
    assert rep["status"] == "promoted" and rep["mode"] == "query"
    assert rep["candidate_model"].endswith(("-linear", "-query"))
    # zero passage encodings in train, evaluate and promotion (the lineage check at load is 8 passages)
    assert {k: v for k, v in passage_calls.items() if k in ("train", "evaluate", "save_model", "reindex")} == {}
    with qdrant() as c:
        live = {a.alias_name: a.collection_name for a in c.get_aliases().aliases}["docs"]
        assert live == rep["new_collection"]
        meta = c.get_collection(live).config.metadata["vectune"]
        assert meta["mode"] == "query" and meta["passage_model"] == "bundled:all-MiniLM-L6-v2"
        assert meta["query_model"] == meta["model_ref"] == rep["candidate_model"]
        old = rep["live_collection"]
        src = {str(r.id): r for r in c.scroll(old, limit=1000, with_vectors=True)[0]}
        dst = {str(r.id): r for r in c.scroll(live, limit=1000, with_vectors=True)[0]}
    assert set(src) == set(dst)
    for k, r in src.items():  # every vector and payload copied as it was
        assert dst[k].payload == r.payload
        assert np.allclose(dst[k].vector, r.vector, atol=1e-6)
    assert written, "the app's write hook never ran"
    assert np.allclose(dst["987654"].vector, written["vec"], atol=1e-6)


def test_resolve_gives_new_query_encoder_and_apps_keep_writing_with_the_passage_model(indexed, home, monkeypatch):
    from vectune.apps.resolve import resolve
    from vectune.config.settings import load_settings
    from vectune.models.store import ModelStore

    monkeypatch.setenv("VECTUNE_MODE", "query")
    invoke("run", "--alias", "docs", *PERMISSIVE)
    s = load_settings()
    base = ModelStore.from_settings(s).load("bundled:all-MiniLM-L6-v2")
    with qdrant() as c:
        res = resolve(c, "docs", s)
        collection, enc = res
        assert res.passage_model == "bundled:all-MiniLM-L6-v2" and res.query_model.endswith(("-linear", "-query"))
        assert enc.routed
        text = "Zebra crossings in Lisbon are painted with a lacquer that glows purple at night."
        assert np.allclose(enc.encode_passages([text]), base.encode_passages([text]), atol=1e-5)
        # the app writes a new passage with the passage model, through the alias
        from qdrant_client import models

        c.upsert("docs", [models.PointStruct(id=424242, vector=base.encode_passages([text])[0].tolist(),
                                             payload={"text": text, "doc_id": "zebra"})])
        hits = c.query_points(collection, query=enc.encode_queries(["what glows purple on Lisbon zebra crossings"])[0]
                              .tolist(), limit=3).points
    assert str(hits[0].id) == "424242"


def test_chains_query_after_full_keeps_its_passages_full_after_query_starts_from_them(indexed, home, monkeypatch):
    from vectune.qdrant.lineage import passage_model

    monkeypatch.setenv("VECTUNE_MODE", "full")
    invoke("run", "--alias", "docs", *PERMISSIVE)
    full = _latest(home)
    assert full["status"] == "promoted"
    monkeypatch.setenv("VECTUNE_MODE", "query")
    invoke("run", "--alias", "docs", "--seed", "7", *PERMISSIVE)
    q = _latest(home)
    assert q["status"] == "promoted", q.get("reason")
    with qdrant() as c:
        meta = c.get_collection(q["new_collection"]).config.metadata["vectune"]
        assert passage_model(meta) == full["candidate_model"]  # the full model's passages are kept
        assert meta["parent_model"] == full["candidate_model"]
    monkeypatch.setenv("VECTUNE_MODE", "full")
    invoke("run", "--alias", "docs", "--seed", "8", *PERMISSIVE)
    f2 = _latest(home)
    assert f2["status"] == "promoted"
    man = json.loads((home / "models" / f2["candidate_model"] / "manifest.json").read_text())
    assert man["parent_model"] == q["candidate_model"]
    with qdrant() as c:
        meta = c.get_collection(f2["new_collection"]).config.metadata["vectune"]
    assert meta["mode"] == "full" and passage_model(meta) == f2["candidate_model"]
    # and rolling back to the query-side version needs no model download and loses nothing
    invoke("rollback", "--alias", "docs")
    with qdrant() as c:
        live = {a.alias_name: a.collection_name for a in c.get_aliases().aliases}["docs"]
    assert live == q["new_collection"]


def test_auto_mode_reports_every_candidate(indexed, home, monkeypatch):
    monkeypatch.setenv("VECTUNE_MODE", "auto")
    invoke("run", "--alias", "docs", "--dry-run", *PERMISSIVE)
    rep = _latest(home)
    assert rep["status"] == "dry-run" and rep["mode"] == "auto"
    assert set(rep["candidates"]) == {"linear", "query"}
    for c in rep["candidates"].values():
        assert c["gate"]["metric"] == "ndcg@10" and c["evaluation"]
    assert rep["choice"]["order"] == ["linear", "query"]
    gains = {k: c["gate"]["delta"] for k, c in rep["candidates"].items()}
    # both cost the same (one query pass, a vector copy): the better gain is chosen
    assert rep["choice"]["chosen"] == ("query" if gains["query"] > gains["linear"] else "linear")
    assert rep["choice"]["comparisons"][0]["rule"] == "equal cost: best gain"
