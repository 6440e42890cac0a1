#!/usr/bin/env python
"""Standalone measurement of the query-side learner (vectune.pipeline.train.query) on a BEIR dataset.

    python bench/query_side.py --data ../shared/data/scifact
    python bench/query_side.py --data ../shared/data/scifact --which encoder --epochs 12 --no-refit

Protocol C, without the cycle around it: a seeded half of the train queries trains (the same split
as ``bench/quality.py``: ``split_train(train, seed)``), the other half is the golden set (only
reported here, never trained or selected on), the test queries are scored. The passages are
encoded once with the live model (``title. text``, as ``vectune index --with-title`` stores them)
and cached in ``bench/work/`` as the "stored vectors"; training never encodes a passage.

For each candidate (linear map; query encoder) it reports test nDCG@10 live vs candidate with a
paired-bootstrap 95% CI (2000 resamples, seed 0, as bench/quality.py), the golden half's nDCG@10
and recall@5, the epoch chosen on the training slice, and training examples/s and wall time.
It also packages each candidate with ``build_asymmetric_model``, saves and reloads it, and
checks that the reloaded ``encode_query`` scores the same and ``encode_document`` equals the
live passage encoding.

Writes ``bench/results/query-side-<dataset>.json`` and, with ``--update-results``, a section of
``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import numpy as np  # noqa: E402

import common  # noqa: E402
from quality import delta_ci, load_beir, metrics_per_query, read_jsonl, split_train  # noqa: E402


def corpus_texts(beir: dict) -> tuple[list[str], list[str]]:
    """Keys and passage texts, ``title. text`` as ``vectune index --with-title`` stores them."""
    keys, texts = [], []
    for r in read_jsonl(beir["corpus"]):
        text = r.get("text") or ""
        if isinstance(r.get("title"), str) and r["title"].strip():
            text = f"{r['title'].strip()}. {text}"
        keys.append(str(r["_id"]))
        texts.append(text)
    return keys, texts


def stored_vectors(name: str, keys: list[str], texts: list[str], encoder, work: Path) -> tuple[np.ndarray, float]:
    """The passages' live-model vectors, encoded once and cached in ``work``."""
    vec_p, key_p = work / f"{name}-minilm-corpus.npy", work / f"{name}-minilm-keys.json"
    if vec_p.is_file() and key_p.is_file() and json.loads(key_p.read_text()) == keys:
        return np.load(vec_p), 0.0
    t0 = time.perf_counter()
    vecs = encoder.encode_passages(texts)
    secs = time.perf_counter() - t0
    work.mkdir(parents=True, exist_ok=True)
    np.save(vec_p, vecs)
    key_p.write_text(json.dumps(keys))
    return vecs, secs


def rank_keys(qv: np.ndarray, corpus: np.ndarray, keys: list[str]) -> list[list[str]]:
    from vectune.pipeline.evaluate import rank

    return [[keys[j] for j in row] for row in rank(np.asarray(qv, np.float32), corpus, 10)]


def scores(qv: np.ndarray, corpus: np.ndarray, keys: list[str], qids: list[str], qrels: dict) -> dict:
    per = metrics_per_query(rank_keys(qv, corpus, keys), [qrels[q] for q in qids])
    return {"means": {m: round(float(v.mean()), 4) for m, v in per.items()},
            "per_query": {m: v.tolist() for m, v in per.items()}}


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="BEIR folder (corpus.jsonl[.gz], queries.jsonl, qrels/)")
    ap.add_argument("--seed", type=int, default=42, help="train/golden split seed (as bench/quality.py) and training seed")
    ap.add_argument("--which", default="linear,encoder", help="comma list of candidates: linear, encoder")
    ap.add_argument("--epochs", type=float, default=None, help="query encoder epoch budget (default: QueryConfig, the product's)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--val-fraction", type=float, default=None)
    ap.add_argument("--multi-positive", default=None, choices=["each", "any"])
    ap.add_argument("--no-refit", action="store_true", help="keep the selected checkpoint; no refit on all queries")
    ap.add_argument("--linear-epochs", type=int, default=None)
    ap.add_argument("--linear-lr", type=float, default=None)
    ap.add_argument("--identity-weight", type=float, default=None)
    ap.add_argument("--time-budget", type=float, default=None, help="seconds per candidate")
    ap.add_argument("--no-package", action="store_true", help="skip the save/load check of the packaged models")
    ap.add_argument("--freeze-embeddings", default=None, choices=["yes", "no"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads while training (0 = auto)")
    ap.add_argument("--refit-check", action="store_true",
                    help="with --slice-only: hold out a seeded 20%% of the TRAINING queries as an outer check and "
                         "score the learner with and without --refit on it (test and golden untouched)")
    ap.add_argument("--slice-only", action="store_true",
                    help="tuning mode: train and print the training-slice curves only; test and golden are not scored")
    ap.add_argument("--tag", default="", help="suffix of the result file and RESULTS.md section")
    ap.add_argument("--update-results", action="store_true", help="write the bench/RESULTS.md section")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("vectune.pipeline.train.query").setLevel(logging.INFO)

    from vectune.config.sections import QueryConfig
    from vectune.config.settings import BUNDLED_MODEL, Settings
    from vectune.models.store import ModelStore
    from vectune.pipeline.train.query import apply_linear, build_asymmetric_model, train_linear_map, train_query_encoder

    t_all = time.perf_counter()
    beir = load_beir(args.data)
    golden_ids, train_ids = split_train(beir["train"], args.seed)
    test_ids = sorted(beir["test"])
    queries = beir["queries"]
    live = ModelStore.from_settings(Settings()).load(BUNDLED_MODEL)
    keys, texts = corpus_texts(beir)
    corpus, enc_secs = stored_vectors(args.data.resolve().name, keys, texts, live, BENCH / "work")
    print(f"corpus {corpus.shape}, train {len(train_ids)}, golden {len(golden_ids)}, test {len(test_ids)}; "
          f"load {load_avg()}", flush=True)

    cfg = QueryConfig()  # the product's defaults (config.sections); flags override
    for name, val in (("epochs", args.epochs), ("learning_rate", args.lr), ("batch_size", args.batch_size),
                      ("val_fraction", args.val_fraction), ("multi_positive", args.multi_positive),
                      ("linear_epochs", args.linear_epochs), ("linear_learning_rate", args.linear_lr),
                      ("identity_weight", args.identity_weight), ("time_budget_s", args.time_budget),
                      ("threads", args.threads)):
        if val is not None:
            setattr(cfg, name, val)
    if args.no_refit:
        cfg.refit = False
    if args.freeze_embeddings:
        cfg.freeze_embeddings = args.freeze_embeddings == "yes"
    if args.slice_only:
        return slice_only(args, cfg, live, corpus, keys, [queries[q] for q in train_ids],
                          [sorted(beir["train"][q]) for q in train_ids])

    train_q = [queries[q] for q in train_ids]
    train_pos = [sorted(beir["train"][q]) for q in train_ids]
    live_test = live.encode_queries([queries[q] for q in test_ids])
    live_gold = live.encode_queries([queries[q] for q in golden_ids])
    base = {"test": scores(live_test, corpus, keys, test_ids, beir["test"]),
            "golden": scores(live_gold, corpus, keys, golden_ids, beir["train"])}
    print(f"live: test nDCG@10 {base['test']['means']['ndcg@10']}, golden {base['golden']['means']['ndcg@10']}",
          flush=True)

    out = {"dataset": args.data.resolve().name, "protocol": "C (seeded half of train queries trains, other half "
           "golden: reported only; test scored)", "seed": args.seed, "train_queries": len(train_ids),
           "golden_queries": len(golden_ids), "test_queries": len(test_ids), "corpus": int(corpus.shape[0]),
           "corpus_encode_s": round(enc_secs, 1), "config": cfg.model_dump(),
           "live": {k: v["means"] for k, v in base.items()}, "candidates": {}, "machine": common.machine()}
    which = [w.strip() for w in args.which.split(",") if w.strip()]
    for kind in which:
        load0 = load_avg()
        t0 = time.perf_counter()
        if kind == "linear":
            qv = live.encode_queries(train_q)
            w, stats = train_linear_map(qv, train_pos, corpus, keys, cfg=cfg, seed=args.seed)
            wall = time.perf_counter() - t0
            cand_test = apply_linear(w, live_test)
            cand_gold = apply_linear(w, live_gold)
            asym = build_asymmetric_model(live.model, linear=w)
        elif kind == "encoder":
            model, stats = train_query_encoder(live.model, train_q, train_pos, corpus, keys, cfg=cfg, seed=args.seed,
                                               query_prompt=live.query_prompt)
            wall = time.perf_counter() - t0
            kw = {"convert_to_numpy": True, "normalize_embeddings": True, "show_progress_bar": False}
            cand_test = model.encode([live.query_prompt + queries[q] for q in test_ids], **kw)
            cand_gold = model.encode([live.query_prompt + queries[q] for q in golden_ids], **kw)
            asym = build_asymmetric_model(live.model, tuned_query_model=model)
        else:
            sys.exit(f"unknown candidate {kind!r}")
        res = {"test": scores(cand_test, corpus, keys, test_ids, beir["test"]),
               "golden": scores(cand_gold, corpus, keys, golden_ids, beir["train"])}
        entry = {"stats": stats.to_dict(), "wall_s": round(wall, 1), "load_before": load0, "load_after": load_avg(),
                 "test": res["test"]["means"], "golden": res["golden"]["means"],
                 "test_delta": delta_ci(base["test"], res["test"], "ndcg@10"),
                 "golden_delta": delta_ci(base["golden"], res["golden"], "ndcg@10"),
                 "golden_delta_recall@5": delta_ci(base["golden"], res["golden"], "recall@5"),
                 "test_delta_by_doc_overlap": overlap_split(base["test"], res["test"], test_ids, beir["test"],
                                                            train_pos)}
        if not args.no_package:
            entry["package"] = package_check(asym, live, cand_test, test_ids, queries, corpus, texts)
        out["candidates"][kind] = entry
        d = entry["test_delta"]
        print(f"{kind}: test nDCG@10 {entry['test']['ndcg@10']} Δ {d['delta'] * 100:+.1f} "
              f"[{d['ci95_low'] * 100:+.1f}, {d['ci95_high'] * 100:+.1f}]; golden Δ "
              f"{entry['golden_delta']['delta'] * 100:+.1f}; chosen epoch {stats.chosen_epoch}, refit {stats.refit}; "
              f"{stats.examples_per_s:.1f} ex/s, {wall:.0f} s; load {load0} -> {entry['load_after']}", flush=True)
        print("   slice curve", stats.to_dict()["val_curve"], "loss", stats.to_dict()["epoch_loss"], flush=True)
    out["tag"] = args.tag
    out["minutes"] = round((time.perf_counter() - t_all) / 60, 2)
    out["date"], out["command"] = common.now(), common.command_line()
    name = f"query-side-{out['dataset']}{('-' + args.tag) if args.tag else ''}"
    common.write_json(BENCH / "results" / f"{name}.json", out)
    if args.update_results:
        common.update_section(name, markdown(out))
    print(json.dumps({k: {"test_delta": v["test_delta"], "stats": v["stats"]} for k, v in out["candidates"].items()},
                     indent=1))


def overlap_split(base: dict, cand: dict, qids: list[str], qrels: dict, train_pos: list[list[str]]) -> dict:
    """The test delta split by whether a query's relevant documents were ever a training positive.

    On SciFact many test queries cite a document some training query also cites; a query-side model
    can learn which documents get asked about. This shows how much of the gain is on unseen documents.
    """
    seen_docs = {d for pos in train_pos for d in pos}
    out = {}
    for name, keep in (("seen", lambda q: bool(qrels[q] & seen_docs)), ("unseen", lambda q: not qrels[q] & seen_docs)):
        idx = [i for i, q in enumerate(qids) if keep(q)]
        sub = lambda r: {"per_query": {m: [r["per_query"][m][i] for i in idx] for m in r["per_query"]}}  # noqa: E731
        out[name] = delta_ci(sub(base), sub(cand), "ndcg@10") if idx else None
    return out


def slice_only(args, cfg, live, corpus, keys, train_q, train_pos) -> None:
    """Tuning on the training half only: print each candidate's slice curve, never a test or golden score."""
    from vectune.pipeline.train.query import train_linear_map, train_query_encoder

    if args.refit_check:
        return refit_check(args, cfg, live, corpus, keys, train_q, train_pos)
    for kind in [w.strip() for w in args.which.split(",") if w.strip()]:
        load0, t0 = load_avg(), time.perf_counter()
        if kind == "linear":
            _, stats = train_linear_map(live.encode_queries(train_q), train_pos, corpus, keys, cfg=cfg, seed=args.seed)
        else:
            _, stats = train_query_encoder(live.model, train_q, train_pos, corpus, keys, cfg=cfg, seed=args.seed,
                                           query_prompt=live.query_prompt)
        d = stats.to_dict()
        print(json.dumps({"kind": kind, "config": cfg.model_dump(), "wall_s":
                          round(time.perf_counter() - t0, 1), "load": load0, "chosen_epoch": d["chosen_epoch"],
                          "val_live": d["val_live"], "val_best": d["val_best"], "threads": d["threads"],
                          "examples_per_s": d["examples_per_s"], "curve": d["val_curve"], "loss": d["epoch_loss"],
                          "new_docs": d["val_new_docs"], "curve_new_docs": d["val_curve_new_docs"]}),
              flush=True)


def refit_check(args, cfg, live, corpus, keys, train_q, train_pos) -> None:
    """Does the refit on all training queries help? Answered on training data only: an outer 20% of the
    training half is held out, the learner runs on the rest with and without refit, the outer part is scored."""

    from vectune.pipeline.train.query import apply_linear, train_linear_map, train_query_encoder

    order = np.random.default_rng(args.seed + 1).permutation(len(train_q))
    outer, inner = order[: len(order) // 5], order[len(order) // 5:]
    in_q, in_pos = [train_q[i] for i in inner], [train_pos[i] for i in inner]
    out_q = [train_q[i] for i in outer]
    rel = {str(i): set(train_pos[i]) for i in outer}
    live_out = live.encode_queries(out_q)
    base = scores(live_out, corpus, keys, [str(i) for i in outer], rel)
    for kind in [w.strip() for w in args.which.split(",") if w.strip()]:
        for refit in (False, True):
            c = cfg.model_copy(deep=True)
            c.refit = refit
            t0 = time.perf_counter()
            if kind == "linear":
                w, stats = train_linear_map(live.encode_queries(in_q), in_pos, corpus, keys, cfg=c, seed=args.seed)
                vecs = apply_linear(w, live_out)
            else:
                model, stats = train_query_encoder(live.model, in_q, in_pos, corpus, keys, cfg=c, seed=args.seed,
                                                   query_prompt=live.query_prompt)
                vecs = model.encode([live.query_prompt + q for q in out_q], convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
            res = scores(vecs, corpus, keys, [str(i) for i in outer], rel)
            d = delta_ci(base, res, "ndcg@10")
            print(json.dumps({"refit_check": kind, "refit": refit, "refit_done": stats.refit,
                              "chosen_epoch": stats.chosen_epoch, "outer_queries": len(outer),
                              "outer_live": base["means"]["ndcg@10"], "outer_cand": res["means"]["ndcg@10"],
                              "delta": d, "wall_s": round(time.perf_counter() - t0, 1), "load": load_avg()}),
                  flush=True)


def package_check(asym, live, cand_test: np.ndarray, test_ids, queries, corpus, texts) -> dict:
    """Save the packaged model, load it back, and compare both routes (64 passages for the document route)."""
    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as d:
        asym.save(d, safe_serialization=True)
        size = sum(p.stat().st_size for p in Path(d).rglob("*") if p.is_file())
        back = SentenceTransformer(d, trust_remote_code=False, model_kwargs={"use_safetensors": True})
    back.max_seq_length = live.model.max_seq_length
    sample = [int(i) for i in np.linspace(0, len(texts) - 1, 64)]
    kw = {"convert_to_numpy": True, "normalize_embeddings": True, "show_progress_bar": False, "batch_size": 64}
    q = back.encode_query([live.query_prompt + queries[t] for t in test_ids], prompt="", **kw)
    doc_back = back.encode_document([texts[i] for i in sample], prompt="", **kw)
    return {"saved_mb": round(size / 2**20, 1),
            "query_route_max_abs_diff": float(np.abs(q - cand_test).max()),
            "document_route_vs_stored_max_abs_diff": float(np.abs(doc_back - corpus[sample]).max()),
            "documents_checked": len(sample)}


def identity(s: dict) -> str:
    return f", identity pull {s['identity_weight']}" if s.get("identity_weight") is not None else ""


def markdown(r: dict) -> str:
    lv = r["live"]["test"]["ndcg@10"]
    tag = f" ({r['tag']})" if r.get("tag") else ""
    lines = [f"## Query-side learner (standalone): {r['dataset']}{tag}", "",
             f"Protocol C without the cycle: {r['train_queries']} train-half queries train, "
             f"{r['golden_queries']} golden-half queries are only reported, {r['test_queries']} test queries scored; "
             f"{r['corpus']} stored passage vectors (live MiniLM), never re-encoded. `{r['command']}`", "",
             "| candidate | test nDCG@10 | Δ test (95% paired-bootstrap CI) | Δ test, unseen docs | Δ golden | "
             "chosen epoch (slice) | train ex/s | train s | load avg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|",
             f"| live | {lv:.4f} | – | – | – | – | – | – | – |"]
    for kind, c in r["candidates"].items():
        d, g, s = c["test_delta"], c["golden_delta"], c["stats"]
        u = c["test_delta_by_doc_overlap"]["unseen"]
        lines.append(f"| {kind} | {c['test']['ndcg@10']:.4f} | **{d['delta'] * 100:+.1f}** "
                     f"[{d['ci95_low'] * 100:+.1f}, {d['ci95_high'] * 100:+.1f}] | {u['delta'] * 100:+.1f} "
                     f"[{u['ci95_low'] * 100:+.1f}, {u['ci95_high'] * 100:+.1f}] ({u['queries']} q) | "
                     f"{g['delta'] * 100:+.1f} "
                     f"[{g['ci95_low'] * 100:+.1f}, {g['ci95_high'] * 100:+.1f}] | {s['chosen_epoch']}"
                     f"{' + refit' if s['refit'] else ''}{identity(s)} | {s['examples_per_s']:.1f} | {s['seconds']:.0f} | "
                     f"{c['load_before']} |")
    lines += ["", f"- machine: {common.machine_line(r['machine'])}; date {r['date']}; total {r['minutes']} min"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
