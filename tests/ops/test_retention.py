"""Retention by policy (issue 22, item 1): after every promotion and rollback, at most ``keep_versions`` collections
per alias, never the live one or the rollback target, their models with them; sizes and the space warning."""

from __future__ import annotations

import json

import pytest

from tests.helpers.truth import ALIAS, BATCH, Flow, World, as_versions, hash_models, share
from vectune.core import faults
from vectune.models.store import MANIFEST, ModelStore
from vectune.ops import retention, space
from vectune.qdrant import lineage


def _fake_model(settings, tag: str) -> None:
    """A model folder the store counts as its own (a manifest): enough to see retention delete it or not."""
    d = settings.model_dir / tag
    d.mkdir(parents=True, exist_ok=True)
    (d / "weights.bin").write_bytes(b"x" * 1000)
    (d / MANIFEST).write_text(json.dumps({"tag": tag, "files": {}}))


def _versions(settings, texts, monkeypatch, n: int) -> tuple[World, list[str]]:
    """``n`` versions of ``docs`` promoted one after another (copy mode), oldest first; the newest is live."""
    from vectune.promote.build import build
    from vectune.promote.publish import publish

    w = World(hash_models(), texts)
    Flow("promote-copy", w)
    base, _ = as_versions(w, copy=True)
    names, prev = [base], base
    for i in range(1, n):
        name, tag = f"{ALIAS}--v{i}", f"v{i}-tag"
        rec = lineage.record(alias=ALIAS, model_ref=tag, model_tag=tag, created_by="promote", dense_vector="dense",
                             parent_collection=prev, passage_model="bundled:all-MiniLM-L6-v2", mode="query",
                             text_field="text", max_seq_length=64)
        rec["created_at"] = f"2024-{i + 1:02d}-01T00:00:00+00:00"
        w.store.create_like(prev, name, w.spec, 384, rec)
        build(w.store, None, prev, name, w.spec, "text", BATCH)
        publish(w.store, None, prev, name, ALIAS, w.spec, "text", BATCH)
        lineage.set_state(w.store, name, "live")
        lineage.set_state(w.store, prev, "retired")
        _fake_model(settings, tag)
        names.append(name)
        prev = name
    share(w, monkeypatch)
    return w, names


def test_plan_keeps_live_target_and_newest(settings, texts, monkeypatch):
    w, names = _versions(settings, texts, monkeypatch, 5)
    p = retention.plan(w.store, ALIAS, 3)
    assert p.live == names[4] and p.target == names[3]
    assert p.kept == [names[4], names[3], names[2]] and p.doomed == [names[1], names[0]]
    # keep 1: the live one and the rollback target are kept all the same
    p1 = retention.plan(w.store, ALIAS, 1)
    assert p1.kept == [names[4], names[3]] and p1.doomed == [names[2], names[1], names[0]]


def test_apply_deletes_collections_and_their_models_in_two_phases(settings, texts, monkeypatch):
    w, names = _versions(settings, texts, monkeypatch, 5)
    marked = []
    faults.HOOKS["delete_collection"].append(lambda store, collection, **_: marked.append(
        (collection, lineage.doom_mark(store, collection)["why"])))
    out = retention.apply(w.store, ModelStore.from_settings(settings), ALIAS, 3, delete_models=True, why="retention")
    assert out["deleted"] == [names[1], names[0]] and out["models_deleted"] == ["v1-tag"]
    assert marked == [(names[1], "retention"), (names[0], "retention")]  # each marked before its delete
    assert not (settings.model_dir / "v1-tag").exists() and (settings.model_dir / "v2-tag").exists()
    assert [n for n, _ in lineage.versions(w.store, ALIAS)] == names[2:]
    assert w.compare(None)[1] == []


@pytest.mark.parametrize("policy", ["on", "collections", "off"])
def test_after_publish_follows_the_policy(settings, texts, monkeypatch, policy):
    w, names = _versions(settings, texts, monkeypatch, 5)
    s = settings.replace(retention=policy, keep_versions=2)
    out = retention.after_publish(w.store, s, ALIAS)
    left = [n for n, _ in lineage.versions(w.store, ALIAS)]
    if policy == "off":
        assert out is None and left == names  # today's behaviour: nothing deleted by itself
        return
    assert left == names[3:] and out["deleted"] == [names[2], names[1], names[0]]
    assert (settings.model_dir / "v2-tag").exists() == (policy == "collections")
    from vectune.observe.history import History

    assert History(settings.work_dir, ALIAS).read()[-1]["event"] == "retention"


def test_sizes_and_the_space_warning(settings, texts, monkeypatch, caplog):
    w, names = _versions(settings, texts, monkeypatch, 3)
    rows = space.versions(w.store, ALIAS)
    assert [r["collection"] for r in rows] == names[::-1] and all(r["points"] == 30 for r in rows)
    # embedded in memory: Qdrant reports no footprint, the estimate is the raw vectors (30 x (384 + 8) x 4 bytes)
    assert all(r["disk_bytes"] is None for r in rows)
    s = settings.replace(space_headroom_gb=1e-6)  # ~1 KB of headroom
    nxt = space.next_promotion(w.store, s, ALIAS, names[-1])
    assert nxt["collection_bytes"] == 30 * (384 + 8) * 4 and "raw vectors" in nxt["how"]
    assert nxt["model_bytes"] > 0 and nxt["headroom_from"] == "space_headroom_gb"
    assert "needs about" in nxt["warning"] and "VECTUNE_KEEP_VERSIONS" in nxt["warning"]
    out = retention.after_run(w.store, s, ALIAS, moved=False)
    assert [v["collection"] for v in out["versions"]] == names[::-1] and out["next_promotion"]["warning"]
    assert [v["collection"] for v in out["versions"] if v["live"]] == [names[-1]]
    assert [v["collection"] for v in out["versions"] if v["rollback_target"]] == [names[-2]]
    from vectune.observe.metrics import render

    text = render({"alias": ALIAS, "status": "kept", "retention": out})
    assert "vectune_versions_kept{alias=\"docs\"} 3" in text
    assert f'vectune_collection_points{{alias="docs",collection="{names[-1]}"}} 30' in text
    assert 'vectune_space_warning{alias="docs"} 1' in text
    assert settings.replace(space_headroom_gb=100).promote.space_headroom_gb == 100
    assert space.next_promotion(w.store, settings.replace(space_headroom_gb=100), ALIAS, names[-1])["warning"] is None


def test_embedded_on_disk_reports_the_folder_size(store):
    from qdrant_client import models

    store.create_collection("docs--x", 4, "Cosine", {"alias": "docs", "model_ref": "m", "state": "live"})
    store.upsert("docs--x", [models.PointStruct(id=i, vector=[1.0, 0, 0, float(i)], payload={"t": "x" * 100})
                             for i in range(50)])
    fp = store.footprints(["docs--x"])["docs--x"]
    assert fp["disk_bytes"] > 5000 and fp["source"] == "embedded storage folder"


# ------------------------------------------------------------------------------ nightly, end to end
NIGHTS = 7


@pytest.mark.slow
def test_nightly_promotions_keep_three_versions_and_the_oldest_still_rolls_back(indexed, home, monkeypatch):
    """Seven nights, each a real `vectune run` that promotes (query side, linear map; the app adds a passage
    every day so no night is a no-op), with keep_versions=3 and retention on (the default): after every
    night at most 3 collections, the live one and the rollback target among them, the models of the
    deleted versions gone and those of the kept ones there; then a rollback to the oldest kept version
    works and searches with its own query model."""
    from qdrant_client import models as qm

    from tests.helpers.cli import qdrant
    from vectune import Alias

    env = {"VECTUNE_MODE": "query", "VECTUNE_QUERY_CANDIDATES": "linear", "VECTUNE_KEEP_VERSIONS": "3",
           "VECTUNE_ALLOW_SYNTHETIC_GATE": "true", "VECTUNE_MIN_DELTA": "-1", "VECTUNE_BOOTSTRAP": "false"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    docs = Alias("docs")
    promoted, seen_max = [], 0
    for night in range(NIGHTS):
        with qdrant() as c:  # the app's day: one new passage through the alias
            vec = docs.resolve(c).encoder.encode_passages([f"Night {night}: a new passage about generators."])[0]
            c.upsert("docs", [qm.PointStruct(id=90_000 + night, vector=vec.tolist(),
                                             payload={"text": f"Night {night}: a new passage about generators.",
                                                      "doc_id": f"n{night}"})])
        rep = docs.run()
        assert rep.status == "promoted", rep.reason
        promoted.append((rep.new_collection, rep.candidate_model))
        st = docs.status()
        names = [v["collection"] for v in st["versions"]]
        seen_max = max(seen_max, len(names))
        assert len(names) <= 3, names
        assert st["live_collection"] == rep.new_collection and st["live_collection"] in names
        assert st["rollback_target"] in names and st["rollback_target"] == (promoted[-2][0] if night else
                                                                            "docs--all-minilm-l6-v2")
        kept_models = {v["model"] for v in st["versions"]}
        for coll, model in promoted:
            assert (coll in names) == (model in kept_models)
            assert (home / "models" / model).exists() == (coll in names), (night, coll)
        kept = rep.retention
        assert [v["collection"] for v in kept["versions"]] == names[::-1] and kept["versions"][0]["points"] > 0
    assert seen_max == 3 and len(promoted) == NIGHTS
    oldest = [c for c, _ in promoted[-3:]][0]
    out = docs.rollback(to=oldest)
    assert out["to"] == oldest and docs.status()["live_collection"] == oldest
    hits = docs.search("generators", limit=3)
    assert hits and docs.resolve().collection == oldest
    assert len(docs.status()["versions"]) <= 3
    events = [e["event"] for e in docs.history()]
    assert events.count("promotion") == NIGHTS and events.count("retention") >= NIGHTS - 2
