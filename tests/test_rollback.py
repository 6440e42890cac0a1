"""Rollback and retention: a rollback syncs what apps wrote since the promotion; prune protects what matters."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import PERMISSIVE, invoke, qdrant

pytestmark = pytest.mark.slow  # each test promotes (train + reindex) first


def _points(c, name):
    recs = c.scroll(name, limit=1000, with_payload=True, with_vectors=True)[0]
    return {str(r.id): r for r in recs}


def _alias():
    with qdrant() as c:
        return {a.alias_name: a.collection_name for a in c.get_aliases().aliases}["docs"]


def _promote():
    out = invoke("run", "--alias", "docs", "--json", *PERMISSIVE)
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["status"] == "promoted"
    return rep


def test_rollback_syncs_writes_made_after_the_promotion(indexed, home):
    from qdrant_client import models

    from vectune import resolve
    from vectune.models import load_encoder
    from vectune.settings import Settings

    base = _alias()
    rep = _promote()
    with qdrant() as c:
        coll, enc = resolve(c, "docs", Settings())  # the app uses the promoted model now
        ids = sorted(_points(c, coll), key=str)
        changed_id, deleted_id = ids[0], ids[1]
        changed = c.retrieve("docs", [int(changed_id) if changed_id.isdigit() else changed_id])[0]
        new_text = "Changed after the promotion: how do decorators wrap a function? " + changed.payload["text"][:200]
        added_text = "Added after the promotion: the walrus operator := assigns inside an expression."
        c.upsert("docs", [
            models.PointStruct(id=changed.id, vector=enc.encode_passages([new_text])[0].tolist(),
                               payload={**changed.payload, "text": new_text}),
            models.PointStruct(id=424242, vector=enc.encode_passages([added_text])[0].tolist(),
                               payload={"text": added_text, "doc_id": "added"}),
        ])
        c.delete("docs", points_selector=models.PointIdsList(points=[deleted_id if not deleted_id.isdigit() else int(deleted_id)]))
        live_now = {k: r.payload for k, r in _points(c, "docs").items()}

    out = invoke("rollback", "--alias", "docs")
    assert "synced 2 re-embedded, 1 deleted" in out.output
    assert _alias() == base
    with qdrant() as c:
        rolled = _points(c, "docs")
        assert {k: r.payload for k, r in rolled.items()} == live_now  # exactly the live id set and payloads
        old_enc = load_encoder("bundled:all-MiniLM-L6-v2", Settings(),
                               max_seq_length=c.get_collection(base).config.metadata["vectune"]["max_seq_length"])
        # vectors from the OLD model, of the NEW text
        assert np.allclose(rolled[str(changed.id)].vector, old_enc.encode_passages([new_text])[0], atol=1e-3)
        assert np.allclose(rolled["424242"].vector, old_enc.encode_passages([added_text])[0], atol=1e-3)
        assert deleted_id not in rolled
    st = json.loads(invoke("status", "--alias", "docs", "--json").output)
    ev = [e for e in st["history"] if e["event"] == "rollback"][-1]
    assert ev["synced"]["upserted"] == 2 and ev["synced"]["deleted"] == 1
    assert "synced 2 upserted, 1 deleted" in invoke("history", "--alias", "docs").output

    # roll forward again to the tuned version: also synced (nothing changed since, so nothing to do)
    out = invoke("rollback", "--alias", "docs", "--to", rep["new_collection"])
    assert _alias() == rep["new_collection"]
    assert "synced 0 re-embedded, 0 deleted" in out.output


def test_rollback_refuses_when_target_model_is_missing(indexed, home):
    rep = _promote()
    invoke("rollback", "--alias", "docs")
    shutil.rmtree(home / "models" / rep["candidate_model"])
    out = invoke("rollback", "--alias", "docs", "--to", rep["new_collection"], expect=3)
    assert "not in the model store" in out.output
    assert _alias() == "docs--all-minilm-l6-v2"
    st = json.loads(invoke("status", "--alias", "docs", "--json").output)
    assert any(v["collection"] == rep["new_collection"] and not v["model_available"] for v in st["versions"])
    invoke("rollback", "--alias", "docs", "--to", rep["new_collection"], "--force")
    assert _alias() == rep["new_collection"]


def test_prune_keeps_live_and_rollback_target(indexed, home, monkeypatch):
    first = _promote()
    monkeypatch.setenv("VECTUNE_SEED", "7")  # a different cycle, not a no-op
    second = _promote()
    assert _alias() == second["new_collection"]
    out = invoke("prune", "--alias", "docs", "--keep", "1", "--dry-run")
    assert "would delete 1: docs--all-minilm-l6-v2" in out.output
    invoke("prune", "--alias", "docs", "--keep", "1", "--delete-models")
    with qdrant() as c:
        names = {col.name for col in c.get_collections().collections}
    assert second["new_collection"] in names and first["new_collection"] in names  # live + rollback target
    assert "docs--all-minilm-l6-v2" not in names
    assert (home / "models" / first["candidate_model"]).exists()
    invoke("rollback", "--alias", "docs")
    assert _alias() == first["new_collection"]
