#!/usr/bin/env python
"""Cross-fitting on SciFact without the cycle: folds vs time, who picks the epoch, and the final fit's check.

    python bench/crossfit.py --data ../shared/data/scifact --update-results

The product's own cross-fit (:class:`vectune.pipeline.crossfit.CrossFit`) on SciFact's train queries as labels
(seeded folds, as a ``--train-set``), against the stored vectors (``bench/crossfit_lab.py``), with the
never-seen test queries scored at every training point of every fold model (they decide nothing):

1. **Folds vs time** (``--ks``): for each K, the fold trainings of both query-side candidates with no time
   budget (each stops at its epoch cap), the probe's cost, the final fit, and what the gate decides. Every
   scored point carries the seconds into its fold's training when it was reached, so one run also gives
   the **pooled gain by per-fold budget**: the gate's evidence had each fold stopped at B seconds (the
   leave-one-fold-out choice over the points reached by then).
2. **Who picks the epoch** (``--epoch-choice folds,slice``): the fold curves (every label trains; the
   default) against each fold model's own trainer slice (20% of its training labels choose, then a refit),
   at K = ``--k-choice``: the pooled gain the gate sees, and the final fit's test gain.
3. **The final fit's check**: the final fit's test gain against its fold models' (mean, min, max), and what the
   check said; and how the check answers a broken final fit (a live model in its place; a random rotation).

Writes ``bench/results/crossfit-<dataset>.json`` and with ``--update-results`` the "Cross-fitting" section
of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import numpy as np  # noqa: E402

import common  # noqa: E402
import crossfit_lab as lab  # noqa: E402

KINDS = ("linear", "query")


def ci(d: np.ndarray) -> list[float]:
    from vectune.pipeline.paired import paired_bootstrap

    lo, hi = paired_bootstrap(np.zeros_like(d), d, samples=2000, seed=0)
    return [round(100 * float(d.mean()), 2), round(100 * lo, 2), round(100 * hi, 2)]


def budget_curve(cf, kind: str, budgets: list[float]) -> list[dict]:
    """The gate's pooled evidence had every fold stopped after B seconds of training (points reached by then)."""
    from vectune.pipeline.crossfit import LIVE, _pool, choose_points
    from vectune.pipeline.paired import paired_permutation

    out = []
    for b in budgets:
        per_fold = [{p: hc[0] for p, hc in pr.points[kind].items()
                     if p == LIVE or pr.reached.get(kind, {}).get(p, float("inf")) <= b} for pr in cf.probes]
        chosen, final, _ = choose_points(per_fold, "ndcg@10")
        live = _pool([pf[LIVE] for pf in per_fold], 0)
        cand = _pool([pf[p] for pf, p in zip(per_fold, chosen)], 0)
        d = cand.per_query["ndcg@10"] - live.per_query["ndcg@10"]
        test = lab.fold_test(cf, kind, chosen)
        out.append({"budget_s": b, "final_point": list(final), "pooled": ci(d),
                    "p": round(paired_permutation(live.per_query["ndcg@10"], cand.per_query["ndcg@10"]), 4),
                    "fold_test_ndcg": round(float(np.mean(test)), 4)})
    return out


def one(w, qids, args, k: int, choice: str, query) -> dict:
    t0 = time.perf_counter()
    load0 = lab.load_avg()
    r = lab.crossfit(w, qids, kinds=KINDS, query=query, folds=k, budget_s=0.0, seed=args.seed,
                     epoch_choice=choice, final="all")
    cf, v = r["cf"], r["verdict"]
    live_test = w.live_test().means["ndcg@10"]
    kinds = {}
    for kind in KINDS:
        st = cf.stats[kind]
        d = v.decisions[kind]
        fold_t = lab.fold_test(cf, kind)
        fin = r["finals"].get(kind) or {}
        kinds[kind] = {
            "fold_seconds": [f["seconds"] for f in st.folds], "epochs_run": [f.get("epochs_run") for f in st.folds],
            "chosen": st.chosen, "final_point": st.final_point,
            "pooled": {"delta": round(100 * d.delta, 2), "ci": [round(100 * (d.ci_low or 0), 2),
                                                               round(100 * (d.ci_high or 0), 2)],
                       "p": d.p_value, "p_holm": d.p_holm, "passes": d.promote},
            "fold_models_test": {"mean": round(100 * (np.mean(fold_t) - live_test), 2),
                                 "min": round(100 * (min(fold_t) - live_test), 2),
                                 "max": round(100 * (max(fold_t) - live_test), 2)},
            "final": {"seconds": fin.get("seconds"), "point": fin.get("point"),
                      "test": ci(fin["test"]["per_query"]) if fin.get("test") else None,
                      "check": fin.get("check")},
        }
        if choice == "folds":
            kinds[kind]["by_budget"] = budget_curve(cf, kind, args.budgets)
    return {"k": k, "epoch_choice": choice, "labels": len(qids), "chosen": v.chosen, "kinds": kinds,
            "seconds": {"folds": r["seconds"]["folds"], "probe": r["seconds"]["probe"],
                        "final": {k_: (r["finals"].get(k_) or {}).get("seconds") for k_ in KINDS},
                        "total": round(time.perf_counter() - t0, 1)},
            "load": {"before": load0, "after": lab.load_avg()}, "_cf": cf, "_r": r}


def broken_checks(w, run: dict) -> dict:
    """The check against final fits that are not what the fold models were: the live model, a random rotation."""
    from vectune.pipeline.train.candidate import Candidate
    from vectune.pipeline.train.query.router import build_asymmetric_model

    cf, outcomes = run["_cf"], run["_r"]["outcomes"]
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(w.vectors.shape[1],) * 2))
    rot = type(w.live)(model=build_asymmetric_model(w.live.model, linear=q.astype(np.float32)), ref="rotated",
                       query_prompt=w.live.query_prompt)
    out = {}
    for kind in KINDS:
        for name, enc in (("live model as the final fit", w.live), ("random rotation", rot)):
            chk = cf.check(kind, Candidate(enc, "broken", cf.stats[kind], kind), outcomes[kind])
            out[f"{kind}: {name}"] = {"ok": chk["ok"], "labeled": chk["labeled"], "unseen": chk["unseen"]}
    return out


def markdown(r: dict) -> str:
    lines = ["## Cross-fitting: folds vs time, who picks the epoch, the final fit's check", "",
             f"{r['dataset']}: all {r['labels']} train queries are the labels (seeded folds, as a `--train-set`), "
             f"{r['test_queries']} test queries never seen (scored at every point of every fold model, deciding "
             f"nothing), {r['check_queries']} teacher held-out queries for the final fit's check; both query-side "
             f"candidates with the product's settings, no time budget (each training stops at its epoch cap: "
             f"query encoder {r['query_epochs']} epochs, linear map {r['linear_epochs']}). 2-core CPU shared with "
             f"other work: load in the table. `{r['command']}`", "",
             "| K | epoch choice | candidate | fold trainings s (sum) | epochs run | final point | pooled Δ nDCG@10 "
             "[CI], p (Holm) | fold models' test Δ mean [min, max] | final fit s | final fit test Δ [CI] | check | "
             "load |", "|---|---|---|---:|---|---|---|---|---:|---|---|---|"]
    for run in r["runs"]:
        for kind, x in run["kinds"].items():
            p = x["pooled"]
            ft = x["final"]["test"]
            chk = (x["final"]["check"] or {})
            lines.append(
                f"| {run['k']} | {run['epoch_choice']} | {kind} | {sum(x['fold_seconds']):.0f} | "
                f"{x['epochs_run']} | {x['final_point']} | {p['delta']:+.1f} [{p['ci'][0]:+.1f}, {p['ci'][1]:+.1f}], "
                f"{p['p']} ({p['p_holm']}){' pass' if p['passes'] else ''} | {x['fold_models_test']['mean']:+.1f} "
                f"[{x['fold_models_test']['min']:+.1f}, {x['fold_models_test']['max']:+.1f}] | "
                f"{x['final']['seconds']} | "
                + (f"{ft[0]:+.1f} [{ft[1]:+.1f}, {ft[2]:+.1f}]" if ft else "–") + " | "
                + ("ok" if chk.get("ok") else ("FAILED" if chk else "–")) + f" | {run['load']['before']} |")
    lines += ["", "Seconds per run (fold trainings of both candidates, probe = scoring every point, final fits, "
              "total):", "", "| K | epoch choice | folds s | probe s | final fits s | total s | chosen |",
              "|---|---|---:|---:|---|---:|---|"]
    for run in r["runs"]:
        s = run["seconds"]
        lines.append(f"| {run['k']} | {run['epoch_choice']} | {s['folds']} | {s['probe']} | {s['final']} | "
                     f"{s['total']} | {run['chosen']} |")
    for run in r["runs"]:
        if run["epoch_choice"] != "folds":
            continue
        lines += ["", f"Pooled evidence by per-fold budget (K = {run['k']}): each fold stopped after B seconds of "
                  "training (the points its curve had reached by then):", "",
                  "| candidate | B s | final point | pooled Δ [CI] | p | fold models' test nDCG@10 |",
                  "|---|---:|---|---|---:|---:|"]
        for kind, x in run["kinds"].items():
            for b in x["by_budget"]:
                pl = b["pooled"]
                lines.append(f"| {kind} | {b['budget_s']:.0f} | {b['final_point']} | {pl[0]:+.1f} [{pl[1]:+.1f}, "
                             f"{pl[2]:+.1f}] | {b['p']} | {b['fold_test_ndcg']} |")
    if r.get("broken"):
        lines += ["", "The check against final fits that are not what the fold models were (K = "
                  f"{r['broken_k']}):", "", "| final fit | labeled: in-sample vs folds' held-out (p below) | unseen: "
                  "final vs folds' mean (p below) | check |", "|---|---|---|---|"]
        for name, x in r["broken"].items():
            lb, un = x["labeled"], x["unseen"] or {}
            lines.append(f"| {name} | {lb['final_in_sample']} vs {lb['folds_held_out']} ({lb['p_below']}) | "
                         f"{un.get('final')} vs {un.get('fold_models_mean')} ({un.get('p_below')}) | "
                         f"{'ok' if x['ok'] else 'FAILED'} |")
    lines += ["", f"- live test nDCG@10 {r['live_test']:.4f}; machine: {common.machine_line(r['machine'])}; "
              f"date {r['date']}"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--ks", default="3,5,10", help="folds to measure (epoch choice by the folds)")
    ap.add_argument("--epoch-choice", default="folds,slice", help="who picks the epoch: folds, slice")
    ap.add_argument("--k-choice", type=int, default=5, help="K of the epoch-choice comparison")
    ap.add_argument("--labels", type=int, default=0, help="use a seeded subsample of this many labels (0 = all)")
    ap.add_argument("--budgets", default="30,60,90,120,180,240,300,400,600",
                    help="per-fold budgets (s) for the pooled-evidence-by-budget table")
    ap.add_argument("--query-epochs", type=float, default=None, help="the query encoder's epoch cap (default: product's)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--update-results", action="store_true")
    args = ap.parse_args()
    args.budgets = [float(b) for b in args.budgets.split(",")]
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("vectune.pipeline.crossfit").setLevel(logging.INFO)
    threads = args.threads or (1 if os.getloadavg()[0] >= (os.cpu_count() or 1) else 0)
    if threads:
        torch.set_num_threads(threads)
    from vectune.config.sections import QueryConfig

    query = QueryConfig(**({"epochs": args.query_epochs} if args.query_epochs else {}))
    w = lab.world(args.data, args.seed)
    qids = lab.subsample(w.train_ids, args.labels, 0, args.seed) if args.labels else w.train_ids
    print(f"{len(qids)} labels, {len(w.test)} test, {len(w.check)} check queries; load {lab.load_avg()}", flush=True)
    runs = []
    ks = [int(k) for k in args.ks.split(",") if k]
    choices = [c for c in args.epoch_choice.split(",") if c]
    plan = [(k, "folds") for k in ks] + [(args.k_choice, c) for c in choices if c != "folds"]
    if "folds" in choices and args.k_choice not in ks:
        plan.append((args.k_choice, "folds"))
    broken = None
    for k, choice in plan:
        print(f"K={k}, epoch choice {choice} ...", flush=True)
        run = one(w, qids, args, k, choice, query)
        if k == args.k_choice and choice == "folds":
            broken = broken_checks(w, run)
        run.pop("_cf"), run.pop("_r")
        runs.append(run)
        print({kk: (x["pooled"], x["final"]["test"]) for kk, x in run["kinds"].items()}, run["seconds"], flush=True)
    r = {"dataset": args.data.resolve().name, "labels": len(qids), "test_queries": len(w.test),
         "check_queries": len(w.check), "query_epochs": query.epochs, "linear_epochs": query.linear_epochs,
         "live_test": w.live_test().means["ndcg@10"], "runs": runs, "broken": broken, "broken_k": args.k_choice,
         "machine": common.machine(), "date": common.now(), "command": common.command_line()}
    name = f"crossfit-{r['dataset']}" + (f"-{args.tag}" if args.tag else "")
    lab.dump(BENCH / "results" / f"{name}.json", r)
    print(markdown(r))
    if args.update_results:
        common.update_section(name, markdown(r))


if __name__ == "__main__":
    main()
