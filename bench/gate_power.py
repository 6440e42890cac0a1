#!/usr/bin/env python
"""Gate power. Two studies:

* ``--study crossfit`` (the default): the 30% holdout against cross-fitting at 60/120/240/400 labeled queries,
  every candidate trained per draw — see ``bench/gate_power_crossfit.py``;
* ``--study metric``: which gate metric and paired test see a real gain with the fewest golden queries, without
  ever passing a loser (below).

    python bench/gate_power.py --data ../shared/data/scifact --update-results                 # cross-fitting
    python bench/gate_power.py --data ../shared/data/scifact --study metric --update-results  # metric and test

Protocol C's split (``bench/quality.py``'s ``split_train``): a seeded half of the train queries
trains, the other half is the golden pool, the test queries are never seen. The passages are
encoded once with the live model and cached in ``bench/work/`` (the same cache as
``bench/query_side.py``); every candidate is a query-side one, scored against those stored vectors.

1. **Candidates**, each trained once; their per-query recall@5 / nDCG@10 / MRR@10 on the golden
   pool and on the test queries are cached in ``bench/work/`` (a rerun only re-analyses):

   * ``encoder`` — the query encoder, ``QuerySideConfig()`` defaults (the product's candidate);
   * ``encoder-1ep`` — the same, one epoch, no selection (a smaller gain);
   * ``linear`` — the linear map, defaults;
   * ``pseudo`` — the query encoder trained on offline pseudo-queries (TF-IDF keyphrases) instead of labels;
   * ``full-offline`` — protocol B's full-mode candidate (both towers, offline pairs, corpus re-encoded);
   * ``encoder-lr2e-4`` — the query encoder with a 10x learning rate, 4 epochs, no checkpoint selection;
   * ``overtrained`` — the same with a 100x learning rate;
   * ``noisy-labels`` — the query encoder with half of the training positives replaced by random passages;
   * ``linear-mirrored`` — the linear map pushed the other way (``2I - W``);
   * ``noise`` — the live query vectors plus Gaussian noise;
   * ``live`` — the live model itself (a null: every per-query delta is 0).

   **Truth** is each candidate's nDCG@10 delta on the test queries with its 95% paired-bootstrap CI
   (2000 resamples, as ``bench/quality.py``): *winner* when the CI's low end is above 0, *loser*
   when its high end is below 0 or the mean is at most 0, else *unclear* (left out of both rates).

2. **Power and safety by golden-set size**: for each n, ``--draws`` seeded subsamples of the golden
   pool (without replacement; the same subsamples for every candidate), and for each metric × test
   whether the gate would promote:

   * ``boot95`` — vectune's gate today: the 95% paired-bootstrap CI's low end above 0 (1000
     resamples, seed 0 — the very index matrix ``vectune.pipeline.gate.paired_bootstrap`` draws), i.e. a
     one-sided test at 2.5%;
   * ``t`` — paired t-test; ``perm`` — paired randomization (sign-flip) test, 1000 seeded flips
     (``vectune.pipeline.gate.paired_permutation``'s);
     ``wilcoxon`` — Wilcoxon signed-rank on the per-query deltas (``zero_method="wilcox"``:
     unchanged queries dropped); ``sign`` — sign test (wins vs losses, ties dropped); all one-sided
     at 2.5%, the level of today's gate;
   * at 5% (the level the issue named): ``boot90`` (``confidence=0.90``), ``wilcoxon@5%``,
     ``wilcoxon-pratt@5%`` (``zero_method="pratt"``: unchanged queries ranked, then dropped), ``sign@5%``;
   * the row ``ndcg@10 & r5≥0``: the nDCG@10 test, and the golden mean recall@5 must not fall.

   Every test also requires mean delta ≥ ``min_delta``, as ``vectune.pipeline.gate.decide`` does.
   Detection rate = share of draws promoting a winner; false-pass rate = share promoting a loser.

3. **Golden queries needed** for 80% detection of a gain of +2 / +4 nDCG@10 points: the winning
   encoder's golden per-query deltas, *thinned* to the target (each query keeps the candidate's
   result with probability target/mean, else the live one — a candidate that changes fewer
   queries), drawn with replacement from the pool for n up to ``max(--need-sizes)``.

Writes ``bench/results/gate-power-<dataset>.json`` (and every candidate's per-query scores in
``gate-power-<dataset>-per-query.json``), prints the tables, and with ``--update-results`` writes the
"Gate power" section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import numpy as np  # noqa: E402

import common  # noqa: E402
from quality import load_beir, read_jsonl, split_train  # noqa: E402

GATE_METRICS = ("recall@5", "ndcg@10", "mrr@10")
#: a gate on nDCG@10 that also refuses a candidate whose mean recall@5 falls on the golden set
GUARDED = "ndcg@10 & r5≥0"
GATE_ROWS = GATE_METRICS + (GUARDED,)
#: test -> (family, one-sided level). boot95 is vectune's gate today: a 95% two-sided CI above 0 is a
#: one-sided test at 2.5%; every family is run at that level, and the ones the brief names at 5% too.
TESTS = {"boot95": ("boot", 0.025), "t": ("t", 0.025), "perm": ("perm", 0.025), "wilcoxon": ("wilcoxon", 0.025),
         "sign": ("sign", 0.025), "boot90": ("boot", 0.05), "wilcoxon@5%": ("wilcoxon", 0.05),
         "wilcoxon-pratt@5%": ("wilcoxon-pratt", 0.05), "sign@5%": ("sign", 0.05)}
PERM_SAMPLES = 1000  # as vectune.pipeline.gate.paired_permutation with the default bootstrap_samples
#: the default this study led to (settings: gate_metric="ndcg@10", gate_test="permutation"); the
#: markdown reports how it fares. Why not the row with the fewest queries: see bench/RESULTS.md "Gate power".
RECOMMENDED = ("ndcg@10", "perm")
#: the (metric, test) rows the markdown shows (the JSON has every one)
MD_ROWS = ([("recall@5", t) for t in ("boot95", "t", "perm", "wilcoxon", "sign")]
           + [("ndcg@10", t) for t in TESTS]
           + [(m, t) for m in ("mrr@10", GUARDED) for t in ("boot95", "perm")])
SIZES = (20, 40, 72, 100, 150, 200)
NEED_SIZES = (20, 40, 72, 100, 150, 200, 300, 400, 600, 800, 1200, 1600, 2400)
TARGETS = (0.02, 0.04)
CANDIDATES = ("live", "noise", "linear", "linear-mirrored", "encoder-1ep", "encoder", "encoder-lr2e-4",
              "overtrained", "noisy-labels", "pseudo", "full-offline")
BOOT_SAMPLES = 1000  # vectune's default bootstrap_samples
TRUTH_SAMPLES = 2000  # bench/quality.py's delta_ci


# ----------------------------------------------------------------------------- data and candidates
from query_side import corpus_texts  # noqa: E402 - bench/query_side.py: passages as `index --with-title` stores them


def stored_vectors(name: str, keys: list[str], texts: list[str], live, work: Path) -> np.ndarray:
    """The passages' live-model vectors, encoded once and cached (shared with bench/query_side.py)."""
    vec_p, key_p = work / f"{name}-minilm-corpus.npy", work / f"{name}-minilm-keys.json"
    if vec_p.is_file() and key_p.is_file() and json.loads(key_p.read_text()) == keys:
        return np.load(vec_p)
    print(f"encoding {len(texts)} passages once (cached in {work})", flush=True)
    vecs = live.encode_passages(texts)
    work.mkdir(parents=True, exist_ok=True)
    np.save(vec_p, vecs)
    key_p.write_text(json.dumps(keys))
    return vecs


class Context:
    """What every candidate trains and is scored on."""

    def __init__(self, args, beir: dict, live, corpus: np.ndarray, keys: list[str], texts: list[str]):
        self.args, self.beir, self.live, self.corpus, self.keys, self.texts = args, beir, live, corpus, keys, texts
        self.golden_ids, self.train_ids = split_train(beir["train"], args.seed)
        self.test_ids = sorted(beir["test"])
        q = beir["queries"]
        self.train_q = [q[i] for i in self.train_ids]
        self.train_pos = [sorted(beir["train"][i]) for i in self.train_ids]
        self.golden_q = [q[i] for i in self.golden_ids]
        self.test_q = [q[i] for i in self.test_ids]
        self._live_vecs: dict[str, np.ndarray] = {}

    def live_vecs(self, which: str) -> np.ndarray:
        if which not in self._live_vecs:
            self._live_vecs[which] = self.live.encode_queries(
                {"golden": self.golden_q, "test": self.test_q, "train": self.train_q}[which])
        return self._live_vecs[which]

    def encode_with(self, model) -> tuple[np.ndarray, np.ndarray]:
        kw = {"convert_to_numpy": True, "normalize_embeddings": True, "show_progress_bar": False, "batch_size": 64}
        p = self.live.query_prompt
        return (np.asarray(model.encode([p + t for t in self.golden_q], **kw), np.float32),
                np.asarray(model.encode([p + t for t in self.test_q], **kw), np.float32))


def _cfg(ctx: Context, **over):
    from vectune.config.sections import QueryConfig

    return QueryConfig(**over)  # the product's defaults (vectune.config.sections), with overrides


def _encoder(ctx: Context, queries=None, positives=None, **over):
    from vectune.pipeline.train.query import train_query_encoder

    model, stats = train_query_encoder(ctx.live.model, queries or ctx.train_q, positives or ctx.train_pos,
                                       ctx.corpus, ctx.keys, cfg=_cfg(ctx, **over),
                                       query_prompt=ctx.live.query_prompt, seed=ctx.args.seed)
    g, t = ctx.encode_with(model)
    return g, t, stats.to_dict()


def _linear(ctx: Context) -> tuple[np.ndarray, dict]:
    from vectune.pipeline.train.query import train_linear_map

    w, stats = train_linear_map(ctx.live_vecs("train"), ctx.train_pos, ctx.corpus, ctx.keys, cfg=_cfg(ctx),
                                seed=ctx.args.seed)
    return w, stats.to_dict()


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


#: name -> (what it is, the settings that make its cache key)
SPECS = {
    "live": ("the live model itself (null: every delta is 0)", {}),
    "noise": ("live query vectors + N(0, 0.015²) per dimension, renormalised", {"sigma": 0.015}),
    "linear": ("linear map on the query embeddings, QueryConfig defaults", {}),
    "linear-mirrored": ("the linear map pushed the other way: 2I − W", {}),
    "encoder-1ep": ("query encoder, 1 epoch, no checkpoint selection", {"epochs": 1.0, "val_fraction": 0.0}),
    "encoder": ("query encoder, QueryConfig defaults (8-epoch budget, best epoch on a training slice, refit)",
                {}),
    "encoder-lr2e-4": ("query encoder, lr 2e-4 (10x), 4 epochs, no checkpoint selection",
                       {"lr": 2e-4, "epochs": 4.0, "val_fraction": 0.0}),
    "overtrained": ("query encoder, lr 2e-3 (100x), 4 epochs, no checkpoint selection",
                    {"lr": 2e-3, "epochs": 4.0, "val_fraction": 0.0}),
    "noisy-labels": ("query encoder, half of the training positives replaced by random passages, 3 epochs, "
                     "no selection", {"epochs": 3.0, "val_fraction": 0.0, "noise_share": 0.5}),
    "full-offline": ("full mode as protocol B trains it: both towers, 1 epoch of MNRL on 1,500 offline 'mix' pairs "
                     "(title, keyphrase, cloze) with 1 mined hard negative, vectune defaults; the corpus re-encoded",
                     {"pairs": 1500, "chunks": 2000, "method": "mix"}),
    "pseudo": ("query encoder on 1000 offline keyphrase pseudo-queries (no labels), 3-epoch budget, best epoch on a "
               "pseudo-query slice", {"epochs": 3.0, "refit": False, "pseudo": 1000, "method": "keyphrase"}),
}


def make_candidate(name: str, ctx: Context) -> tuple[np.ndarray, np.ndarray, dict]:
    """Train (or build) one candidate; returns its golden and test query vectors and training facts."""
    spec = dict(SPECS[name][1])
    seed = ctx.args.seed
    if name == "live":
        return ctx.live_vecs("golden"), ctx.live_vecs("test"), {}
    if name == "noise":
        rng = np.random.default_rng(seed)
        g, t = ctx.live_vecs("golden"), ctx.live_vecs("test")
        return (_unit(g + rng.normal(0, spec["sigma"], g.shape)), _unit(t + rng.normal(0, spec["sigma"], t.shape)),
                {})
    if name in ("linear", "linear-mirrored"):
        from vectune.pipeline.train.query import apply_linear

        w, stats = _linear(ctx)
        if name == "linear-mirrored":
            w = 2 * np.eye(w.shape[0], dtype=np.float32) - w
        return apply_linear(w, ctx.live_vecs("golden")), apply_linear(w, ctx.live_vecs("test")), stats
    if name == "noisy-labels":
        rng = np.random.default_rng(seed)
        share = spec.pop("noise_share")
        pos = [[ctx.keys[int(rng.integers(len(ctx.keys)))]] if rng.random() < share else p for p in ctx.train_pos]
        return _encoder(ctx, positives=pos, **spec)
    if name == "pseudo":
        from vectune.core.chunks import Chunk
        from vectune.pipeline.pairs.teachers.offline import OfflineGenerator

        rng = np.random.default_rng(seed)
        rows = sorted(rng.choice(len(ctx.keys), size=min(spec.pop("pseudo"), len(ctx.keys)), replace=False).tolist())
        chunks = [Chunk(key=ctx.keys[i], point_id=ctx.keys[i], text=ctx.texts[i]) for i in rows]
        made = OfflineGenerator(method=spec.pop("method"), seed=seed).generate(chunks, 1).queries
        g, t, stats = _encoder(ctx, queries=[q.text for q in made], positives=[[q.chunk_id] for q in made], **spec)
        stats["pseudo_queries"] = len(made)
        stats["pseudo_examples"] = [q.text for q in made[:3]]
        return g, t, stats
    if name == "full-offline":
        return _full_offline(ctx, spec)
    return _encoder(ctx, **spec)  # encoder, encoder-1ep, encoder-lr2e-4, overtrained


def _full_offline(ctx: Context, spec: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Protocol B's full-mode candidate, built from vectune's own pieces without a store.

    The cycle's steps with the stored vectors in memory: a seeded sample of ``chunks`` chunks
    (the held-out share set aside as the cycle does), ``queries_per_chunk`` offline queries on
    the budget's chunks, hard negatives mined by :func:`vectune.pipeline.pairs.negatives.mine` against the
    stored vectors, :func:`vectune.pipeline.train.full.train_local` on a fresh copy of the live model, then
    the whole corpus re-encoded with the candidate (as a full promotion would).
    """
    from vectune.config.settings import BUNDLED_MODEL, Settings
    from vectune.core.chunks import Chunk, sample, split
    from vectune.models.store import ModelStore
    from vectune.pipeline.pairs.negatives import mine
    from vectune.pipeline.pairs.teachers.offline import OfflineGenerator
    from vectune.pipeline.train.full import train_local

    settings = Settings(seed=ctx.args.seed)
    titles = {str(r["_id"]): (r.get("title") or "").strip() for r in read_jsonl(ctx.beir["corpus"])}
    chunks = [Chunk(key=k, point_id=k, text=t, payload={"title": titles.get(k, "")}) for k, t in
              zip(ctx.keys, ctx.texts)]
    pool = sample(chunks, spec["chunks"], settings.seed)
    train_chunks, _held = split(pool, settings.pairs.eval_fraction, settings.seed)
    budget = -(-spec["pairs"] // settings.pairs.queries_per_chunk)
    if len(train_chunks) > budget:
        train_chunks = sample(train_chunks, budget, settings.seed)
    queries = OfflineGenerator(method=spec["method"], seed=settings.seed).generate(
        train_chunks, settings.pairs.queries_per_chunk).queries[: spec["pairs"]]
    row = {k: i for i, k in enumerate(ctx.keys)}
    qv = ctx.live.encode_queries([q.text for q in queries])
    pv = ctx.corpus[[row[q.chunk_id] for q in queries]]

    def search(vecs, limit):
        from vectune.pipeline.evaluate import rank

        top = rank(np.asarray(vecs, np.float32), ctx.corpus, limit)
        return [[(ctx.keys[j], float(v @ ctx.corpus[j])) for j in r] for v, r in zip(vecs, top)]

    text_of = dict(zip(ctx.keys, ctx.texts))
    examples, mstats = mine(queries, qv, pv, text_of, search, lambda ks: {k: text_of[k] for k in ks},
                            num_negatives=settings.negatives.per_query, depth=settings.negatives.depth,
                            skip_top=settings.negatives.skip_top, relative_margin=settings.negatives.relative_margin,
                            seed=settings.seed)
    cand = ModelStore.from_settings(settings).load(BUNDLED_MODEL)
    tstats = train_local(cand.model, cand.query_prompt, examples, settings.full, settings.seed)
    t0 = time.perf_counter()
    corpus = cand.encode_passages(ctx.texts)
    enc_s = time.perf_counter() - t0
    ctx.candidate_corpus = corpus  # scored against its own passages, not the stored vectors
    g, t = cand.encode_queries(ctx.golden_q), cand.encode_queries(ctx.test_q)
    by_source: dict = {}
    for q in queries:
        by_source[q.source] = by_source.get(q.source, 0) + 1
    return g, t, {"train": tstats.to_dict() if hasattr(tstats, "to_dict") else str(tstats),
                  "pairs": len(examples), "by_source": by_source, "negatives": mstats.to_dict(),
                  "corpus_encode_s": round(enc_s, 1)}


def per_query(ctx: Context, golden_vecs: np.ndarray, test_vecs: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query metrics (vectune.pipeline.evaluate, the gate's own scoring) on the golden pool and the test queries."""
    from vectune.pipeline.evaluate import EvalQuery, evaluate

    corpus = getattr(ctx, "candidate_corpus", None)
    if corpus is None:
        corpus = ctx.corpus
    ctx.candidate_corpus = None
    out = {}
    for split, ids, qrels, vecs in (("golden", ctx.golden_ids, ctx.beir["train"], golden_vecs),
                                    ("test", ctx.test_ids, ctx.beir["test"], test_vecs)):
        res = evaluate(vecs, corpus, ctx.keys, [EvalQuery("", set(qrels[i])) for i in ids])
        for m, v in res.per_query.items():
            out[f"{split}/{m}"] = v
    return out


def cached_candidate(name: str, ctx: Context, work: Path) -> tuple[dict[str, np.ndarray], dict]:
    """A candidate's per-query metrics, trained once and cached under ``work``."""
    key = json.dumps({"name": name, "spec": SPECS[name][1], "seed": ctx.args.seed, "golden": len(ctx.golden_ids),
                      "train": len(ctx.train_ids), "corpus": len(ctx.keys)}, sort_keys=True)
    path = work / f"gate-power-{ctx.args.data.resolve().name}-{name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}.npz"
    if path.is_file() and not ctx.args.retrain:
        z = np.load(path, allow_pickle=False)
        info = json.loads(str(z["info"]))
        return {k: z[k] for k in z.files if k != "info"}, info
    t0 = time.perf_counter()
    load0 = load_avg()
    g, t, stats = make_candidate(name, ctx)
    info = {"what": SPECS[name][0], "spec": SPECS[name][1], "seconds": round(time.perf_counter() - t0, 1),
            "load_before": load0, "train": stats}
    arrays = per_query(ctx, g, t)
    work.mkdir(parents=True, exist_ok=True)
    np.savez(path, info=json.dumps(info, default=str), **arrays)
    print(f"  trained {name} in {info['seconds']} s (load {load0})", flush=True)
    return arrays, info


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# ----------------------------------------------------------------------------- the tests
_COUNTS: dict[int, np.ndarray] = {}


def boot_counts(n: int) -> np.ndarray:
    """(BOOT_SAMPLES, n) resample counts of the index matrix ``vectune.pipeline.gate.paired_bootstrap`` draws (seed 0)."""
    if n not in _COUNTS:
        idx = np.random.default_rng(0).integers(0, n, size=(BOOT_SAMPLES, n))
        c = np.zeros((BOOT_SAMPLES, n), dtype=np.float64)
        np.add.at(c, (np.repeat(np.arange(BOOT_SAMPLES), n), idx.ravel()), 1.0)
        _COUNTS[n] = c
    return _COUNTS[n]


_FLIPS: dict[int, np.ndarray] = {}


def flips(n: int) -> np.ndarray:
    """(PERM_SAMPLES, n) random ±1 signs: the very ones ``vectune.pipeline.gate.paired_permutation`` draws (seed 0)."""
    if n not in _FLIPS:
        _FLIPS[n] = np.where(np.random.default_rng(0).random((PERM_SAMPLES, n)) < 0.5, -1.0, 1.0)
    return _FLIPS[n]


def gate_passes(d: np.ndarray, min_delta: float) -> dict[str, np.ndarray]:
    """Whether each row of per-query deltas ``d`` (draws × n) passes each test.

    Every test also requires ``mean(d) >= min_delta`` (as ``vectune.pipeline.gate.decide`` does).

    Args:
        d: per-query deltas (candidate − live), one draw per row.
        min_delta: the smallest mean improvement worth a promotion.

    Returns:
        test name -> boolean array (one per row).
    """
    from scipy import stats

    n = d.shape[1]
    mean = d.mean(axis=1)
    big = mean >= min_delta
    means = d @ boot_counts(n).T / n  # (draws, BOOT_SAMPLES): every draw's bootstrap means
    sd = d.std(axis=1, ddof=1)
    flipped = d @ flips(n).T / n  # (draws, PERM_SAMPLES): means under random sign flips
    wins, losses = (d > 0).sum(axis=1), (d < 0).sum(axis=1)
    nz = (d != 0).any(axis=1)
    p: dict[str, np.ndarray] = {}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p["t"] = np.nan_to_num(stats.t.sf(mean / (sd / np.sqrt(n)), n - 1), nan=1.0)
        p["perm"] = (1 + (flipped >= mean[:, None] - 1e-12).sum(axis=1)) / (PERM_SAMPLES + 1)
        for name, zm in (("wilcoxon", "wilcox"), ("wilcoxon-pratt", "pratt")):
            p[name] = np.ones(d.shape[0])
            if nz.any():
                p[name][nz] = np.nan_to_num(
                    stats.wilcoxon(d[nz], zero_method=zm, alternative="greater", axis=1).pvalue, nan=1.0)
            # scipy picks one method for a whole array; a row without unchanged queries may get the
            # exact distribution when tested alone (as vectune.pipeline.gate does): test those rows alone
            for i in np.flatnonzero((d != 0).all(axis=1)):
                p[name][i] = np.nan_to_num(stats.wilcoxon(d[i], zero_method=zm, alternative="greater").pvalue,
                                           nan=1.0)
        p["sign"] = np.where(wins + losses > 0, stats.binom.sf(wins - 1, wins + losses, 0.5), 1.0)
    out = {}
    for name, (family, level) in TESTS.items():
        if family == "boot":
            out[name] = big & (np.quantile(means, level, axis=1) > 0)
        else:
            out[name] = big & (p[family] < level)
    return out


def check_against_gate(deltas: dict[str, np.ndarray], live: dict[str, np.ndarray], min_delta: float,
                       draws: int, seed: int) -> dict:
    """How often the vectorised boot95, perm and wilcoxon agree with ``vectune.pipeline.gate.decide`` itself (sampled draws)."""
    from vectune.pipeline.evaluate import EvalResult
    from vectune.pipeline.gate import decide

    rng = np.random.default_rng(seed + 7)
    agree = {"boot95": 0, "perm": 0, "wilcoxon": 0}
    total = 0
    for d in deltas.values():
        for n in (20, 72, 200):
            rows = np.array([rng.choice(d.shape[0], size=n, replace=False) for _ in range(draws)])
            for m in GATE_METRICS:
                mine = gate_passes(d[:, GATE_METRICS.index(m)][rows], min_delta)
                for r, row in enumerate(rows):
                    a = live[m][row]
                    b = a + d[row, GATE_METRICS.index(m)]
                    res = [EvalResult({m: float(x.mean())}, {m: x}, queries=n) for x in (a, b)]
                    for name, test in (("boot95", "bootstrap"), ("perm", "permutation"), ("wilcoxon", "wilcoxon")):
                        ok = decide(res[0], res[1], metric=m, evidence="golden", min_delta=min_delta,
                                    test=test).promote
                        agree[name] += int(ok == bool(mine[name][r]))
                    total += 1
    return {"draws_checked": total, "agree": agree}


# ----------------------------------------------------------------------------- the study
def truth_of(test: dict[str, np.ndarray], live: dict[str, np.ndarray]) -> dict:
    from vectune.pipeline.paired import paired_bootstrap

    out = {}
    for m in GATE_METRICS:
        a, b = live[m], test[m]
        lo, hi = paired_bootstrap(a, b, samples=TRUTH_SAMPLES, confidence=0.95, seed=0)
        out[m] = {"delta": round(float((b - a).mean()), 4), "ci95_low": round(lo, 4), "ci95_high": round(hi, 4),
                  "wins": int((b > a).sum()), "losses": int((b < a).sum())}
    nd = out["ndcg@10"]
    out["verdict"] = "winner" if nd["ci95_low"] > 0 else (
        "loser" if nd["ci95_high"] < 0 or nd["delta"] <= 0 else "unclear")
    return out


def golden_summary(d: np.ndarray) -> dict:
    from vectune.pipeline.paired import paired_bootstrap

    out = {}
    for j, m in enumerate(GATE_METRICS):
        lo, hi = paired_bootstrap(np.zeros(d.shape[0]), d[:, j], samples=TRUTH_SAMPLES, seed=0)
        out[m] = {"delta": round(float(d[:, j].mean()), 4), "ci95_low": round(lo, 4), "ci95_high": round(hi, 4),
                  "sd": round(float(d[:, j].std(ddof=1)), 4), "changed": int((d[:, j] != 0).sum()),
                  "wins": int((d[:, j] > 0).sum()), "losses": int((d[:, j] < 0).sum())}
    return out


def all_passes(d: np.ndarray, rows: np.ndarray, min_delta: float, mask: np.ndarray | None = None) -> dict:
    """gate row -> test -> pass array, for per-query deltas ``d`` (queries × GATE_METRICS) drawn at ``rows``."""
    out = {}
    for j, m in enumerate(GATE_METRICS):
        x = d[:, j][rows]
        out[m] = gate_passes(x * mask if mask is not None else x, min_delta)
    r5 = d[:, GATE_METRICS.index("recall@5")][rows]
    guard = (r5 * mask if mask is not None else r5).mean(axis=1) >= 0
    out[GUARDED] = {t: ok & guard for t, ok in out["ndcg@10"].items()}
    return out


def power_table(deltas: dict[str, np.ndarray], sizes: list[int], draws: int, seed: int,
                min_delta: float) -> dict:
    """pass rate[candidate][metric][test][n] over ``draws`` seeded subsamples (without replacement)."""
    pool = next(iter(deltas.values())).shape[0]
    rng = np.random.default_rng(seed)
    out: dict = {c: {m: {t: {} for t in TESTS} for m in GATE_ROWS} for c in deltas}
    for n in sizes:
        rows = np.array([rng.choice(pool, size=n, replace=False) for _ in range(draws)]) if n < pool else \
            np.tile(np.arange(pool), (1, 1))  # the whole pool: one draw
        for c, d in deltas.items():
            for m, by_test in all_passes(d, rows, min_delta).items():
                for t, ok in by_test.items():
                    out[c][m][t][str(n)] = round(float(ok.mean()), 4)
    return out


def needed_table(d: np.ndarray, targets: tuple[float, ...], sizes: tuple[int, ...], draws: int, seed: int,
                 min_delta: float) -> dict:
    """Detection rate by n of the winner thinned to each nDCG@10 target, drawn with replacement from the pool."""
    j_nd = GATE_METRICS.index("ndcg@10")
    full = float(d[:, j_nd].mean())
    out = {}
    for target in targets:
        if full < target:  # thinning cannot raise a gain
            out[f"{target:.2f}"] = {"keep_share": None, "effective_delta_ndcg": None, "rates": None,
                                    "n80": {m: {t: None for t in TESTS} for m in GATE_ROWS},
                                    "note": f"the source's golden gain ({full:+.4f}) is below the target"}
            continue
        keep = target / full
        rng = np.random.default_rng(seed + int(target * 1e4))
        rates: dict = {m: {t: {} for t in TESTS} for m in GATE_ROWS}
        for n in sizes:
            rows = rng.integers(0, d.shape[0], size=(draws, n))
            mask = rng.random((draws, n)) < keep
            for m, by_test in all_passes(d, rows, min_delta, mask).items():
                for t, ok in by_test.items():
                    rates[m][t][str(n)] = round(float(ok.mean()), 4)
        need = {m: {t: n_for(rates[m][t], 0.8) for t in TESTS} for m in GATE_ROWS}
        out[f"{target:.2f}"] = {"keep_share": round(keep, 4), "effective_delta_ndcg": round(full * keep, 4),
                                "rates": rates, "n80": need}
    return out


def n_for(rates: dict[str, float], power: float) -> int | None:
    """Smallest n at which the rate reaches ``power``, interpolated linearly between grid points."""
    pts = sorted((int(k), v) for k, v in rates.items())
    prev = None
    for n, r in pts:
        if r >= power:
            if prev is None or prev[1] >= power:
                return n
            n0, r0 = prev
            return int(round(n0 + (power - r0) * (n - n0) / (r - r0)))
        prev = (n, r)
    return None


def analytic_n(sd: float, effect: float, z_alpha: float, z_beta: float = 0.8416) -> int:
    """Normal-approximation n for a one-sided test at z_alpha with power 1-beta (for a cross-check)."""
    return int(np.ceil(((z_alpha + z_beta) * sd / effect) ** 2))


# ----------------------------------------------------------------------------- report
def verdict_of(r: dict) -> dict:
    """Per metric × test: worst false pass over the losers, n for 80% detection of each winner and of +2/+4."""
    winners = [c for c, v in r["truth"].items() if v["verdict"] == "winner"]
    losers = [c for c, v in r["truth"].items() if v["verdict"] == "loser"]
    unclear = [c for c, v in r["truth"].items() if v["verdict"] == "unclear"]
    rows = []
    for m in GATE_ROWS:
        for t in TESTS:
            worst, fp_n, fp = None, None, 0.0
            for c in losers:
                for n, x in r["power"][c][m][t].items():
                    if x > fp:
                        worst, fp_n, fp = c, int(n), x
            rows.append({"metric": m, "test": t, "level": TESTS[t][1], "max_false_pass": fp, "worst_loser": worst,
                         "at_n": fp_n, "safe": fp <= 0.05,
                         "unclear_max_pass": {c: max(r["power"][c][m][t].values()) for c in unclear},
                         "n80_winners": {c: n_for(r["power"][c][m][t], 0.8) for c in winners},
                         "right": {n: round(float(np.mean([r["power"][c][m][t][n] for c in winners]
                                                          + [1 - r["power"][c][m][t][n] for c in losers])), 4)
                                   for n in r["power"][winners[0]][m][t]} if winners else {},
                         "n80": {k: r["needed"][k]["n80"][m][t] for k in r["needed"]}})
    safe = [x for x in rows if x["safe"]]
    best = min(safe, key=cost) if safe else None
    current = next(x for x in rows if x["metric"] == "recall@5" and x["test"] == "boot95")
    return {"winners": winners, "losers": losers, "unclear": unclear, "rows": rows, "best": best,
            "current": current}


def cost(x: dict) -> int:
    """Golden queries a gate row needs: the sum of its 80%-detection sizes (a size never reached counts 10,000)."""
    big = 10_000
    return (x["n80"].get("0.04") or big) + (x["n80"].get("0.02") or big) + sum(
        v or big for v in x["n80_winners"].values())


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}"


def tables(r: dict) -> str:
    """The markdown tables: candidates, the summary per metric × test, false passes by size, detection by size."""
    v = r["verdict"]
    sizes = [str(n) for n in r["sizes"]]
    pool = r["golden_queries"]
    head = " | ".join(s if int(s) < pool else f"all {s}" for s in sizes)
    out = ["| candidate | truth (test) | test Δ nDCG@10 [95% CI] | test wins/losses | golden Δ nDCG@10 | golden Δ "
           "recall@5 | golden Δ MRR@10 | golden queries changed | build s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c, t in r["truth"].items():
        nd, g = t["ndcg@10"], r["golden"][c]
        out.append(f"| {c} | {t['verdict']} | {100 * nd['delta']:+.1f} [{100 * nd['ci95_low']:+.1f}, "
                   f"{100 * nd['ci95_high']:+.1f}] | {nd['wins']}/{nd['losses']} | {100 * g['ndcg@10']['delta']:+.1f} | "
                   f"{100 * g['recall@5']['delta']:+.1f} | {100 * g['mrr@10']['delta']:+.1f} | "
                   f"{g['ndcg@10']['changed']} | {r['candidates'][c]['seconds']} |")
    top = max(r["need_sizes"])
    wn = v["winners"]
    gains = ", ".join(f"{c} {100 * r['golden'][c]['ndcg@10']['delta']:+.1f}" for c in wn)
    out += ["", f"Golden queries for an 80% chance to promote each winner (golden Δ nDCG@10: {gains}; interpolated "
            f"over the sizes drawn, '>{pool}' = not reached with the whole pool), and a gain of +2 / +4 nDCG@10 "
            f"spread as the encoder's (its golden deltas thinned: each query keeps the candidate's result with "
            f"probability gain/{100 * r['golden'][r['needed_from']]['ndcg@10']['delta']:.1f}, drawn with "
            f"replacement); worst false pass = highest % of draws promoting a loser, at any size:", "",
            "| metric | test | one-sided level | " + " | ".join(wn) + " | +2 | +4 | worst false pass % (loser, n) |",
            "|---|---|---:|" + "---:|" * (len(wn) + 2) + "---|"]
    for x in v["rows"]:
        if (x["metric"], x["test"]) not in MD_ROWS and x is not v["best"]:
            continue
        cells = [str(x["n80_winners"][c]) if x["n80_winners"][c] else f">{pool}" for c in wn]
        cells += [str(x["n80"][k]) if x["n80"][k] else ("n/a" if r["needed"][k]["keep_share"] is None else f">{top}")
                  for k in ("0.02", "0.04")]
        fp = pct(x["max_false_pass"]) + (f" ({x['worst_loser']}, {x['at_n']})" if x["worst_loser"] else "")
        out.append(f"| {x['metric']} | {x['test']} | {x['level']} | {' | '.join(cells)} | {fp} |")
    out += ["", f"False passes by size: highest % of {r['draws']} draws promoting any loser "
            f"({', '.join(v['losers'])}):", "", f"| metric | test | {head} |", "|---|---|" + "---:|" * len(sizes)]
    for m, t in MD_ROWS:
        cells = [pct(max((r["power"][c][m][t][s] for c in v["losers"]), default=0.0)) for s in sizes]
        out.append(f"| {m} | {t} | {' | '.join(cells)} |")
    shown = [("recall@5", "boot95"), ("ndcg@10", "boot95"), ("ndcg@10", "perm"), ("ndcg@10", "wilcoxon")]
    best = v["best"]
    if best and (best["metric"], best["test"]) not in shown:
        shown.append((best["metric"], best["test"]))
    out += ["", f"Detection by size (% of {r['draws']} draws promoting each winner), today's gate and the "
            "nDCG@10 gates:", "", f"| winner | metric | test | {head} |", "|---|---|---|" + "---:|" * len(sizes)]
    for c in wn:
        for m, t in shown:
            out.append(f"| {c} | {m} | {t} | {' | '.join(pct(r['power'][c][m][t][s]) for s in sizes)} |")
    rec = next(x for x in v["rows"] if (x["metric"], x["test"]) == RECOMMENDED)
    if v["unclear"]:
        out += ["", "Unclear candidates (no right answer; highest % of draws promoting them): " + "; ".join(
            f"{c}: recall@5+boot95 {pct(v['current']['unclear_max_pass'][c])}, "
            f"{rec['metric']}+{rec['test']} {pct(rec['unclear_max_pass'][c])}" for c in v["unclear"]) + "."]
    return "\n".join(out)


def markdown(r: dict) -> str:
    v = r["verdict"]
    cur = v["current"]
    lines = ["## Gate power: which metric and test, how many golden queries", "",
             f"{r['dataset']}, protocol C split (seed {r['seed']}): {r['train_queries']} train-half queries train the "
             f"candidates, the {r['golden_queries']} golden-half queries are the pool the gate draws from, the "
             f"{r['test_queries']} test queries (never seen) say which candidate truly wins (winner: test CI above "
             f"0; loser: CI below 0 or mean ≤ 0). {r['draws']} seeded draws per golden-set size (without "
             f"replacement; 'all' is the whole pool, one draw, so 0 or 100). Every test also requires mean Δ ≥ "
             f"min_delta {r['min_delta']}. boot95 = vectune's gate today (95% paired-bootstrap CI above 0, 1000 "
             "resamples); t = paired t-test; perm = paired randomization (sign-flip) test, 1000 flips; wilcoxon = "
             "signed-rank (unchanged queries dropped; -pratt: ranked, then dropped); sign = sign test (ties dropped); "
             "boot90 = bootstrap at confidence 0.90. All one-sided, at the level shown. 'ndcg@10 & r5≥0' = the "
             "nDCG@10 test, and the golden mean recall@5 must not fall. "
             f"`{r['command']}`", "", tables(r), ""]
    rec = next(x for x in v["rows"] if (x["metric"], x["test"]) == RECOMMENDED)
    safe = sorted((x for x in v["rows"] if x["safe"]), key=lambda x: cost(x))
    if safe:
        lines.append("- Safe (false pass ≤ 5% at every size), fewest golden queries first (sum of the n columns): "
                     + "; ".join(f"{x['metric']}+{x['test']} {cost(x)}" for x in safe[:6])
                     + f". Today's recall@5+boot95: {cost(cur)}.")
    unsafe = [f"{x['metric']}+{x['test']} ({pct(x['max_false_pass'])}%)" for x in v["rows"] if not x["safe"]]
    if unsafe:
        lines.append(f"- Over 5% false passes at some size: {', '.join(unsafe)}.")
    sizes = list(rec["right"])
    lines.append(f"- How often the gate is right (share of draws promoting a winner or keeping a loser, mean over the "
                 f"{len(v['winners']) + len(v['losers'])} candidates with a truth) at n = {' / '.join(sizes)}: "
                 f"{RECOMMENDED[0]}+{RECOMMENDED[1]} {' / '.join(pct(rec['right'][n]) for n in sizes)}%; today's "
                 f"recall@5+boot95 {' / '.join(pct(cur['right'][n]) for n in sizes)}%.")
    lines.append(f"- vectune's default, from this study: **{RECOMMENDED[0]} + {RECOMMENDED[1]}** "
                 f"({'safe' if rec['safe'] else 'NOT safe'} here: worst false pass {pct(rec['max_false_pass'])}%; "
                 f"80% detection: +2 → {rec['n80'].get('0.02')}, +4 → {rec['n80'].get('0.04')} golden queries, "
                 + ", ".join(f"{c} → {rec['n80_winners'][c] or '>' + str(r['golden_queries'])}" for c in v["winners"])
                 + f"; today's recall@5+boot95: +2 → {cur['n80'].get('0.02')}, +4 → {cur['n80'].get('0.04')}, "
                 + ", ".join(f"{c} → {cur['n80_winners'][c] or '>' + str(r['golden_queries'])}" for c in v["winners"])
                 + ").")
    gc = r["gate_check"]
    lines += [f"- check: on {gc['draws_checked']} sampled draws, `vectune.pipeline.gate.decide` with test=bootstrap / "
              f"permutation / wilcoxon agreed with this script's boot95 / perm / wilcoxon on "
              f"{gc['agree']['boot95']} / {gc['agree']['perm']} / {gc['agree']['wilcoxon']}.",
              f"- machine: {common.machine_line(r['machine'])}; date {r['date']}; analysis {r['analysis_s']} s"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="BEIR folder (corpus.jsonl[.gz], queries.jsonl, qrels/)")
    ap.add_argument("--seed", type=int, default=42, help="train/golden split seed (as bench/quality.py), training seed")
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help="comma list, from: " + ", ".join(CANDIDATES))
    ap.add_argument("--draws", type=int, default=2000, help="subsamples per golden-set size")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="golden-set sizes (the whole pool is added)")
    ap.add_argument("--need-sizes", default=",".join(map(str, NEED_SIZES)),
                    help="sizes tried for the 'golden queries needed' table (with replacement, may exceed the pool)")
    ap.add_argument("--min-delta", type=float, default=0.005, help="vectune's min_delta (required by every test)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads while training (0: 1 when the load average is at or above the core count)")
    ap.add_argument("--retrain", action="store_true", help="ignore the cached candidates")
    ap.add_argument("--update-results", action="store_true", help="write the bench/RESULTS.md section")
    ap.add_argument("--study", choices=["crossfit", "metric"], default="crossfit",
                    help="crossfit: the 30%% holdout against cross-fitting by labeled-query count "
                         "(bench/gate_power_crossfit.py); metric: which gate metric and test (the study above)")
    import gate_power_crossfit

    gate_power_crossfit.add_arguments(ap)
    args = ap.parse_args()
    if args.study == "crossfit":
        import logging

        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
        return gate_power_crossfit.main(args)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("vectune.pipeline.train.query").setLevel(logging.INFO)
    import torch

    threads = args.threads or (1 if os.getloadavg()[0] >= (os.cpu_count() or 1) else 0)
    if threads:
        torch.set_num_threads(threads)

    from vectune.config.settings import BUNDLED_MODEL, Settings
    from vectune.models.store import ModelStore

    names = [c.strip() for c in args.candidates.split(",") if c.strip()]
    bad = [c for c in names if c not in SPECS]
    if bad:
        sys.exit(f"unknown candidates {bad}")
    beir = load_beir(args.data)
    live = ModelStore.from_settings(Settings()).load(BUNDLED_MODEL)
    keys, texts = corpus_texts(beir)
    work = BENCH / "work"
    corpus = stored_vectors(args.data.resolve().name, keys, texts, live, work)
    ctx = Context(args, beir, live, corpus, keys, texts)
    print(f"corpus {corpus.shape}, train {len(ctx.train_ids)}, golden {len(ctx.golden_ids)}, test "
          f"{len(ctx.test_ids)}; load {load_avg()}", flush=True)

    arrays, infos = {}, {}
    for c in ["live"] + [c for c in names if c != "live"]:
        arrays[c], infos[c] = cached_candidate(c, ctx, work)
    live_pq = arrays["live"]
    t0 = time.perf_counter()
    truth = {c: truth_of({m: a[f"test/{m}"] for m in GATE_METRICS}, {m: live_pq[f"test/{m}"] for m in GATE_METRICS})
             for c, a in arrays.items() if c in names}
    deltas = {c: np.stack([a[f"golden/{m}"] - live_pq[f"golden/{m}"] for m in GATE_METRICS], axis=1)
              for c, a in arrays.items() if c in names}
    pool = len(ctx.golden_ids)
    sizes = sorted({int(s) for s in args.sizes.split(",") if int(s) < pool} | {pool})
    need_sizes = tuple(sorted({int(s) for s in args.need_sizes.split(",")}))
    print("power by golden-set size ...", flush=True)
    power = power_table(deltas, sizes, args.draws, args.seed, args.min_delta)
    print("golden queries needed ...", flush=True)
    source = "encoder" if "encoder" in deltas else max(deltas, key=lambda c: deltas[c][:, 1].mean())
    needed = needed_table(deltas[source], TARGETS, need_sizes, args.draws, args.seed, args.min_delta)
    from scipy.stats import norm

    for k, nd in needed.items():
        nd["analytic"] = {}
        for j, m in enumerate(GATE_METRICS if nd["keep_share"] is not None else ()):
            d = deltas[source][:, j]
            # a thinned candidate's per-query delta is d with probability keep, else 0
            keep = nd["keep_share"]
            mean, var = keep * d.mean(), keep * (d ** 2).mean() - (keep * d.mean()) ** 2
            nd["analytic"][m] = {t: analytic_n(float(np.sqrt(var)), float(mean), float(norm.ppf(1 - a)))
                                 for t, a in (("boot95", 0.025), ("boot90", 0.05))}
    gate_check = check_against_gate({c: deltas[c] for c in (source, "linear") if c in deltas},
                                    {m: live_pq[f"golden/{m}"] for m in GATE_METRICS}, args.min_delta, 20, args.seed)
    r = {"dataset": args.data.resolve().name, "protocol": "C split: train half trains, golden half is the gate's pool, "
         "test is the truth", "seed": args.seed, "train_queries": len(ctx.train_ids),
         "golden_queries": pool, "test_queries": len(ctx.test_ids), "corpus": int(corpus.shape[0]),
         "draws": args.draws, "sizes": sizes, "need_sizes": list(need_sizes), "min_delta": args.min_delta,
         "metrics": list(GATE_METRICS), "tests": list(TESTS), "candidates": infos,
         "live": {s: {m: round(float(live_pq[f"{s}/{m}"].mean()), 4) for m in GATE_METRICS} for s in ("golden", "test")},
         "truth": truth, "golden": {c: golden_summary(d) for c, d in deltas.items()}, "power": power,
         "needed": needed, "needed_from": source, "gate_check": gate_check}
    r["verdict"] = verdict_of(r)
    r["analysis_s"] = round(time.perf_counter() - t0, 1)
    r["machine"], r["date"], r["command"] = common.machine(), common.now(), common.command_line()
    name = f"gate-power-{r['dataset']}"
    common.write_json(BENCH / "results" / f"{name}.json", r)
    per_q = {"golden_ids": ctx.golden_ids, "test_ids": ctx.test_ids,
             "candidates": {c: {k: np.round(v, 4).tolist() for k, v in a.items() if k.split("/")[1] in GATE_METRICS}
                            for c, a in arrays.items()}}
    (BENCH / "results" / f"{name}-per-query.json").write_text(json.dumps(per_q, separators=(",", ":")) + "\n")
    print(markdown(r))
    if args.update_results:
        common.update_section(name, markdown(r))


if __name__ == "__main__":
    main()
