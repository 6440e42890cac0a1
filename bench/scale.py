#!/usr/bin/env python
"""How a query-mode cycle's cost grows with the collection: 10k to 1M points in embedded Qdrant (issue 21).

    python bench/scale.py --sizes 10000                      # build, probe, raw, cycle, capped, eval
    python bench/scale.py --sizes 2000 --parts build,probe,cycle,capped --train-queries 100 --query-epochs 1 \\
        --cycle-env VECTUNE_MAX_TRAIN_CHUNKS=1000 --cycle-env VECTUNE_EVAL_CORPUS_CAP=1000 \\
        --out bench/work/scale-smoke.json                       # a smoke run: minutes
    python bench/scale.py --parts pool --pool-size 100000
    python bench/scale.py --report            # RESULTS.md section + chart from the JSON only

Data (cached under ``bench/work/scale/``, git-ignored):

* the **quality slice**: BEIR SciFact's 5,183 abstracts (``title. text``, as ``vectune index --with-title``
  stores them), encoded once with the bundled MiniLM. The labeled queries are SciFact *train* claims with
  their qrels: a seeded 500 train (``--train-set``), the other 309 are the golden set (``--eval-set``);
  the 300 *test* claims never reach vectune and only score what users would see;
* the **filler**: short synthetic passages (7-10 words drawn from SciFact's own vocabulary, frequency^0.75,
  each text unique) with their **real** MiniLM vectors, encoded once. Real encodings rather than random or
  perturbed vectors because (1) the cycle re-encodes a sample of stored chunks and refuses to run when the
  stored vectors do not match the lineage model (``read.check_live_vectors``: median cosine >= 0.9), so
  made-up vectors would stop every cycle above ~50% filler; (2) the filler then lies where the model puts
  scientific text, so it competes with real abstracts for a claim's top 10 (random unit vectors would sit
  at cosine ~0 from everything and never be retrieved). Sizes are nested: N points = the 5,183 abstracts +
  the first N - 5,183 filler passages. Below 5,183 points (a smoke run) the collection holds the abstracts the
  claims point at first, then others.

Per size (``--parts``):

* ``build``: a fresh embedded Qdrant home with the collection written through qdrant-client's own
  ``upsert`` (precomputed vectors, nothing encoded by vectune), then ``vectune adopt`` as a user would.
  Records the write rate, the storage size, and the time and memory to open the storage;
* ``raw``: the limit of the promotion copy path: a plain ``scroll`` + ``upsert`` loop of the same
  pages (``upsert_batch`` = 128) between two collections, in a fresh process;
* ``cycle``: ``vectune run --alias scale --mode query --train-set ... --eval-set ... --json`` as a
  subprocess on a copy of the built home: the eval set decides (no cross-fit), judged on the **whole**
  collection (``VECTUNE_WHOLE_COLLECTION=true``, the default: ``pipeline.evaluate.scan_top`` streams every
  stored vector), and ``widen`` adds each training query's nearest stored points to the query side's
  corpus (``counts.query_corpus``). Stage seconds come from the run report's ``timings`` (watch, read,
  load_live_model, generate, mine, widen, train, evaluate, save_model, reindex; final_fit under cross-fitting)
  and ``counts.reindex``; peak RSS is the child's ``VmHWM`` polled from ``/proc`` (also per stage, by
  following the ``stage X ...`` log lines); load average is recorded next to every timing;
* ``capped``: the same command with ``--dry-run`` and ``VECTUNE_WHOLE_COLLECTION=false`` on a fresh copy of
  the same home (the first run promoted and moved the alias): same collection, labels and seed, judged on the
  capped sample (``eval_corpus_cap`` = 20,000). Training runs again with the same seed: the two gate deltas
  are two trainings' (``same_training`` says whether they took the same steps and chose the same epoch with
  the same validation score), not one candidate scored twice; ``eval`` scores the promoted candidate itself
  on random capped corpora. Skipped where the first cycle's sample held every point (up to ``eval_corpus_cap``
  points, 10k included): nothing was scanned, and a capped run would judge on the same corpus;
* ``eval``: the cycle's candidate judged as the gate saw it (the run report), on ``--cap-replicas`` random
  capped corpora, and on **every** stored vector (exact chunked scoring, here), plus the collection's own
  ``query_points``; golden and test claims; deltas with paired-bootstrap CIs and the permutation p;
* ``feedback``: every labeled claim logged as click feedback instead of files: the default evidence,
  cross-fitted over all labels;

and once (``--parts pool``): the query-side trainer with the full softmax over all N stored vectors vs
the pool that stands in above ``VECTUNE_QUERY_CORPUS_MAX`` (positives + 30 mined negatives + random fill)
vs the read stage's sample (~20k) vs that sample widened by each training query's 30 nearest stored points
(what a cycle trains against now), scored on the 300 test claims against all N vectors with paired CIs.

A size that would take more than ``--max-hours`` or ``--max-rss-gb`` is stopped and recorded with the
reason; ``--report`` extrapolates from the sizes that ran (log-log slope per stage).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import numpy as np  # noqa: E402

import common  # noqa: E402
from quality import load_beir, read_jsonl  # noqa: E402

ALIAS = "scale"
COLLECTION = "scale-src"  # written by "another tool", then adopted
MODEL = "bundled:all-MiniLM-L6-v2"
DIM = 384
FILLER_SEED = 20260421
FILLER_BASE = 100_000  # filler passages really encoded; beyond, permuted copies (see derived_filler)
DERIVED_SIGMA = 0.0127  # noise per dimension: cosine ~0.97 to the base vector in 384 dimensions
STOP = set("""the and for with that this from were was are which have has been their than also these those into
between during after before about other more most such both each when where while there then them they what
within without among under over only some through using used use may can could would should our its not but all
any one two three four five per via upon however here thus""".split())


def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {' '.join(map(str, load_avg()))}] {msg}", flush=True)


# ----------------------------------------------------------------------------- data
def scifact(data: Path) -> dict:
    """SciFact: keys/texts (``title. text``), claims, qrels, the train claims split 500 train / rest golden."""
    beir = load_beir(data)
    keys, texts, titles = [], [], []
    for r in read_jsonl(beir["corpus"]):
        text = r.get("text") or ""
        title = r.get("title") if isinstance(r.get("title"), str) else ""
        if title.strip():
            text = f"{title.strip()}. {text}"
        keys.append(str(r["_id"]))
        texts.append(text)
        titles.append(title)
    beir.update(keys=keys, texts=texts, titles=titles)
    return beir


def labeled_split(beir: dict, n_train: int, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of the SciFact train claims: ``n_train`` to train on, the rest golden."""
    ids = sorted(beir["train"])
    random.Random(seed).shuffle(ids)
    return sorted(ids[:n_train]), sorted(ids[n_train:])


def write_labeled(path: Path, qids: list[str], beir: dict, qrels: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for q in qids:
            f.write(json.dumps({"query": beir["queries"][q], "relevant": sorted(qrels[q])}) + "\n")


def models(home: Path | None = None):
    """The model store a home's settings name (the bundled model loads from its package whatever the home)."""
    from vectune.models.store import ModelStore

    return ModelStore.from_settings(settings_for(home))


def encoder():
    """The bundled MiniLM as vectune loads it."""
    return models().load(MODEL)


def scifact_vectors(beir: dict, work: Path) -> np.ndarray:
    """The abstracts' MiniLM vectors, encoded once and cached."""
    vec_p, key_p = work / "scifact-vectors.npy", work / "scifact-keys.json"
    if vec_p.is_file() and key_p.is_file() and json.loads(key_p.read_text()) == beir["keys"]:
        return np.load(vec_p)
    log(f"encoding {len(beir['texts'])} SciFact abstracts with the bundled MiniLM (once) ...")
    t0 = time.perf_counter()
    vecs = encoder().encode_passages(beir["texts"]).astype(np.float32)
    secs = time.perf_counter() - t0
    work.mkdir(parents=True, exist_ok=True)
    np.save(vec_p, vecs)
    key_p.write_text(json.dumps(beir["keys"]))
    (work / "scifact-vectors.json").write_text(json.dumps({"seconds": round(secs, 1), "load": load_avg()}))
    log(f"  {secs:.0f} s")
    return vecs


def vocabulary(beir: dict) -> tuple[list[str], np.ndarray]:
    """SciFact's words (3+ letters, no stop words) with sampling weights frequency^0.75."""
    counts = Counter()
    for t in beir["texts"]:
        counts.update(w for w in re.findall(r"[a-z][a-z\-]{2,}", t.lower()) if w not in STOP)
    words = sorted(w for w, c in counts.items() if c >= 2)
    p = np.array([counts[w] for w in words], dtype=np.float64) ** 0.75
    return words, p / p.sum()


def filler_texts(beir: dict, n: int) -> list[str]:
    """The first ``n`` filler passages (deterministic; a prefix of any longer run; each unique, >= 40 chars)."""
    words, p = vocabulary(beir)
    rng = np.random.default_rng(FILLER_SEED)
    out, seen = [], set(beir["texts"])
    while len(out) < n:
        m = 4096
        lens = rng.integers(7, 11, size=m)
        draws = rng.choice(len(words), size=(m, 10), p=p)
        for L, row in zip(lens, draws):
            t = " ".join(words[j] for j in row[:L])
            t = t[0].upper() + t[1:] + "."
            if len(t) < 40 or t in seen:
                continue
            seen.add(t)
            out.append(t)
            if len(out) >= n:
                break
    return out


def filler_vectors(beir: dict, n: int, work: Path, chunk: int = 20_000) -> np.ndarray:
    """MiniLM vectors of the first ``n`` filler passages: a float32 memory map, encoded chunk by chunk
    (resumable; a longer run extends a shorter one)."""
    path, done_p = work / "filler-vectors.f32", work / "filler-vectors.done"
    done = int(done_p.read_text()) if done_p.is_file() and path.is_file() else 0
    if done >= n:
        return np.memmap(path, dtype=np.float32, mode="r", shape=(done, DIM))[:n]
    texts = filler_texts(beir, n)
    work.mkdir(parents=True, exist_ok=True)
    if done == 0 and path.exists():
        path.unlink()
    enc = encoder()
    enc.batch_size = 256
    info_p = work / "filler-vectors.json"
    info = json.loads(info_p.read_text()) if info_p.is_file() else {"chunks": []}
    with open(path, "ab") as f:
        f.truncate(done * DIM * 4)
        f.seek(done * DIM * 4)
        for start in range(done, n, chunk):
            t0 = time.perf_counter()
            part = texts[start:start + chunk]
            v = enc.encode_passages(part).astype(np.float32)
            f.write(v.tobytes())
            f.flush()
            os.fsync(f.fileno())
            done = start + len(part)
            done_p.write_text(str(done))
            secs = time.perf_counter() - t0
            info["chunks"].append({"start": start, "n": len(part), "seconds": round(secs, 1), "load": load_avg()})
            info_p.write_text(json.dumps(info))
            log(f"filler vectors {done}/{n} ({len(part) / secs:.0f} texts/s)")
    return np.memmap(path, dtype=np.float32, mode="r", shape=(done, DIM))[:n]


def derived_filler(beir: dict, base_texts: list[str], base_vecs: np.ndarray, start: int, stop: int
                   ) -> tuple[list[str], np.ndarray]:
    """Filler passages ``start..stop`` beyond the encoded base: word-order permutations of base passage
    ``i % FILLER_BASE``, stored with that passage's vector moved by small noise (cosine ~0.97).

    Re-encoding a permuted word list gives a vector at cosine 0.97 (median; 10th percentile 0.93) from the
    original's (measured on 300 passages), so these stored vectors are what a stale or differently
    truncated encoder would have written: the cycle's lineage check (median cosine >= 0.9 on 8 re-encoded
    chunks) passes, and nothing is encoded. Deterministic per index.
    """
    texts, vecs = [], np.empty((max(0, stop - start), DIM), dtype=np.float32)
    for row, i in enumerate(range(start, stop)):
        j = i % FILLER_BASE
        rng = np.random.default_rng([FILLER_SEED, i])
        words = base_texts[j].rstrip(".").lower().split()
        t = base_texts[j]
        while t == base_texts[j]:
            t = " ".join(words[k] for k in rng.permutation(len(words)))
            t = t[0].upper() + t[1:] + "."
        texts.append(t)
        v = base_vecs[j] + DERIVED_SIGMA * rng.standard_normal(DIM).astype(np.float32)
        vecs[row] = v / np.linalg.norm(v)
    return texts, vecs


def filler(beir: dict, n: int, work: Path) -> tuple[list[str], np.ndarray]:
    """Texts and vectors of the first ``n`` filler passages (the first FILLER_BASE really encoded)."""
    nb = min(n, FILLER_BASE)
    texts = filler_texts(beir, nb)
    vecs = np.asarray(filler_vectors(beir, nb, work))
    if n <= FILLER_BASE:
        return texts, vecs
    t2, v2 = derived_filler(beir, texts, vecs, FILLER_BASE, n)
    return texts + t2, np.concatenate([vecs, v2])


def scifact_rows(beir: dict, n: int) -> list[int]:
    """Which SciFact abstracts an N-point collection holds: all of them from 5,183 points up; below that (a smoke
    run) every abstract a train or test claim points at first, then the others in corpus order, kept in corpus
    order, so that the labels still point inside the collection."""
    k = len(beir["keys"])
    if n >= k:
        return list(range(k))
    need = {str(d) for qrels in (beir["train"], beir["test"]) for rel in qrels.values() for d in rel}
    first = [i for i, key in enumerate(beir["keys"]) if key in need]
    rest = [i for i, key in enumerate(beir["keys"]) if key not in need]
    return sorted((first + rest)[:n])


def all_vectors(beir: dict, n: int, work: Path, with_texts: bool = False):
    """Keys (BEIR ids and filler ids ``f<i>``) and vectors of the N-point collection (and a function giving
    point ``i``'s payload)."""
    sci = scifact_vectors(beir, work)
    rows = scifact_rows(beir, n)
    k = len(rows)
    texts, fill = filler(beir, n - k, work) if n > k else ([], np.zeros((0, DIM), np.float32))
    keys = [beir["keys"][i] for i in rows] + [f"f{i}" for i in range(max(0, n - k))]
    vecs = np.concatenate([sci[rows], fill], axis=0)
    if not with_texts:
        return keys, vecs

    def payload(i: int) -> dict:
        if i < k:
            j = rows[i]
            return {"text": beir["texts"][j], "title": beir["titles"][j], "doc_id": beir["keys"][j]}
        return {"text": texts[i - k], "doc_id": keys[i]}

    return keys, vecs, payload


# ----------------------------------------------------------------------------- measured children
def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def run_measured(cmd: list[str], log_file: Path, env: dict | None = None, timeout: float | None = None,
                 max_rss_gb: float | None = None, stage_re: str = r"stage (\w+) \.\.\.",
                 stop_in_stage: tuple[str, float] | None = None) -> dict:
    """Run ``cmd``; poll its peak RSS (``VmHWM``) and follow ``stage X ...`` lines for a per-stage peak.

    Stops the child (SIGKILL of its own process id) past ``timeout`` seconds or ``max_rss_gb``.
    """
    env = dict(env or common.child_env())
    log_file.parent.mkdir(parents=True, exist_ok=True)
    load0 = load_avg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = [], []
    state = {"stage": "start", "stages": {}, "rss_series": [], "stopped": None, "cpu": 0.0}
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stage_pat = re.compile(stage_re)

    live = open(log_file.with_suffix(".live"), "w", encoding="utf-8")  # follow a long run: tail -f

    def read(stream, sink, follow):
        for line in stream:
            sink.append(line)
            if follow:
                live.write(line)
                live.flush()
                m = stage_pat.search(line)
                if m:
                    state["stage"] = m.group(1)
                    state["stages"].setdefault(m.group(1), {"start_s": round(time.perf_counter() - t0, 1),
                                                            "peak_rss_mb": 0.0, "cpu_start": state["cpu"]})

    threads = [threading.Thread(target=read, args=(proc.stdout, out, False), daemon=True),
               threading.Thread(target=read, args=(proc.stderr, err, True), daemon=True)]
    for t in threads:
        t.start()
    peak = 0
    last_series = -10.0
    while proc.poll() is None:
        cpu = _cpu_s(proc.pid)
        if cpu is not None:
            state["cpu"] = cpu
        hwm = _status_kb(proc.pid, "VmHWM")
        rss = _status_kb(proc.pid, "VmRSS")
        now_s = time.perf_counter() - t0
        if hwm:
            peak = max(peak, hwm)
        if rss:
            st = state["stages"].setdefault(state["stage"], {"start_s": 0.0, "peak_rss_mb": 0.0})
            st["peak_rss_mb"] = max(st["peak_rss_mb"], round(rss / 1024, 1))
            if now_s - last_series >= 5:
                state["rss_series"].append([round(now_s, 1), round(rss / 1024, 1), state["stage"]])
                last_series = now_s
        if stop_in_stage and state["stage"] == stop_in_stage[0] and \
                now_s - state["stages"][stop_in_stage[0]]["start_s"] > stop_in_stage[1]:
            state["stopped"] = f"stopped {stop_in_stage[1]:.0f} s into stage {stop_in_stage[0]} (as asked)"
            proc.kill()
            break
        if timeout and now_s > timeout:
            state["stopped"] = f"over {timeout:.0f} s in stage {state['stage']}"
            proc.kill()
            break
        if max_rss_gb and rss and rss > max_rss_gb * 1024 * 1024:
            state["stopped"] = f"RSS {rss / 1024 / 1024:.1f} GiB over {max_rss_gb} GiB in stage {state['stage']}"
            proc.kill()
            break
        time.sleep(0.5)
    rc = proc.wait()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_total = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    for t in threads:
        t.join(timeout=10)
    live.close()
    log_file.with_suffix(".live").unlink(missing_ok=True)
    secs = time.perf_counter() - t0
    order = sorted(state["stages"].items(), key=lambda kv: kv[1]["start_s"])
    for i, (name, st) in enumerate(order):  # CPU seconds per stage (a stage's end: the next one's start)
        end = order[i + 1][1].get("cpu_start", cpu_total) if i + 1 < len(order) else cpu_total
        st["cpu_s"] = round(max(0.0, end - st.pop("cpu_start", 0.0)), 1)
    stdout, stderr = "".join(out), "".join(err)
    log_file.write_text(f"$ {' '.join(map(str, cmd))}\n# rc={rc} in {secs:.1f}s, peak RSS {peak / 1024:.0f} MB, "
                        f"stopped: {state['stopped']}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    return {"rc": rc, "seconds": round(secs, 1), "cpu_s": round(cpu_total, 1), "peak_rss_mb": round(peak / 1024, 1),
            "stdout": stdout,
            "stderr_tail": stderr.strip().splitlines()[-5:], "stages_rss": state["stages"],
            "rss_series": state["rss_series"], "stopped": state["stopped"], "load_before": load0,
            "load_after": load_avg()}


def child(script: str, *args: str) -> list[str]:
    """A fresh interpreter running one of this file's child jobs."""
    return [sys.executable, str(Path(__file__).resolve()), "--child", script, *args]


def settings_for(home: Path | None = None):
    """vectune's settings (environment and ``.env`` included) with their state under ``home``."""
    from vectune.config.settings import load_settings

    return load_settings(home=home)


def qdrant_path(home: Path) -> Path:
    return settings_for(home).qdrant_path


def dir_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6, 1)


# ----------------------------------------------------------------------------- build
def build_home(args, beir: dict, n: int) -> dict:
    """A home with the N-point collection written through qdrant-client, adopted by ``vectune adopt``."""
    base = args.work / f"home-{n}"
    done_p = base / "built.json"
    if done_p.is_file() and not args.rebuild:
        return json.loads(done_p.read_text())
    shutil.rmtree(base, ignore_errors=True)
    keys, vecs = all_vectors(beir, n, args.work)  # cached encodings (prepared outside the timed child)
    del vecs
    how = "direct" if n > args.client_write_max else "write"
    r = run_measured(child(how, str(base), str(n)), args.work / "logs" / f"write-{n}.log",
                     timeout=args.max_hours * 3600, max_rss_gb=args.max_rss_gb, stage_re=r"^(written) ")
    info = {"n": n, "how": "sqlite, one transaction (the client's own row format)" if how == "direct"
            else "qdrant-client upsert, 256 points a request", "write": {k: r[k] for k in ("rc", "seconds", "peak_rss_mb", "stopped", "load_before",
                                                "load_after")}}
    try:
        info["write"].update(json.loads(r["stdout"].strip().splitlines()[-1]))
    except (ValueError, IndexError):
        info["write"]["error"] = r["stderr_tail"]
        return info
    if r["rc"] != 0:
        return info
    info["storage_mb"] = dir_mb(qdrant_path(base))
    a = run_measured(common.vectune_argv() + ["adopt", "--collection", COLLECTION, "--alias", ALIAS, "--model", MODEL,
                                              "--home", str(base)], args.work / "logs" / f"adopt-{n}.log",
                     timeout=args.max_hours * 3600, max_rss_gb=args.max_rss_gb)
    info["adopt"] = {k: a[k] for k in ("rc", "seconds", "peak_rss_mb", "stopped", "load_before", "load_after")}
    if a["rc"] == 0:
        done_p.write_text(json.dumps(info, indent=2))
    return info


def _new_collection(home: str, n: int):
    """The first ``n`` vectors (real SciFact, then filler) and an empty embedded collection for them in ``home``."""
    from qdrant_client import QdrantClient, models

    beir = scifact(Path(os.environ["SCALE_DATA"]))
    keys, vecs, payload = all_vectors(beir, n, Path(os.environ["SCALE_WORK"]), with_texts=True)
    path = qdrant_path(Path(home))
    path.mkdir(parents=True, exist_ok=True)
    client = QdrantClient(path=str(path))
    client.create_collection(COLLECTION, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    return keys, vecs, payload, path, client


def child_write(home: str, n: str) -> None:
    """Write the collection through qdrant-client's embedded mode (precomputed vectors)."""
    from qdrant_client import models

    from vectune.qdrant.store import point_id_for

    n = int(n)
    keys, vecs, payload, path, client = _new_collection(home, n)
    batch, marks = 256, {}
    tw = time.perf_counter()
    for start in range(0, n, batch):
        pts = [models.PointStruct(id=point_id_for(keys[i]), vector=vecs[i].tolist(), payload=payload(i))
               for i in range(start, min(n, start + batch))]
        client.upsert(COLLECTION, points=pts, wait=True)
        done = min(n, start + batch)
        for m in (10_000, 30_000, 100_000, 300_000, 1_000_000):
            if done >= m and m not in marks:
                marks[m] = round(time.perf_counter() - tw, 1)
                print(f"written {done} points in {marks[m]} s", file=sys.stderr, flush=True)
    write_s = time.perf_counter() - tw
    rss_open = _status_kb(os.getpid(), "VmRSS")
    tc = time.perf_counter()
    client.close()
    print(json.dumps({"points": n, "write_s": round(write_s, 1), "points_per_s": round(n / write_s, 1),
                      "close_s": round(time.perf_counter() - tc, 2), "marks_s": marks,
                      "rss_mb_after_write": round((rss_open or 0) / 1024, 1)}))


def child_direct(home: str, n: str) -> None:
    """Write the collection's embedded storage directly: the rows qdrant-client's ``CollectionPersistence.persist``
    writes (its own key encoding and pickled ``PointStruct``), in one transaction instead of one commit per point.

    Only a shortcut for building large test collections: the client's own write path costs one fsync'd commit
    per point (measured by ``write`` at the smaller sizes and by the raw loop).
    """
    import pickle
    import sqlite3

    from qdrant_client import models
    from qdrant_client._pydantic_compat import construct
    from qdrant_client.local.persistence import CollectionPersistence

    from vectune.qdrant.store import point_id_for

    n = int(n)
    keys, vecs, payload, path, client = _new_collection(home, n)
    client.close()
    db = path / "collection" / COLLECTION / "storage.sqlite"
    con = sqlite3.connect(str(db))
    tw = time.perf_counter()
    marks = {}
    with con:
        for start in range(0, n, 10_000):
            rows = []
            for i in range(start, min(n, start + 10_000)):
                pid = point_id_for(keys[i])
                point = construct(models.PointStruct, id=pid, vector=vecs[i].tolist(), payload=payload(i))
                rows.append((CollectionPersistence.encode_key(pid), sqlite3.Binary(pickle.dumps(point))))
            con.executemany("INSERT OR REPLACE INTO points VALUES (?, ?)", rows)
            done = min(n, start + 10_000)
            for m in (100_000, 300_000, 1_000_000):
                if done >= m and m not in marks:
                    marks[m] = round(time.perf_counter() - tw, 1)
                    print(f"written {done} points in {marks[m]} s", file=sys.stderr, flush=True)
    con.close()
    write_s = time.perf_counter() - tw
    print(json.dumps({"points": n, "write_s": round(write_s, 1), "points_per_s": round(n / write_s, 1),
                      "marks_s": marks, "rss_mb_after_write": round(_status_kb(os.getpid(), "VmRSS") / 1024, 1)}))


# ----------------------------------------------------------------------------- open / scroll probes
def child_probe(home: str) -> None:
    """Open the embedded storage; time one scroll page at the start and the end, a count, one query."""
    from qdrant_client import QdrantClient

    r = {"rss_mb_before": round(_status_kb(os.getpid(), "VmRSS") / 1024, 1)}
    t0 = time.perf_counter()
    client = QdrantClient(path=str(qdrant_path(Path(home))))
    r["open_s"] = round(time.perf_counter() - t0, 2)
    r["rss_mb_open"] = round(_status_kb(os.getpid(), "VmRSS") / 1024, 1)
    r["hwm_mb_open"] = round(_status_kb(os.getpid(), "VmHWM") / 1024, 1)
    try:  # how much of it is the loader's garbage kept by the allocator, not the collection itself
        import ctypes
        import gc

        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        r["rss_mb_open_trimmed"] = round(_status_kb(os.getpid(), "VmRSS") / 1024, 1)
    except (OSError, AttributeError):
        pass
    name = client.get_aliases().aliases[0].collection_name if client.get_aliases().aliases else COLLECTION
    t = time.perf_counter()
    r["count"] = client.count(name, exact=True).count
    r["count_s"] = round(time.perf_counter() - t, 3)
    for batch in (128, 256, 1024):
        t = time.perf_counter()
        recs, nxt = client.scroll(name, limit=batch, with_vectors=True, with_payload=True)
        r[f"scroll_page_{batch}_s"] = round(time.perf_counter() - t, 3)
    # a page deep into the collection (the offset is the id to start from)
    t = time.perf_counter()
    client.scroll(name, limit=256, offset=nxt, with_vectors=True, with_payload=True)
    r["scroll_page_256_offset_s"] = round(time.perf_counter() - t, 3)
    q = np.asarray(recs[0].vector, dtype=np.float32)
    t = time.perf_counter()
    for _ in range(5):
        client.query_points(name, query=q.tolist(), limit=10)
    r["query_points_s"] = round((time.perf_counter() - t) / 5, 3)
    r["profile"] = {"scroll_page_256": _profile(lambda: client.scroll(name, limit=256, offset=nxt, with_vectors=True,
                                                                      with_payload=True)),
                    "query_points": _profile(lambda: client.query_points(name, query=q.tolist(), limit=10))}
    t = time.perf_counter()
    client.close()
    r["close_s"] = round(time.perf_counter() - t, 2)
    print(json.dumps(r))


def _profile(fn, top: int = 6) -> list[list]:
    """Where one call spends its time: the functions with the most own time (cProfile)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    st = pstats.Stats(prof)
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:top]
    return [[f"{Path(f).name}:{line}({func})", round(tt, 3), int(nc)] for (f, line, func), (cc, nc, tt, ct, _) in rows]


# ----------------------------------------------------------------------------- the raw copy loop
def child_raw(home: str, batch: str, limit_s: str) -> None:
    """``scroll`` + ``upsert`` of the same pages into a new collection: the copy path's limit."""
    from qdrant_client import QdrantClient, models

    batch, limit_s = int(batch), float(limit_s)
    t0 = time.perf_counter()
    client = QdrantClient(path=str(qdrant_path(Path(home))))
    open_s = time.perf_counter() - t0
    target = f"raw-copy-{batch}"
    if client.collection_exists(target):
        client.delete_collection(target)
    client.create_collection(target, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    scroll_s = upsert_s = 0.0
    n, offset, t_loop, stopped = 0, None, time.perf_counter(), None
    while True:
        t = time.perf_counter()
        recs, offset = client.scroll(COLLECTION, limit=batch, offset=offset, with_vectors=True, with_payload=True)
        scroll_s += time.perf_counter() - t
        t = time.perf_counter()
        client.upsert(target, points=[models.PointStruct(id=r.id, vector=r.vector, payload=r.payload) for r in recs],
                      wait=True)
        upsert_s += time.perf_counter() - t
        n += len(recs)
        if offset is None:
            break
        if time.perf_counter() - t_loop > limit_s:
            stopped = f"stopped after {limit_s:.0f} s"
            break
    loop_s = time.perf_counter() - t_loop
    count = client.count(target, exact=True).count
    client.delete_collection(target)
    client.close()
    print(json.dumps({"batch": batch, "points": n, "count": count, "open_s": round(open_s, 1),
                      "loop_s": round(loop_s, 1), "scroll_s": round(scroll_s, 1), "upsert_s": round(upsert_s, 1),
                      "points_per_s": round(n / loop_s, 1), "stopped": stopped}))


# ----------------------------------------------------------------------------- copy path vs raw loop, interleaved
class _Budget:
    """A stand-in for the alias lease that ends ``build`` after ``seconds`` (build checks it before each page)."""

    class Over(Exception):
        pass

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def check(self, what: str = "") -> None:
        if time.perf_counter() > self.end:
            raise self.Over(what)

    fence = check

    def stamp(self) -> dict:
        return {}


def child_copy(home: str, mode: str, budget_s: str, rounds: str) -> None:
    """vectune's copy path (``promote.build``, copy mode) against the raw scroll+upsert loop, interleaved in one
    process (raw, build, raw, build, ...), each for ``budget_s`` seconds; ``mode`` ``disk`` (the embedded
    storage, one fsync'd commit per point) or ``memory`` (the same points in ``:memory:``: no I/O at all)."""
    from qdrant_client import QdrantClient, models

    from vectune.config.sections import PromoteConfig
    from vectune.promote.build import build
    from vectune.qdrant.store import Store

    budget_s, rounds = float(budget_s), int(rounds)
    page = int(os.environ.get("SCALE_COPY_PAGE") or PromoteConfig().copy_batch)  # the product's copy page, both sides
    t0 = time.perf_counter()
    client = QdrantClient(path=str(qdrant_path(Path(home))))
    out = {"mode": mode, "page": page, "open_s": round(time.perf_counter() - t0, 1)}
    if mode == "memory":
        mem = QdrantClient(location=":memory:")
        mem.create_collection(COLLECTION, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
        t = time.perf_counter()
        offset = None
        while True:
            recs, offset = client.scroll(COLLECTION, limit=4096, offset=offset, with_vectors=True, with_payload=True)
            mem.upsert(COLLECTION, points=[models.PointStruct(id=r.id, vector=r.vector, payload=r.payload)
                                           for r in recs], wait=True)
            if offset is None:
                break
        out["load_into_memory_s"] = round(time.perf_counter() - t, 1)
        client.close()
        client = mem
    store = Store.from_client(client)
    spec = store.dense_spec(COLLECTION)
    n_total = client.count(COLLECTION, exact=True).count

    def fresh(name):
        if client.collection_exists(name):
            client.delete_collection(name)

    def raw(name):
        fresh(name)
        client.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
        n, offset, t = 0, None, time.perf_counter()
        while time.perf_counter() - t < budget_s:
            recs, offset = client.scroll(COLLECTION, limit=page, offset=offset, with_vectors=True, with_payload=True)
            client.upsert(name, points=[models.PointStruct(id=r.id, vector=r.vector, payload=r.payload) for r in recs],
                          wait=True)
            n += len(recs)
            if offset is None:
                break
        secs = time.perf_counter() - t
        fresh(name)
        return {"points": n, "seconds": round(secs, 1), "points_per_s": round(n / secs, 1)}

    def vbuild(name):
        fresh(name)
        store.create_like(COLLECTION, name, spec, DIM, {"alias": "copy-bench"})
        done = {"n": 0}

        def on_page(offset, upserted):
            done["n"] = upserted

        t = time.perf_counter()
        try:
            build(store, None, COLLECTION, name, spec, "text", page, on_page=on_page, lock=_Budget(budget_s))
        except _Budget.Over:
            pass
        secs = time.perf_counter() - t
        n = client.count(name, exact=True).count
        fresh(name)
        return {"points": n, "seconds": round(secs, 1), "points_per_s": round(n / secs, 1)}

    runs = []
    for i in range(rounds):
        runs.append({"raw": raw(f"raw-{i}"), "build": vbuild(f"build-{i}"), "load": load_avg()})
        print(f"round {i}: {runs[-1]}", file=sys.stderr, flush=True)
    runs.append({"raw": raw("raw-last"), "load": load_avg()})
    raw_rates = [r["raw"]["points_per_s"] for r in runs]
    build_rates = [r["build"]["points_per_s"] for r in runs if "build" in r]
    out.update(points=n_total, budget_s=budget_s, runs=runs, raw_points_per_s=round(float(np.mean(raw_rates)), 1),
               build_points_per_s=round(float(np.mean(build_rates)), 1),
               build_vs_raw=round(float(np.mean(build_rates)) / float(np.mean(raw_rates)), 3))
    client.close()
    print(json.dumps(out))


# ----------------------------------------------------------------------------- the cycle
def copy_home(src: Path, dst: Path) -> float:
    t0 = time.perf_counter()
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return round(time.perf_counter() - t0, 1)


#: What run_cycle runs: (vectune run options beyond alias/home/json, whole collection, dry run).
CYCLES = {"train-set": ("labels", True, False),   # --train-set/--eval-set: the eval set decides; promotes
          "capped": ("labels", False, True),      # the same, judged on the capped sample, --dry-run
          "feedback": ("feedback", True, False)}  # the claims logged as feedback: cross-fitted evidence


def cycle_command(args, home: Path, sets: dict, tag: str) -> tuple[list[str], dict]:
    """The ``vectune run`` command line and environment of one cycle (see CYCLES)."""
    source, whole, dry = CYCLES[tag]
    opts = ["--mode", "query", "--seed", str(args.seed)]
    if source == "labels":
        opts += ["--train-set", str(sets["train"]), "--eval-set", str(sets["golden"])]
    if args.query_epochs:
        opts += ["--query-epochs", str(args.query_epochs)]
    if dry:
        opts.append("--dry-run")
    cmd = common.vectune_argv() + ["run", "--alias", ALIAS, "--home", str(home), "--json", *opts]
    env = common.child_env()
    env["VECTUNE_KEEP_CANDIDATE"] = "true"  # a rejected candidate is saved too, for the full-corpus scoring
    env.update(cycle_env(args))
    env["VECTUNE_WHOLE_COLLECTION"] = "true" if whole else "false"
    return cmd, env


def cycle_env(args) -> dict[str, str]:
    """``--cycle-env KEY=VALUE`` settings for every cycle (a smoke run's smaller sample, say)."""
    out = {}
    for item in getattr(args, "cycle_env", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("VECTUNE_") or key == "VECTUNE_WHOLE_COLLECTION":
            raise SystemExit(f"--cycle-env {item!r}: expected VECTUNE_NAME=value (not VECTUNE_WHOLE_COLLECTION, "
                             "which the cycles set themselves)")
        out[key] = value
    return out


def run_cycle(args, n: int, sets: dict, tag: str = "train-set") -> dict:
    """``vectune run --mode query`` on a fresh copy of the built home, as a user runs it.

    ``train-set``: the 500 training claims train, the golden claims decide (``--eval-set``: no cross-fit),
    judged on the whole collection (``VECTUNE_WHOLE_COLLECTION=true``, the default). ``capped``: the same
    command with ``--dry-run`` and ``VECTUNE_WHOLE_COLLECTION=false`` on another fresh copy of the same home:
    the same collection, labels and seed, so training runs again with the same seed, and the gate judges on
    the capped sample (``eval_corpus_cap``). ``feedback``: every labeled claim logged as click feedback and no
    sets given: the default evidence, cross-fitted over all labels.
    """
    home = args.work / f"run-{n}-{tag}"
    copy_s = copy_home(args.work / f"home-{n}", home)
    if CYCLES[tag][0] == "feedback":
        log_feedback(home, sets)
    cmd, env = cycle_command(args, home, sets, tag)
    log(f"[{n}] vectune run ({tag}) ...")
    stop = ("reindex", args.stop_reindex_after) if args.stop_reindex_after else None
    log_file = args.work / "logs" / f"cycle-{n}-{tag}.log"
    r = run_measured(cmd, log_file, env=env, timeout=args.max_hours * 3600, max_rss_gb=args.max_rss_gb,
                     stop_in_stage=stop)
    rep = common.parse_json_report(r["stdout"]) or {}
    if not rep:  # stopped: stage times from the log lines, the candidate from the model store's log line
        rep = from_log(log_file, r)
    counts = rep.get("counts") or {}
    out = {"input": tag, "home": str(home), "copy_home_s": copy_s, "command": " ".join(cmd[1:]),
           "whole_collection": env["VECTUNE_WHOLE_COLLECTION"] == "true", "cycle_env": cycle_env(args) or None,
           **{k: r[k] for k in ("rc", "seconds", "cpu_s", "peak_rss_mb", "stopped", "load_before", "load_after",
                                "stages_rss", "rss_series")},
           "status": rep.get("status"), "reason": rep.get("reason"), "duration_s": rep.get("duration_s"),
           "evidence": rep.get("evidence"), "timings_from": rep.get("timings_from", "run report"),
           "timings": rep.get("timings"), "gate": rep.get("gate"), "evaluation": rep.get("evaluation"),
           "candidate_model": rep.get("candidate_model"), "candidate_saved": rep.get("candidate_saved"),
           "new_collection": rep.get("new_collection"), "live_collection": rep.get("live_collection"),
           "watch": (rep.get("watch") or {}).get("verdict"), "labels": rep.get("labels"),
           "counts": {k: counts.get(k) for k in ("read", "split", "pairs", "negatives", "query_corpus", "train",
                                                 "train_set", "eval_set", "eval_corpus", "reindex", "feedback",
                                                 "crossfit", "live_vector_check")}}
    if rep.get("crossfit"):
        out["crossfit"] = {k: v for k, v in rep["crossfit"].items() if not isinstance(v, (dict, list))}
    if r["rc"] not in (0, None) or r["stopped"]:
        out["error"] = r["stderr_tail"]
    t = out["timings"] or {}
    out["stage_sum_s"] = round(sum(t.values()), 1)
    out["outside_stages_s"] = round(r["seconds"] - out["stage_sum_s"], 1)  # interpreter + imports + open + close
    log(f"[{n}] {out['status']} in {r['seconds']:.0f} s, peak RSS {r['peak_rss_mb']:.0f} MB; timings {t}")
    return out


def gate_summary(cyc: dict) -> dict:
    """What the gate saw and said in one cycle."""
    g = cyc.get("gate") or {}
    ev = ((cyc.get("evaluation") or {}).get("golden") or {})
    tr = (cyc.get("counts") or {}).get("train") or {}
    return {"status": cyc.get("status"), "whole_collection": cyc.get("whole_collection"),
            "eval_corpus": (cyc.get("counts") or {}).get("eval_corpus"),
            "corpus": (ev.get("live") or {}).get("corpus"), "live": g.get("live"), "candidate": g.get("candidate"),
            "delta": g.get("delta"), "ci_low": g.get("ci_low"), "ci_high": g.get("ci_high"),
            "p": g.get("p_value", _p_of(g.get("reason") or "")), "promote": g.get("promote"),
            "train": {k: tr.get(k) for k in ("steps", "epochs_run", "stopped_by", "chosen_epoch", "val_best", "threads",
                                             "corpus_in_memory")},
            "evaluate_s": (cyc.get("timings") or {}).get("evaluate")}


def gate_compare(whole: dict, capped: dict) -> dict:
    """The gate's delta judged on the whole collection (the promoting run) vs on the capped sample (its
    ``--dry-run`` twin). Two trainings with the same seed, labels and collection: ``same_training`` says
    whether they went the same way (steps, epochs, the chosen epoch and its validation score); torch's
    CPU thread count can differ with the load, so the weights may still differ in the last digits."""
    w, c = gate_summary(whole), gate_summary(capped)
    out = {"whole": w, "capped": c,
           "same_training": bool(w["train"]["steps"]) and w["train"] == {**c["train"], "threads": w["train"]["threads"]},
           "note": "two trainings with the same seed (the capped run is a second `run --dry-run` with "
                   "VECTUNE_WHOLE_COLLECTION=false on a fresh copy of the same home), not one candidate scored twice"}
    if w.get("delta") is not None and c.get("delta") is not None:
        out["delta_whole_minus_capped"] = round(w["delta"] - c["delta"], 4)
    return out


def from_log(path: Path, r: dict) -> dict:
    """What a stopped cycle's log says: seconds per stage (up to the stop) and the saved candidate."""
    st = sorted(r["stages_rss"].items(), key=lambda kv: kv[1]["start_s"])
    st = [(name, v["start_s"]) for name, v in st if name != "start"]
    timings = {name: round((st[i + 1][1] if i + 1 < len(st) else r["seconds"]) - t, 1) for i, (name, t) in enumerate(st)}
    text = path.read_text(errors="replace")
    m = re.search(r"saved model (\S+) to (\S+)", text)
    progress = re.findall(r"reindex \S+: (\d+)/(\d+) \(\d+%\), ([0-9.]+)/s", text)
    counts = {}
    if progress:
        counts["reindex"] = {"build": {"upserted": int(progress[-1][0]), "of": int(progress[-1][1]),
                                       "rate_per_s": float(progress[-1][2]), "partial": True}}
    counts.update(counts_from_log(text))
    gate = None
    if m:  # a promotion saves the model with the gate's decision in its manifest before it copies anything
        try:
            gate = json.loads((Path(m.group(2)) / "manifest.json").read_text()).get("eval")
        except (OSError, ValueError):
            gate = None
    return {"status": "stopped" if r["stopped"] else "failed", "reason": r["stopped"], "timings": timings,
            "timings_from": "log lines (the run was stopped; the last stage is cut short)",
            "candidate_model": m.group(1) if m else None, "candidate_saved": m.group(2) if m else None,
            "gate": gate, "counts": counts}


def counts_from_log(text: str) -> dict:
    """The counts a cycle's log lines carry: the whole-collection scan and the query-side training's stats."""
    import ast

    out = {}
    scan = re.search(r"judged on the whole collection '[^']*': (\d+) points scanned in ([0-9.]+) s", text)
    if scan:
        out["eval_corpus"] = {"size": int(scan.group(1)), "whole": True, "capped": False,
                              "scan_s": float(scan.group(2)), "from": "log"}
    train = re.search(r"query-side candidate query: (\{.*\})\s*$", text, re.MULTILINE)
    if train:
        try:
            out["train"] = ast.literal_eval(train.group(1))
        except (ValueError, SyntaxError):
            pass
    return out


def log_feedback(home: Path, sets: dict) -> None:
    """Log the 500 training claims, then the golden ones (newest), as click feedback on the alias."""
    from datetime import UTC, datetime, timedelta

    from qdrant_client import QdrantClient

    from vectune.apps import feedback

    rows, start = [], datetime(2026, 1, 1, tzinfo=UTC)
    for path in (sets["train"], sets["golden"]):
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            q = json.loads(line)
            rows.append({"alias": ALIAS, "query": q["query"], "relevant_ids": q["relevant"], "signal": "click",
                         "ts": (start + timedelta(minutes=len(rows))).isoformat()})
    client = QdrantClient(path=str(qdrant_path(home)))
    try:
        feedback.log_many(client, rows)
    finally:
        client.close()


def raw_mean(entry: dict) -> dict | None:
    """The raw loop's rate at page 128: the mean of the runs before and after the cycle."""
    runs = [r for r in ((entry.get("raw") or {}).get("128"), (entry.get("raw_after") or {}).get("128"))
            if r and r.get("points_per_s") and not r.get("stopped")]
    if not runs:
        return None
    return {"points_per_s": round(float(np.mean([r["points_per_s"] for r in runs])), 1),
            "runs": [r["points_per_s"] for r in runs]}


def copy_rates(cyc: dict, raw: dict | None, n: int) -> dict:
    """The promotion's copy rate (points/s) beside the raw scroll+upsert loop's."""
    rx = (cyc.get("counts") or {}).get("reindex") or {}
    build = rx.get("build") or {}
    out = {}
    if build.get("seconds"):
        out["build_points_per_s"] = round(n / build["seconds"], 1)
    if (cyc.get("timings") or {}).get("reindex"):
        out["reindex_points_per_s"] = round(n / cyc["timings"]["reindex"], 1)
    if raw:
        out["raw_points_per_s"] = raw["points_per_s"]
        out["raw_runs"] = raw.get("runs")
    if raw and raw.get("points_per_s") and not raw.get("stopped"):
        for k in ("build_points_per_s", "reindex_points_per_s"):
            if k in out:
                out[k.replace("points_per_s", "vs_raw")] = round(out[k] / raw["points_per_s"], 3)
    return out


# ----------------------------------------------------------------------------- judged on the whole collection
def exact_top(qv: np.ndarray, corpus: np.ndarray, k: int = 10, chunk: int = 131_072) -> np.ndarray:
    """Exact top-k rows per query over ``corpus`` (inner product), streamed in chunks: memory O(q x chunk)."""
    q = np.ascontiguousarray(qv, dtype=np.float32)
    best_s = np.full((q.shape[0], 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((q.shape[0], 0), dtype=np.int64)
    for start in range(0, corpus.shape[0], chunk):
        block = np.asarray(corpus[start:start + chunk], dtype=np.float32)
        s = q @ block.T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        cs = np.concatenate([best_s, np.take_along_axis(s, part, axis=1)], axis=1)
        ci = np.concatenate([best_i, part + start], axis=1)
        keep = np.argsort(-cs, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cs, keep, axis=1), np.take_along_axis(ci, keep, axis=1)
    return best_i


def per_query(top: np.ndarray, keys: list[str], qids: list[str], qrels: dict) -> dict[str, np.ndarray]:
    """vectune's own metrics (the gate's): per query, from ranked rows."""
    from vectune.pipeline.evaluate import EvalQuery, score

    res = score(top, keys, [EvalQuery("", set(qrels[q])) for q in qids])
    return res.per_query


def paired(live: np.ndarray, cand: np.ndarray, metric: str = "ndcg@10") -> dict:
    from vectune.pipeline.paired import paired_bootstrap, paired_permutation

    lo, hi = paired_bootstrap(live, cand, samples=2000, confidence=0.95, seed=0)
    p = paired_permutation(live, cand, samples=1000, seed=0)
    d = float((cand - live).mean())
    return {"metric": metric, "live": round(float(live.mean()), 4), "candidate": round(float(cand.mean()), 4),
            "delta": round(d, 4), "ci_low": round(lo, 4), "ci_high": round(hi, 4), "p": round(p, 4),
            "would_promote": bool(d >= 0.005 and p < 0.025), "queries": int(live.size)}


def capped_rows(n: int, keys: list[str], must: set[str], cap: int, seed: int) -> np.ndarray:
    """Rows of a capped corpus as the gate builds it: every relevant chunk, then a random sample up to ``cap``."""
    rng = np.random.default_rng(seed)
    must_rows = [i for i, k in enumerate(keys) if k in must]
    if n <= cap:
        return np.arange(n)
    rest = rng.choice(n, size=min(n, cap + len(must_rows)), replace=False)
    rest = [int(i) for i in rest if keys[int(i)] not in must][: cap - len(must_rows)]
    return np.array(sorted(set(must_rows) | set(rest)), dtype=np.int64)


def eval_full(args, beir: dict, sets: dict, n: int, cyc: dict) -> dict:
    """The cycle's candidate judged on the capped corpus (report + replicas) and on every stored vector."""
    ref = cyc.get("candidate_model")
    if not ref:
        return {"error": "no candidate model in the run report"}
    store = models(Path(cyc["home"]))
    if not store.has(ref):
        return {"error": f"candidate {ref} is not in {store.root} (neither promoted nor kept)"}
    live = store.load(MODEL)
    cand = store.load(ref)
    keys, vecs = all_vectors(beir, n, args.work)
    qsets = {"golden": sets["golden_ids"], "test": sorted(beir["test"])}
    qrels = {**{q: beir["train"][q] for q in sets["golden_ids"]}, **beir["test"]}
    out = {"n": n, "candidate": ref, "cap": 20000, "sets": {}}
    qv = {}
    t0 = time.perf_counter()
    for name, qids in qsets.items():
        texts = [beir["queries"][q] for q in qids]
        qv[name] = {"live": live.encode_queries(texts), "candidate": cand.encode_queries(texts)}
    out["encode_queries_s"] = round(time.perf_counter() - t0, 1)
    # exact, chunked, over all N stored vectors
    exact_s = 0.0
    for name, qids in qsets.items():
        res = {}
        per = {}
        for side in ("live", "candidate"):
            t = time.perf_counter()
            top = exact_top(qv[name][side], vecs)
            exact_s += time.perf_counter() - t
            per[side] = per_query(top, keys, qids, qrels)
            res[f"top_{side}"] = top
        full = paired(per["live"]["ndcg@10"], per["candidate"]["ndcg@10"])
        full["recall@10"] = {s: round(float(per[s]["recall@10"].mean()), 4) for s in per}
        # capped replicas: every relevant chunk of the set, then random distractors up to the cap
        reps = []
        must = set().union(*(qrels[q] for q in qids))
        for seed in range(args.cap_replicas):
            rows = capped_rows(n, keys, must, 20000, seed)
            sub, sub_keys = vecs[rows], [keys[i] for i in rows]
            pc = {s: per_query(exact_top(qv[name][s], sub), sub_keys, qids, qrels) for s in ("live", "candidate")}
            reps.append(paired(pc["live"]["ndcg@10"], pc["candidate"]["ndcg@10"]))
        out["sets"][name] = {"full": full, "capped_replicas": reps,
                             "capped_mean_delta": round(float(np.mean([r["delta"] for r in reps])), 4) if reps else None,
                             "capped_mean_live": round(float(np.mean([r["live"] for r in reps])), 4) if reps else None}
        np.save(args.work / f"top-{n}-{name}.npy", np.stack([res["top_live"], res["top_candidate"]]))
    out["exact_s"] = round(exact_s, 2)
    out["exact_queries"] = int(sum(2 * len(q) for q in qsets.values()))
    out["exact_ms_per_query"] = round(1000 * exact_s / out["exact_queries"], 2)
    out["gate"] = gate_summary(cyc)  # as the cycle's gate judged it (the whole collection, by default)
    # the collection's own search (embedded: brute force) in a fresh process, on the same query vectors
    qfile = args.work / f"qp-{n}.npz"
    # at most --qp-queries per set and side (embedded search costs ~1 s a query at 100k points)
    np.savez(qfile, **{f"{name}_{side}": qv[name][side][:args.qp_queries] for name in qv for side in qv[name]})
    r = run_measured(child("query_points", str(args.work / f"home-{n}"), str(qfile)),
                     args.work / "logs" / f"query-points-{n}.log", timeout=args.max_hours * 3600,
                     max_rss_gb=args.max_rss_gb)
    try:
        qp = json.loads(r["stdout"].strip().splitlines()[-1])
        agree = []
        for name in qsets:
            tops = np.load(args.work / f"top-{n}-{name}.npy")
            for j, side in enumerate(("live", "candidate")):
                ids = qp["ids"][f"{name}_{side}"]
                agree += [len(set(a) & {keys[i] for i in b}) / 10 for a, b in zip(ids, tops[j][:len(ids)])]
        out["query_points"] = {"open_s": qp["open_s"], "seconds": qp["seconds"], "queries": qp["queries"],
                               "ms_per_query": round(1000 * qp["seconds"] / qp["queries"], 2),
                               "top10_overlap_with_exact": round(float(np.mean(agree)), 4),
                               "peak_rss_mb": r["peak_rss_mb"], "load": r["load_after"]}
    except (ValueError, IndexError, KeyError) as e:
        out["query_points"] = {"error": f"{type(e).__name__}: {e}", "stderr": r["stderr_tail"], "stopped": r["stopped"]}
    out["load"] = load_avg()
    return out


def _p_of(reason: str) -> float | None:
    m = re.search(r"p = ([0-9.]+)", reason)
    return float(m.group(1)) if m else None


def child_query_points(home: str, qfile: str) -> None:
    """``query_points`` on the live collection for every query vector (top 10 doc ids)."""
    from qdrant_client import QdrantClient

    data = np.load(qfile)
    t0 = time.perf_counter()
    client = QdrantClient(path=str(qdrant_path(Path(home))))
    open_s = time.perf_counter() - t0
    ids, n, t = {}, 0, time.perf_counter()
    for name in data.files:
        ids[name] = []
        for v in data[name]:
            res = client.query_points(COLLECTION, query=v.tolist(), limit=10, with_payload=["doc_id"])
            ids[name].append([str((p.payload or {}).get("doc_id")) for p in res.points])
            n += 1
    secs = time.perf_counter() - t
    client.close()
    print(json.dumps({"open_s": round(open_s, 1), "seconds": round(secs, 2), "queries": n, "ids": ids}))


# ----------------------------------------------------------------------------- pool vs full softmax
def pool_compare(args, beir: dict, sets: dict) -> dict:
    """The query encoder trained with the full softmax over all N vectors, with the pool that stands in above
    ``VECTUNE_QUERY_CORPUS_MAX``, and against what a cycle holds (the read stage's ~20k sample); test claims
    scored against all N vectors."""
    n = args.pool_size
    keys, vecs = all_vectors(beir, n, args.work)
    test_ids = sorted(beir["test"])
    live = encoder()
    lv = live.encode_queries([beir["queries"][q] for q in test_ids])
    base = per_query(exact_top(lv, vecs), keys, test_ids, beir["test"])
    out = {"n": n, "pool_max": args.pool_max, "sample": 20000, "seeds": args.pool_seeds,
           "live_test_ndcg10": round(float(base["ndcg@10"].mean()), 4), "runs": {}, "compare": {}}
    per = {}
    for variant in ("full", "pool", "sample", "widened"):
        for seed in range(args.pool_seeds):
            name = f"{variant}-s{seed}"
            qfile = args.work / f"pool-{n}-{name}.npy"
            log(f"[pool {n}] training {name} ...")
            r = run_measured(child("train", str(n), variant, str(seed), str(args.pool_max), str(qfile)),
                             args.work / "logs" / f"pool-{n}-{name}.log", timeout=args.max_hours * 3600,
                             max_rss_gb=args.max_rss_gb, stage_re=r"^(never)$")
            try:
                stats = json.loads(r["stdout"].strip().splitlines()[-1])
            except (ValueError, IndexError):
                out["runs"][name] = {"error": r["stderr_tail"], "stopped": r["stopped"]}
                continue
            qv = np.load(qfile)
            per[name] = per_query(exact_top(qv, vecs), keys, test_ids, beir["test"])
            out["runs"][name] = {**stats, "peak_rss_mb": r["peak_rss_mb"], "seconds": r["seconds"],
                                 "load": r["load_after"], "vs_live": paired(base["ndcg@10"], per[name]["ndcg@10"])}
            log(f"[pool {n}] {name}: test nDCG@10 {out['runs'][name]['vs_live']['candidate']} "
                f"(live {out['live_test_ndcg10']}), {r['seconds']:.0f} s")
    for seed in range(args.pool_seeds):
        f = f"full-s{seed}"
        for other in ("pool", "sample", "widened"):
            o = f"{other}-s{seed}"
            if f in per and o in per:
                c = paired(per[f]["ndcg@10"], per[o]["ndcg@10"])
                out["compare"][f"{other}-vs-full-s{seed}"] = {k: c[k] for k in ("delta", "ci_low", "ci_high", "p")}
    # seeds pooled: mean over seeds of each query's nDCG@10, then the paired CI
    for other in ("pool", "sample", "widened"):
        fs = [per[f"full-s{s}"]["ndcg@10"] for s in range(args.pool_seeds) if f"full-s{s}" in per]
        os_ = [per[f"{other}-s{s}"]["ndcg@10"] for s in range(args.pool_seeds) if f"{other}-s{s}" in per]
        if fs and os_:
            c = paired(np.mean(fs, axis=0), np.mean(os_, axis=0))
            out["compare"][f"{other}-vs-full-seed-mean"] = {k: c[k] for k in ("delta", "ci_low", "ci_high", "p")}
    out["load"] = load_avg()
    return out


def query_cfg(**update):
    """The query-side settings (``QueryConfig``, environment included) with some fields changed."""
    return settings_for().query.model_copy(update=update)


def child_train(n: str, variant: str, seed: str, pool_max: str, qfile: str) -> None:
    """One query-encoder training (``pipeline.train.query.encoder``) on the N-point corpus; saves the test claims'
    vectors."""
    from vectune.pipeline.train.query.encoder import train_query_encoder
    from vectune.pipeline.train.query.router import embed_eval

    n, seed, pool_max = int(n), int(seed), int(pool_max)
    beir = scifact(Path(os.environ["SCALE_DATA"]))
    work = Path(os.environ["SCALE_WORK"])
    sets = labeled_sets(beir, work, int(os.environ.get("SCALE_TRAIN_QUERIES", "500")), int(os.environ.get("SCALE_SEED", "42")))
    keys, vecs = all_vectors(beir, n, work)
    cfg = query_cfg(time_budget_s=0.0)  # equal epochs for every variant
    texts = [beir["queries"][q] for q in sets["train_ids"]]
    positives = [sorted(beir["train"][q]) for q in sets["train_ids"]]
    live = encoder()
    if variant == "full":
        cfg = cfg.model_copy(update={"corpus_max": max(n, cfg.corpus_max)})
        ckeys, cvecs = keys, vecs
    elif variant == "pool":
        cfg = cfg.model_copy(update={"corpus_max": pool_max})
        ckeys, cvecs = keys, vecs
    else:  # what a cycle trains against: the read stage's 20k sample + every positive (candidates.stored_corpus)
        need = {k for p in positives for k in p}
        rows = capped_rows(n, keys, need, 20000 + len(need), 1000 + seed)
        if variant == "widened":  # + each training query's nearest stored points (candidates.widen_corpus)
            near = exact_top(live.encode_queries(texts), vecs, k=cfg.pool_negatives)
            rows = np.union1d(rows, near.ravel())
        ckeys, cvecs = [keys[i] for i in rows], np.asarray(vecs[rows])
    t0 = time.perf_counter()
    model, stats = train_query_encoder(live.model, texts, positives, cvecs, ckeys, cfg=cfg,
                                       query_prompt=live.query_prompt, seed=seed)
    secs = time.perf_counter() - t0
    test_ids = sorted(beir["test"])
    qv = embed_eval(model, [live.query_prompt + beir["queries"][q] for q in test_ids]).cpu().numpy()
    np.save(qfile, qv)
    s = stats.to_dict()
    print(json.dumps({"variant": variant, "seed": seed, "train_s": round(secs, 1),
                      **{k: s[k] for k in ("corpus_in_memory", "pooled", "steps", "epochs_run", "chosen_epoch",
                                           "val_live", "val_best", "refit", "stopped_by", "threads")}}))


def child_trainmem(n: str, max_corpus: str, steps: str) -> None:
    """Memory and step time of the query-side trainer on an N-vector corpus (random unit vectors: no quality)."""
    from vectune.pipeline.train.query.encoder import train_query_encoder

    n, max_corpus, steps = int(n), int(max_corpus), int(steps)
    rng = np.random.default_rng(0)
    vecs = np.empty((n, DIM), dtype=np.float32)
    for i in range(0, n, 100_000):
        b = rng.standard_normal((min(100_000, n - i), DIM)).astype(np.float32)
        vecs[i:i + len(b)] = b / np.linalg.norm(b, axis=1, keepdims=True)
    keys = [str(i) for i in range(n)]
    texts = [f"query number {i} about topic {i % 97}" for i in range(512)]
    positives = [[str(int(x))] for x in rng.integers(0, n, size=512)]
    rss0 = _status_kb(os.getpid(), "VmRSS")
    cfg = query_cfg(time_budget_s=0.0, max_steps=steps, epochs=1.0, val_fraction=0.0, refit=False,
                    corpus_max=max_corpus)
    live = encoder()
    t0 = time.perf_counter()
    _, stats = train_query_encoder(live.model, texts, positives, vecs, keys, cfg=cfg, query_prompt=live.query_prompt)
    secs = time.perf_counter() - t0
    print(json.dumps({"n": n, "max_corpus": max_corpus, "pooled": stats.pooled,
                      "corpus_in_memory": stats.corpus_in_memory, "steps": stats.steps, "seconds": round(secs, 1),
                      "rss_mb_with_vectors": round(rss0 / 1024, 1),
                      "hwm_mb": round(_status_kb(os.getpid(), "VmHWM") / 1024, 1)}))


# ----------------------------------------------------------------------------- driver
def labeled_sets(beir: dict, work: Path, n_train: int, seed: int) -> dict:
    train_ids, golden_ids = labeled_split(beir, n_train, seed)
    paths = {"train": work / f"train-{n_train}.jsonl", "golden": work / f"golden-{n_train}.jsonl"}
    write_labeled(paths["train"], train_ids, beir, beir["train"])
    write_labeled(paths["golden"], golden_ids, beir, beir["train"])
    assert not set(train_ids) & set(golden_ids) and not set(beir["test"]) & (set(train_ids) | set(golden_ids))
    return {**paths, "train_ids": train_ids, "golden_ids": golden_ids, "n_train": len(train_ids),
            "n_golden": len(golden_ids)}


def load_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"sizes": {}}


def save_results(path: Path, res: dict) -> None:
    common.write_json(path, res)


def size_summary(entry: dict) -> dict:
    """One size at a glance: the cycle's seconds per stage (the run report's ``timings``), its peak RSS, the
    evaluation and training corpora, and the gate's delta on the whole collection vs the capped sample."""
    c = entry["cycle"]
    counts = c.get("counts") or {}
    out = {"status": c.get("status"), "cycle_s": c.get("seconds"), "peak_rss_mb": c.get("peak_rss_mb"),
           "timings": c.get("timings"), "eval_corpus": counts.get("eval_corpus"),
           "query_corpus": counts.get("query_corpus"),
           "train_corpus_in_memory": (counts.get("train") or {}).get("corpus_in_memory"),
           # None: the stage ended between two polls (every 0.5 s)
           "peak_rss_mb_by_stage": {k: v.get("peak_rss_mb") or None for k, v in (c.get("stages_rss") or {}).items()},
           "load": [c.get("load_before"), c.get("load_after")]}
    cmp_ = entry.get("gate_whole_vs_capped")
    if cmp_ and "whole" in cmp_:
        out["gate_delta"] = {"whole": cmp_["whole"]["delta"], "capped": cmp_["capped"]["delta"],
                             "whole_corpus": cmp_["whole"]["corpus"], "capped_corpus": cmp_["capped"]["corpus"],
                             "same_training": cmp_["same_training"]}
        out["capped_cycle_s"] = (entry.get("cycle_capped") or {}).get("seconds")
    return out


def run_size(args, beir: dict, sets: dict, n: int, res: dict) -> dict:
    entry = res["sizes"].get(str(n), {})
    entry.update(n=n, date=common.now())
    parts = args.parts

    def keep():  # re-read first: another size may run beside this one (separate processes, one --out)
        res["sizes"] = {**res["sizes"], **load_results(args.out).get("sizes", {}), str(n): entry}
        save_results(args.out, res)

    if "build" in parts or not (args.work / f"home-{n}" / "built.json").is_file():
        log(f"[{n}] writing the collection through qdrant-client (embedded) ...")
        entry["build"] = build_home(args, beir, n)
        keep()
        if not (entry["build"].get("adopt") or {}).get("rc") == 0:
            entry["stopped"] = f"build: {entry['build'].get('write', {}).get('stopped') or entry['build']}"
            keep()
            return entry
        log(f"[{n}] built: {entry['build']['write'].get('points_per_s')} points/s, "
            f"{entry['build'].get('storage_mb')} MB on disk")
    if "probe" in parts:
        r = run_measured(child("probe", str(args.work / f"home-{n}")), args.work / "logs" / f"probe-{n}.log",
                         timeout=args.max_hours * 3600, max_rss_gb=args.max_rss_gb)
        try:
            entry["probe"] = {**json.loads(r["stdout"].strip().splitlines()[-1]), "peak_rss_mb": r["peak_rss_mb"],
                              "load": r["load_after"]}
        except (ValueError, IndexError):
            entry["probe"] = {"error": r["stderr_tail"], "stopped": r["stopped"]}
        log(f"[{n}] probe: {entry['probe']}")
        keep()
    def raw_loop(batches):
        raw = {}
        for batch in batches:
            home = args.work / f"raw-{n}"
            copy_home(args.work / f"home-{n}", home)
            r = run_measured(child("raw", str(home), str(batch), str(args.raw_limit_s)),
                             args.work / "logs" / f"raw-{n}-{batch}.log", timeout=args.max_hours * 3600,
                             max_rss_gb=args.max_rss_gb)
            shutil.rmtree(home, ignore_errors=True)
            try:
                raw[str(batch)] = {**json.loads(r["stdout"].strip().splitlines()[-1]), "peak_rss_mb": r["peak_rss_mb"],
                                   "process_cpu_s": r["cpu_s"],
                                   "load_before": r["load_before"], "load_after": r["load_after"]}
            except (ValueError, IndexError):
                raw[str(batch)] = {"error": r["stderr_tail"], "stopped": r["stopped"]}
            log(f"[{n}] raw loop (batch {batch}): {raw[str(batch)]}")
        return raw

    if "raw" in parts:
        entry["raw"] = raw_loop(args.raw_batches)
        keep()
    if "copy" in parts:
        cp = {}
        for mode in args.copy_modes:
            home = args.work / f"raw-{n}"
            copy_home(args.work / f"home-{n}", home)
            r = run_measured(child("copy", str(home), mode, str(args.copy_budget_s), "2"),
                             args.work / "logs" / f"copy-{n}-{mode}.log", timeout=args.max_hours * 3600,
                             max_rss_gb=args.max_rss_gb)
            shutil.rmtree(home, ignore_errors=True)
            try:
                cp[mode] = {**json.loads(r["stdout"].strip().splitlines()[-1]), "peak_rss_mb": r["peak_rss_mb"],
                            "process_cpu_s": r["cpu_s"], "load_before": r["load_before"], "load_after": r["load_after"]}
            except (ValueError, IndexError):
                cp[mode] = {"error": r["stderr_tail"], "stopped": r["stopped"]}
            log(f"[{n}] copy path vs raw loop ({mode}): build/raw {cp[mode].get('build_vs_raw')}")
        entry["copy_interleaved"] = cp
        keep()
    if "cycle" in parts:
        entry["cycle"] = run_cycle(args, n, sets)
        keep()
        if "raw" in parts:  # the same loop right after the cycle: the disk's fsync rate drifts with other jobs
            entry["raw_after"] = raw_loop([128])
        entry["copy"] = copy_rates(entry["cycle"], raw_mean(entry), n)
        keep()
    if "capped" in parts and entry.get("cycle"):  # the same cycle judged on the capped sample, dry run
        ec = (entry["cycle"].get("counts") or {}).get("eval_corpus") or {}
        if ec.get("whole"):
            entry["cycle_capped"] = run_cycle(args, n, sets, tag="capped")
            entry["gate_whole_vs_capped"] = gate_compare(entry["cycle"], entry["cycle_capped"])
        else:  # the read stage's sample held every point: a capped run would judge on the same corpus
            entry.pop("cycle_capped", None)
            entry["gate_whole_vs_capped"] = {"skipped": f"the cycle's sample held every point (eval corpus {ec}): "
                                                        "nothing to scan, the capped gate is the same"}
        keep()
    if entry.get("cycle"):
        entry["summary"] = size_summary(entry)
        keep()
    if "eval" in parts and (entry.get("cycle") or {}).get("candidate_model"):
        log(f"[{n}] judging the candidate on all {n} stored vectors ...")
        entry["eval"] = eval_full(args, beir, sets, n, entry["cycle"])
        keep()
    if "feedback" in parts:
        entry["cycle_feedback"] = run_cycle(args, n, sets, tag="feedback")
        keep()
    for tag in CYCLES:
        if not args.keep_homes:
            shutil.rmtree(args.work / f"run-{n}-{tag}", ignore_errors=True)
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, default=BENCH.parent.parent / "shared" / "data" / "scifact")
    ap.add_argument("--sizes", default="10000,100000,300000,1000000",
                    help="comma list of collection sizes (points); below 5183 (e.g. 2000, a smoke run) the "
                         "collection holds the abstracts the claims point at first")
    ap.add_argument("--parts", default="build,probe,raw,cycle,capped,eval",
                    help="comma list: build, probe, copy, raw, cycle, capped, eval, feedback, pool, trainmem")
    ap.add_argument("--out", type=Path, default=common.RESULTS_DIR / "scale.json")
    ap.add_argument("--work", type=Path, default=BENCH / "work" / "scale")
    ap.add_argument("--train-queries", type=int, default=500)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--query-epochs", type=float, default=None,
                    help="passed to every cycle as --query-epochs (default: vectune's, 8); 1 for a smoke run")
    ap.add_argument("--cycle-env", action="append", metavar="VECTUNE_NAME=VALUE",
                    help="a vectune setting for every cycle (repeatable), recorded with it; a smoke run: "
                         "VECTUNE_MAX_TRAIN_CHUNKS=1000 VECTUNE_EVAL_CORPUS_CAP=1000 keep a sample smaller than "
                         "2,000 points, so widen and the whole-collection scan run")
    ap.add_argument("--max-hours", type=float, default=1.5, help="stop a child past this wall time")
    ap.add_argument("--max-rss-gb", type=float, default=16.0, help="stop a child past this RSS")
    ap.add_argument("--raw-batches", default="128,1024", help="page sizes of the raw scroll+upsert loop")
    ap.add_argument("--raw-limit-s", type=float, default=3600.0, help="stop the raw loop after this long")
    ap.add_argument("--cap-replicas", type=int, default=5, help="random capped corpora per size (eval)")
    ap.add_argument("--qp-queries", type=int, default=100, help="eval: queries per set and side sent to query_points")
    ap.add_argument("--pool-size", type=int, default=100000)
    ap.add_argument("--pool-max", type=int, default=30000,
                    help="the query side's corpus_max (VECTUNE_QUERY_CORPUS_MAX) that forces the pool")
    ap.add_argument("--pool-seeds", type=int, default=2)
    ap.add_argument("--trainmem-sizes", default="300000,1000000")
    ap.add_argument("--client-write-max", type=int, default=100_000,
                    help="larger collections are written straight into the embedded storage (sqlite, one transaction)")
    ap.add_argument("--stop-reindex-after", type=float, default=0,
                    help="stop the cycle this many seconds into its reindex stage (0: never); stage times then "
                         "come from the log")
    ap.add_argument("--copy-modes", default="disk,memory", help="copy part: the embedded storage and/or :memory:")
    ap.add_argument("--copy-budget-s", type=float, default=150, help="copy part: seconds per raw/build run")
    ap.add_argument("--rebuild", action="store_true", help="rewrite the collection even when cached")
    ap.add_argument("--keep-homes", action="store_true", help="keep the cycle homes (bench/work/scale/run-*)")
    ap.add_argument("--report", action="store_true", help="only write RESULTS.md's section and the chart")
    args = ap.parse_args()
    if args.child:
        fn = {"write": child_write, "direct": child_direct, "probe": child_probe, "raw": child_raw, "query_points": child_query_points,
              "train": child_train, "trainmem": child_trainmem, "copy": child_copy}[args.child[0]]
        fn(*args.child[1:])
        return
    args.work = args.work.resolve()
    args.out = args.out.resolve()
    args.parts = set(args.parts.split(","))
    args.raw_batches = [int(x) for x in args.raw_batches.split(",") if x]
    args.copy_modes = [x for x in args.copy_modes.split(",") if x]
    os.environ.update(SCALE_DATA=str(args.data.resolve()), SCALE_WORK=str(args.work),
                      SCALE_TRAIN_QUERIES=str(args.train_queries), SCALE_SEED=str(args.seed))
    res = load_results(args.out)
    if args.report:
        report(res, args.out)
        return
    res["machine"] = common.machine()
    res["command"] = common.command_line()
    beir = scifact(args.data)
    sets = labeled_sets(beir, args.work, args.train_queries, args.seed)
    res["data"] = {"scifact_abstracts": len(beir["keys"]), "train_claims": sets["n_train"],
                   "golden_claims": sets["n_golden"], "test_claims": len(beir["test"]),
                   "filler": "7-10 words of SciFact's vocabulary (frequency^0.75), real MiniLM vectors"}
    per_size = {"build", "probe", "copy", "raw", "cycle", "capped", "eval", "feedback"}
    for n in [int(x) for x in args.sizes.split(",") if x] if args.parts & per_size else []:
        all_vectors(beir, n, args.work)  # encode what is missing (cached), outside every timed child
        run_size(args, beir, sets, n, res)
    if "pool" in args.parts:
        all_vectors(beir, args.pool_size, args.work)
        res["pool"] = pool_compare(args, beir, sets)
        save_results(args.out, res)
    if "trainmem" in args.parts:
        tm = res.get("trainmem", {})
        for n in [int(x) for x in args.trainmem_sizes.split(",") if x]:
            for label, mc in (("full", n), ("pool", 300000 if n > 300000 else n // 3)):
                r = run_measured(child("trainmem", str(n), str(mc), "6"), args.work / "logs" / f"trainmem-{n}-{label}.log",
                                 timeout=args.max_hours * 3600, max_rss_gb=args.max_rss_gb, stage_re=r"^(never)$")
                try:
                    tm[f"{n}-{label}"] = {**json.loads(r["stdout"].strip().splitlines()[-1]),
                                          "peak_rss_mb": r["peak_rss_mb"], "load": r["load_after"]}
                except (ValueError, IndexError):
                    tm[f"{n}-{label}"] = {"error": r["stderr_tail"], "stopped": r["stopped"]}
                log(f"trainmem {n} {label}: {tm[f'{n}-{label}']}")
                res["trainmem"] = tm
                save_results(args.out, res)
    save_results(args.out, res)
    report(res, args.out)


# ----------------------------------------------------------------------------- report
STAGES = ("watch", "read", "load_live_model", "generate", "mine", "widen", "train", "evaluate", "final_fit", "save_model",
          "reindex")


def stage_table(res: dict) -> dict[str, dict[int, float]]:
    """Seconds per stage per size (reindex split into build and publish), plus totals. A cycle stopped as asked
    (``--stop-reindex-after``) gives the stages it finished; its last one and its totals are left out."""
    out: dict[str, dict[int, float]] = {}
    for key, e in sorted(res.get("sizes", {}).items(), key=lambda kv: int(kv[0])):
        n, c = int(key), e.get("cycle") or {}
        t = dict(c.get("timings") or {})
        stopped = c.get("status") == "stopped" and "as asked" in str(c.get("reason"))
        if not t or (c.get("status") not in ("promoted", "kept") and not stopped):
            continue
        if stopped:
            t.pop(list(t)[-1])
        for s in STAGES:
            if s in t:
                out.setdefault(s, {})[n] = t[s]
        if stopped:
            continue
        rx = (c.get("counts") or {}).get("reindex") or {}
        if rx.get("build", {}).get("seconds"):
            out.setdefault("reindex: copy (build)", {})[n] = rx["build"]["seconds"]
        if rx.get("catch_up", {}).get("seconds"):
            out.setdefault("reindex: sync+verify+swap", {})[n] = rx["catch_up"]["seconds"]
        out.setdefault("outside stages (start, open, close)", {})[n] = c.get("outside_stages_s")
        out.setdefault("cycle wall", {})[n] = c.get("seconds")
    return out


def slope(points: dict[int, float]) -> float | None:
    """Least-squares slope of log(seconds) against log(N)."""
    pts = [(math.log(n), math.log(v)) for n, v in points.items() if v and v > 0]
    if len(pts) < 2:
        return None
    xs, ys = zip(*pts)
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else None


def extrapolate(points: dict[int, float], n: int) -> float | None:
    """From the two largest sizes measured, along their log-log slope."""
    pts = sorted((k, v) for k, v in points.items() if v and v > 0)
    if len(pts) < 2:
        return None
    (n1, v1), (n2, v2) = pts[-2], pts[-1]
    b = math.log(v2 / v1) / math.log(n2 / n1)
    return v2 * (n / n2) ** b


def chart(res: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    table = stage_table(res)
    if not table:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5.2))
    for name, pts in table.items():
        if name == "reindex" or not pts:
            continue
        xs = sorted(pts)
        b = slope(pts)
        a1.plot(xs, [max(pts[x], 0.01) for x in xs], marker="o",
                label=f"{name} (slope {b:.2f})" if b is not None else name,
                linewidth=2.5 if name == "cycle wall" else 1.2)
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("points in the collection (N)")
    a1.set_ylabel("seconds")
    a1.set_title("query-mode cycle, embedded Qdrant: seconds per stage")
    a1.legend(fontsize=7)
    a1.grid(True, which="both", alpha=0.3)
    mem = {}
    for key, e in res.get("sizes", {}).items():
        n = int(key)
        if (e.get("cycle") or {}).get("peak_rss_mb"):
            mem.setdefault("cycle peak RSS", {})[n] = e["cycle"]["peak_rss_mb"]
        if (e.get("probe") or {}).get("rss_mb_open"):
            mem.setdefault("open the storage (RSS)", {})[n] = e["probe"]["rss_mb_open"]
        w = (e.get("build") or {}).get("write") or {}
        if w.get("peak_rss_mb"):
            mem.setdefault("write the collection (peak)", {})[n] = w["peak_rss_mb"]
    for name, pts in res.get("trainmem_series", {}).items():
        mem[name] = {int(k): v for k, v in pts.items()}
    for name, pts in mem.items():
        xs = sorted(pts)
        b = slope(pts)
        a2.plot(xs, [pts[x] for x in xs], marker="s", label=f"{name} (slope {b:.2f})" if b is not None else name)
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_xlabel("points in the collection (N)")
    a2.set_ylabel("MB")
    a2.set_title("memory")
    a2.legend(fontsize=7)
    a2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def fmt(v, nd=1) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def report(res: dict, out: Path) -> None:
    """The ``scale`` section of RESULTS.md and the chart, from the JSON."""
    png = out.with_suffix(".png")
    have_chart = chart(res, png)
    sizes = sorted(res.get("sizes", {}), key=int)
    lines = ["## Scale: a query-mode cycle from 10k to 1M points (embedded Qdrant)", ""]
    m = res.get("machine") or {}
    lines += [f"`{res.get('command', 'python bench/scale.py')}` — {common.machine_line(m) if m else ''}. "
              "Load average (1/5/15 min) is given beside each timing: other jobs shared these 2 cores.", ""]
    head = "| | " + " | ".join(f"{int(n):,}" for n in sizes) + " |"
    lines += ["### Per stage (seconds) and peak RSS", "", head, "|---|" + "---:|" * len(sizes)]
    table = stage_table(res)
    for name, pts in table.items():
        lines.append(f"| {name} | " + " | ".join(fmt(pts.get(int(n))) for n in sizes) + " |")

    def row(label, fn):
        vals = []
        for n in sizes:
            try:
                vals.append(fn(res["sizes"][n]))
            except (KeyError, TypeError, ZeroDivisionError):
                vals.append("—")
        lines.append(f"| {label} | " + " | ".join(v if isinstance(v, str) else fmt(v) for v in vals) + " |")

    row("status", lambda e: e["cycle"]["status"] if e.get("cycle") else (e.get("stopped") or "—"))
    row("cycle peak RSS (MB)", lambda e: e["cycle"]["peak_rss_mb"])
    row("load at start / end", lambda e: f"{e['cycle']['load_before'][0]} / {e['cycle']['load_after'][0]}")
    row("trainer corpus in memory", lambda e: e["cycle"]["counts"]["train"]["corpus_in_memory"])
    row("query-side corpus: sample + widened (added)", lambda e: f"{e['cycle']['counts']['query_corpus']['corpus']:,} "
        f"(+{e['cycle']['counts']['query_corpus']['added']:,})")
    row("eval corpus (whole / capped / all in the sample)", lambda e: f"{e['cycle']['counts']['eval_corpus']['size']:,} "
        f"({'whole, scanned' if e['cycle']['counts']['eval_corpus'].get('whole') else 'capped' if e['cycle']['counts']['eval_corpus']['capped'] else 'all in the sample'})")
    row("gate delta: whole collection / capped (dry-run twin)",
        lambda e: f"{e['gate_whole_vs_capped']['whole']['delta']:+.4f} / {e['gate_whole_vs_capped']['capped']['delta']:+.4f}")
    row("write through qdrant-client (points/s)", lambda e: e["build"]["write"]["points_per_s"])
    row("write peak RSS (MB)", lambda e: e["build"]["write"]["peak_rss_mb"])
    row("storage on disk (MB)", lambda e: e["build"]["storage_mb"])
    row("open the storage (s)", lambda e: e["probe"]["open_s"])
    row("RSS after open (MB)", lambda e: e["probe"]["rss_mb_open"])
    row("one scroll page of 256 (ms)", lambda e: 1000 * e["probe"]["scroll_page_256_s"])
    row("one query_points (ms)", lambda e: 1000 * e["probe"]["query_points_s"])
    row("raw scroll+upsert, page 128 (points/s)", lambda e: e["raw"]["128"]["points_per_s"])
    row("raw scroll+upsert, page 1024 (points/s)", lambda e: e["raw"]["1024"]["points_per_s"])
    def cp(e):
        return copy_rates(e["cycle"], raw_mean(e), e["n"])

    row("promotion copy (build) points/s", lambda e: cp(e)["build_points_per_s"])
    row("copy ÷ raw loop (page 128; runs minutes apart)", lambda e: f"{cp(e)['build_vs_raw']:.2f}")
    row("whole reindex stage ÷ raw loop", lambda e: f"{cp(e)['reindex_vs_raw']:.2f}")
    row("interleaved, disk: build ÷ raw", lambda e: f"{e['copy_interleaved']['disk']['build_vs_raw']:.2f} "
        f"({e['copy_interleaved']['disk']['build_points_per_s']:.0f} vs {e['copy_interleaved']['disk']['raw_points_per_s']:.0f}/s)")
    row("interleaved, memory: build ÷ raw", lambda e: f"{e['copy_interleaved']['memory']['build_vs_raw']:.2f} "
        f"({e['copy_interleaved']['memory']['build_points_per_s']:.0f} vs {e['copy_interleaved']['memory']['raw_points_per_s']:.0f}/s)")
    row("cycle CPU seconds (all stages)", lambda e: e["cycle"]["cpu_s"])
    lines.append("")
    if table:
        lines += ["Log-log slopes (seconds ∝ N^slope, least squares over the sizes that ran) and the extrapolation "
                  "along the two largest sizes:", "", "| stage | slope | at 1M (s) | at 10M (s) |", "|---|---:|---:|---:|"]
        for name, pts in table.items():
            b = slope(pts)
            lines.append(f"| {name} | {fmt(b, 2)} | {fmt(extrapolate(pts, 1_000_000), 0)} | "
                         f"{fmt(extrapolate(pts, 10_000_000), 0)} |")
        lines.append("")
    if have_chart:
        lines += [f"![time and memory against N]({png.relative_to(common.BENCH).as_posix()})", ""]
    cmp_ = [(n, res["sizes"][n]["gate_whole_vs_capped"]) for n in sizes
            if "whole" in (res["sizes"][n].get("gate_whole_vs_capped") or {})]
    if cmp_:
        lines += ["### The gate on the whole collection vs the capped sample", "",
                  "The promoting run (`VECTUNE_WHOLE_COLLECTION=true`, the default) and a second `vectune run --dry-run` "
                  "with `VECTUNE_WHOLE_COLLECTION=false` on a fresh copy of the same home: same collection, labels and "
                  "seed, so the query encoder is trained again with the same seed (`same training`: the same steps, "
                  "epochs, chosen epoch and validation score). Not run where the first cycle's sample held every point "
                  "(up to `eval_corpus_cap`, 20,000 points): both would judge the same corpus.", "",
                  "| N | judged on | corpus | live nDCG@10 | candidate | delta [95% CI] | p | promote | evaluate s | same training |",
                  "|---:|---|---:|---:|---:|---|---:|---|---:|---|"]
        for n, c in cmp_:
            for side in ("whole", "capped"):
                g = c[side]
                lines.append(f"| {int(n):,} | {side} | {fmt(g.get('corpus'))} | {fmt(g.get('live'), 4)} | "
                             f"{fmt(g.get('candidate'), 4)} | {fmt(g.get('delta'), 4)} [{fmt(g.get('ci_low'), 4)}, "
                             f"{fmt(g.get('ci_high'), 4)}] | {fmt(g.get('p'), 4)} | {g.get('promote')} | "
                             f"{fmt(g.get('evaluate_s'))} | {c['same_training'] if side == 'capped' else ''} |")
        lines.append("")
    ev = [(n, res["sizes"][n]["eval"]) for n in sizes if (res["sizes"][n].get("eval") or {}).get("sets")]
    if ev:
        lines += ["### The same candidate as the gate saw it, on random capped corpora, and on every stored vector", "",
                  "| N | set | corpus | live nDCG@10 | candidate | delta [95% CI] | p | would promote |",
                  "|---:|---|---|---:|---:|---|---:|---|"]
        for n, e in ev:
            g = e.get("gate") or e.get("gate_capped") or {}  # gate_capped: results from before the whole-collection gate
            seen = "the whole collection" if (g.get("eval_corpus") or {}).get("whole") else "capped"
            lines.append(f"| {int(n):,} | golden | as the gate saw it ({seen}: {fmt(g.get('corpus'))}) | {fmt(g.get('live'), 4)} "
                         f"| {fmt(g.get('candidate'), 4)} | {fmt(g.get('delta'), 4)} [{fmt(g.get('ci_low'), 4)}, {fmt(g.get('ci_high'), 4)}] "
                         f"| {fmt(g.get('p'), 4)} | {g.get('promote', g.get('promoted'))} |")
            for name, s in e["sets"].items():
                reps = s["capped_replicas"]
                if reps:
                    ds = [r["delta"] for r in reps]
                    lines.append(f"| {int(n):,} | {name} | capped, {len(reps)} random samples of 20,000 | "
                                 f"{fmt(s['capped_mean_live'], 4)} | — | {fmt(float(np.mean(ds)), 4)} "
                                 f"(range {min(ds):+.4f} … {max(ds):+.4f}) | — | "
                                 f"{sum(r['would_promote'] for r in reps)}/{len(reps)} |")
                f = s["full"]
                lines.append(f"| {int(n):,} | {name} | **all {int(n):,} stored vectors** | {fmt(f['live'], 4)} | "
                             f"{fmt(f['candidate'], 4)} | {fmt(f['delta'], 4)} [{fmt(f['ci_low'], 4)}, {fmt(f['ci_high'], 4)}] "
                             f"| {fmt(f['p'], 4)} | {f['would_promote']} |")
        lines += ["", "| N | exact chunked scoring (ms/query) | embedded `query_points` (ms/query) | top-10 overlap |",
                  "|---:|---:|---:|---:|"]
        for n, e in ev:
            qp = e.get("query_points") or {}
            lines.append(f"| {int(n):,} | {fmt(e.get('exact_ms_per_query'), 2)} | {fmt(qp.get('ms_per_query'), 2)} | "
                         f"{fmt(qp.get('top10_overlap_with_exact'), 4)} |")
        lines.append("")
    pool = res.get("pool")
    if pool:
        lines += [f"### Query-side trainer: full softmax vs pool vs the cycle's sample (N = {pool['n']:,})", "",
                  f"Live test nDCG@10 against all {pool['n']:,} vectors: {pool['live_test_ndcg10']}. "
                  f"Pool: corpus_max = {pool['pool_max']:,} (positives + 30 mined negatives + random fill); "
                  "sample: the read stage's 20,000 random chunks + every positive (what a cycle held above 20k "
                  "points before `widen_corpus`); widened: the sample + each training query's 30 nearest stored "
                  "points (what a cycle trains against now). No time budget (equal epochs).", "",
                  "| run | vectors in memory | steps | train s | peak RSS MB | test nDCG@10 | vs live [95% CI] |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for name, r in pool["runs"].items():
            if "vs_live" not in r:
                lines.append(f"| {name} | error: {r.get('error')} |")
                continue
            v = r["vs_live"]
            lines.append(f"| {name} | {fmt(r['corpus_in_memory'])} | {r['steps']} | {fmt(r['train_s'])} | "
                         f"{fmt(r['peak_rss_mb'], 0)} | {v['candidate']:.4f} | {v['delta']:+.4f} "
                         f"[{v['ci_low']:+.4f}, {v['ci_high']:+.4f}] |")
        lines += ["", "| comparison | delta nDCG@10 | 95% CI | p (one-sided, other > full) |", "|---|---:|---|---:|"]
        for name, c in pool["compare"].items():
            lines.append(f"| {name} | {c['delta']:+.4f} | [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | {c['p']:.3f} |")
        lines.append("")
    tm = res.get("trainmem")
    if tm:
        lines += ["Trainer memory (random unit vectors, 6 steps; `VmHWM` of a fresh process):", "",
                  "| N | corpus_max | pooled | vectors in memory | seconds | RSS with the vectors (MB) | peak RSS (MB) |",
                  "|---:|---:|---|---:|---:|---:|---:|"]
        for name, r in tm.items():
            if "n" in r:
                lines.append(f"| {r['n']:,} | {r['max_corpus']:,} | {r['pooled']} | {r['corpus_in_memory']:,} | "
                             f"{r['seconds']} | {r['rss_mb_with_vectors']:,.0f} | {r['peak_rss_mb']:,.0f} |")
        lines.append("")
    notes = res.get("notes")
    if notes:
        lines += [notes, ""]
    if out.parent.resolve() != common.RESULTS_DIR.resolve():  # a trial run: its own Markdown beside its JSON
        out.with_suffix(".md").write_text("\n".join(lines) + "\n")
        log(f"{out.with_suffix('.md')} written")
        return
    common.update_section("scale", "\n".join(lines))
    log(f"RESULTS.md section 'scale' written{'; chart ' + str(png) if have_chart else ''}")


if __name__ == "__main__":
    main()
