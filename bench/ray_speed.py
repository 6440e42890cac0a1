#!/usr/bin/env python
"""Throughput of the two reindex engines on this machine, and a paper estimate at scale.

    python bench/ray_speed.py                   # ~600 short texts, 2 CPU actors: a minute or two
    python bench/ray_speed.py --points 3000 --actors 4

Both engines copy the same synthetic source collection (embedded Qdrant, bundled MiniLM,
same page size and encode batch) into a new collection:

* local: ``promote.build`` in this process (model load timed apart);
* ray:   ``engines.ray_engine.build_ray`` with ``--actors`` CPU actors on a local Ray cluster
  (``ray.init(num_cpus=actors)``), embedded mode: the driver does the Qdrant I/O, the actors
  encode. Its wall time includes starting the actors and loading the model in each of them,
  which is what a real job pays once.

On a machine with few cores the two are about as fast: the local engine already keeps the
cores busy (torch threads), and Ray adds actor start-up. The point of the Ray engine is
several GPUs / nodes; the estimate for that is computed, not measured (see the markdown).

Writes bench/results/ray-speed.json and the ``ray-speed`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from speed import fill_source, short_texts  # noqa: E402

#: Measured single-H100 encode throughput (MiniLM, batch 64, fp32, SciFact passages), bench/results/speed-gpu-h100.json
H100_ENCODE_PER_S = 920.1
#: Measured on the same H100: the local engine's reindex path / raw encode.
H100_REINDEX_RATIO = 0.73
#: Illustrative Qdrant ingest rates (points/s) for the estimate; not measured here.
QDRANT_UPSERT_PER_S = (5_000, 20_000)
ESTIMATE_POINTS = 50_000_000
ESTIMATE_GPUS = (1, 2, 4, 8, 16, 32)


def run(args) -> dict:
    import ray

    from vectune.config.settings import BUNDLED_MODEL, load_settings
    from vectune.models.store import ModelStore
    from vectune.promote.build import build
    from vectune.promote.engines.ray_engine import build_ray
    from vectune.qdrant.store import Store

    home = Path(args.home or tempfile.mkdtemp(prefix="ray-speed-", dir=common.BENCH / "work"
                                              if (common.BENCH / "work").exists() else None))
    shutil.rmtree(home, ignore_errors=True)
    settings = load_settings(home=home, upsert_batch=args.batch)
    texts = short_texts(args.points)
    out: dict = {"points": args.points, "page_size": args.batch, "encode_batch_size": settings.model.encode_batch_size,
                 "actors": args.actors, "partitions": args.partitions}
    with Store.open(settings) as store:
        fill_source(store, "src", texts, None)
        spec = store.dense_spec("src")

        t0 = time.perf_counter()
        enc = ModelStore.from_settings(settings).load(BUNDLED_MODEL)
        load_s = time.perf_counter() - t0
        store.create_like("src", "dst-local", spec, enc.dim, {"model_ref": "bench"})
        t0 = time.perf_counter()
        b = build(store, enc, "src", "dst-local", spec, "text", args.batch)
        local_s = time.perf_counter() - t0
        out["local"] = {"model_load_s": round(load_s, 2), "build_s": round(local_s, 2),
                        "chunks_per_s": round(args.points / local_s, 1),
                        "chunks_per_s_incl_load": round(args.points / (local_s + load_s), 1),
                        "upserted": b.upserted, "torch_threads": _torch_threads()}

        t0 = time.perf_counter()
        ray.init(num_cpus=args.actors, include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - t0
        try:
            runs = []
            for i in range(args.repeats):
                name = f"dst-ray-{i}"
                store.create_like("src", name, spec, enc.dim, {"model_ref": "bench"})
                t0 = time.perf_counter()
                r = build_ray(ModelStore.from_settings(settings), settings.qdrant, BUNDLED_MODEL, {}, "src", name, spec, "text",
                              args.batch,
                              partitions=args.partitions, store=store, concurrency=args.actors)
                secs = time.perf_counter() - t0
                assert r.upserted == args.points and store.count(name) == args.points
                runs.append(round(secs, 2))
        finally:
            ray.shutdown()
        best = min(runs)
        out["ray"] = {"ray_init_s": round(init_s, 2), "build_s_runs": runs, "build_s": best,
                      "chunks_per_s": round(args.points / best, 1), "upserted": args.points,
                      "mode": "embedded (driver does Qdrant I/O, actors encode)",
                      "note": "wall time includes actor start-up and the model load in each actor"}
    out["ray_vs_local"] = round(out["ray"]["chunks_per_s"] / out["local"]["chunks_per_s"], 2)
    out["ray_vs_local_incl_load"] = round(out["ray"]["chunks_per_s"] / out["local"]["chunks_per_s_incl_load"], 2)
    out["estimate"] = estimate()
    if not args.home:
        shutil.rmtree(home, ignore_errors=True)
    return out


def _torch_threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except Exception:  # noqa: BLE001
        return None


def estimate() -> dict:
    """50M chunks on N GPUs, from the measured single-H100 rates (a paper estimate)."""
    rows = []
    for n in ESTIMATE_GPUS:
        encode = n * H100_ENCODE_PER_S
        pipeline = encode * H100_REINDEX_RATIO
        row = {"gpus": n, "encode_per_s": round(encode), "pipeline_per_s": round(pipeline),
               "hours_encode_only": round(ESTIMATE_POINTS / encode / 3600, 2),
               "hours_pipeline": round(ESTIMATE_POINTS / pipeline / 3600, 2)}
        for u in QDRANT_UPSERT_PER_S:
            row[f"hours_if_qdrant_{u}"] = round(ESTIMATE_POINTS / min(pipeline, u) / 3600, 2)
        rows.append(row)
    return {"points": ESTIMATE_POINTS, "h100_encode_per_s": H100_ENCODE_PER_S,
            "h100_reindex_ratio": H100_REINDEX_RATIO, "qdrant_upsert_per_s_assumed": list(QDRANT_UPSERT_PER_S),
            "rows": rows}


def markdown(r: dict, m: dict) -> str:
    loc, ray_ = r["local"], r["ray"]
    e = r["estimate"]
    u1, u2 = e["qdrant_upsert_per_s_assumed"]
    lines = [
        "## Ray engine vs local engine (reindex throughput)",
        "",
        f"{common.now()} · `{common.command_line()}` · {common.machine_line(m)}",
        "",
        f"{r['points']} synthetic short texts, bundled MiniLM on CPU, embedded Qdrant, page size {r['page_size']}, "
        f"encode batch {r['encode_batch_size']}.",
        "",
        "| engine | wall time | chunks/s | notes |",
        "| --- | ---: | ---: | --- |",
        f"| local (`promote.build`) | {loc['build_s']} s (+{loc['model_load_s']} s model load) | {loc['chunks_per_s']} "
        f"({loc['chunks_per_s_incl_load']} incl. load) | one process, {loc['torch_threads']} torch threads |",
        f"| ray (`build_ray`) | {ray_['build_s']} s (best of {ray_['build_s_runs']}) | {ray_['chunks_per_s']} | "
        f"{r['actors']} CPU actors × 1 thread, {r['partitions']} partitions, {ray_['mode']}; includes actor "
        f"start-up and model load per actor (`ray.init` {ray_['ray_init_s']} s not counted) |",
        "",
        f"Ray / local: **{r['ray_vs_local']}×** ({r['ray_vs_local_incl_load']}× counting the local model load). "
        f"On {m.get('nproc')} cores the engines are about as fast or Ray is slower, as expected: the local "
        "engine already uses every core through torch's threads, and the Ray job pays for starting actors and "
        "loading the model in each. The Ray engine is for many GPUs or nodes; nothing here measures that.",
        "",
        f"### Paper estimate: {e['points'] / 1e6:.0f}M chunks on N GPUs (not measured)",
        "",
        f"Assumptions: each GPU encodes at the single-H100 rate measured in `speed-gpu-h100.json` "
        f"({e['h100_encode_per_s']} chunks/s: MiniLM, fp32, batch 64, SciFact passages up to 256 tokens; shorter "
        f"texts, fp16 or a bigger batch would be faster, a bigger model slower); the reindex pipeline keeps "
        f"{e['h100_reindex_ratio']} of that (measured for the local engine on that H100: scroll, upsert and "
        "verification overlap imperfectly with encoding); the workers scale linearly (server mode: each actor reads "
        "and writes its own id range, the driver only plans and records progress); the driver's one id-only scroll "
        "of the source and the catch-up/verify are not counted. The limit at scale is then Qdrant's upsert rate: "
        f"we have not measured a server's ingest here, so two illustrative rates are shown ({u1:,} and {u2:,} "
        "points/s for the whole cluster; it depends on the server's CPUs and disks, replication, payload size and "
        "whether HNSW indexing runs during the ingest).",
        "",
        f"| GPUs | encode chunks/s | pipeline chunks/s | hours (pipeline) | hours if Qdrant takes {u1:,}/s "
        f"| hours if Qdrant takes {u2:,}/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in e["rows"]:
        lines.append(f"| {row['gpus']} | {row['encode_per_s']:,} | {row['pipeline_per_s']:,} | "
                     f"{row['hours_pipeline']} | {row[f'hours_if_qdrant_{u1}']} | {row[f'hours_if_qdrant_{u2}']} |")
    lines += ["", "Beyond about "
              f"{max(1, round(u1 / (e['h100_encode_per_s'] * e['h100_reindex_ratio'])))}–"
              f"{round(u2 / (e['h100_encode_per_s'] * e['h100_reindex_ratio']))} GPUs, more GPUs do not help "
              "unless Qdrant ingests faster (more nodes/shards, indexing deferred during the bulk load)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64, help="page size (points per Qdrant request) for both engines")
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2, help="Ray runs (the best is reported)")
    ap.add_argument("--home", default=None)
    ap.add_argument("--out", default=str(common.RESULTS_DIR / "ray-speed.json"))
    args = ap.parse_args()
    m = common.machine()
    res = run(args)
    res.update(machine=m, command=common.command_line(), date=common.now())
    common.write_json(Path(args.out), res)
    common.update_section("ray-speed", markdown(res, m))
    print(markdown(res, m))


if __name__ == "__main__":
    main()
