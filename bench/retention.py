"""Nights of promotions with retention on (and off, to compare): collections, disk, and a rollback to the oldest.

As a cron user lives it, with the real CLI as subprocesses on embedded Qdrant (on disk):

1. ``vectune index`` a corpus (the first ``--docs`` SciFact abstracts, or the bundled pydoc chunks);
2. each night the app writes ``--writes`` new passages through the alias (its own client, the alias's
   passage model), then ``vectune run`` promotes (query side, linear map, permissive gate: every night
   promotes, which is the worst case for space), then ``vectune status --json`` is read;
3. after the last night, ``vectune rollback --to <oldest kept version>`` and a search through the alias.

Recorded per night: the alias's collections (points, disk bytes as Qdrant's storage folder holds them),
the Qdrant folder and model store sizes, what retention deleted, the next promotion's estimate and
headroom; checked: never more than ``--keep`` collections, never the live one or the rollback target
deleted. Writes ``bench/results/retention.json`` and the "Retention" section of ``bench/RESULTS.md``.

    python bench/retention.py --nights 8 --keep 3 --compare-off --update-results
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BENCH,
    RESULTS_DIR,
    command_line,
    machine,
    machine_line,
    now,
    parse_json_report,
    run_cli,
    update_section,
    write_json,
)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def corpus(args, out: Path) -> Path:
    rows = []
    data = Path(args.data) if args.data else None
    found = [p for p in (data / "corpus.jsonl", data / "corpus.jsonl.gz") if p.exists()] if data else []
    if found:
        import gzip

        with (gzip.open(found[0], "rt") if found[0].suffix == ".gz" else open(found[0])) as f:
            for line in f:
                r = json.loads(line)
                rows.append({"doc_id": r["_id"], "text": f"{r.get('title', '')}. {r['text']}".strip(". ")})
                if len(rows) >= args.docs:
                    break
    else:
        from vectune.demo.corpus import demo_chunks

        rows = [{"doc_id": f"pydoc-{i}", "text": c["text"]} for i, c in enumerate(demo_chunks()[: args.docs])]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def app_writes(home: Path, night: int, n: int) -> None:
    """The app's day: ``n`` new passages through the alias, encoded with the alias's passage model."""
    from qdrant_client import QdrantClient, models

    from vectune import resolve
    from vectune.config.settings import load_settings

    os.environ["VECTUNE_HOME"] = str(home)
    client = QdrantClient(path=str(home / "qdrant"))
    try:
        enc = resolve(client, "bench", load_settings()).encoder  # its passage side writes like the collection's
        texts = [f"Night {night}, note {i}: what the app learned today about topic {night * n + i}." for i in range(n)]
        vecs = enc.encode_passages(texts)
        client.upsert("bench", [models.PointStruct(id=10_000_000 + night * 1000 + i, vector=v.tolist(),
                                                   payload={"text": t, "doc_id": f"night-{night}-{i}"})
                                for i, (t, v) in enumerate(zip(texts, vecs))])
    finally:
        client.close()


def nights(args, home: Path, policy: str, log_dir: Path) -> dict:
    env = {"VECTUNE_HOME": str(home), "VECTUNE_MODE": "query", "VECTUNE_QUERY_CANDIDATES": "linear",
           "VECTUNE_KEEP_VERSIONS": str(args.keep), "VECTUNE_RETENTION": policy, "VECTUNE_LOG_LEVEL": "WARNING",
           # a cheap cycle: this measures what the nights leave behind, not what they learn
           "VECTUNE_LINEAR_EPOCHS": "5", "VECTUNE_LINEAR_IDENTITY_WEIGHT": "0.1", "VECTUNE_HARD_NEGATIVES": "0",
           "VECTUNE_MAX_TRAIN_CHUNKS": "200", "VECTUNE_QUERIES_PER_CHUNK": "1"}
    os.environ.update(env)
    out = {"policy": policy, "nights": [], "violations": []}
    promoted: list[str] = []
    for night in range(args.nights):
        app_writes(home, night, args.writes)
        rc, stdout, stderr, secs = run_cli(["run", "--alias", "bench", "--json", "--allow-synthetic-gate",
                                            "--min-delta", "-1", "--no-bootstrap"], log_dir / f"{policy}-run-{night}.log")
        rep = parse_json_report(stdout) or {}
        if rc != 0 or rep.get("status") != "promoted":
            raise SystemExit(f"night {night}: vectune run exited {rc} ({rep.get('status')}): {stderr[-2000:]}")
        promoted.append(rep["new_collection"])
        rc, stdout, _, _ = run_cli(["status", "--alias", "bench", "--json"])
        st = json.loads(stdout)
        names = [v["collection"] for v in st["versions"]]
        if policy != "off" and len(names) > args.keep:
            out["violations"].append(f"night {night}: {len(names)} collections")
        for must in (st["live_collection"], st["rollback_target"]):
            if must and must not in names:
                out["violations"].append(f"night {night}: {must} deleted")
        ret = rep.get("retention") or {}
        out["nights"].append({
            "night": night, "run_s": round(secs, 1), "collections": len(names),
            "versions": [{"collection": v["collection"], "points": v["points"], "disk_bytes": v.get("disk_bytes"),
                          "live": v["live"]} for v in st["versions"]],
            "deleted": ret.get("deleted") or [], "models_deleted": ret.get("models_deleted") or [],
            "qdrant_bytes": folder_bytes(home / "qdrant"), "models_bytes": folder_bytes(home / "models"),
            "next_promotion": (st.get("retention") or {}).get("next_promotion")})
        print(f"[{policy}] night {night}: {len(names)} collections, qdrant {out['nights'][-1]['qdrant_bytes'] / 1e6:.1f}"
              f" MB, models {out['nights'][-1]['models_bytes'] / 1e6:.1f} MB, run {secs:.0f} s, deleted "
              f"{ret.get('deleted')}", flush=True)
    if policy != "off":
        kept = [v["collection"] for v in out["nights"][-1]["versions"]]
        oldest = [c for c in promoted if c in kept][0]
        rc, stdout, stderr, secs = run_cli(["rollback", "--alias", "bench", "--to", oldest],
                                           log_dir / f"{policy}-rollback.log")
        from vectune import Alias

        hits = Alias("bench").search("what did the app learn", limit=3) if rc == 0 else []
        out["rollback_to_oldest"] = {"to": oldest, "rc": rc, "seconds": round(secs, 1), "search_hits": len(hits),
                                     "output": stdout.strip()[-300:]}
        print(f"[{policy}] rollback to the oldest kept version {oldest}: rc {rc}, {len(hits)} hits", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/scifact", help="BEIR folder (else the bundled pydoc chunks)")
    ap.add_argument("--docs", type=int, default=600)
    ap.add_argument("--nights", type=int, default=8)
    ap.add_argument("--keep", type=int, default=3)
    ap.add_argument("--writes", type=int, default=20, help="passages the app writes each day")
    ap.add_argument("--compare-off", action="store_true", help="also run the same nights with VECTUNE_RETENTION=off")
    ap.add_argument("--work", default=str(BENCH / "work" / "retention"))
    ap.add_argument("--reuse-index", action="store_true", help="keep the indexed home of an earlier run of this script")
    ap.add_argument("--update-results", action="store_true")
    ap.add_argument("--rewrite-section", action="store_true", help="only rewrite the RESULTS.md section from the JSON")
    args = ap.parse_args()
    if args.rewrite_section:
        update_section("retention", section(json.loads((RESULTS_DIR / "retention.json").read_text())))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.work)
    seed_home = work / "home-indexed"
    reuse = args.reuse_index and (seed_home / "qdrant").exists()
    for p in work.iterdir() if work.exists() else ():
        if not (reuse and p.name in ("home-indexed", "corpus.jsonl", "logs")):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    work.mkdir(parents=True, exist_ok=True)
    m = machine()
    t0 = time.time()
    os.environ["VECTUNE_HOME"] = str(seed_home)
    index_s = None
    if not reuse:
        rc, _, stderr, index_s = run_cli(["index", corpus(args, work / "corpus.jsonl"), "--alias", "bench"],
                                         work / "logs" / "index.log")
        if rc != 0:
            raise SystemExit(f"index failed: {stderr[-2000:]}")
        index_s = round(index_s, 1)
    results = {"machine": m, "command": command_line(), "when": now(), "docs": args.docs, "nights": args.nights,
               "keep_versions": args.keep, "writes_per_night": args.writes, "index_s": index_s, "runs": {}}
    for policy in ("on", "off") if args.compare_off else ("on",):
        home = work / f"home-{policy}"
        shutil.copytree(seed_home, home)
        results["runs"][policy] = nights(args, home, policy, work / "logs")
    results["total_s"] = round(time.time() - t0, 1)
    results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(RESULTS_DIR / "retention.json", results)
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=2))
    if args.update_results:
        update_section("retention", section(results))
    on = results["runs"]["on"]
    if on["violations"] or (on.get("rollback_to_oldest") or {}).get("rc"):
        sys.exit(1)


def section(r: dict) -> str:
    on = r["runs"]["on"]
    off = r["runs"].get("off")
    lines = [f"## Retention: {r['nights']} nightly promotions, keep_versions={r['keep_versions']}", "",
             f"`{r['command']}` ({r['when']}; {machine_line(r['machine'])}; load {r['machine'].get('loadavg_at_start')}"
             f" at start, {r['loadavg_at_end']} at the end). {r['docs']} abstracts indexed, the app "
             f"writes {r['writes_per_night']} passages a day through the alias, every night `vectune run` promotes "
             "(query side, a cheap linear map, permissive gate: the worst case for space), embedded Qdrant on disk.",
             "",
             "| night | collections (on) | Qdrant MB (on) | models MB (on) | deleted by retention | "
             + ("collections (off) | Qdrant MB (off) | models MB (off) |" if off else ""),
             "|---|---|---|---|---|" + ("---|---|---|" if off else "")]
    for i, n in enumerate(on["nights"]):
        row = (f"| {n['night']} | {n['collections']} | {n['qdrant_bytes'] / 1e6:.1f} | {n['models_bytes'] / 1e6:.1f} | "
               f"{', '.join(c.split('--')[-1] for c in n['deleted']) or '-'} |")
        if off:
            o = off["nights"][i]
            row += f" {o['collections']} | {o['qdrant_bytes'] / 1e6:.1f} | {o['models_bytes'] / 1e6:.1f} |"
        lines.append(row)
    rb = on.get("rollback_to_oldest") or {}
    nxt = on["nights"][-1].get("next_promotion") or {}
    lines += ["", f"- Never more than {r['keep_versions']} collections, never the live one or the rollback target "
              f"deleted: {'yes' if not on['violations'] else 'NO: ' + '; '.join(on['violations'])}.",
              f"- Rollback to the oldest kept version `{rb.get('to')}`: exit {rb.get('rc')} in {rb.get('seconds')} s, "
              f"{rb.get('search_hits')} hits through the alias with its query model.",
              f"- The next promotion's estimate after the last night: {(nxt.get('needs_bytes') or 0) / 1e6:.1f} MB "
              f"({nxt.get('how')}); headroom {(nxt.get('headroom_bytes') or 0) / 1e9:.1f} GB "
              f"({nxt.get('headroom_from')}).",
              f"- Mean `vectune run` per night: {sum(n['run_s'] for n in on['nights']) / len(on['nights']):.0f} s "
              f"(retention on)."]
    late = [n["models_bytes"] for n in on["nights"][r["keep_versions"]:]]
    if len(late) > 1:
        lines.append(f"- With retention on, the model store still grows {(late[-1] - late[0]) / (len(late) - 1) / 1e6:.1f}"
                     " MB a night once it holds its 3 models: each linear-map promotion on top of a linear-map one "
                     "adds another Dense layer to the query route (`query_<n>_Dense`, 0.6 MB each) instead of folding "
                     "them into one — a matter for the query-side trainer, not for retention.")
    if off:
        lines.append(f"- With `VECTUNE_RETENTION=off` (the behaviour before): {off['nights'][-1]['collections']} "
                     f"collections and {off['nights'][-1]['qdrant_bytes'] / 1e6:.1f} MB of Qdrant storage after "
                     f"{r['nights']} nights, growing every night; with retention on, "
                     f"{on['nights'][-1]['collections']} and {on['nights'][-1]['qdrant_bytes'] / 1e6:.1f} MB.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
