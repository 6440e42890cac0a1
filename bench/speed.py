#!/usr/bin/env python
"""Speed and memory of vectune's machinery (issue 5 targets in brackets).

    python bench/speed.py                         # CPU-friendly defaults, a few minutes
    python bench/speed.py --points 20000 --cycle-docs 5000 --train-chunks 2000   # on a GPU

(a) reindex throughput: chunks/s of vectune's reindex path (promote.build + sync + verify from a source
    collection into a new one) / chunks/s of ``model.encode`` alone on the same texts and batch size [>= 0.9];
(b) hard-negative mining: vectune.pipeline.pairs.negatives.mine (live query encoder + vectors stored in Qdrant +
    Store.search_batch) vs sentence-transformers' util.mine_hard_negatives on the same pairs and corpus with
    the same guard (relative_margin=0.05, 1 negative, depth 30) [ratio >= 5x], and overlap of the negatives;
(c) memory: peak RSS of a reindex at two sizes (default 10k and 100k points), each in a fresh subprocess
    [growth < 1.2 for 10x]. Encoding is replaced by a stand-in encoder (hash vectors) so 100k fits a CPU;
    the rest of the path is vectune's. Two modes: ``stream`` (build against a generated source and a sink:
    vectune's own memory) and ``embedded`` (the real embedded Qdrant, which holds collections in RAM);
(d) no-op cycle: wall time of a second ``vectune run`` on an unchanged collection [< 10 s];
(e) training throughput (examples/s) of the first run, from its report's ``counts.train``.

Writes bench/results/speed.json (or --out) and a section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

DIM = 384


# ----------------------------------------------------------------------------- texts
# BENCH_TAG (e.g. gpu-h100) keeps runs on other machines in their own files and sections
TAG = os.environ.get("BENCH_TAG", "")

def passages(n: int, data: Path | None, seed: int = 0) -> list[str]:
    """``n`` distinct passages: the first n docs of a BEIR corpus, or synthetic ones made of real sentences."""
    if data:
        from quality import corpus_path, read_jsonl

        out = []
        for d in read_jsonl(corpus_path(data)):
            t = f"{d.get('title', '').strip()}. {d.get('text', '')}".strip(". ") if d.get("title") else d.get("text", "")
            if t:
                out.append(t)
            if len(out) >= n:
                break
        if len(out) < n:
            sys.exit(f"{data} has only {len(out)} docs; asked for {n}")
        return out
    from vectune.demo.corpus import demo_chunks

    sents = sorted({s.strip() for c in demo_chunks() for s in re.split(r"(?<=[.!?])\s+|\n+", c["text"])
                    if 30 <= len(s.strip()) <= 300})
    rng = random.Random(seed)
    return [f"Passage {i}. " + " ".join(rng.sample(sents, 3)) for i in range(n)]


def short_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "vector", "index", "query", "model", "shard", "alias", "point",
             "payload", "cosine", "batch", "token", "search", "record", "update", "filter", "segment"]
    return [f"doc {i}: " + " ".join(rng.choices(words, k=8)) for i in range(n)]


def unit_rows(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill_source(store, name: str, texts: list[str], vectors: np.ndarray | None, batch: int = 512) -> None:
    """A collection with the texts in payload 'text' (vectors: given, or random unit rows)."""
    from qdrant_client import models

    if store.collection_exists(name):
        store.delete_collection(name)
    store.create_collection(name, DIM, "Cosine", {"model_ref": "bench"})
    for i in range(0, len(texts), batch):
        vec = vectors[i:i + batch] if vectors is not None else unit_rows(min(batch, len(texts) - i), i)
        store.upsert(name, [models.PointStruct(id=i + j, vector=v.tolist(), payload={"text": t, "doc_id": f"d{i + j}"})
                            for j, (t, v) in enumerate(zip(texts[i:i + batch], vec))])


# ----------------------------------------------------------------------------- (a) reindex throughput
def bench_reindex(args, settings, enc, texts: list[str]) -> dict:
    from vectune.promote.build import build
    from vectune.promote.publish import verify
    from vectune.promote.sync import sync
    from vectune.qdrant.store import Store

    n = len(texts)
    bs = settings.model.encode_batch_size
    page = settings.promote.upsert_batch
    with Store.open(settings) as store:
        fill_source(store, "src", texts, None)
        spec = store.dense_spec("src")
        enc.encode_passages(texts[:bs])  # warm-up
        t0 = time.perf_counter()
        enc.model.encode(texts, batch_size=bs, convert_to_numpy=True, normalize_embeddings=True,
                         show_progress_bar=False)
        raw_whole = time.perf_counter() - t0
        if store.collection_exists("dst"):
            store.delete_collection("dst")
        store.create_like("src", "dst", spec, enc.dim, {"model_ref": "bench"})
        t0 = time.perf_counter()
        b = build(store, enc, "src", "dst", spec, "text", page)
        t1 = time.perf_counter()
        s = sync(store, enc, "src", "dst", spec, "text", page)
        t2 = time.perf_counter()
        v = verify(store, "src", "dst", spec, settings.promote.verify_sample)
        t3 = time.perf_counter()
        t4 = time.perf_counter()
        for i in range(0, n, page):  # the same pages build() encodes
            enc.model.encode(texts[i:i + page], batch_size=bs, convert_to_numpy=True, normalize_embeddings=True,
                             show_progress_bar=False)
        raw_paged = time.perf_counter() - t4
    reindex = t3 - t0
    return {
        "points": n, "encode_batch_size": bs, "page_size": page, "device": str(enc.model.device),
        "raw_encode_s": round(raw_whole, 2), "raw_encode_chunks_per_s": round(n / raw_whole, 1),
        "raw_encode_paged_s": round(raw_paged, 2), "raw_encode_paged_chunks_per_s": round(n / raw_paged, 1),
        "reindex_s": round(reindex, 2), "reindex_chunks_per_s": round(n / reindex, 1),
        "build_s": round(t1 - t0, 2), "sync_s": round(t2 - t1, 2), "verify_s": round(t3 - t2, 2),
        "sync": s.to_dict(), "build": b.to_dict(), "verify": v,
        "ratio": round(raw_whole / reindex, 3),
        "ratio_vs_paged_encode": round(raw_paged / reindex, 3),
        "target": ">= 0.9", "meets_target": raw_whole / reindex >= 0.9,
    }


# ----------------------------------------------------------------------------- (b) mining
def bench_mining(args, settings, enc, texts: list[str]) -> dict:
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from vectune.core.chunks import Chunk
    from vectune.pipeline.pairs.negatives import mine, texts_from_records
    from vectune.pipeline.pairs.teachers.offline import OfflineGenerator
    from vectune.qdrant.store import Store, dense_of

    margin, depth = settings.negatives.relative_margin, settings.negatives.depth
    with Store.open(settings) as store:
        spec = store.dense_spec("dst")  # written by (a) with the model's vectors
        rng = random.Random(1)
        keys = sorted(rng.sample(range(len(texts)), min(args.pairs, len(texts))))
        recs = store.retrieve("dst", keys, vectors=True)
        chunks = [Chunk(str(r.id), r.id, r.payload["text"], r.payload, dense_of(r, spec)) for r in recs]
        gen = OfflineGenerator(method="keyphrase", seed=settings.seed).generate(chunks, 1)
        by_key = {c.key: c for c in chunks}
        queries = [q for q in gen.queries if q.chunk_id in by_key]
        queries = [type(q)(q.text, q.chunk_id, q.source, None) for q in queries]  # positive = the stored chunk

        def search(vecs, limit):
            return [[(str(pid), s) for pid, s in h] for h in store.search_batch("dst", vecs, limit, using=spec.name)]

        def fetch(ks):
            return texts_from_records(store.retrieve("dst", [int(k) for k in ks]), "text")

        t0 = time.perf_counter()
        qv = enc.encode_queries([q.text for q in queries])
        pv = np.stack([by_key[q.chunk_id].vector for q in queries])
        pv = pv / np.linalg.norm(pv, axis=1, keepdims=True).clip(1e-12)
        examples, mstats = mine(queries, qv, pv, {k: c.text for k, c in by_key.items()}, search, fetch,
                                num_negatives=1, depth=depth, relative_margin=margin, seed=settings.seed)
        vt = time.perf_counter() - t0
    ds = Dataset.from_dict({"anchor": [q.text for q in queries], "positive": [by_key[q.chunk_id].text for q in queries]})
    t0 = time.perf_counter()
    st = mine_hard_negatives(ds, enc.model, corpus=list(texts), range_max=depth, relative_margin=margin,
                             num_negatives=1, sampling_strategy="top", batch_size=settings.model.encode_batch_size,
                             output_format="triplet", verbose=False)
    stt = time.perf_counter() - t0
    st_neg = {a: n for a, n in zip(st["anchor"], st["negative"])}
    # vectune fills random negatives where the guard left none: compare only its hard (mined) ones
    hard = {}
    for q, ex in zip(queries, examples):
        if ex.negatives:
            hard[q.text] = ex.negatives[0]
    both = [a for a in st_neg if a in hard]
    agree = sum(st_neg[a] == hard[a] for a in both)
    return {
        "pairs": len(queries), "corpus": len(texts), "relative_margin": margin, "depth": depth, "num_negatives": 1,
        "vectune_s": round(vt, 3), "sentence_transformers_s": round(stt, 3), "speedup": round(stt / vt, 2),
        "target": ">= 5x", "meets_target": stt / vt >= 5,
        "vectune_stats": mstats.to_dict(), "st_triplets": len(st),
        "overlap": round(agree / len(both), 3) if both else None, "overlap_compared": len(both),
        "note": "vectune time = query encoding + Qdrant batch search + text fetch + guard (corpus vectors are the "
                "ones already stored); ST time = encode corpus and queries + exact search + guard. Overlap counts "
                "queries where ST kept a negative and vectune's first negative is the same text (vectune's random "
                "fill-ins excluded only if ST had no negative).",
    }


# ----------------------------------------------------------------------------- (c) memory
class HashEncoder:
    """Stand-in for the model in the memory test: deterministic unit vectors, no encoding cost."""

    dim = DIM
    query_prompt = ""
    batch_size = 64
    ref = "hash"

    def encode_passages(self, texts):
        import zlib

        v = np.stack([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(DIM).astype(np.float32)
                      for t in texts]) if texts else np.zeros((0, DIM), np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    encode_queries = encode_passages


class StreamStore:
    """A source generated on the fly and a sink that drops points: measures the reindex path alone."""

    def __init__(self, n: int):
        self.n = n
        self.received = 0

    def scroll(self, name, *, vectors=False, batch=256, offset=None, ids_only=False):
        from qdrant_client import models

        rng = random.Random(0)
        start = offset or 0
        words = ["alpha", "beta", "gamma", "delta", "vector", "index", "query", "model"]
        for i in range(start, self.n, batch):
            recs = [models.Record(id=j, payload={"text": f"doc {j}: " + " ".join(rng.choices(words, k=8)),
                                                 "doc_id": f"d{j}"},
                                  vector=[0.0] * DIM if vectors else None) for j in range(i, min(i + batch, self.n))]
            nxt = i + batch if i + batch < self.n else None
            yield recs, nxt

    def upsert(self, name, points):
        self.received += len(points)


def rss_kb(field: str = "VmRSS") -> int:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_kb() -> int:
    """Peak RSS of this process image. Linux keeps ru_maxrss across fork+exec (a child started by a big
    parent reports the parent's peak), so VmHWM (reset at exec) is used when /proc has it."""
    import resource

    return rss_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def mem_child(mode: str, n: int, home: Path) -> dict:
    """Runs in a fresh process; prints peak RSS of one reindex of ``n`` points."""
    import resource

    from vectune.config.settings import Settings
    from vectune.promote.build import build
    from vectune.promote.publish import verify
    from vectune.promote.sync import sync
    from vectune.qdrant.store import DenseSpec, Store

    settings = Settings(home=home)
    enc = HashEncoder()
    out = {"mode": mode, "points": n}
    if mode == "stream":
        import qdrant_client.models  # noqa: F401 - count the import in the baseline

        out["rss_before_kb"] = rss_kb()
        st = StreamStore(n)
        t0 = time.perf_counter()
        b = build(st, enc, "src", "dst", DenseSpec("", DIM, "Cosine"), "text", settings.promote.upsert_batch)
        out.update(seconds=round(time.perf_counter() - t0, 2), upserted=b.upserted)
    elif mode == "prepare":
        with Store.open(settings) as store:
            fill_source(store, "src", short_texts(n), None, batch=2048)
        return {"prepared": n}
    else:  # embedded
        with Store.open(settings) as store:
            out["rss_before_kb"] = rss_kb()  # the embedded store has loaded 'src' into memory
            spec = store.dense_spec("src")
            if store.collection_exists("dst"):
                store.delete_collection("dst")
            store.create_like("src", "dst", spec, DIM, {"model_ref": "hash"})
            t0 = time.perf_counter()
            b = build(store, enc, "src", "dst", spec, "text", settings.promote.upsert_batch)
            s = sync(store, enc, "src", "dst", spec, "text", settings.promote.upsert_batch)
            v = verify(store, "src", "dst", spec, settings.promote.verify_sample)
            out.update(seconds=round(time.perf_counter() - t0, 2), upserted=b.upserted, synced=s.upserted,
                       verified=v["points"])
            out["rss_after_kb"] = rss_kb()
    out["max_rss_kb"] = peak_rss_kb()
    out["ru_maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["growth_during_reindex_kb"] = out["max_rss_kb"] - out["rss_before_kb"]
    return out


def run_child(mode: str, n: int, home: Path, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", mode, "--_n", str(n), "--home", str(home)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=common.child_env(), timeout=timeout)
    if p.returncode != 0:
        return {"mode": mode, "points": n, "error": p.stderr.strip().splitlines()[-3:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def bench_memory(args, home: Path) -> dict:
    out: dict = {"sizes": args.mem_sizes, "encoder": "stand-in hash encoder (no model): encoding excluded so 100k fits a CPU "
                                            "run; everything else is vectune's path", "modes": {}}
    for mode in args.mem_modes.split(","):
        spec = args.embedded_sizes if mode == "embedded" and args.embedded_sizes else args.mem_sizes
        sizes = [int(x) for x in spec.split(",")]
        rows = []
        for n in sizes:
            h = home / f"mem-{mode}-{n}"
            if mode == "embedded":
                shutil.rmtree(h, ignore_errors=True)
                t0 = time.perf_counter()
                prep = run_child("prepare", n, h, args.child_timeout)
                if "error" in prep:
                    rows.append(prep)
                    continue
                print(f"  (c) prepared {n} points in {time.perf_counter() - t0:.0f}s", flush=True)
            r = run_child(mode, n, h, args.child_timeout)
            print(f"  (c) {mode} {n}: {r}", flush=True)
            rows.append(r)
            if mode == "embedded":
                shutil.rmtree(h, ignore_errors=True)
        m = {"runs": rows}
        ok = [r for r in rows if "max_rss_kb" in r]
        if len(ok) >= 2:
            m["peak_rss_ratio"] = round(ok[-1]["max_rss_kb"] / ok[0]["max_rss_kb"], 3)
            m["size_ratio"] = round(ok[-1]["points"] / ok[0]["points"], 1)
            m["meets_target"] = m["peak_rss_ratio"] < 1.2
        out["modes"][mode] = m
    out["target"] = "peak RSS growth < 1.2 for 10x points"
    return out


# ----------------------------------------------------------------------------- (d) + (e) cycle
def bench_cycle(args, home: Path, texts: list[str]) -> dict:
    h = home / "cycle"
    shutil.rmtree(h, ignore_errors=True)
    h.mkdir(parents=True)
    corpus = h / "corpus.jsonl"
    with open(corpus, "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"_id": f"d{i}", "text": t}) + "\n")
    rc, out, err, secs = common.run_cli(["index", corpus, "--alias", "speed", "--home", h / "home"],
                                        log_file=h / "index.log")
    if rc:
        return {"error": f"index failed: {err.strip().splitlines()[-1:]}"}
    run_args = ["run", "--alias", "speed", "--home", h / "home", "--json", "--allow-synthetic-gate",
                "--max-train-chunks", str(args.train_chunks)]
    rc1, out1, err1, s1 = common.run_cli(run_args, log_file=h / "run1.log")
    rep1 = common.parse_json_report(out1) or {}
    rc2, out2, err2, s2 = common.run_cli(run_args, log_file=h / "run2.log")
    rep2 = common.parse_json_report(out2) or {}
    train = (rep1.get("counts") or {}).get("train") or {}
    return {
        "docs": len(texts), "index_s": round(secs, 1),
        "first_run": {"rc": rc1, "status": rep1.get("status"), "wall_s": round(s1, 1),
                      "duration_s": rep1.get("duration_s"), "timings": rep1.get("timings"),
                      "reason": rep1.get("reason")},
        "noop": {"rc": rc2, "status": rep2.get("status"), "wall_s": round(s2, 2), "duration_s": rep2.get("duration_s"),
                 "timings": rep2.get("timings"), "reason": rep2.get("reason"), "target": "< 10 s",
                 "meets_target": rep2.get("status") == "noop" and s2 < 10,
                 "note": "wall_s = the whole `vectune run` process (Python start, imports, Qdrant open, read + "
                         "fingerprint of the collection)"},
        "training": {**train, "settings": f"defaults (batch 16, lr 2e-5, 1 epoch, max_seq_length 256, 1 hard "
                                          f"negative), --max-train-chunks {args.train_chunks}",
                     "device": (common.machine().get("device"))},
        "command": "vectune " + " ".join(str(a) for a in run_args),
    }


# ----------------------------------------------------------------------------- report
def markdown(r: dict) -> str:
    a, b, c, d = r.get("reindex"), r.get("mining"), r.get("memory"), r.get("cycle")
    m = r["machine"]
    lines = [f"## Speed{' (quick, small sizes)' if r['quick'] else ''}", "",
             f"*{'Validation run with small sizes on this machine; not the final numbers.' if r['quick'] else 'Run.'}*",
             "", "| measure | value | target | met |", "|---|---:|---|---|"]
    if a:
        lines.append(f"| (a) reindex / raw encode throughput ({a['points']} chunks; {a['reindex_chunks_per_s']} vs "
                     f"{a['raw_encode_chunks_per_s']} chunks/s) | {a['ratio']} | ≥ 0.9 | {_ok(a['meets_target'])} |")
    if b:
        lines.append(f"| (b) mining speedup vs ST mine_hard_negatives ({b['pairs']} pairs, {b['corpus']} docs; "
                     f"{b['vectune_s']} s vs {b['sentence_transformers_s']} s) | {b['speedup']}× | ≥ 5× | "
                     f"{_ok(b['meets_target'])} |")
        lines.append(f"| (b) overlap of chosen negatives ({b['overlap_compared']} compared) | {b['overlap']} | — | — |")
    if c:
        for mode, mm in c["modes"].items():
            runs = ", ".join(f"{x['points']}: {x.get('max_rss_kb', 0) / 1024:.0f} MiB" for x in mm["runs"]
                             if "max_rss_kb" in x)
            if "peak_rss_ratio" in mm:
                lines.append(f"| (c) peak RSS growth, {mode} ({runs}) | {mm['peak_rss_ratio']} for "
                             f"{mm['size_ratio']}× points | < 1.2 | {_ok(mm['meets_target'])} |")
            else:
                lines.append(f"| (c) peak RSS, {mode} | failed: {[x.get('error') for x in mm['runs']]} | < 1.2 | — |")
    if d and "noop" in d:
        lines.append(f"| (d) no-op cycle wall time (status {d['noop']['status']}) | {d['noop']['wall_s']} s | "
                     f"< 10 s | {_ok(d['noop']['meets_target'])} |")
        t = d["training"]
        lines.append(f"| (e) training throughput ({t.get('examples')} examples, {t.get('steps')} steps, "
                     f"{t.get('seconds')} s, {t.get('device')}) | {t.get('examples_per_s')} ex/s | — | — |")
    lines += [""]
    if a:
        lines.append(f"- (a) build {a['build_s']} s + sync {a['sync_s']} s + verify {a['verify_s']} s; raw encode in "
                     f"the same {a['page_size']}-chunk pages: {a['raw_encode_paged_chunks_per_s']} chunks/s "
                     f"(ratio {a['ratio_vs_paged_encode']}); device {a['device']}.")
    if c:
        lines.append(f"- (c) {c['encoder']}. `stream` = build() reading a generated source and writing to a sink "
                     "(vectune's own memory); `embedded` = build + sync + verify on embedded Qdrant, whose local mode "
                     "keeps both collections in RAM, so its RSS grows with the data by design.")
    if d and "first_run" in d:
        lines.append(f"- (d/e) first run: status {d['first_run']['status']} in {d['first_run']['wall_s']} s "
                     f"({d['docs']} docs); `{d['command']}`")
    lines += [f"- machine: {common.machine_line(m)}", f"- date: {r['date']}"]
    lines += [f"- command: `{c}`" for c in r.get("commands", [r["command"]])]
    return "\n".join(lines)


def _ok(v) -> str:
    return "yes" if v else "**no**"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=2000, help="chunks for (a) and (b)")
    ap.add_argument("--pairs", type=int, default=500, help="query/positive pairs for (b)")
    ap.add_argument("--data", type=Path, default=None, help="BEIR folder to take texts from (default: synthetic)")
    ap.add_argument("--mem-sizes", default="10000,100000", help="point counts for (c)")
    ap.add_argument("--embedded-sizes", default=None,
                    help="point counts for the embedded mode of (c) (default: --mem-sizes; embedded Qdrant is slow)")
    ap.add_argument("--mem-modes", default="stream,embedded", help="stream and/or embedded")
    ap.add_argument("--cycle-docs", type=int, default=400, help="corpus size for (d)/(e)")
    ap.add_argument("--train-chunks", type=int, default=100, help="--max-train-chunks of the (d)/(e) run")
    ap.add_argument("--only", default="a,b,c,d", help="which parts to run (e comes with d)")
    ap.add_argument("--home", type=Path, default=None, help="work folder (default bench/work/speed)")
    ap.add_argument("--out", type=Path, default=common.RESULTS_DIR / (f"speed-{TAG}.json" if TAG else "speed.json"))
    ap.add_argument("--no-merge", action="store_true", help="do not keep parts of an earlier --out from other --only")
    ap.add_argument("--child-timeout", type=float, default=1800)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_n", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        print(json.dumps(mem_child(args._child, args._n, args.home)))
        return

    home = (args.home or common.BENCH / "work" / "speed").resolve()
    home.mkdir(parents=True, exist_ok=True)
    parts = set(args.only.split(","))
    m = common.machine()
    print(f"machine: {common.machine_line(m)}", flush=True)
    quick = args.points < 10000  # the CPU-sized defaults; label the results "quick"
    res: dict = {"machine": m, "command": common.command_line(), "date": common.now(), "quick": quick,
                 "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                            if not k.startswith("_")}}
    t_all = time.perf_counter()
    if parts & {"a", "b"}:
        from vectune.config.settings import BUNDLED_MODEL, Settings
        from vectune.models.store import ModelStore

        settings = Settings(home=home / "ab")
        enc = ModelStore.from_settings(settings).load(os.environ.get("VECTUNE_BASE_MODEL", BUNDLED_MODEL))
        texts = passages(args.points, args.data)
        print(f"(a) reindex throughput on {len(texts)} chunks ({enc.model.device}) ...", flush=True)
        res["reindex"] = bench_reindex(args, settings, enc, texts)
        print(f"    {json.dumps({k: res['reindex'][k] for k in ('raw_encode_chunks_per_s', 'reindex_chunks_per_s', 'ratio')})}",
              flush=True)
        if "b" in parts:
            print(f"(b) mining on {min(args.pairs, len(texts))} pairs ...", flush=True)
            res["mining"] = bench_mining(args, settings, enc, texts)
            print(f"    {json.dumps({k: res['mining'][k] for k in ('vectune_s', 'sentence_transformers_s', 'speedup', 'overlap')})}",
                  flush=True)
        del enc
    if "c" in parts:
        print(f"(c) memory at {args.mem_sizes} points ...", flush=True)
        res["memory"] = bench_memory(args, home)
    if "d" in parts:
        print(f"(d/e) cycle on {args.cycle_docs} docs, --max-train-chunks {args.train_chunks} ...", flush=True)
        res["cycle"] = bench_cycle(args, home, passages(args.cycle_docs, args.data, seed=7))
        n = res["cycle"].get("noop", {})
        print(f"    no-op: {n.get('status')} in {n.get('wall_s')} s; training "
              f"{res['cycle'].get('training', {}).get('examples_per_s')} ex/s", flush=True)
    res["minutes"] = round((time.perf_counter() - t_all) / 60, 2)
    ran = [k for k in ("reindex", "mining", "memory", "cycle") if k in res]
    for k in ran:
        res[k]["bench_command"] = res["command"]
        res[k]["date"] = res["date"]
    if args.out.exists() and not args.no_merge:  # keep the parts this call did not run (e.g. --only c)
        try:
            old = json.loads(args.out.read_text())
        except ValueError:
            old = {}
        if old.get("quick") == quick and old.get("machine", {}).get("platform") == m["platform"]:
            for k in ("reindex", "mining", "memory", "cycle"):
                if k not in res and k in old:
                    res[k] = old[k]
            res["commands"] = sorted(set(old.get("commands", [old.get("command")])) | {res["command"]}
                                     - {None}) if set(ran) != {"reindex", "mining", "memory", "cycle"} else [res["command"]]
    res.setdefault("commands", [res["command"]])
    common.write_json(args.out, res)
    common.update_section("speed" + ("-quick" if quick else "") + (f"-{TAG}" if TAG else ""), markdown(res))
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
