#!/usr/bin/env python
"""Does the query side lose quality training against a pool instead of every stored vector? SciFact, in memory.

    python bench/pool.py --data ../shared/data/scifact --kinds linear,query --update-results

The query-side trainers' loss is a softmax of each training query over the corpus they are given. The cycle
gives them the read stage's in-memory sample of the collection (``read.by_key``, at most ``eval_corpus_cap``
chunks) plus every labeled positive, and, since ``widen_corpus``, each training query's nearest points in the
whole collection; the trainers themselves swap a corpus above ``QueryConfig.corpus_max`` for a pool (positives,
``pool_negatives`` mined per query, a random fill). This measures what each stand-in costs against the full
softmax, on SciFact (``bench/crossfit_lab.py``: the passages' live-model vectors cached in ``bench/work/``): the
train claims are the labels, the 300 test claims are never trained on and are scored by exact search against
ALL stored vectors, whatever each candidate trained against. Every variant trains the same candidate kind with
the same seed and settings, through the product's own code (``stored_corpus``, ``widen_corpus``, ``train_one``):

* ``full``: the whole corpus (the softmax sees every stored vector);
* ``sample``: a seeded random sample of ``--sample`` S chunks plus every positive (the cycle before widening,
  when the collection is larger than its in-memory sample);
* ``sample+widened@K``: that, plus each training query's K nearest points of the whole collection by the live
  query vectors (``widen_corpus`` against an exact in-memory search standing in for Qdrant's);
* ``pool@K``: the whole corpus handed to the trainer with ``corpus_max`` below its size, so the trainer builds
  its own pool (positives + K mined negatives per query + random fill up to ``corpus_max``; ``--corpus-max 0``:
  as many vectors as ``sample+widened@K``, so the two stand-ins hold equally many).

``--nearest`` lists the K values (the product's ``pool_negatives`` is 30). SciFact is small: 809 claims' 30
nearest cover ~92% of its 5,183 passages, so at K=30 both stand-ins are nearly the whole corpus; a 30-deep
neighbourhood in a 100k collection is about as deep (by rank share) as a 1-2-deep one here, hence the small K.

Reported per variant: training seconds, corpus size trained against, test nDCG@10 and its paired-bootstrap 95%
CI against the live model and against ``full`` of the same kind. Writes ``bench/results/pool-<dataset>.json``
and with ``--update-results`` the ``pool-<dataset>`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import numpy as np  # noqa: E402

import common  # noqa: E402

KINDS = ("linear", "query")


# ----------------------------------------------------------------------------- the corpora (pure, tested)
class ExactStore:
    """A stand-in for :class:`vectune.qdrant.store.Store` where ``widen_corpus`` needs one: exact inner-product search."""

    def __init__(self, keys: list[str], vectors: np.ndarray):
        self.keys, self.vectors = keys, np.asarray(vectors, dtype=np.float32)

    def search_batch(self, name: str, vectors: np.ndarray, limit: int, using: str = "") -> list[list[tuple]]:
        from vectune.pipeline.evaluate import rank

        qv = np.asarray(vectors, dtype=np.float32)
        top = rank(qv, self.vectors, limit)
        return [[(self.keys[j], float(qv[i] @ self.vectors[j])) for j in row] for i, row in enumerate(top)]


def make_read(chunks: dict, keep: list[str], meta: dict) -> SimpleNamespace:
    """A read stage's result holding ``keep`` of the collection ``chunks`` in memory; ``ensure`` fetches the rest."""
    read = SimpleNamespace(live="bench", meta=meta, spec=SimpleNamespace(name=""),
                           stats=SimpleNamespace(usable=len(chunks)), by_key={k: chunks[k] for k in keep})

    def ensure(store, keys) -> int:
        missing = [k for k in sorted(keys) if k not in read.by_key]
        read.by_key.update({k: chunks[k] for k in missing if k in chunks})
        return sum(k not in chunks for k in missing)

    read.ensure = ensure
    return read


def sampled_read(chunks: dict, positives: list[set[str]], size: int, seed: int, meta: dict) -> SimpleNamespace:
    """A seeded random sample of ``size`` chunks in memory, plus every positive (as the pairs stage ensures)."""
    keys = sorted(chunks)
    pick = np.random.default_rng(seed).choice(len(keys), size=min(size, len(keys)), replace=False)
    read = make_read(chunks, [keys[i] for i in sorted(pick)], meta)
    read.ensure(None, {k for p in positives for k in p})
    return read


class KnownQueries:
    """The live encoder with its query vectors of the training texts already known (``widen_corpus`` encodes them)."""

    def __init__(self, live, texts: list[str], vectors: np.ndarray):
        self.live, self.known = live, dict(zip(texts, np.asarray(vectors, dtype=np.float32)))

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        if all(t in self.known for t in texts):
            return np.stack([self.known[t] for t in texts])
        return self.live.encode_queries(list(texts))


def ci(live: np.ndarray, cand: np.ndarray) -> list[float]:
    """Mean of ``cand - live`` and its paired-bootstrap 95% CI, in nDCG points (x100)."""
    from vectune.pipeline.paired import paired_bootstrap

    lo, hi = paired_bootstrap(live, cand, samples=2000, seed=0)
    return [round(100 * float(np.mean(np.asarray(cand) - np.asarray(live))), 2), round(100 * lo, 2), round(100 * hi, 2)]


# ----------------------------------------------------------------------------- one variant
def train_variant(w, kind: str, read, keys, vectors, texts, positives, qv, cfg, seed: int) -> dict:
    """Train one candidate against ``keys``/``vectors`` and score it on the test queries against every stored vector."""
    from vectune.errors import BadInput
    from vectune.pipeline.evaluate import evaluate
    from vectune.pipeline.train.query.candidates import train_one

    t0 = time.perf_counter()
    try:
        cand = train_one(kind, read, texts, positives, keys, vectors, w.live, cfg, seed=seed,
                         **({"query_vectors": qv} if kind == "linear" else {}))
    except BadInput as e:
        return {"error": str(e), "given": len(keys)}
    secs = time.perf_counter() - t0
    res = evaluate(cand.encoder.encode_queries([q.text for q in w.test]), w.vectors, w.keys, w.test)
    st = cand.stats
    return {"given": len(keys), "corpus": st.corpus_in_memory, "pooled": st.pooled, "train_s": round(secs, 1),
            "test_ndcg10": round(float(res.means["ndcg@10"]), 4), "_per_query": res.per_query["ndcg@10"],
            "epochs_run": st.epochs_run, "chosen_epoch": st.chosen_epoch, "refit": st.refit,
            "identity_weight": st.identity_weight if kind == "linear" else None,
            "slice": [st.val_live, st.val_best], "beats_live": st.beats_live, "dropped": st.dropped_queries}


def corpora(w, texts, positives, qv, args) -> list[dict]:
    """Each variant's read and corpus: (name, read, keys, vectors, corpus_max or None)."""
    from vectune.pipeline.train.query.candidates import stored_corpus, widen_corpus

    chunks = w.read.by_key
    meta = w.read.meta
    whole = make_read(chunks, list(chunks), meta)
    big = 10 ** 9  # stored_corpus's cap: none
    out = []
    if "full" in args.variants:
        out.append({"name": "full", "read": whole, "corpus": stored_corpus(whole, positives, big), "corpus_max": None})
    if "sample" in args.variants:
        rd = sampled_read(chunks, positives, args.sample, args.seed, meta)
        out.append({"name": "sample", "read": rd, "corpus": stored_corpus(rd, positives, big), "corpus_max": None})
    store = ExactStore(w.keys, w.vectors)
    live = KnownQueries(w.live, texts, qv)
    for k in args.nearest:
        rd = sampled_read(chunks, positives, args.sample, args.seed, meta)
        widened = widen_corpus(store, rd, live, texts, k)
        if "widened" in args.variants:
            out.append({"name": f"sample+widened@{k}", "read": rd, "corpus": stored_corpus(rd, positives, big),
                        "corpus_max": None, "widen": widened, "nearest": k})
        if "pool" in args.variants:
            cap = args.corpus_max or len(rd.by_key)
            out.append({"name": f"pool@{k}", "read": whole, "corpus": stored_corpus(whole, positives, big),
                        "corpus_max": cap, "nearest": k})
    return out


def run(w, qids: list[str], args) -> dict:
    from vectune.config.sections import QueryConfig
    from vectune.pipeline.train.query.candidates import query_training_set

    pairs = w.pairs(w.labels(qids))
    texts, positives = query_training_set(pairs.queries, pairs.relevant)
    t0 = time.perf_counter()
    qv = w.live.encode_queries(texts)
    encode_s = time.perf_counter() - t0
    base = QueryConfig(epochs=args.query_epochs, time_budget_s=0.0, threads=args.threads,
                       **({"linear_epochs": args.linear_epochs} if args.linear_epochs else {}))
    live = w.live_test().per_query["ndcg@10"]
    seen = {k for p in positives for k in p}
    new = np.array([not (set(q.relevant) & seen) for q in w.test])  # no positive of theirs was ever trained on
    variants = corpora(w, texts, positives, qv, args)
    rows = []
    for kind in args.kinds:
        full = None
        for v in variants:
            cfg = base.model_copy(update={"corpus_max": v["corpus_max"] or base.corpus_max,
                                          "pool_negatives": v.get("nearest", base.pool_negatives)})
            keys, vectors = v["corpus"]
            print(f"{kind} / {v['name']}: {len(keys)} vectors given"
                  + (f", corpus_max {v['corpus_max']}" if v["corpus_max"] else "") + f"; load {common_load()}",
                  flush=True)
            r = train_variant(w, kind, v["read"], keys, vectors, texts, positives, qv, cfg, args.seed)
            r.update(kind=kind, variant=v["name"], nearest=v.get("nearest"), corpus_max=v["corpus_max"],
                     widen=v.get("widen"), load=common_load())
            if "_per_query" in r:
                per = r.pop("_per_query")
                other = full is not None and v["name"] != "full"
                r["vs_live"], r["vs_live_new"] = ci(live, per), ci(live[new], per[new])
                r["vs_full"] = ci(full, per) if other else None
                r["vs_full_new"] = ci(full[new], per[new]) if other else None
                if v["name"] == "full":
                    full = per
            rows.append(r)
            print({k_: r.get(k_) for k_ in ("corpus", "pooled", "train_s", "test_ndcg10", "vs_live", "vs_full",
                                            "error")}, flush=True)
    return {"rows": rows, "labels": len(qids), "train_texts": len(texts), "new_doc_test": int(new.sum()),
            "positives": len({k for p in positives for k in p}), "encode_train_s": round(encode_s, 1),
            "settings": {"sample": args.sample, "nearest": args.nearest, "corpus_max": args.corpus_max,
                         "seed": args.seed, "query_epochs": base.epochs, "linear_epochs": base.linear_epochs,
                         "identity_weight": base.identity_weight, "scale": base.scale, "batch_size": base.batch_size,
                         "time_budget_s": base.time_budget_s, "threads": args.threads}}


def common_load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# ----------------------------------------------------------------------------- report
def fmt_ci(x) -> str:
    return f"{x[0]:+.2f} [{x[1]:+.2f}, {x[2]:+.2f}]" if x else "–"


def markdown(r: dict) -> str:
    s = r["settings"]
    lines = ["## Query side: a pool or a sample in place of the whole corpus", "",
             f"{r['dataset']}: {r['labels']} train claims as labels ({r['train_texts']} texts, {r['positives']} "
             f"distinct positives), {r['test_queries']} test claims never trained on, scored by exact search against "
             f"all {r['corpus']} stored vectors whatever the candidate trained against. Same kind, seed ({s['seed']}) "
             f"and settings in every row (linear map {s['linear_epochs']} epochs x identity weights "
             f"{s['identity_weight']}; query encoder {s['query_epochs']} epochs; no time budget). `full` = the softmax "
             f"over every stored vector; `sample` = a seeded {s['sample']} chunks + every positive; "
             "`sample+widened@K` = that + each training query's K nearest in the whole corpus (`widen_corpus`); "
             "`pool@K` = the trainer's own pool (positives + K mined per query + random fill up to `corpus_max`, "
             "here " + (f"{s['corpus_max']}" if s["corpus_max"] else "as many as `sample+widened@K` holds") + "). "
             "Δ in nDCG@10 points with paired-bootstrap 95% CI (2000 resamples); *new-doc*: the "
             f"{r['new_doc_test']} test claims none of whose relevant passages is a training positive (SciFact's test "
             "claims often cite passages that train claims cite, which a query-side map learns as a prior). "
             f"2-core CPU shared with other work: load in the table. `{r['command']}`", "",
             "| candidate | variant | corpus trained against | train s | test nDCG@10 | Δ vs live [CI] | Δ vs full [CI] "
             "| new-doc: Δ vs live [CI] | new-doc: Δ vs full [CI] | chosen epoch (weight) | slice nDCG@10 live → best "
             "| load |", "|---|---|---:|---:|---:|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        if "error" in x:
            lines.append(f"| {x['kind']} | {x['variant']} | {x['given']} given | – | – | – | – | – | – | – | "
                         f"{x['error']} | {x['load']} |")
            continue
        sl = x["slice"]
        slice_txt = f"{sl[0]:.3f} → {sl[1]:.3f}" if sl[0] is not None and sl[1] is not None else "–"
        weight = f" ({x['identity_weight']})" if x.get("identity_weight") is not None else ""
        lines.append(f"| {x['kind']} | {x['variant']} | {x['corpus']}{' (pool)' if x['pooled'] else ''} | "
                     f"{x['train_s']:.1f} | {x['test_ndcg10']:.4f} | {fmt_ci(x['vs_live'])} | {fmt_ci(x['vs_full'])} "
                     f"| {fmt_ci(x['vs_live_new'])} | {fmt_ci(x['vs_full_new'])} | {x['chosen_epoch']}{weight} | {slice_txt} "
                     f"| {x['load']} |")
    lines += ["", f"- live test nDCG@10 {r['live_test']:.4f}; the slice column is the trainer's own epoch choice, "
              "scored against the corpus it trained against (a smaller corpus flatters it); machine: "
              f"{common.machine_line(r['machine'])}; {r['minutes']} min; date {r['date']}"]
    return "\n".join(lines)


def main() -> None:
    import crossfit_lab as lab

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the SciFact BEIR folder")
    ap.add_argument("--kinds", default="linear", help="candidates: linear, query (the query encoder: slow on a CPU)")
    ap.add_argument("--variants", default="full,sample,widened,pool", help="full, sample, widened, pool")
    ap.add_argument("--sample", type=int, default=1000, help="chunks in the in-memory sample (S)")
    ap.add_argument("--nearest", default="30,3",
                    help="K: nearest points per training query (widening) and mined negatives per query (pool)")
    ap.add_argument("--corpus-max", type=int, default=0,
                    help="the pool's corpus_max (0 = as many vectors as sample+widened@K)")
    ap.add_argument("--labels", type=int, default=0, help="a seeded subsample of this many train claims (0 = all)")
    ap.add_argument("--query-epochs", type=float, default=2.0, help="the query encoder's epochs")
    ap.add_argument("--linear-epochs", type=int, default=0, help="the linear map's epochs (0 = the product's)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = one on a loaded machine, else all)")
    ap.add_argument("--tag", default="", help="suffix of the result's name")
    ap.add_argument("--update-results", action="store_true")
    args = ap.parse_args()
    args.kinds = [k for k in args.kinds.split(",") if k]
    args.variants = {v for v in args.variants.split(",") if v}
    args.nearest = [int(k) for k in args.nearest.split(",") if k]
    if bad := [k for k in args.kinds if k not in KINDS] + sorted(args.variants - {"full", "sample", "widened",
                                                                                  "pool"}):
        ap.error(f"unknown: {bad}")
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    args.threads = args.threads or (1 if os.getloadavg()[0] >= (os.cpu_count() or 1) else 0)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    w = lab.world(args.data, args.seed, check_queries=False)
    qids = lab.subsample(w.train_ids, args.labels, 0, args.seed) if args.labels else w.train_ids
    print(f"{len(qids)} labels, {len(w.test)} test queries, {len(w.keys)} stored vectors; load {common_load()}",
          flush=True)
    r = run(w, qids, args)
    r.update(dataset=args.data.resolve().name, test_queries=len(w.test), corpus=len(w.keys),
             live_test=round(float(w.live_test().means["ndcg@10"]), 4), minutes=round((time.perf_counter() - t0) / 60, 1),
             machine=common.machine(), date=common.now(), command=common.command_line())
    name = f"pool-{r['dataset']}" + (f"-{args.tag}" if args.tag else "")
    lab.dump(BENCH / "results" / f"{name}.json", r)
    print(markdown(r))
    if args.update_results:
        common.update_section(name, markdown(r))


if __name__ == "__main__":
    main()
