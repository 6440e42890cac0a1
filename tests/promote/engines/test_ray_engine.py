"""The Ray engine (``vectune.promote.engines.ray_engine.build_ray``) against the local one (``promote.build``).

A real local Ray cluster (2 CPUs, module-scoped), the real bundled MiniLM and the real
embedded Qdrant. Embedded Qdrant is single-process, so these tests run the engine's
embedded mode (the driver does the Qdrant I/O, actors encode); the server mode's unit of
work (``embed_partition``, one id range scrolled, embedded and upserted) is run in-process
here, and the whole server mode runs when the suite is pointed at a server (QDRANT_URL).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray engine is optional (pip install 'vectune[ray]'); Ray is not installed")
pytest.importorskip("ray.data", reason="the Ray engine needs Ray Data (pip install 'ray[data]')")

from vectune.config.settings import load_settings  # noqa: E402
from vectune.models.store import ModelStore  # noqa: E402
from vectune.promote.build import build  # noqa: E402
from vectune.promote.engines import ray_engine  # noqa: E402
from vectune.promote.engines.ray_engine import PROGRESS_FILE, Progress, build_ray, embed_partition, plan_partitions  # noqa: E402
from vectune.qdrant.store import Store, point_id_for  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def job(indexed, tmp_path):
    """The 'docs' collection, an open Store, and what build/build_ray need; the local engine's result as reference."""
    settings = load_settings()
    store = Store.open(settings)
    live = store.resolve_alias(indexed)
    meta = store.metadata(live)
    spec = store.dense_spec(live)
    kwargs = {"query_prompt": meta.get("query_prompt"), "max_seq_length": meta.get("max_seq_length")}
    enc = ModelStore.from_settings(settings).load(meta["model_ref"], **kwargs)
    _create(store, live, spec, "t-local")
    build(store, enc, live, "t-local", spec, settings.collection.text_field, batch=8)
    j = dict(settings=settings, store=store, live=live, spec=spec, ref=meta["model_ref"], kwargs=kwargs, enc=enc,
             progress=tmp_path / "progress")
    try:
        yield j
    finally:
        store.close()


def _create(store, live, spec, name):
    store.create_like(live, name, spec, spec.size, {"state": "building"})


def _dump(store, name) -> dict:
    out = {}
    for records, _ in store.scroll(name, vectors=True, batch=256):
        for r in records:
            out[str(r.id)] = (r.payload, r.vector)
    return out


def _assert_same(store, spec, a: str, b: str) -> None:
    da, db = _dump(store, a), _dump(store, b)
    assert set(da) == set(db), "the two engines wrote different ids"
    for key, (payload, vec) in da.items():
        assert db[key][0] == payload, f"payload of {key} differs"
        va = vec[spec.name] if isinstance(vec, dict) else vec
        vb = db[key][1][spec.name] if isinstance(db[key][1], dict) else db[key][1]
        np.testing.assert_allclose(np.asarray(va), np.asarray(vb), atol=1e-4, err_msg=f"vector of {key} differs")


def _ray(j, target, **kw):
    kw.setdefault("partitions", 4)
    return build_ray(ModelStore.from_settings(j["settings"]), j["settings"].qdrant, j["ref"], j["kwargs"], j["live"],
                     target, j["spec"], j["settings"].collection.text_field,
                     8, progress_dir=j["progress"], store=j["store"], **kw)


@pytest.mark.slow
def test_ray_engine_matches_local_engine(ray_cluster, job):
    _create(job["store"], job["live"], job["spec"], "t-ray")
    stats = _ray(job, "t-ray")
    assert stats.upserted == 40
    _assert_same(job["store"], job["spec"], "t-local", "t-ray")
    done = json.loads((job["progress"] / PROGRESS_FILE).read_text())
    assert done["complete"] and len(done["done"]) == 4 and sum(done["done"].values()) == 40


@pytest.mark.slow
@pytest.mark.parametrize("how", ["exit", "raise"])
def test_failed_partition_is_retried_alone(ray_cluster, job, tmp_path, monkeypatch, how):
    """exit: the worker process dies mid-job: Ray restarts the actor and retries that partition's task
    (one driver round is enough); raise: the partition fails inside the worker and reports it, the
    others complete, and the driver retries that partition alone in a second round."""
    marker = tmp_path / "fault-fired"
    monkeypatch.setenv(ray_engine.FAULT_ENV, f"{how}:1:{marker}")
    _create(job["store"], job["live"], job["spec"], "t-ray")
    stats = _ray(job, "t-ray", max_rounds=1 if how == "exit" else 2)
    assert marker.exists(), "the injected failure did not fire"
    assert stats.upserted == 40  # nothing processed twice to completion, nothing missing
    _assert_same(job["store"], job["spec"], "t-local", "t-ray")


@pytest.mark.slow
def test_resume_processes_only_missing_partitions(ray_cluster, job):
    """A job killed after two of four partitions: the next call does only the other two.

    The model is a model-store tag (as after training) shipped to the actors through the object
    store, as on a multi-node cluster where only the driver has the model volume."""
    from vectune.models.store import ModelStore

    store, live, spec, tf = job["store"], job["live"], job["spec"], job["settings"].collection.text_field
    ModelStore.from_settings(job["settings"]).save(job["enc"], "tuned-tag", {"note": "test"})
    job["ref"] = "tuned-tag"
    _create(store, live, spec, "t-ray")
    parts = plan_partitions(store, live, 4)
    prog = Progress(job["progress"], {"source": live, "target": "t-ray", "dense_vector": spec.name,
                                      "text_field": tf, "model": job["ref"]})
    prog.parts = parts
    # The first two partitions done by the server mode's actor code, run in-process on this store
    # (a batch as Ray Data hands it over: id-range descriptors as JSON).
    worker = ray_engine._Worker.__new__(ray_engine._Worker)
    worker.__dict__.update(mode="server", store=store, encoder=job["enc"], source=live, target="t-ray", spec=spec,
                           text_field=tf, batch=8, fault=None)
    out = worker({"part": np.asarray([p["part"] for p in parts[:2]]),
                  "start": np.asarray([json.dumps(p["start"]) for p in parts[:2]], dtype=object),
                  "end": np.asarray([json.dumps(p["end"]) for p in parts[:2]], dtype=object)})
    assert list(out["error"]) == ["", ""]
    prog.done.update({int(p): int(n) for p, n in zip(out["part"], out["n"])})
    prog.save()
    assert list(prog.done.values()) == [
        embed_partition(store, job["enc"], live, "t-ray", spec, tf, p, batch=8) for p in parts[:2]]  # idempotent
    first = sum(prog.done.values())
    assert 0 < first < 40 and store.count("t-ray") == first

    stats = _ray(job, "t-ray", partitions=7, ship_model=True)  # a resumed job keeps its plan whatever is asked
    assert stats.upserted == 40 - first
    _assert_same(store, spec, "t-local", "t-ray")
    assert _ray(job, "t-ray").upserted == 0  # complete: nothing left to do


def test_partitions_cover_every_id_once(home):
    """Integer and UUID ids (Qdrant orders integers first): the ranges are disjoint and cover everything."""
    from qdrant_client import models

    settings = load_settings()
    with Store.open(settings) as store:
        store.create_collection("mixed", 4)
        rng = np.random.default_rng(0)
        ids = [point_id_for(i * 7) for i in range(23)] + [point_id_for(f"doc-{i}") for i in range(31)]
        store.upsert("mixed", [models.PointStruct(id=i, vector=rng.normal(size=4).tolist(), payload={"text": "x"})
                               for i in ids])
        for n in (1, 3, 5, 54, 80):
            parts = plan_partitions(store, "mixed", n)
            assert 1 <= len(parts) <= n and parts[0]["start"] is None and parts[-1]["end"] is None
            seen = [str(r.id) for p in parts
                    for recs, _ in ray_engine.scroll_range(store, "mixed", p["start"], p["end"], batch=4)
                    for r in recs]
            assert sorted(seen) == sorted(str(i) for i in ids) and len(seen) == len(set(seen))


@pytest.mark.slow
def test_vectune_run_with_the_ray_engine_promotes(ray_cluster, indexed, monkeypatch):
    """The whole cycle with VECTUNE_ENGINE=ray: the reindex runs on Ray, the promotion is verified and swapped."""
    import json

    from tests.helpers.cli import PERMISSIVE, invoke, qdrant

    monkeypatch.setenv("VECTUNE_ENGINE", "ray")
    monkeypatch.setenv("VECTUNE_RAY_PARTITIONS", "3")
    out = invoke("run", "--alias", "docs", "--json", *PERMISSIVE)
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["status"] == "promoted"
    assert rep["counts"]["reindex"]["build"]["upserted"] == 40
    with qdrant() as c:
        live = {a.alias_name: a.collection_name for a in c.get_aliases().aliases}["docs"]
        assert live == rep["new_collection"] and c.count(live).count == 40
