"""Gate power, redone: the 30% holdout against cross-fitting, at 60/120/240/400 labeled queries.

    python bench/gate_power.py --data ../shared/data/scifact --update-results            # this study
    python bench/gate_power.py --data ../shared/data/scifact --study metric              # the earlier one

Per size n and draw: a seeded subsample of n of SciFact's train queries are the labels (the same draw for both
methods and every candidate); the 300 test queries, never seen, are the truth. Both ways of deciding run vectune's
own code on the stored vectors (``bench/crossfit_lab.py``):

* **holdout** (the cycle before cross-fitting; ``VECTUNE_CROSSFIT=false``): a seeded 30% of the labels is the golden
  set, the other 70% trains each candidate with its trainer's own epoch-choice slice and refit; the gate on the
  golden set;
* **cross-fit** (the default now): K = 5 seeded folds, K fold models per candidate scored on their own fold, the
  leave-one-fold-out epoch choice, the gate on the pooled n queries; then each candidate's final fit on all n (the
  model a promotion would publish) and its check.

Candidates, all trained per draw (so every gate sees its own training noise):

* real: ``linear`` (the linear map, the product's settings) and ``encoder`` (the query encoder with a short budget
  that fits this CPU: ``--encoder-epochs`` epochs at ``--encoder-lr``; the product trains up to 8);
* null/losing: ``linear-shuffled`` (the linear map trained on the labels with their answers shuffled among the
  queries: it learns nothing true) and ``noise`` (the live query vectors plus N(0, 0.015²), renormalised: needs no
  labels, loses on test).

Per candidate and method: the share of draws whose gate passes it alone (power for a real one, false passes for the
others) with a 95% Wilson interval over the draws, and its truth (the test nDCG@10 gain of the model it would
promote: holdout: the 70% model; cross-fit: the final fit), mean over draws with a bootstrap CI over draws. Auto
(both real candidates, Holm over the two, the better gain among equal cost) and the family-wise false-pass rate of
auto over the two losers, with and without Holm's correction.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np

import common
import crossfit_lab as lab

REAL: tuple[str, ...] = ("linear", "query")  # ``--cf-candidates`` narrows it (main sets it before any draw)
LOSERS = ("linear-shuffled", "noise")
NAMES = {"linear": "linear", "query": "encoder", "linear-shuffled": "linear-shuffled", "noise": "noise"}
SIGMA = 0.015


def wilson(k: int, n: int) -> list[float]:
    if n == 0:
        return [0.0, 0.0, 0.0]
    z, p = 1.96, k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(100 * p, 1), round(100 * max(0.0, c - h), 1), round(100 * min(1.0, c + h), 1)]


def _noise(vecs: np.ndarray, seed: int) -> np.ndarray:
    x = vecs + np.random.default_rng(seed).normal(0, SIGMA, vecs.shape)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _decide(live, cand, gate):
    from vectune.pipeline.gate import decide

    return decide(live, cand, metric=gate.metric, evidence="golden", min_delta=gate.min_delta,
                  bootstrap=gate.require_significance, samples=gate.samples, confidence=gate.confidence, test=gate.test)


def _auto(outcomes: dict, ev: str, gate, holm: bool = True) -> str | None:
    """Auto's choice over these candidates (Holm over them unless ``holm`` is False)."""
    from types import SimpleNamespace

    from vectune.pipeline.gate import choose, family_wise
    from vectune.pipeline.train.candidate import COSTS, Cost

    decisions = {k: _decide(*o.results[ev], gate) for k, o in outcomes.items()}
    if holm and len(decisions) > 1:
        family_wise(decisions, {k: o.results[ev] for k, o in outcomes.items()}, gate)
    costs = {k: COSTS.get(k, Cost("one query-encoder pass", "copy", 0)) for k in outcomes}
    chosen, _ = choose(list(outcomes), {k: o.results[ev] for k, o in outcomes.items()}, decisions,
                       metric=gate.metric, samples=gate.samples, confidence=gate.confidence, test=gate.test,
                       costs=costs)
    return SimpleNamespace(chosen=chosen, decisions=decisions).chosen


def noise_outcomes(w, H: dict, C: dict, seed: int) -> tuple:
    """The noise candidate on the holdout's golden set and, cross-fitted, on every fold (one point: noise or live)."""
    from vectune.pipeline.crossfit import EVIDENCE, LIVE
    from vectune.pipeline.evaluate import EvalOutcome, EvalQuery, evaluate

    golden = H["outcomes"]["linear"].results["golden"][0]
    gq = [EvalQuery(q.text, set(q.relevant)) for q in w.labels(H["golden_ids"])]
    hv = _noise(w.live.encode_queries([q.text for q in gq]), seed)
    h = EvalOutcome({"golden": (golden, evaluate(hv, w.vectors, w.keys, gq))}, [], None, {})
    cf = C["cf"]
    per_fold = []
    for k, pr in enumerate(cf.probes):
        lv = pr.points["linear"][LIVE][0]
        nv = _noise(w.live.encode_queries([q.text for q in pr.held]), seed + 101 * (k + 1))
        per_fold.append({LIVE: lv, (None, 1.0): evaluate(nv, pr.vectors, pr.keys, pr.held)})
    c = EvalOutcome({EVIDENCE: _pooled(per_fold)}, [], None, {})
    test = w.test_gain(_NoiseEncoder(w.live, seed))
    return h, c, test


def _pooled(per_fold: list[dict]) -> tuple:
    """``(live, candidate)`` pooled over the folds, each fold's point (live or the candidate) chosen on the others."""
    from vectune.pipeline.crossfit import LIVE, _pool, choose_points

    chosen, _, _ = choose_points(per_fold, "ndcg@10")
    return _pool([pf[LIVE] for pf in per_fold], 0), _pool([pf[p] for pf, p in zip(per_fold, chosen)], 0)


def null_study(w, sizes: list[int], draws: int, gate, seed: int) -> dict:
    """False passes of the noise candidate alone, over many draws (no training, so thousands are cheap).

    Per size and draw, the same as a study draw but for the noise candidate only: a seeded subsample of n train
    queries; holdout: the gate on a seeded 30% of them; cross-fit: K = 5 seeded folds, each fold's point (live or
    noise) chosen on the other folds, the pooled per-query deltas into the gate. The live query vectors are
    encoded once; each fold and the golden set get their own noise. Returns ``{n: {method: [pct, lo, hi]}}``.
    """
    from vectune.config.sections import LabelsConfig
    from vectune.pipeline.crossfit import LIVE, make_plan
    from vectune.pipeline.evaluate import EvalQuery, evaluate

    texts = [w.beir["queries"][i] for i in w.train_ids]
    vec_of = dict(zip(texts, w.live.encode_queries(texts)))
    out: dict = {}
    for n in sizes:
        passes = {"holdout": 0, "crossfit": 0}
        for d in range(draws):
            s = seed + 100_000 + d
            labels = w.labels(lab.subsample(w.train_ids, n, 100_000 + d, seed))
            golden = [EvalQuery(q.text, set(q.relevant)) for q in lab.holdout_split(labels, s)[0]]
            lv = np.stack([vec_of[q.text] for q in golden])
            passes["holdout"] += _decide(evaluate(lv, w.vectors, w.keys, golden),
                                         evaluate(_noise(lv, s), w.vectors, w.keys, golden), gate).promote
            plan = make_plan(labels, LabelsConfig(folds=5, min_golden=2, min_train=2), by_time=False, seed=s)
            per_fold = []
            for k in range(plan.folds):
                held = [EvalQuery(q.text, set(q.relevant)) for q, f in zip(plan.labels, plan.fold_of) if f == k]
                hv = np.stack([vec_of[q.text] for q in held])
                per_fold.append({LIVE: evaluate(hv, w.vectors, w.keys, held),
                                 (None, 1.0): evaluate(_noise(hv, s + 101 * (k + 1)), w.vectors, w.keys, held)})
            passes["crossfit"] += _decide(*_pooled(per_fold), gate).promote
        out[str(n)] = {m: wilson(k, draws) for m, k in passes.items()}
        print(f"null (noise alone), n={n}: {draws} draws, false passes holdout {out[str(n)]['holdout']}, "
              f"cross-fit {out[str(n)]['crossfit']}", flush=True)
    return out


class _NoiseEncoder:
    def __init__(self, live, seed):
        self.live, self.seed = live, seed

    def encode_queries(self, texts):
        return _noise(self.live.encode_queries(texts), self.seed)


def one_draw(w, n: int, draw: int, args, query, gate) -> dict:
    from vectune.pipeline.crossfit import EVIDENCE

    qids = lab.subsample(w.train_ids, n, draw, args.seed)
    seed = args.seed + draw
    row: dict = {"n": n, "draw": draw, "load": lab.load_avg()}
    t0 = time.perf_counter()
    H = lab.holdout(w, qids, kinds=REAL, query=query, gate=gate, seed=seed)
    Hs = lab.holdout(w, qids, kinds=("linear",), query=query, gate=gate, seed=seed, shuffle=seed)
    row["holdout_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    C = lab.crossfit(w, qids, kinds=REAL, query=query, gate=gate, seed=seed, final="all", extra=False)
    Cs = lab.crossfit(w, qids, kinds=("linear",), query=query, gate=gate, seed=seed, final="all", extra=False,
                      shuffle=seed)
    row["crossfit_s"] = round(time.perf_counter() - t0, 1)
    nh, nc, ntest = noise_outcomes(w, H, C, seed)
    out = {"holdout": {}, "crossfit": {}}
    for kind in REAL:
        out["holdout"][kind] = {"pass": _decide(*H["outcomes"][kind].results["golden"], gate).promote,
                                "test": float(H["tests"][kind]["per_query"].mean())}
        fin = C["finals"].get(kind) or {}
        out["crossfit"][kind] = {"pass": _decide(*C["outcomes"][kind].results[EVIDENCE], gate).promote,
                                 "test": float(fin["test"]["per_query"].mean()) if fin.get("test") else 0.0,
                                 "check_ok": (fin.get("check") or {}).get("ok"),
                                 "final_point": fin.get("point")}
    out["holdout"]["linear-shuffled"] = {"pass": _decide(*Hs["outcomes"]["linear"].results["golden"], gate).promote,
                                         "test": float(Hs["tests"]["linear"]["per_query"].mean())}
    fs = Cs["finals"].get("linear") or {}
    out["crossfit"]["linear-shuffled"] = {
        "pass": _decide(*Cs["outcomes"]["linear"].results[EVIDENCE], gate).promote,
        "test": float(fs["test"]["per_query"].mean()) if fs.get("test") else 0.0}
    out["holdout"]["noise"] = {"pass": _decide(*nh.results["golden"], gate).promote,
                               "test": float(ntest["per_query"].mean())}
    out["crossfit"]["noise"] = {"pass": _decide(*nc.results[EVIDENCE], gate).promote,
                                "test": float(ntest["per_query"].mean())}
    # auto over the real candidates; and the family-wise false passes over the losers
    for method, res, ev, sh, noise in (("holdout", H, "golden", Hs, nh), ("crossfit", C, EVIDENCE, Cs, nc)):
        chosen = _auto(res["outcomes"], ev, gate)
        out[method]["auto"] = {"chosen": chosen, "test": out[method][chosen]["test"] if chosen else 0.0}
        losers = {"linear-shuffled": sh["outcomes"]["linear"], "noise": noise}
        out[method]["losers_auto"] = {"holm": _auto(losers, ev, gate), "no_holm": _auto(losers, ev, gate, False)}
    row["results"] = out
    return row


def summarise(rows: list[dict], sizes: list[int]) -> dict:
    out: dict = {}
    for n in sizes:
        rs = [r for r in rows if r["n"] == n]
        if not rs:
            continue
        s: dict = {"draws": len(rs), "seconds": {m: round(float(np.mean([r[f"{m}_s"] for r in rs])), 1)
                                                 for m in ("holdout", "crossfit")}}
        for method in ("holdout", "crossfit"):
            m: dict = {}
            for kind in REAL + LOSERS:
                passes = [r["results"][method][kind]["pass"] for r in rs]
                tests = np.array([r["results"][method][kind]["test"] for r in rs])
                lo, hi = _boot(tests)
                m[kind] = {"pass": wilson(sum(passes), len(passes)),
                           "test": [round(100 * float(tests.mean()), 2), round(100 * lo, 2), round(100 * hi, 2)]}
                if method == "crossfit" and kind in REAL:
                    m[kind]["check_failed"] = sum(1 for r in rs if r["results"][method][kind].get("check_ok") is False)
            autos = [r["results"][method]["auto"] for r in rs]
            m["auto"] = {"promoted": wilson(sum(a["chosen"] is not None for a in autos), len(autos)),
                         "chosen": {k: sum(a["chosen"] == k for a in autos) for k in REAL},
                         "test_of_promoted": round(100 * float(np.mean([a["test"] for a in autos])), 2)}
            la = [r["results"][method]["losers_auto"] for r in rs]
            m["losers_family"] = {"holm": wilson(sum(x["holm"] is not None for x in la), len(la)),
                                  "no_holm": wilson(sum(x["no_holm"] is not None for x in la), len(la))}
            s[method] = m
        out[str(n)] = s
    return out


def _boot(x: np.ndarray, samples: int = 2000) -> tuple[float, float]:
    if x.size < 2:
        return float(x.mean()), float(x.mean())
    idx = np.random.default_rng(0).integers(0, x.size, (samples, x.size))
    means = x[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def markdown(r: dict) -> str:
    s = r["summary"]
    sizes = [n for n in map(str, r["sizes"]) if n in s]
    lines = ["## Gate power, redone: the 30% holdout against cross-fitting", "",
             f"{r['dataset']}: per size, seeded draws of n labels from the {r['pool']} train queries (the same draw for "
             f"both methods and every candidate); the {r['test_queries']} test queries, never seen, are the truth. "
             f"Holdout: a seeded 30% decides, 70% trains (trainer slice + refit). Cross-fit: K = 5 seeded folds, the "
             f"pooled n queries decide, the final fit on all n is what would be promoted. Candidates trained per draw: "
             f"linear map (product settings), encoder ({r['encoder']}); losers: linear map on shuffled answers, "
             f"noisy live vectors. Gate: the product's (nDCG@10, one-sided permutation test at 2.5%, min Δ "
             f"{r['min_delta']}). Pass % with a 95% Wilson interval over the draws; test Δ nDCG@10 points of the model "
             f"each method would promote, mean over the draws [95% CI]. `{r['command']}`", "",
             "| n | draws | candidate | holdout: pass % [CI] | holdout: test Δ | cross-fit: pass % [CI] | cross-fit: "
             "test Δ | power ratio |", "|---:|---:|---|---|---|---|---|---:|"]
    for n in sizes:
        x = s[n]
        for kind in REAL + LOSERS:
            h, c = x["holdout"][kind], x["crossfit"][kind]
            ratio = (f"{c['pass'][0] / h['pass'][0]:.1f}×" if h["pass"][0] > 0 else ("∞" if c["pass"][0] else "–")) \
                if kind in REAL else ""
            lines.append(f"| {n} | {x['draws']} | {NAMES[kind]} | {h['pass'][0]:.0f} [{h['pass'][1]:.0f}, "
                         f"{h['pass'][2]:.0f}] | {h['test'][0]:+.1f} [{h['test'][1]:+.1f}, {h['test'][2]:+.1f}] | "
                         f"{c['pass'][0]:.0f} [{c['pass'][1]:.0f}, {c['pass'][2]:.0f}] | {c['test'][0]:+.1f} "
                         f"[{c['test'][1]:+.1f}, {c['test'][2]:+.1f}] | {ratio} |")
    auto_words = ("Auto (both real candidates; Holm over them, the better gain among equal cost)" if len(REAL) > 1 else
                  "The linear map alone (what auto promotes when it is the only real candidate)")
    lines += ["", f"{auto_words} and the family-wise false passes of auto over the two losers:", "",
              f"| n | method | auto promotes % | chose {' / '.join(NAMES[k] for k in REAL)} | test Δ of what auto promoted (0 if kept) | "
              "losers: any promoted %, Holm | without Holm | final-fit checks failed | seconds per draw |",
              "|---:|---|---|---|---:|---|---|---|---:|"]
    for n in sizes:
        x = s[n]
        for method in ("holdout", "crossfit"):
            m = x[method]
            a, lf = m["auto"], m["losers_family"]
            fails = (" / ".join(str(m[k].get("check_failed", 0)) for k in REAL) if method == "crossfit" else "–")
            lines.append(f"| {n} | {method} | {a['promoted'][0]:.0f} [{a['promoted'][1]:.0f}, {a['promoted'][2]:.0f}] "
                         f"| {' / '.join(str(a['chosen'][k]) for k in REAL)} | {a['test_of_promoted']:+.1f} | "
                         f"{lf['holm'][0]:.0f} [{lf['holm'][1]:.0f}, {lf['holm'][2]:.0f}] | {lf['no_holm'][0]:.0f} | "
                         f"{fails} | {x['seconds'][method]} |")
    if r.get("null"):
        lines += ["", f"False passes of the noise candidate alone (live query vectors plus N(0, {SIGMA}²), "
                  f"renormalised; no training, so {r['null_draws']} draws per size; the same holdout and cross-fit "
                  "as above, each fold its own noise and its point chosen on the other folds):", "",
                  "| n | draws | holdout: false pass % [95% CI] | cross-fit: false pass % [95% CI] |",
                  "|---:|---:|---|---|"]
        for n in sizes:
            x = r["null"].get(n)
            if x:
                lines.append(f"| {n} | {r['null_draws']} | {x['holdout'][0]:.1f} [{x['holdout'][1]:.1f}, "
                             f"{x['holdout'][2]:.1f}] | {x['crossfit'][0]:.1f} [{x['crossfit'][1]:.1f}, "
                             f"{x['crossfit'][2]:.1f}] |")
    lines += ["", f"- machine: {common.machine_line(r['machine'])}; load {r['load']}; date {r['date']}; "
              f"{r['minutes']} min"]
    return "\n".join(lines)


def main(args) -> None:
    import os

    import torch

    from vectune.config.sections import GateConfig, QueryConfig

    global REAL
    REAL = tuple(k.strip() for k in args.cf_candidates.split(",") if k.strip())
    if not REAL or REAL[0] != "linear" or any(k not in NAMES or k in LOSERS for k in REAL):
        raise SystemExit(f"--cf-candidates {args.cf_candidates!r}: 'linear' first, then optionally 'query'")
    threads = args.threads or (1 if os.getloadavg()[0] >= (os.cpu_count() or 1) else 0)
    if threads:
        torch.set_num_threads(threads)
    sizes = [int(x) for x in args.cf_sizes.split(",")]
    draws = {int(k): int(v) for k, v in (x.split(":") for x in args.cf_draws.split(","))}
    query = QueryConfig(epochs=args.encoder_epochs, learning_rate=args.encoder_lr)
    gate = GateConfig(min_delta=args.min_delta)
    w = lab.world(args.data, args.seed, check_queries=True)
    name = f"gate-power-crossfit-{args.data.resolve().name}" + ("" if "query" in REAL else "-linear")
    cache = lab.WORK / f"{name}-draws.jsonl"
    key = {"candidates": list(REAL), "encoder_epochs": args.encoder_epochs, "encoder_lr": args.encoder_lr, "seed": args.seed,
           "min_delta": args.min_delta}

    def cached() -> list[dict]:  # this study's rows in the draws cache, whichever shard wrote them
        lines = cache.read_text().splitlines() if cache.is_file() else []
        return [r for r in map(json.loads, lines) if r.get("key") == key]

    rows = [] if args.retrain else cached()
    done = {(r["n"], r["draw"]) for r in rows}
    shard, shards = (int(x) for x in args.cf_shard.split("/"))
    t0 = time.perf_counter()
    task = -1
    for d in range(max(draws.values())):  # interleave sizes, so an interrupted study still covers every size
        for n in sizes:
            if d >= draws.get(n, 0):
                continue
            task += 1
            if (n, d) in done or task % shards != shard - 1:
                continue
            row = one_draw(w, n, d, args, query, gate)
            row["key"] = key
            rows.append(row)
            with open(cache, "a", encoding="utf-8") as f:  # one write of one line: shards may append side by side
                f.write(json.dumps(row) + "\n")
            if shards > 1:  # the other shards' rows too, for the summary
                rows = cached()
            res = row["results"]
            print(f"n={n} draw {d}: holdout {row['holdout_s']} s, cross-fit {row['crossfit_s']} s; passes "
                  + ", ".join(f"{k}: {int(res['holdout'][k]['pass'])}/{int(res['crossfit'][k]['pass'])}"
                              for k in REAL + LOSERS) + f"; load {row['load']}", flush=True)
    rows = list({(x["n"], x["draw"]): x for x in rows}.values())  # one row a draw, whichever shard wrote it
    null = None
    if args.cf_null_draws and shard == 1:  # cached: it does not depend on the study's draws
        null_cache = lab.WORK / f"{name}-null-{args.cf_null_draws}-{args.seed}-{args.min_delta}.json"
        null = json.loads(null_cache.read_text()) if null_cache.is_file() and not args.retrain else {}
        if any(str(n) not in null for n in sizes):
            null = {**null, **null_study(w, [n for n in sizes if str(n) not in null], args.cf_null_draws, gate,
                                         args.seed)}
            null_cache.write_text(json.dumps(null))
    r = {"dataset": args.data.resolve().name, "pool": len(w.train_ids), "test_queries": len(w.test),
         "sizes": sizes, "draws": draws, "min_delta": args.min_delta,
         "candidates": list(REAL),
         "encoder": (f"{args.encoder_epochs:g} epochs at lr {args.encoder_lr:g}, the product's other settings"
                     if "query" in REAL else "not trained: `--cf-candidates linear`, each draw's K + 1 encoder trainings would take an hour on 2 cores"),
         "summary": summarise(rows, sizes), "rows": len(rows), "null": null, "null_draws": args.cf_null_draws, "minutes": round((time.perf_counter() - t0) / 60, 1),
         "load": lab.load_avg(), "machine": common.machine(), "date": common.now(), "command": common.command_line()}
    common.write_json(lab.BENCH / "results" / f"{name}.json", r)
    print(markdown(r))
    if args.update_results:
        common.update_section(name, markdown(r))


def add_arguments(ap) -> None:
    ap.add_argument("--cf-sizes", default="60,120,240,400", help="labeled-query counts")
    ap.add_argument("--cf-draws", default="60:24,120:24,240:24,400:12", help="draws per size, n:draws")
    ap.add_argument("--cf-candidates", default="linear,query",
                    help="real candidates trained per draw: 'linear,query' (both) or 'linear' (the linear map alone: "
                         "minutes per draw instead of an hour on 2 cores)")
    ap.add_argument("--cf-null-draws", type=int, default=500,
                    help="draws per size of the noise candidate alone (no training: seconds) for the false-pass rate")
    ap.add_argument("--cf-shard", default="1/1", help="K/N: run every N-th missing draw from the K-th (N processes "
                                                        "side by side share one draws cache; re-run 1/1 to summarise)")
    ap.add_argument("--encoder-epochs", type=float, default=3.0, help="the short-budget encoder's epoch cap")
    ap.add_argument("--encoder-lr", type=float, default=1e-4, help="the short-budget encoder's learning rate")


__all__ = ["add_arguments", "main", "markdown", "summarise"]
