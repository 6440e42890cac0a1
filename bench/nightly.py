#!/usr/bin/env python
"""A nightly cron, night after night: feedback arrives, ``vectune run`` with default settings, test queries scored.

    python bench/nightly.py                                    # the must-show: SciFact demo subset, 4 nights
    python bench/nightly.py --quick                            # a small, fast proof that it all works
    python bench/nightly.py --data ../shared/data/scifact      # a BEIR folder: its train qrels are the feedback

The way a cron lives it:

1. Index once: ``vectune index CORPUS --alias nightly --with-title`` (the SciFact demo subset shipped in the
   package, 2,000 abstracts, or a BEIR folder) into a fresh home, with the bundled MiniLM.
2. Night 0: score the never-seen test queries through the alias as an app does (``vectune.resolve`` +
   ``client.query_points``, nDCG@10 per query).
3. Nights 1..N: the day's feedback arrives (``--per-night`` train claims, or train qrels, logged with
   ``vectune.feedback.log_many`` as clicks at realistic times of that day, the nights in the past), then
   ``vectune run --alias nightly --json`` as a subprocess of the real CLI with **default settings** (nothing
   pinned: ``VECTUNE_*`` from ``--env`` only), then the test queries scored again.
4. An empty night at the end (no new feedback), which must be a no-op.

Per night it prints the decision, the chosen candidate, the gate's delta on its evidence (golden or
pooled), the watch's verdict, the run's time, test nDCG@10 with a paired 95% CI vs the night before and vs
night 0, the collections kept, and the machine's load. Results go to ``bench/results/nightly-<name>.json``
and a section of ``bench/RESULTS.md``. The issue-18 checks (promotes by night 2, last night's test nDCG@10
>= 0.80, no night significantly below the one before, the empty night a no-op in < 10 s) are evaluated and
recorded; the script exits 1 when one fails (``--no-checks`` to skip them, e.g. with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402
from quality import read_jsonl, read_qrels  # noqa: E402

ALIAS = "nightly"
METRICS = ("ndcg@10", "recall@10", "mrr@10")


# ----------------------------------------------------------------------------- data
def load_data(data: Path | None) -> dict:
    """``{"name", "corpus", "train": [(query, [ids])], "test": [(query, [ids])]}`` of the demo subset or a BEIR folder."""
    if data is None:
        from importlib.resources import files

        root = Path(str(files("vectune") / "data" / "scifact_demo"))
        train = [(q["query"], sorted(q["relevant"])) for q in read_jsonl(root / "train.jsonl.gz")]
        test = [(q["query"], sorted(q["relevant"])) for q in read_jsonl(root / "test.jsonl.gz")]
        return {"name": "scifact-demo", "corpus": root / "corpus.jsonl.gz", "train": train, "test": test}
    corpus = next((data / n for n in ("corpus.jsonl", "corpus.jsonl.gz") if (data / n).is_file()), None)
    if corpus is None:
        sys.exit(f"{data}: no corpus.jsonl[.gz]")
    queries = {str(q["_id"]): q["text"] for q in read_jsonl(data / "queries.jsonl")}
    test_q = read_qrels(data / "qrels" / "test.tsv")
    train_q = read_qrels(data / "qrels" / "train.tsv") if (data / "qrels" / "train.tsv").is_file() else {}
    if not train_q:
        sys.exit(f"{data}: no qrels/train.tsv: the nights need train queries to arrive as feedback")
    test = [(queries[q], sorted(r)) for q, r in sorted(test_q.items()) if q in queries]
    train = [(queries[q], sorted(r)) for q, r in sorted(train_q.items()) if q in queries and q not in test_q]
    return {"name": data.name, "corpus": corpus, "train": train, "test": test}


def subset(d: dict, docs: int, test: int, train: int, seed: int, out: Path) -> dict:
    """A smaller corpus (``docs`` documents holding every relevant doc of the kept queries), for --quick."""
    rng = random.Random(seed)
    tr, te = list(d["train"]), list(d["test"])
    rng.shuffle(tr)
    rng.shuffle(te)
    tr, te = tr[:train], te[:test]
    corpus = {str(x["_id"]): x for x in read_jsonl(d["corpus"])}
    need = {i for _, ids in tr + te for i in ids} & set(corpus)
    rest = sorted(set(corpus) - need)
    rng.shuffle(rest)
    keep = sorted(need) + rest[:max(0, docs - len(need))]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "corpus.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for k in keep:
            f.write(json.dumps(corpus[k]) + "\n")
    kept = set(keep)
    tr = [(q, [i for i in ids if i in kept]) for q, ids in tr]
    te = [(q, [i for i in ids if i in kept]) for q, ids in te]
    return {**d, "corpus": path, "train": [x for x in tr if x[1]], "test": [x for x in te if x[1]], "docs": len(keep)}


def nights_of(train: list, nights: int, per_night: int | None, seed: int) -> list[list]:
    """The train queries in arrival order, cut into nights (``per_night`` each, else all of them evenly)."""
    order = list(train)
    random.Random(seed).shuffle(order)
    if per_night:
        return [order[i * per_night:(i + 1) * per_night] for i in range(nights)]
    size = -(-len(order) // nights)
    return [order[i * size:(i + 1) * size] for i in range(nights)]


def day_rows(queries: list, day: datetime, seed: int) -> list[dict]:
    """One night's feedback: each query a click at a random time of that day (08:00-22:00 UTC), in time order."""
    rng = random.Random(seed)
    times = sorted(day.replace(hour=8) + timedelta(seconds=rng.uniform(0, 14 * 3600)) for _ in queries)
    return [{"alias": ALIAS, "query": q, "relevant_ids": ids, "signal": "click", "ts": t.isoformat()}
            for (q, ids), t in zip(queries, times)]


# ----------------------------------------------------------------------------- the app's side
def _client(home: Path):
    from qdrant_client import QdrantClient

    from vectune.config.settings import Settings

    return QdrantClient(path=str(Settings(home=home).qdrant_path))


def log_feedback(home: Path, rows: list[dict]) -> int:
    from vectune.apps import feedback

    client = _client(home)
    try:
        return feedback.log_many(client, rows)
    finally:
        client.close()


def score(home: Path, test: list) -> dict:
    """The test queries through the alias as an app queries it: resolve, encode, query_points; nDCG@10 per query."""
    from vectune.apps.resolve import resolve
    from vectune.config.settings import Settings
    from vectune.pipeline.evaluate import ndcg

    client = _client(home)
    try:
        res = resolve(client, ALIAS, Settings(home=home))
        collection, encoder = res
        vectors = client.get_collection(collection).config.params.vectors
        using = next(iter(vectors)) if isinstance(vectors, dict) and len(vectors) == 1 else None
        t0 = time.perf_counter()
        qv = encoder.encode_queries([q for q, _ in test])
        ranked = []
        for v in qv:
            hits = client.query_points(collection, query=v.tolist(), limit=10, using=using, with_payload=["doc_id"])
            ranked.append([str((p.payload or {}).get("doc_id", p.id)) for p in hits.points])
        secs = time.perf_counter() - t0
    finally:
        client.close()
    per = {m: np.zeros(len(test)) for m in METRICS}
    for i, ((_, rel), top) in enumerate(zip(test, ranked)):
        rel = set(rel)
        hits = [d in rel for d in top]
        per["ndcg@10"][i] = ndcg([1.0 if h else 0.0 for h in hits], [1.0] * len(rel), 10)
        per["recall@10"][i] = len(set(top) & rel) / len(rel)
        first = next((r for r, h in enumerate(hits) if h), None)
        per["mrr@10"][i] = 1.0 / (first + 1) if first is not None else 0.0
    return {"collection": collection, "query_model": res.query_model, "seconds": round(secs, 1),
            "means": {m: round(float(v.mean()), 4) for m, v in per.items()}, "per_query": per["ndcg@10"].tolist()}


def paired(before: list, after: list) -> dict:
    """Paired 95% bootstrap CI of mean(after - before) on nDCG@10, and whether it is significant either way."""
    from vectune.pipeline.gate import paired_bootstrap

    a, b = np.asarray(before), np.asarray(after)
    lo, hi = paired_bootstrap(a, b, samples=2000, confidence=0.95, seed=0)
    return {"delta": round(float((b - a).mean()), 4), "ci": [round(lo, 4), round(hi, 4)],
            "significant": "up" if lo > 0 else ("down" if hi < 0 else None),
            "up": int((b > a).sum()), "down": int((b < a).sum())}


def collections(home: Path) -> list[dict]:
    from vectune.qdrant import lineage
    from vectune.qdrant.store import Store

    client = _client(home)
    try:
        store = Store.from_client(client)
        live = store.aliases().get(ALIAS)
        return [{"name": n, "state": m.get("state"), "mode": m.get("mode"), "kind": m.get("kind"),
                 "live": n == live, "points": store.count(n)} for n, m in lineage.versions(store, ALIAS)]
    finally:
        client.close()


def load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# ----------------------------------------------------------------------------- one night
def run_night(home: Path, work: Path, night: int, env_args: list[str]) -> dict:
    args = ["run", "--alias", ALIAS, "--home", str(home), "--json"]
    load_before = load()
    rc, out, err, secs = common.run_cli(args, log_file=work / f"night-{night}.log", env_extra=dict(
        kv.split("=", 1) for kv in env_args))
    rep = common.parse_json_report(out) or {}
    if rc not in (0, 7) or not rep:
        tail = "\n".join(err.strip().splitlines()[-8:])
        print(f"  night {night}: vectune run exited {rc}:\n{tail}", flush=True)
    gate = rep.get("gate") or {}
    choice = rep.get("choice") or {}
    chosen = choice.get("chosen") or (rep.get("candidate_model") and rep.get("candidate_model", "").rsplit("-", 1)[-1])
    w = rep.get("watch") or {}
    return {"night": night, "rc": rc, "status": rep.get("status") or "failed", "reason": rep.get("reason"),
            "seconds": round(secs, 1), "load_before": load_before, "load_after": load(),
            "chosen": chosen if rep.get("status") == "promoted" else None,
            "gate": {k: gate.get(k) for k in ("evidence", "metric", "live", "candidate", "delta", "ci_low", "ci_high",
                                              "p_value", "test", "promote")} if gate else None,
            "candidates": {k: {"delta": (c.get("gate") or {}).get("delta"), "p": (c.get("gate") or {}).get("p_value"),
                               "passed": (c.get("gate") or {}).get("promote")}
                           for k, c in (rep.get("candidates") or {}).items()} or None,
            "watch": {k: w.get(k) for k in ("verdict", "reason", "queries", "rolled_back", "cached_from")} | {
                "delta": (w.get("scores") or {}).get("delta")} if w else None,
            "feedback": {k: (rep.get("counts", {}).get("feedback") or {}).get(k) for k in ("rows", "usable", "golden",
                                                                                           "train")},
            "timings": rep.get("timings"), "run_id": rep.get("run_id"), "new_collection": rep.get("new_collection")}


def _gate_text(g: dict | None) -> str:
    g = g or {}
    if g.get("delta") is None or g.get("ci_low") is None:
        return "–"
    p = f" p {g['p_value']:.3f}" if g.get("p_value") is not None else ""
    return f"{g.get('evidence')} {g['delta']:+.3f} [{g['ci_low']:+.3f}, {g['ci_high']:+.3f}]{p}"


def _vs(p: dict | None) -> str:
    return f"{p['delta']:+.3f} [{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}]" if p else "–"


def fmt_night(n: dict) -> str:
    w = n.get("watch") or {}
    return (f"night {n['night']}: {n['status']}{' (' + n['chosen'] + ')' if n.get('chosen') else ''}, "
            f"gate {_gate_text(n.get('gate'))}, watch {w.get('verdict', '–')}, {n['seconds']:.1f} s "
            f"(load {n['load_before'][:1]}); test nDCG@10 {n['test']['means']['ndcg@10']:.3f} vs previous "
            f"{_vs(n.get('vs_previous'))}, vs night 0 {_vs(n.get('vs_night0'))}; collections kept "
            f"{len(n['collections'])}")


# ----------------------------------------------------------------------------- report
def markdown(r: dict) -> str:
    lines = [f"## Nightly cron: {r['dataset']}{' (' + r['tag'] + ')' if r.get('tag') else ''}", "",
             f"`{r['command']}` on {r['date']}; {common.machine_line(r['machine'])}; {r['docs']} documents, "
             f"{r['test_queries']} never-seen test queries, {r['nights']} nights of "
             f"{'/'.join(str(x) for x in r['per_night'])} feedback queries, then an empty night. "
             f"`vectune run` with default settings{' plus ' + ', '.join(r['env']) if r['env'] else ''}. "
             f"Index: {r['index_seconds']:.0f} s. Total: {r['minutes']:.1f} min.", "",
             "| night | feedback so far | decision (candidate) | gate evidence Δ [95% CI] | watch | run time (load) | "
             "test nDCG@10 | vs night before | vs night 0 | collections |",
             "|---|---:|---|---|---|---:|---:|---|---|---:|"]
    for n in r["rows"]:
        dec = n["status"] + (f" ({n['chosen']})" if n.get("chosen") else "")
        w = (n.get("watch") or {}).get("verdict") or "–"
        run = f"{n['seconds']:.1f} s ({n['load_before'][0] if n.get('load_before') else '?'})" \
            if n["night"] > 0 else "–"
        lines.append(f"| {n['night']}{' (empty)' if n.get('empty') else ''} | {n.get('feedback_so_far', 0)} | {dec} | "
                     f"{_gate_text(n.get('gate'))} | {w} | {run} | {n['test']['means']['ndcg@10']:.3f} | "
                     f"{_vs(n.get('vs_previous'))} | {_vs(n.get('vs_night0'))} | {len(n['collections'])} |")
    if r.get("checks"):
        what = ("Checks (issue 18's must-show, which is the full subset with default settings; informational on "
                "this smaller run): " if r.get("quick") or r.get("env") else "Checks (issue 18): ")
        lines += ["", what + "; ".join(
            f"{c['name']}: **{'pass' if c['ok'] else 'FAIL'}** ({c['detail']})" for c in r["checks"])]
    lines += ["", "Reasons:", ""] + [f"- night {n['night']}: {n['status']} — {n.get('reason')}"
                                     + (f" Watch: {n['watch']['reason']}" if (n.get("watch") or {}).get("verdict")
                                        not in (None, "skipped", "off") else "") for n in r["rows"] if n["night"] > 0]
    return "\n".join(lines) + "\n"


def checks(rows: list[dict], empty: dict | None) -> list[dict]:
    nights = [n for n in rows if n["night"] > 0 and not n.get("empty")]
    first = next((n["night"] for n in nights if n["status"] == "promoted"), None)
    last = nights[-1]["test"]["means"]["ndcg@10"] if nights else None
    down = [n["night"] for n in rows if (n.get("vs_previous") or {}).get("significant") == "down"]
    out = [{"name": "promotes by night 2", "ok": first is not None and first <= 2,
            "detail": f"first promotion on night {first}"},
           {"name": "test nDCG@10 after the last night >= 0.80", "ok": last is not None and last >= 0.80,
            "detail": f"{last}"},
           {"name": "no night significantly below the night before", "ok": not down,
            "detail": f"significantly down on nights {down}" if down else "none"}]
    if empty:
        out.append({"name": "the empty night is a no-op in < 10 s", "ok": empty["status"] == "noop"
                    and empty["seconds"] < 10, "detail": f"{empty['status']} in {empty['seconds']} s"})
    return out


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="a BEIR folder (default: the shipped SciFact demo subset)")
    ap.add_argument("--nights", type=int, default=4)
    ap.add_argument("--per-night", type=int, default=200, help="feedback queries per night (0: all, evenly)")
    ap.add_argument("--docs", type=int, default=0, help="a smaller corpus of this many documents (0: all)")
    ap.add_argument("--test", type=int, default=0, help="at most this many test queries (0: all)")
    ap.add_argument("--env", action="append", default=[], metavar="VECTUNE_X=V",
                    help="a setting for every run (recorded; the must-show runs take none)")
    ap.add_argument("--quick", action="store_true",
                    help="a small proof: 600 docs, 2 nights of 60, 100 test queries, 2-minute training budget")
    ap.add_argument("--no-checks", action="store_true", help="do not fail on the issue-18 checks")
    ap.add_argument("--home", type=Path, default=None, help="work folder (default bench/work/nightly-<name>)")
    ap.add_argument("--reindex", action="store_true", help="index again even when an indexed copy is cached")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tag", default="", help="suffix of the result's name")
    args = ap.parse_args()
    if args.quick:
        args.docs, args.test, args.nights, args.per_night = args.docs or 600, args.test or 100, 2, 60
        args.env = args.env or ["VECTUNE_QUERY_TIME_BUDGET_S=120"]
        args.tag = args.tag or "quick"
        args.no_checks = True  # the checks are the must-show's, on the full subset
    stray = sorted(k for k in os.environ if k.startswith("VECTUNE_") and not k.startswith("VECTUNE_LOG_"))
    for k in stray:  # default settings: only --env changes them
        print(f"ignoring {k} from the environment (default settings; use --env to set one)", flush=True)
        del os.environ[k]
    t_start = time.perf_counter()
    d = load_data(args.data)
    name = d["name"] + (f"-{args.tag}" if args.tag else "")
    work = (args.home or common.BENCH / "work" / f"nightly-{name}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.docs or args.test:
        d = subset(d, args.docs or 10**9, args.test or 10**9, args.nights * (args.per_night or 10**6), args.seed,
                   work / "data")
    test = d["test"][:args.test] if args.test else d["test"]
    nights = nights_of(d["train"], args.nights, args.per_night or None, args.seed)
    docs = d.get("docs") or sum(1 for _ in read_jsonl(d["corpus"]))
    print(f"nightly: {name}: {docs} docs, {len(test)} test queries, {args.nights} nights of "
          f"{[len(n) for n in nights]} feedback queries; load {load()}", flush=True)

    # 1. index once (a cached indexed copy is reused unless --reindex)
    base, home = work / "base-home", work / "home"
    index_info = json.loads((base / "index.json").read_text()) if (base / "index.json").exists() else None
    if args.reindex or index_info is None:
        shutil.rmtree(base, ignore_errors=True)
        rc, out, err, secs = common.run_cli(["index", str(d["corpus"]), "--alias", ALIAS, "--with-title",
                                             "--home", str(base)], log_file=work / "index.log")
        if rc != 0:
            sys.exit(f"vectune index failed ({rc}):\n{err[-2000:]}")
        index_info = {"seconds": round(secs, 1), "load": load()}
        (base / "index.json").write_text(json.dumps(index_info))
    print(f"indexed in {index_info['seconds']:.0f} s (load {index_info['load']})", flush=True)
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(base, home)

    # 2. night 0
    rows = [{"night": 0, "status": "indexed", "test": score(home, test), "collections": collections(home),
             "feedback_so_far": 0}]
    print(f"night 0: indexed; test nDCG@10 {rows[0]['test']['means']['ndcg@10']:.3f}", flush=True)
    start = (datetime.now(UTC) - timedelta(days=args.nights + 2)).replace(hour=0, minute=0, second=0, microsecond=0)
    so_far = 0
    plan = [(i + 1, q) for i, q in enumerate(nights)] + [(args.nights + 1, [])]
    for night, queries in plan:
        if queries:
            so_far += log_feedback(home, day_rows(queries, start + timedelta(days=night), args.seed + night))
        n = run_night(home, work, night, args.env)
        n["empty"] = not queries
        n["feedback_so_far"] = so_far
        n["test"] = score(home, test)
        n["collections"] = collections(home)
        n["vs_previous"] = paired(rows[-1]["test"]["per_query"], n["test"]["per_query"])
        n["vs_night0"] = paired(rows[0]["test"]["per_query"], n["test"]["per_query"])
        rows.append(n)
        print(fmt_night(n), flush=True)
        print(f"    {n['status']}: {n.get('reason')}", flush=True)
        if (n.get("watch") or {}).get("reason"):
            print(f"    watch: {n['watch']['reason']}", flush=True)

    empty = rows[-1] if rows[-1].get("empty") else None
    result = {"dataset": d["name"], "tag": args.tag, "date": common.now(), "command": common.command_line(),
              "machine": common.machine(), "docs": docs, "test_queries": len(test), "nights": args.nights,
              "per_night": [len(n) for n in nights], "env": args.env, "quick": args.quick, "index_seconds": index_info["seconds"],
              "index_load": index_info["load"], "minutes": round((time.perf_counter() - t_start) / 60, 1),
              "rows": [{k: v for k, v in r.items() if k != "test"} | {"test": {k: v for k, v in r["test"].items()
                                                                                 if k != "per_query"}}
                       for r in rows]}
    result["checks"] = checks(rows, empty)
    for c in result["checks"]:
        print(f"check: {c['name']}: {'pass' if c['ok'] else 'FAIL'} ({c['detail']})", flush=True)
    out = common.RESULTS_DIR / f"nightly-{name}.json"
    common.write_json(out, result)
    common.update_section(f"nightly-{name}", markdown(result))
    print(f"wrote {out} and the section nightly-{name} of {common.RESULTS_MD}", flush=True)
    if not args.no_checks and not all(c["ok"] for c in result["checks"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
