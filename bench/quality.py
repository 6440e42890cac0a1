#!/usr/bin/env python
"""Retrieval quality of a vectune cycle on a BEIR dataset, the way a user lives it.

    python bench/quality.py --data ../shared/data/scifact --protocol all
    python bench/quality.py --data ../shared/data/scifact --protocol all --quick   # ~minutes on a CPU

1. ``vectune index CORPUS --with-title`` into a fresh home with the base model (once; every protocol
   starts from a copy of that home, i.e. from the base model's collection).
2. Score the live model on the real *test* queries through the alias, like an app:
   ``resolve()`` then ``client.query_points(collection, ...)``.
3. ``vectune run --json`` as a subprocess, per protocol:
     A  offline teacher, ``--allow-synthetic-gate`` (synthetic evidence only);
     B  offline teacher, golden gate = a seeded half of the *train* queries (``--eval-set``);
     C  the other half of the train queries as ``--train-set`` (+ synthetic pairs), gated by the golden half;
     Cx every train query as ``--train-set`` and no ``--eval-set``: the default evidence, cross-fitted (every
        label trains and decides), with vectune's default settings (``--feedback``: the same queries logged as
        the app's clicks instead, one a minute in a seeded order).
   Test queries are never given to vectune.
4. Score the alias's model after the run on the same test queries; paired-bootstrap 95% CI on the
   nDCG@10 difference; record what the gate saw beside the real outcome.

Writes ``bench/results/quality-<dataset>[-quick]-<P>.json`` and a section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from datetime import UTC

import numpy as np  # noqa: E402

import common  # noqa: E402

ALIAS = "bench"
METRICS = ("ndcg@10", "recall@5", "recall@10", "mrr@10")
PROTOCOLS = {
    "A": "offline teacher, gate on synthetic held-out queries (--allow-synthetic-gate)",
    "B": "offline teacher, gate on a golden half of the train queries (--eval-set)",
    "C": "other half of the train queries as --train-set + synthetic pairs, gate on the golden half",
    "Cx": "every train query as a label (--train-set, no --eval-set): cross-fitted evidence, default settings",
}
#: Makes `vectune run` promote whatever the gate says (for --counterfactual only).
FORCE_PROMOTE = (
    "import vectune.pipeline.gate as c\n"
    "_decide = c.decide\n"
    "def decide(*a, **k):\n"
    "    d = _decide(*a, **k)\n"
    "    d.reason = 'FORCED by bench --counterfactual; the gate said: ' + ('promote' if d.promote else 'keep') "
    "+ ': ' + d.reason\n"
    "    d.promote = True\n"
    "    return d\n"
    "c.decide = decide\n"
    "from vectune.cli import cli\n"
    "cli(prog_name='vectune')\n"
)


# ----------------------------------------------------------------------------- BEIR loading
def corpus_path(data: Path) -> Path:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (data / name).is_file():
            return data / name
    sys.exit(f"{data}: no corpus.jsonl or corpus.jsonl.gz")


def read_jsonl(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def read_qrels(path: Path) -> dict[str, set[str]]:
    """BEIR qrels TSV (header optional); graded scores are treated as binary (score > 0)."""
    out: dict[str, set[str]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or (n == 0 and not parts[2].strip().lstrip("-").isdigit()):
                continue
            qid, did, score = parts[0], parts[1], parts[2]
            if int(float(score)) > 0:
                out.setdefault(qid, set()).add(did)
    return out


def load_beir(data: Path) -> dict:
    queries = {str(q["_id"]): q["text"] for q in read_jsonl(data / "queries.jsonl")}
    test = read_qrels(data / "qrels" / "test.tsv")
    train_p = data / "qrels" / "train.tsv"
    train = read_qrels(train_p) if train_p.is_file() else {}
    test = {q: r for q, r in test.items() if q in queries}
    train = {q: r for q, r in train.items() if q in queries and q not in test}
    return {"queries": queries, "test": test, "train": train, "corpus": corpus_path(data)}


def make_quick(beir: dict, out: Path, docs: int, test_q: int, train_q: int, seed: int) -> dict:
    """A small BEIR folder: ``docs`` documents holding every relevant doc of the kept queries."""
    rng = random.Random(seed)
    test_ids = sorted(beir["test"])
    train_ids = sorted(beir["train"])
    rng.shuffle(test_ids)
    rng.shuffle(train_ids)
    test = {q: beir["test"][q] for q in test_ids[:test_q]}
    train = {q: beir["train"][q] for q in train_ids[:train_q]}
    corpus = {str(d["_id"]): d for d in read_jsonl(beir["corpus"])}
    need = set().union(*test.values(), *train.values()) & set(corpus)
    rest = sorted(set(corpus) - need)
    rng.shuffle(rest)
    keep = sorted(need) + rest[: max(0, docs - len(need))]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for d in keep:
            f.write(json.dumps(corpus[d]) + "\n")
    # only the kept queries/qrels; test ids stay in the bench, never in vectune's inputs
    test = {q: r & set(keep) for q, r in test.items()}
    train = {q: r & set(keep) for q, r in train.items()}
    return {"queries": beir["queries"], "test": {q: r for q, r in test.items() if r},
            "train": {q: r for q, r in train.items() if r}, "corpus": out / "corpus.jsonl", "docs": len(keep)}


def split_train(train: dict[str, set[str]], seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of the train query ids: (golden half, training half)."""
    ids = sorted(train)
    random.Random(seed).shuffle(ids)
    half = len(ids) // 2
    return sorted(ids[:half]), sorted(ids[half:])


def write_labeled(path: Path, qids: list[str], qrels: dict[str, set[str]], queries: dict[str, str]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for q in qids:
            f.write(json.dumps({"query": queries[q], "relevant": sorted(qrels[q])}) + "\n")
    return len(qids)


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# ----------------------------------------------------------------------------- scoring
def score_alias(home: Path, qids: list[str], queries: dict[str, str], qrels: dict[str, set[str]]) -> dict:
    """Score whatever the alias points at, as an app would query it (resolve + query_points)."""
    from qdrant_client import QdrantClient

    from vectune.apps.resolve import resolve
    from vectune.config.settings import Settings

    settings = Settings(home=home)
    client = QdrantClient(path=str(settings.qdrant_path))
    try:
        collection, encoder = resolve(client, ALIAS, settings)
        vectors = client.get_collection(collection).config.params.vectors
        using = next(iter(vectors)) if isinstance(vectors, dict) and len(vectors) == 1 else None
        t0 = time.perf_counter()
        qv = encoder.encode_queries([queries[q] for q in qids])
        ranked = []
        for v in qv:
            res = client.query_points(collection, query=v.tolist(), limit=10, using=using, with_payload=["doc_id"])
            ranked.append([str((p.payload or {}).get("doc_id", p.id)) for p in res.points])
        secs = time.perf_counter() - t0
        model = encoder.ref
        device = str(getattr(encoder.model, "device", "?"))
    finally:
        client.close()
    per = metrics_per_query(ranked, [qrels[q] for q in qids])
    return {"collection": collection, "model": model, "device": device, "queries": len(qids),
            "seconds": round(secs, 2), "means": {m: round(float(per[m].mean()), 4) for m in METRICS},
            "per_query": {m: per[m].tolist() for m in METRICS}}


def metrics_per_query(ranked: list[list[str]], relevant: list[set[str]]) -> dict[str, np.ndarray]:
    """BEIR-style nDCG@10, recall@5/10, MRR@10 with binary relevance."""
    n = len(ranked)
    out = {m: np.zeros(n) for m in METRICS}
    for i, (top, rel) in enumerate(zip(ranked, relevant)):
        top = top[:10]
        hits = [d in rel for d in top]
        dcg = sum(1.0 / math.log2(r + 2) for r, h in enumerate(hits) if h)
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(rel), 10)))
        out["ndcg@10"][i] = dcg / idcg if idcg else 0.0
        out["recall@5"][i] = len(set(top[:5]) & rel) / len(rel)
        out["recall@10"][i] = len(set(top[:10]) & rel) / len(rel)
        first = next((r for r, h in enumerate(hits) if h), None)
        out["mrr@10"][i] = 1.0 / (first + 1) if first is not None else 0.0
    return out


def delta_ci(base: dict, tuned: dict, metric: str = "ndcg@10", samples: int = 2000) -> dict:
    from vectune.pipeline.paired import paired_bootstrap

    b = np.asarray(base["per_query"][metric])
    t = np.asarray(tuned["per_query"][metric])
    lo, hi = paired_bootstrap(b, t, samples=samples, confidence=0.95, seed=0)
    d = float((t - b).mean())
    return {"metric": metric, "delta": round(d, 4), "ci95_low": round(lo, 4), "ci95_high": round(hi, 4),
            "significant": bool(lo > 0 or hi < 0), "samples": samples, "queries": int(b.size),
            "wins": int((t > b).sum()), "losses": int((t < b).sum()), "ties": int((t == b).sum())}


# ----------------------------------------------------------------------------- protocol
def run_protocol(p: str, args, base_home: Path, work: Path, sets: dict, base_score: dict, beir: dict,
                 test_ids: list[str], index_info: dict) -> dict:
    home = work / f"home-{p}"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(base_home, home)  # the base model's collection, untouched by earlier protocols
    opts = ["--seed", str(args.seed)]
    if args.mode:
        opts += ["--mode", args.mode]
    if args.max_train_chunks:
        opts += ["--max-train-chunks", str(args.max_train_chunks)]
    if args.epochs:
        opts += ["--epochs", str(args.epochs)]
    opts += args.vectune_arg or []
    if p == "A":
        opts += ["--allow-synthetic-gate"]
    elif p == "B":
        opts += ["--eval-set", str(sets["golden"])]
    elif p == "C" and args.feedback:
        # the same golden and training halves, arriving as the app's logged feedback instead of files
        log_feedback(home, sets)
    elif p == "Cx" and args.feedback:
        for var in ("VECTUNE_CROSSFIT", "VECTUNE_FEEDBACK_GOLDEN_FRACTION"):  # what protocol C set, if it ran
            os.environ.pop(var, None)
        log_feedback(home, sets, every=True)
    elif p == "Cx":
        opts += ["--train-set", str(sets["all"])]
    elif p == "C":
        opts += ["--eval-set", str(sets["golden"]), "--train-set", str(sets["train"])]
    run_args = ["run", "--alias", ALIAS, "--home", str(home), "--json", *opts]
    print(f"[{p}] vectune {' '.join(run_args)}", flush=True)
    t0 = time.perf_counter()
    load0 = load_avg()
    rc, out, err, secs = common.run_cli(run_args, log_file=work / f"run-{p}.log")
    load1 = load_avg()
    rep = common.parse_json_report(out) or {}
    if rc != 0 or not rep:
        tail = "\n".join(err.strip().splitlines()[-5:])
        print(f"[{p}] vectune run exited {rc}:\n{tail}", flush=True)
    tuned = score_alias(home, test_ids, beir["queries"], beir["test"])
    result = assemble(p, args, rep, rc, err, base_score, tuned, secs, time.perf_counter() - t0, index_info,
                      run_args, sets)
    result["load"] = {"before_run": load0, "after_run": load1, "uptime": "1, 5, 15 min load averages; 2 cores"}
    if args.counterfactual and rep.get("gate"):
        # every candidate the gate rejected (or did not choose) is promoted anyway in a copy and scored on test
        kinds = [k for k, c in (rep.get("candidates") or {}).items()
                 if k != (rep.get("choice") or {}).get("chosen")]
        if kinds:
            result["counterfactuals"] = {
                k: counterfactual(p, args, base_home, work, opts + ["--candidates", k], beir, test_ids, base_score,
                                  tag=k, sets=sets) for k in kinds if k != "full"}
        elif rep.get("status") != "promoted":
            result["counterfactual"] = counterfactual(p, args, base_home, work, opts, beir, test_ids, base_score,
                                                      sets=sets)
    return result


def log_feedback(home: Path, sets: dict, every: bool = False) -> None:
    """Log the training half, then the golden half (newest), as click feedback on the bench alias.

    ``every``: all train queries in a seeded order, one a minute (protocol Cx: nothing is held out).
    """
    from datetime import datetime, timedelta

    from qdrant_client import QdrantClient

    from vectune.apps import feedback
    from vectune.config.settings import Settings

    rows = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for path in ((sets["all"],) if every else (sets["train"], sets["golden"])):
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            q = json.loads(line)
            rows.append({"alias": ALIAS, "query": q["query"], "relevant_ids": q["relevant"], "signal": "click",
                         "ts": (start + timedelta(minutes=len(rows))).isoformat()})
    client = QdrantClient(path=str(Settings(home=home).resolved_qdrant_path))
    try:
        feedback.log_many(client, rows)
    finally:
        client.close()
    if not every:
        os.environ["VECTUNE_FEEDBACK_GOLDEN_FRACTION"] = str(round(sets["n_golden"] / len(rows), 6))
        os.environ["VECTUNE_CROSSFIT"] = "false"  # protocol C: the golden half decides, as with the files


def counterfactual(p, args, base_home, work, opts, beir, test_ids, base_score, tag: str = "", sets=None) -> dict:
    """Same run with the gate forced open: what the rejected candidate would have done on test queries."""
    home = work / f"home-{p}-forced{('-' + tag) if tag else ''}"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(base_home, home)
    if p in ("C", "Cx") and args.feedback:
        log_feedback(home, sets, every=p == "Cx")
    run_args = ["run", "--alias", ALIAS, "--home", str(home), "--json", *opts]
    print(f"[{p}] counterfactual (gate forced open) ...", flush=True)
    rc, out, err, secs = common.run_cli(run_args, log_file=work / f"run-{p}-forced.log",
                                        argv0=[sys.executable, "-c", FORCE_PROMOTE])
    rep = common.parse_json_report(out) or {}
    if rc != 0 or rep.get("status") != "promoted":
        return {"status": rep.get("status") or "failed", "rc": rc, "error": err.strip().splitlines()[-1:]}
    tuned = score_alias(home, test_ids, beir["queries"], beir["test"])
    shutil.rmtree(home, ignore_errors=True)
    return {"note": "the candidate the gate rejected, promoted anyway (same seed; bench only)",
            "gate": rep.get("gate"), "tuned": tuned["means"], "delta_ci": delta_ci(base_score, tuned),
            "run_seconds": round(secs, 1)}


def assemble(p, args, rep, rc, err, base_score, tuned, run_secs, total_secs, index_info, run_args, sets) -> dict:
    g = rep.get("gate") or {}
    status = rep.get("status") or ("failed" if rc else "unknown")
    gate = {"metric": g.get("metric"), "live": g.get("live"), "candidate": g.get("candidate"),
            "delta": g.get("delta"), "ci_low": g.get("ci_low"), "ci_high": g.get("ci_high"),
            "promoted": status == "promoted", "evidence": g.get("evidence") or rep.get("evidence"),
            "reason": rep.get("reason") or g.get("reason") or (err.strip().splitlines()[-1] if err.strip() else None),
            "status": status}
    dci = delta_ci(base_score, tuned)
    real_better = dci["ci95_low"] > 0
    real_worse = dci["ci95_high"] < 0
    if gate["promoted"]:
        verdict = ("promoted, and test nDCG@10 rose (CI above 0)" if real_better else
                   "promoted, but test nDCG@10 FELL (CI below 0): the gate was fooled" if real_worse else
                   "promoted; the test nDCG@10 change is within noise")
    else:
        verdict = ("kept the live model (alias unchanged)" + ("" if args.counterfactual else
                   "; rerun with --counterfactual to score the rejected candidate"))
    counts = rep.get("counts") or {}
    return {
        "dataset": args.dataset_name,
        "quick": bool(args.quick),
        "protocol": p,
        "protocol_text": PROTOCOLS[p],
        "base": base_score["means"],
        "tuned": tuned["means"],
        "delta_ci": dci,
        "gate": gate,
        "verdict": verdict,
        "evaluation_seen_by_gate": rep.get("evaluation"),
        "mode": rep.get("mode"),
        "feedback": bool(args.feedback),
        "candidates": {k: {"model": c.get("model"), "gate": c.get("gate"),
                           "train": {x: (c.get("train") or {}).get(x) for x in
                                     ("kind", "chosen_epoch", "epochs_run", "seconds", "examples_per_s",
                                      "examples", "train_queries", "val_live", "val_best", "stopped_by")}}
                       for k, c in (rep.get("candidates") or {}).items()} or None,
        "choice": rep.get("choice"),
        "crossfit": crossfit_summary(rep),
        "labels": rep.get("labels"),
        "run": {"rc": rc, "run_id": rep.get("run_id"), "status": status, "seconds": round(run_secs, 1),
                "timings": rep.get("timings"), "train": counts.get("train"), "pairs": counts.get("pairs"),
                "negatives": counts.get("negatives"), "train_set": counts.get("train_set"),
                "eval_set": counts.get("eval_set"), "eval_corpus": counts.get("eval_corpus"),
                "live_collection": rep.get("live_collection"), "new_collection": rep.get("new_collection"),
                "candidate_model": rep.get("candidate_model")},
        "test": {"queries": tuned["queries"], "base_collection": base_score["collection"],
                 "tuned_collection": tuned["collection"], "tuned_model": tuned["model"],
                 "scoring_device": tuned["device"]},
        "index": index_info,
        "minutes": round(total_secs / 60, 2),
        "machine": args.machine,
        "command": common.command_line(),
        "vectune_command": "vectune " + " ".join(run_args),
        "settings": {"seed": args.seed, "max_train_chunks": args.max_train_chunks or "vectune default (2000)",
                     "epochs": args.epochs or "vectune default (1)", "extra_vectune_args": args.vectune_arg or [],
                     "golden_queries": 0 if p == "Cx" else sets["n_golden"],
                     "train_set_queries": sets["n_all"] if p == "Cx" else sets["n_train"],
                     "corpus_docs": index_info.get("points"), "quick": bool(args.quick),
                     "bootstrap": "paired, 2000 resamples, 95%, seed 0 (vectune.pipeline.gate.paired_bootstrap)"},
        "date": common.now(),
    }


def crossfit_summary(rep: dict) -> dict | None:
    """What the cross-fit did, for the results: folds, each candidate's fold facts, the final fit and its check."""
    cf = rep.get("crossfit")
    if not cf:
        return None
    out = {k: cf.get(k) for k in ("folds", "by", "queries", "sizes", "budget", "probe_s", "check_queries")}
    out["candidates"] = {}
    for kind, c in (cf.get("candidates") or {}).items():
        out["candidates"][kind] = {
            "fold_seconds": [f.get("seconds") for f in c.get("folds") or []],
            "epochs_run": [f.get("epochs_run") for f in c.get("folds") or []],
            "chosen": c.get("chosen"), "final_point": c.get("final_point"), "final": c.get("final"),
            "check": c.get("check"), "pooled_gate": ((rep.get("candidates") or {}).get(kind) or {}).get("gate")
            or (rep.get("gate") if len(cf.get("candidates") or {}) == 1 else None)}
    return out


def _num(v) -> str:
    return f"{v:.1f}" if isinstance(v, (int, float)) else "–"


def markdown(r: dict) -> str:
    def row(name, m):
        return f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |"

    g, d = r["gate"], r["delta_ci"]
    label = "QUICK validation run (small subset; not a benchmark number)" if r["quick"] else "full run"
    gl = (f"{g['metric']} {g['live']} → {g['candidate']} on {g['evidence']} queries "
          f"(CI [{g.get('ci_low')}, {g.get('ci_high')}])" if g.get("metric") else "no gate evaluation")
    lines = [
        f"## Quality: {r['dataset']}, protocol {r['protocol']}{' (quick)' if r['quick'] else ''}",
        "",
        f"*{label}.* Protocol {r['protocol']}: {r['protocol_text']}.",
        "",
        f"Test queries: {r['test']['queries']}, corpus: {r['settings']['corpus_docs']} docs, golden (train-half) "
        f"queries: {r['settings']['golden_queries']}, train-set queries: {r['settings']['train_set_queries']}.",
        "",
        "| model (scored on real test queries via the alias) | nDCG@10 | recall@5 | recall@10 | MRR@10 |",
        "|---|---:|---:|---:|---:|",
        row("base (live after `vectune index`)", r["base"]),
        row(f"after `vectune run` ({'promoted' if g['promoted'] else 'kept'})", r["tuned"]),
        "",
        f"- nDCG@10 Δ = {d['delta']:+.4f}, paired-bootstrap 95% CI [{d['ci95_low']:+.4f}, {d['ci95_high']:+.4f}] "
        f"({d['wins']} queries up, {d['losses']} down)",
        f"- gate saw: {gl}; status **{g['status']}** — {g['reason']}",
        f"- outcome: {r['verdict']}",
    ]
    cf = r.get("counterfactual")
    if cf and cf.get("tuned"):
        cd = cf["delta_ci"]
        lines.append(f"- counterfactual (gate forced open): test nDCG@10 {cf['tuned']['ndcg@10']:.4f}, "
                     f"Δ {cd['delta']:+.4f} CI [{cd['ci95_low']:+.4f}, {cd['ci95_high']:+.4f}]")
    if r.get("candidates"):
        ch = r.get("choice") or {}
        lines += ["", f"Mode `{r.get('mode')}`: every candidate, gated against live on the golden queries "
                      f"(chosen: **{ch.get('chosen')}**; cheapest first {ch.get('order')}):", "",
                  "| candidate | gate metric live → cand (Δ, CI) | gate says | test nDCG@10 Δ (CI) | train s | ex/s |",
                  "|---|---|---|---|---:|---:|"]
        for k, c in r["candidates"].items():
            cg, ct = c.get("gate") or {}, c.get("train") or {}
            if k == ch.get("chosen"):
                td = d
            else:
                td = ((r.get("counterfactuals") or {}).get(k) or {}).get("delta_ci")
            test = (f"{td['delta']:+.4f} [{td['ci95_low']:+.4f}, {td['ci95_high']:+.4f}]" if td else "not scored")
            lines.append(f"| {k} | {cg.get('metric')} {cg.get('live')} → {cg.get('candidate')} ({cg.get('delta')}, "
                         f"[{cg.get('ci_low')}, {cg.get('ci_high')}]) | {'pass' if cg.get('promote') else 'keep'} | "
                         f"{test} | {_num(ct.get('seconds'))} | {_num(ct.get('examples_per_s'))} |")
        for comp in ch.get("comparisons") or []:
            if "gains" in comp:  # equal cost: the best pooled gain
                gains = ", ".join(f"{k} {v:+.4f}" for k, v in comp["gains"].items())
                lines.append(f"- {comp.get('rule')}: gains {gains} → **{comp.get('chosen')}**")
            elif "costlier" in comp:
                lines.append(f"- {comp['costlier']} vs {comp['cheaper']}: Δ {comp['delta']:+.4f} "
                             f"[{comp['ci_low']:+.4f}, {comp['ci_high']:+.4f}] → "
                             f"{'costlier wins' if comp['costlier_wins'] else 'cheaper kept'}")
            else:
                lines.append(f"- {comp}")
    cx = r.get("crossfit")
    if cx:
        lines.append(f"- evidence: **cross-fitted**, K = {cx['folds']} folds ({cx['by']}) over {cx['queries']} labels "
                     f"(fold sizes {cx['sizes']}); budget {cx['budget']}; probe {cx['probe_s']} s")
        for kind, c in cx["candidates"].items():
            fin, chk, pg = c.get("final") or {}, c.get("check") or {}, c.get("pooled_gate") or {}
            lines.append(f"  - {kind}: fold trainings {sum(x or 0 for x in c['fold_seconds']):.0f} s, epochs run "
                         f"{c['epochs_run']}, chosen per fold {c['chosen']}, final point {c['final_point']}; pooled "
                         f"Δ {pg.get('delta')} (p {pg.get('p_value')}, Holm {pg.get('p_holm')})"
                         + (f"; final fit {fin.get('seconds')} s on {fin.get('train_queries')} queries, check "
                            f"{'ok' if chk.get('ok') else 'FAILED'} (labeled: in-sample "
                            f"{(chk.get('labeled') or {}).get('final_in_sample')} vs folds' held-out "
                            f"{(chk.get('labeled') or {}).get('folds_held_out')}; unseen: final "
                            f"{(chk.get('unseen') or {}).get('final')} vs folds "
                            f"{(chk.get('unseen') or {}).get('fold_models_mean')})" if fin else ""))
    tr = r["run"].get("train") or {}
    lines += [
        f"- run: {r['run']['seconds']} s (train {tr.get('examples', '-')} examples, "
        f"{tr.get('examples_per_s', '-')} ex/s); protocol total {r['minutes']} min; index "
        f"{r['index'].get('minutes')} min",
        f"- machine: {common.machine_line(r['machine'])}"
        + (f"; load (1/5/15 min) {r['load']['before_run']} before the run, {r['load']['after_run']} after"
           if r.get("load") else ""),
        f"- date: {r['date']}",
        f"- command: `{r['command']}`",
        f"- vectune: `{r['vectune_command']}`",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="BEIR folder (corpus.jsonl[.gz], queries.jsonl, qrels/)")
    ap.add_argument("--protocol", default="all", choices=["A", "B", "C", "Cx", "all"],
                    help="all = A, B, C (Cx is run by name)")
    ap.add_argument("--home", type=Path, default=None,
                    help="work folder for vectune homes (default bench/work/quality-<dataset>[-quick])")
    ap.add_argument("--max-train-chunks", type=int, default=None, help="passed to vectune run (quick: 60)")
    ap.add_argument("--epochs", type=float, default=None, help="passed to vectune run")
    ap.add_argument("--seed", type=int, default=42, help="train split seed and vectune --seed")
    ap.add_argument("--quick", action="store_true",
                    help="500 docs (holding the relevant ones), 50 test queries, 60 train queries, 60 train chunks")
    ap.add_argument("--reindex", action="store_true", help="re-index even if the base home exists")
    ap.add_argument("--counterfactual", action="store_true",
                    help="when the gate keeps the live model, rerun with the gate forced open and score that too")
    ap.add_argument("--mode", choices=["auto", "query", "full"], default=None,
                    help="passed to vectune run (default: vectune's own, auto)")
    ap.add_argument("--feedback", action="store_true",
                    help="protocol C through the feedback collection (vectune.feedback.log_many) instead of "
                         "--train-set/--eval-set files")
    ap.add_argument("--vectune-arg", action="append", default=None,
                    help="extra argument for `vectune run` (repeat; e.g. --vectune-arg=--gate-metric=ndcg@10)")
    args = ap.parse_args()

    data = args.data.resolve()
    args.dataset_name = data.name
    args.machine = common.machine()
    beir = load_beir(data)
    if not beir["train"] and args.protocol in ("B", "C", "all"):
        sys.exit(f"{data}: protocols B and C need qrels/train.tsv")
    # BENCH_TAG (e.g. gpu-h100) keeps runs on other machines in their own files and sections
    tag = f"-{os.environ['BENCH_TAG']}" if os.environ.get("BENCH_TAG") else ""
    work_suffix = ("-quick" if args.quick else "") + tag  # one base index per dataset/machine, shared by modes
    suffix = ("-quick" if args.quick else "") + (f"-{args.mode}" if args.mode else "") + \
        ("-feedback" if args.feedback else "") + tag
    work = (args.home or common.BENCH / "work" / f"quality-{args.dataset_name}{work_suffix}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.max_train_chunks = args.max_train_chunks or 60
        beir = make_quick(beir, work / "data", docs=500, test_q=50, train_q=60, seed=args.seed)
    print(f"machine: {common.machine_line(args.machine)}", flush=True)

    # ---- index once (base model), keep that home as the starting point of every protocol
    base_home = work / "home-base"
    marker = base_home / "bench-index.json"
    sig = {"corpus": str(beir["corpus"]), "quick": bool(args.quick)}
    index_info = json.loads(marker.read_text()) if marker.exists() else None
    if args.reindex or not index_info or index_info.get("sig") != sig:
        shutil.rmtree(base_home, ignore_errors=True)
        idx_args = ["index", str(beir["corpus"] if args.quick else data), "--alias", ALIAS, "--with-title",
                    "--home", str(base_home)]
        print(f"vectune {' '.join(idx_args)}", flush=True)
        load0 = load_avg()
        rc, out, err, secs = common.run_cli(idx_args, log_file=work / "index.log")
        if rc != 0:
            sys.exit(f"vectune index failed ({rc}):\n{err[-2000:]}")
        print(out.strip(), flush=True)
        pts = int(out.split("indexed ")[1].split()[0]) if "indexed " in out else None
        index_info = {"sig": sig, "minutes": round(secs / 60, 2), "points": pts, "docs_per_s": round(pts / secs, 1)
                      if pts else None, "command": "vectune " + " ".join(idx_args),
                      "load": {"before": load0, "after": load_avg()}}
        marker.write_text(json.dumps(index_info))
    # ---- score the base model before any run (cached beside the index)
    test_ids = sorted(beir["test"])
    base_cache = work / "base-score.json"
    base_score = json.loads(base_cache.read_text()) if base_cache.exists() else None
    if not base_score or base_score.get("sig") != sig or base_score.get("qids") != test_ids:
        base_score = score_alias(base_home, test_ids, beir["queries"], beir["test"])
        base_score.update(sig=sig, qids=test_ids)
        base_cache.write_text(json.dumps(base_score))
    print(f"base ({base_score['collection']}): {base_score['means']}", flush=True)

    # ---- labeled sets from the train qrels only
    golden_ids, train_ids = split_train(beir["train"], args.seed)
    sets = {"golden": work / "sets" / "golden.jsonl", "train": work / "sets" / "train.jsonl"}
    sets["n_golden"] = write_labeled(sets["golden"], golden_ids, beir["train"], beir["queries"])
    sets["n_train"] = write_labeled(sets["train"], train_ids, beir["train"], beir["queries"])
    every = sorted(beir["train"])
    random.Random(args.seed + 1).shuffle(every)  # the order feedback arrives in (protocol Cx --feedback)
    sets["all"] = work / "sets" / "all-train.jsonl"
    sets["n_all"] = write_labeled(sets["all"], every, beir["train"], beir["queries"])
    assert not (set(golden_ids) | set(train_ids)) & set(test_ids), "test queries must never reach vectune"

    protocols = ["A", "B", "C"] if args.protocol == "all" else [args.protocol]
    for p in protocols:
        r = run_protocol(p, args, base_home, work, sets, base_score, beir, test_ids, index_info)
        name = f"quality-{args.dataset_name}{suffix}-{p}"
        common.write_json(common.RESULTS_DIR / f"{name}.json", r)
        common.update_section(name, markdown(r))
        d = r["delta_ci"]
        print(f"[{p}] base nDCG@10 {r['base']['ndcg@10']:.4f} -> {r['tuned']['ndcg@10']:.4f} "
              f"(Δ {d['delta']:+.4f}, CI [{d['ci95_low']:+.4f}, {d['ci95_high']:+.4f}]); gate {r['gate']['status']}: "
              f"{r['gate']['reason']}; {r['minutes']} min -> bench/results/{name}.json", flush=True)


if __name__ == "__main__":
    main()
