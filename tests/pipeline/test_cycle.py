"""End-to-end cycle through the real CLI: index → run → status → query via alias → rollback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import PERMISSIVE, invoke, qdrant


def _alias_target(alias: str) -> str:
    with qdrant() as c:
        return {a.alias_name: a.collection_name for a in c.get_aliases().aliases}[alias]


def test_index_creates_model_tagged_collection_with_lineage(indexed, corpus_records):
    with qdrant() as c:
        name = _target(c, "docs")
        assert name == "docs--all-minilm-l6-v2"
        meta = c.get_collection(name).config.metadata["vectune"]
        assert meta["model_ref"] == "bundled:all-MiniLM-L6-v2"
        assert meta["state"] == "live"
        assert c.count(name).count == len(corpus_records)
        # string ids map to UUIDs; the original id stays in the payload
        rec, _ = c.scroll(name, limit=1, with_payload=True)
        assert rec[0].payload["doc_id"] in {r["_id"] for r in corpus_records}


def _target(c, alias):
    return {a.alias_name: a.collection_name for a in c.get_aliases().aliases}[alias]


@pytest.mark.slow
def test_full_cycle_promote_status_query_rollback(indexed, home, corpus_records):
    before = _alias_target("docs")
    out = invoke("run", "--alias", "docs", "--json", *PERMISSIVE)
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["status"] == "promoted", rep.get("reason")
    new = rep["new_collection"]
    assert new.startswith("docs--all-minilm-l6-v2-ft-")
    assert _alias_target("docs") == new
    # the report has what a reader needs
    assert rep["counts"]["read"]["usable"] == len(corpus_records)
    assert rep["counts"]["train"]["examples"] > 0
    assert set(rep["evaluation"]["synthetic"]["live"]) >= {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"}
    assert rep["gate"]["evidence"] == "synthetic"
    assert (home / "work" / "reports" / "docs" / f"{rep['run_id']}.md").exists()

    # lineage on the new collection, model in the store with a manifest, safetensors
    with qdrant() as c:
        meta = c.get_collection(new).config.metadata["vectune"]
        assert meta["parent_collection"] == before
        assert meta["parent_model"] == "bundled:all-MiniLM-L6-v2"
        assert meta["state"] == "live"
        assert meta["eval"]["gate"]["metric"] == "ndcg@10"
        model_dir = home / "models" / meta["model_ref"]
        assert (model_dir / "manifest.json").exists()
        assert list(model_dir.rglob("*.safetensors"))
        # config copied: same distance and size; every point carried over with its payload
        assert c.count(new).count == c.count(before).count
        old_pts = {str(p.id): p.payload for p in c.scroll(before, limit=100)[0]}
        new_pts = {str(p.id): p.payload for p in c.scroll(new, limit=100)[0]}
        assert old_pts == new_pts

    # status shows the lineage
    st = json.loads(invoke("status", "--alias", "docs", "--json").output)
    assert st["live_collection"] == new
    assert st["rollback_target"] == before
    assert [v["collection"] for v in st["versions"]] == [before, new]
    text = invoke("status", "--alias", "docs").output
    assert new in text and "rollback target" in text

    # apps querying through the alias use the new vectors and the new model
    from vectune import resolve
    from vectune.config.settings import Settings

    with qdrant() as c:
        coll, enc = resolve(c, "docs", Settings())
        assert coll == new
        rec = c.scroll(coll, limit=1, with_vectors=True)[0][0]
        expected = enc.encode_passages([rec.payload["text"]])[0]
        assert np.allclose(np.asarray(rec.vector), expected, atol=1e-3)
        old_vec = np.asarray(c.retrieve(before, [rec.id], with_vectors=True)[0].vector)
        assert not np.allclose(old_vec, expected, atol=1e-3), "promotion must write the tuned model's vectors"
        hits = c.query_points("docs", query=enc.encode_queries([rec.payload["text"][:80]])[0].tolist(), limit=3)
        assert rec.id in [h.id for h in hits.points]

    # rollback: atomic swap back, recorded
    invoke("rollback", "--alias", "docs")
    assert _alias_target("docs") == before
    st = json.loads(invoke("status", "--alias", "docs", "--json").output)
    assert st["live_collection"] == before
    assert any(ev["event"] == "rollback" for ev in st["history"])
    hist = invoke("history", "--alias", "docs").output
    assert "promotion" in hist and "rollback" in hist


@pytest.mark.slow
def test_strict_gate_keeps_alias_untouched(indexed):
    before = _alias_target("docs")
    with qdrant() as c:
        n_before = len([col for col in c.get_collections().collections if col.name.startswith("docs")])
    out = invoke("run", "--alias", "docs", "--allow-synthetic-gate", "--min-delta", "0.9", "--keep-candidate", "--json")
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["status"] == "kept" and "below the required" in rep["reason"]
    assert _alias_target("docs") == before
    # the rejected candidate is kept for inspection, marked as such
    manifest = json.loads((Path(rep["candidate_saved"]) / "manifest.json").read_text())
    assert manifest["state"] == "rejected"
    with qdrant() as c:
        assert len([col for col in c.get_collections().collections if col.name.startswith("docs")]) == n_before


def test_synthetic_only_evidence_never_promotes_by_default(indexed, home):
    out = invoke("run", "--alias", "docs")
    assert "KEPT LIVE" in out.output and "synthetic" in out.output
    assert "Training skipped" in out.output
    assert _alias_target("docs") == "docs--all-minilm-l6-v2"
    assert not (home / "models").exists() or not any((home / "models").iterdir())


@pytest.mark.slow
def test_dry_run_evaluates_but_never_swaps(indexed):
    out = invoke("run", "--alias", "docs", "--dry-run", "--json")
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["status"] == "dry-run"
    assert rep["evaluation"]["synthetic"]["candidate"]["queries"] > 0
    assert _alias_target("docs") == "docs--all-minilm-l6-v2"


@pytest.mark.slow
def test_golden_eval_set_decides(indexed, tmp_path, corpus_records):
    golden = tmp_path / "golden.jsonl"
    rows = [{"query": f"what does the {r['title'].replace('-', ' ')} section say", "relevant": [r["_id"]]}
            for r in corpus_records[:12]]
    golden.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = invoke("run", "--alias", "docs", "--eval-set", golden, "--dry-run", "--json")
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["gate"]["evidence"] == "golden"
    assert rep["evaluation"]["golden"]["live"]["queries"] == 12
    assert "golden" in rep["evaluation"] and "synthetic" in rep["evaluation"]


@pytest.mark.slow
def test_second_run_on_unchanged_collection_is_a_noop(indexed):
    invoke("run", "--alias", "docs", "--allow-synthetic-gate", "--min-delta", "0.9")
    out = invoke("run", "--alias", "docs", "--allow-synthetic-gate", "--min-delta", "0.9")
    assert "NOTHING TO DO" in out.output


@pytest.mark.slow
def test_train_set_adds_real_pairs(indexed, tmp_path, corpus_records):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"query": f"question about {r['title']}", "relevant": [r["_id"]]}) + "\n"
                             for r in corpus_records[:6]))
    out = invoke("run", "--alias", "docs", "--train-set", train, "--dry-run", "--json")
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["counts"]["train_set"] == {"queries": 6, "pairs": 6, "unknown_ids": 0}
    assert rep["counts"]["pairs"]["by_source"]["train-set"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("method", ["keyphrase", "cloze"])
def test_offline_methods_make_queries(indexed, method):
    out = invoke("run", "--alias", "docs", "--offline-method", method, "--dry-run", "--json")
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["teacher"] == f"offline:{method}"
    assert rep["counts"]["generate"]["train"]["kept"] > 0
