"""Evaluate stage: live vs candidate on the same queries against the same corpus.

Exact search (a matrix product), per-query metric values so the gate can run a paired test.
Query-side candidates score against the vectors already stored in Qdrant, so they and the live
model are judged on the *whole* live collection (:func:`scan_top`: one streamed pass, exact,
memory bounded by the queries and a page, never the collection). A full-mode candidate must
re-encode what it is judged on, so it scores on a corpus capped at ``eval_corpus_cap``: every chunk
a query points at, plus a seeded sample; the report says so. nDCG is graded: a query's relevant chunks may carry grades
(``{"doc-1": 2, "doc-2": 1}`` in a labeled set), used as gains; :func:`ndcg` is the one nDCG
of vectune (the query-side trainer picks its epoch with it too). The live side scores against the vectors
stored in Qdrant (no re-encoding); the candidate encodes the same corpus, and those
embeddings are kept for the reindex when the corpus is the whole collection.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from vectune.core.scores import METRICS
from vectune.core.vectors import normalize
from vectune.errors import BadInput
from vectune.pipeline.paired import paired_bootstrap
from vectune.qdrant.store import dense_of

logger = logging.getLogger(__name__)



def ndcg(ranked_gains, grades, k: int = 10) -> float:
    """Graded nDCG@k with linear gains: ``DCG = Σ gain_i / log2(i + 1)`` over the top k, over the ideal DCG.

    Args:
        ranked_gains: the gain (grade, 0 for a non-relevant chunk) of each retrieved chunk, best first.
        grades: the grades of all of the query's relevant chunks (the ideal ranking sorts them).
        k: the cut-off.

    Returns:
        nDCG@k in [0, 1] (0 for a query without a positive grade).
    """
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    gains = np.asarray(list(ranked_gains)[:k], dtype=np.float64)
    dcg = float((gains * disc[: gains.size]).sum())
    ideal = np.sort(np.asarray([g for g in grades if g > 0], dtype=np.float64))[::-1][:k]
    idcg = float((ideal * disc[: ideal.size]).sum())
    return dcg / idcg if idcg else 0.0


@dataclass
class EvalQuery:
    """A query with the keys of the chunks that answer it.

    Attributes:
        text: the query.
        relevant: keys of the chunks that answer it.
        source: where it came from (``golden``, ``synthetic``...).
        grades: key -> grade (> 0) for graded labels; None: every relevant chunk has grade 1.
    """

    text: str
    relevant: set[str]
    source: str = ""
    grades: dict[str, float] | None = None

    def grade(self, key: str) -> float:
        """The gain of a retrieved chunk: its grade, 1 for an ungraded relevant chunk, 0 otherwise."""
        if key not in self.relevant:
            return 0.0
        return float(self.grades.get(key, 1.0)) if self.grades else 1.0


@dataclass
class EvalResult:
    """Mean metrics plus per-query values (for the bootstrap)."""

    means: dict[str, float]
    per_query: dict[str, np.ndarray] = field(repr=False)
    queries: int = 0
    corpus: int = 0

    def to_dict(self) -> dict:
        return {"queries": self.queries, "corpus": self.corpus, **{k: round(v, 4) for k, v in self.means.items()}}


def rank(query_vectors: np.ndarray, corpus_vectors: np.ndarray, k: int = 10) -> np.ndarray:
    """Indices of the top-k corpus rows per query, best first (exact inner product)."""
    k = min(k, corpus_vectors.shape[0])
    out = np.empty((query_vectors.shape[0], k), dtype=np.int64)
    for i in range(0, query_vectors.shape[0], 256):
        scores = query_vectors[i:i + 256] @ corpus_vectors.T
        part = np.argpartition(-scores, kth=k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
        out[i:i + 256] = np.take_along_axis(part, order, axis=1)
    return out


def scan_top(store, collection: str, spec, queries: dict, k: int = 10,
             batch: int = 1024) -> tuple[list[str], dict, int]:
    """Exact top-``k`` of every query against every stored vector of ``collection``, in one streamed pass.

    Each page of vectors (normalised like the capped corpus) is scored against all query matrices and merged
    into a running top-``k``; memory is ``queries x (k + batch)`` scores, whatever the collection's size.
    Ties go to the point read first.

    Args:
        store: Qdrant access.
        collection: the collection to scan (the live one).
        spec: its dense vector (:class:`vectune.qdrant.store.DenseSpec`).
        queries: ``{name: query vectors (n x d)}``.
        k: results per query.
        batch: points per page.

    Returns:
        ``(keys, {name: top}, points scanned)``: ``top`` rows index ``keys`` (the winning points' keys),
        best first, as :func:`score` takes them.
    """
    names = [n for n, q in queries.items() if len(q)]
    mats = {n: np.asarray(queries[n], dtype=np.float32) for n in names}
    best_s = {n: np.full((len(mats[n]), k), -np.inf, dtype=np.float32) for n in names}
    best_r = {n: np.full((len(mats[n]), k), -1, dtype=np.int64) for n in names}
    winners: dict[int, str] = {}
    seen = 0
    for records, _ in store.scroll(collection, vectors=spec.selector, batch=batch, ids_only=True):
        rows, vecs = [], []
        for r in records:
            v = dense_of(r, spec)
            if v is not None and v.shape[0] == spec.size:
                rows.append(str(r.id))
                vecs.append(v)
        if not vecs:
            continue
        page = normalize(np.stack(vecs).astype(np.float32))
        ids = np.arange(seen, seen + len(rows), dtype=np.int64)
        kept: set[int] = set()
        for n in names:
            sc = np.concatenate([best_s[n], mats[n] @ page.T], axis=1)
            rr = np.concatenate([best_r[n], np.broadcast_to(ids, (sc.shape[0], ids.size))], axis=1)
            part = np.argpartition(-sc, k - 1, axis=1)[:, :k]
            ps, pr = np.take_along_axis(sc, part, 1), np.take_along_axis(rr, part, 1)
            order = np.lexsort((pr, -ps))  # by score, then the point read first
            best_s[n], best_r[n] = np.take_along_axis(ps, order, 1), np.take_along_axis(pr, order, 1)
            kept.update(int(x) for x in np.unique(best_r[n]) if x >= seen)
        winners.update({i: rows[i - seen] for i in kept})
        seen += len(rows)
    live_rows = sorted({int(x) for n in names for x in np.unique(best_r[n]) if x >= 0})
    where = {r: i for i, r in enumerate(live_rows)}
    keys = [winners[r] for r in live_rows]
    top = {n: np.vectorize(lambda x: where.get(int(x), -1), otypes=[np.int64])(best_r[n][:, :min(k, seen)])
           for n in names}
    return keys, top, seen


def score(top: np.ndarray, corpus_keys: list[str], queries: list[EvalQuery]) -> EvalResult:
    """Compute recall@1/5/10, MRR@10 and graded nDCG@10 per query from ranked indices.

    Args:
        top: ``rank()`` output.
        corpus_keys: key of each corpus row.
        queries: the queries, in the same order as ``top``'s rows.

    Returns:
        The result with means and per-query arrays.
    """
    n = len(queries)
    per = {m: np.zeros(n, dtype=np.float64) for m in METRICS}
    for i, q in enumerate(queries):
        gains = [q.grade(corpus_keys[j]) for j in top[i][:10]]
        hits = np.array([g > 0 for g in gains], dtype=bool)
        nrel = max(1, len(q.relevant))
        for k in (1, 5, 10):
            per[f"recall@{k}"][i] = hits[:k].sum() / nrel
        first = np.flatnonzero(hits)
        per["mrr@10"][i] = 1.0 / (first[0] + 1) if first.size else 0.0
        per["ndcg@10"][i] = ndcg(gains, [q.grade(r) for r in q.relevant], 10)
    means = {m: float(v.mean()) if n else 0.0 for m, v in per.items()}
    return EvalResult(means=means, per_query=per, queries=n, corpus=len(corpus_keys))


def evaluate(query_vectors: np.ndarray, corpus_vectors: np.ndarray, corpus_keys: list[str],
             queries: list[EvalQuery]) -> EvalResult:
    """Rank and score in one call."""
    if not queries:
        return EvalResult(means={m: 0.0 for m in METRICS}, per_query={m: np.zeros(0) for m in METRICS},
                          queries=0, corpus=len(corpus_keys))
    return score(rank(query_vectors, corpus_vectors, 10), corpus_keys, queries)


# ----------------------------------------------------------------------------- the evaluate stage
@dataclass
class EvalOutcome:
    """Live vs candidate on every query set, against the same corpus.

    Attributes:
        results: ``{set name: (live result, candidate result)}``; set names are ``golden``,
            ``synthetic`` or ``teacher``.
        corpus: the evaluation corpus (chunks, sorted by key).
        candidate_corpus: the candidate's passage embeddings of ``corpus`` (reused at promotion).
        counts: ``eval_set`` and ``eval_corpus`` counts for the run report.
    """

    results: dict[str, tuple[EvalResult, EvalResult]]
    corpus: list = field(repr=False)
    candidate_corpus: np.ndarray | None = field(default=None, repr=False)
    counts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """``{set: {"live": ..., "candidate": ..., "delta_ci": {metric: [low, high]}}}`` as the run report shows it.

        ``delta_ci`` is the 95% paired-bootstrap interval of each metric's mean delta (the report page's
        forest plot); the gate computes its own for the metric it decides on.
        """
        return {name: {"live": lr.to_dict(), "candidate": cr.to_dict(), "delta_ci": delta_cis(lr, cr)}
                for name, (lr, cr) in self.results.items()}


def delta_cis(live: EvalResult, cand: EvalResult, samples: int = 1000, confidence: float = 0.95) -> dict:
    """95% paired-bootstrap interval of ``candidate - live`` per metric, rounded (empty without per-query values)."""
    out = {}
    for m, lv in (live.per_query or {}).items():
        cv = (cand.per_query or {}).get(m)
        if cv is None or len(cv) != len(lv) or not len(lv):
            continue
        low, high = paired_bootstrap(lv, cv, samples, confidence)
        out[m] = [round(low, 4), round(high, 4)]
    return out


def evaluate_candidate(store, read, pairs, live_enc, cand, cfg, golden=None, held_name: str = "synthetic",
                       reencode: bool = True, live: dict | None = None, *, seed: int = 42) -> EvalOutcome:
    """Score live and candidate on the held-out (and golden) queries against one corpus.

    The live side scores against the vectors stored in Qdrant; the candidate encodes the
    same corpus. The corpus holds every chunk a query points at, plus sampled chunks up
    to ``eval_corpus_cap``.

    Args:
        store: Qdrant access (to fetch chunks golden queries point at).
        read: the read stage's result (:class:`vectune.pipeline.read.ReadResult`).
        pairs: the pairs stage's result (its held-out queries).
        live_enc: the live model.
        cand: the candidate model.
        cfg: the gate settings (:class:`~vectune.config.sections.GateConfig`: the corpus cap).
        golden: real labeled queries that decide, if any.
        held_name: what the held-out queries are (``synthetic`` or ``teacher``).
        reencode: the candidate encodes the corpus (full mode); False for a query-side candidate,
            which scores against the same stored vectors as the live model (nothing re-encoded).
        live: a dict shared by the calls for one cycle's candidates: the live side (corpus vectors and
            per-set results) is computed by the first call and reused by the others.
        seed: the seed of the capped corpus's sample.

    Returns:
        The outcome per query set.

    Raises:
        BadInput: no golden query points at a chunk of the collection.
    """

    counts: dict = {}
    must = {k for q in pairs.eval_queries for k in q.relevant}
    sets = {held_name: pairs.eval_queries}
    if golden:
        unknown = read.ensure(store, {k for q in golden for k in q.relevant})
        gq = [EvalQuery(q.text, q.relevant & set(read.by_key), "golden", getattr(q, "grades", None)) for q in golden]
        gq = [q for q in gq if q.relevant]
        counts["eval_set"] = {"queries": len(golden), "usable": len(gq), "unknown_ids": unknown}
        if not gq:
            raise BadInput("no query of the eval set points at a chunk of this collection")
        must |= {k for q in gq for k in q.relevant}
        sets["golden"] = gq
    corpus = eval_corpus(read.chunks, read.by_key, must, cfg.eval_corpus_cap, seed)
    keys = [c.key for c in corpus]
    live = {} if live is None else live
    capped = read.stats.usable > len(corpus)
    if not reencode and cfg.whole_collection and capped:
        return _whole(store, read, live_enc, cand, sets, live, corpus, counts, cfg)
    if "corpus" not in live:
        live["corpus"] = normalize(np.stack([c.vector for c in corpus]))
    live_corpus = live["corpus"]
    cand_corpus = cand.encode_passages([c.text for c in corpus]) if reencode else live_corpus
    results = {}
    for name, qs in sets.items():
        if name not in live:
            live[name] = evaluate(live_enc.encode_queries([q.text for q in qs]), live_corpus, keys, qs)
        cr = evaluate(cand.encode_queries([q.text for q in qs]), cand_corpus, keys, qs)
        results[name] = (live[name], cr)
    counts["eval_corpus"] = {"size": len(corpus), "capped": capped, "cap": cfg.eval_corpus_cap}
    return EvalOutcome(results, corpus, cand_corpus, counts)


def _whole(store, read, live_enc, cand, sets: dict, live: dict, corpus: list, counts: dict, cfg) -> EvalOutcome:
    """A query-side candidate and the live model, judged on every stored vector of the live collection."""
    want = {}
    for name, qs in sets.items():
        texts = [q.text for q in qs]
        if texts and ("whole", name) not in live:
            want[("live", name)] = live_enc.encode_queries(texts)
        if texts:
            want[("cand", name)] = cand.encode_queries(texts)
    t0 = time.perf_counter()
    keys, top, seen = scan_top(store, read.live, read.spec, want)
    scan_s = round(time.perf_counter() - t0, 2)

    def result(side: str, name: str) -> EvalResult:
        r = (score(top[(side, name)], keys, sets[name]) if (side, name) in top
             else evaluate(np.zeros((0, 1)), np.zeros((0, 1)), [], []))
        r.corpus = seen
        return r

    results = {}
    for name in sets:
        if ("whole", name) not in live:  # the live side: scored once per cycle, shared by every candidate
            live[("whole", name)] = result("live", name)
        results[name] = (live[("whole", name)], result("cand", name))
    counts["eval_corpus"] = {"size": seen, "whole": True, "capped": False, "cap": cfg.eval_corpus_cap,
                             "scan_s": scan_s}
    logger.info("judged on the whole collection '%s': %d points scanned in %.1f s", read.live, seen, scan_s)
    return EvalOutcome(results, corpus, None, counts)


def eval_corpus(chunks: list, by_key: dict, must: set[str], cap: int, seed: int) -> list:
    """The evaluation corpus: every chunk in ``must``, then sampled chunks up to ``cap``, sorted by key."""
    import random

    required = [by_key[k] for k in sorted(must) if k in by_key]
    sampled = {c.key for c in chunks}
    if len(sampled | must) <= cap:
        out = {c.key: c for c in chunks}
        out.update({c.key: c for c in required})
        return [out[k] for k in sorted(out)]
    rest = [c for c in chunks if c.key not in must]
    random.Random(seed + 7).shuffle(rest)
    picked = {c.key: c for c in required}
    for c in rest:
        if len(picked) >= cap:
            break
        picked[c.key] = c
    return [picked[k] for k in sorted(picked)]
