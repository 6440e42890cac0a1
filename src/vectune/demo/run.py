"""``vectune demo``: the main job on embedded defaults, end to end.

Two demos, each starting from a clean alias so it shows the whole job every time:

* ``scifact`` (the default): the product working. 2,000 SciFact abstracts (shipped in the
  package, see ``data/scifact_demo/README.md`` for license and attribution) are indexed with
  the bundled MiniLM into embedded Qdrant; the train claims are logged as an app's click
  feedback through :func:`vectune.feedback.log` (a simulated log, one claim a minute);
  one cycle with the default settings (mode auto, cross-fitted evidence: every click trains
  and is scored by models that never saw it; only the cross-fit's time budget is 5 minutes,
  not a cron's 15, unless ``VECTUNE_CROSSFIT_BUDGET_S`` says otherwise) picks a query-side candidate, fits it on every
  click and promotes; then ``status``, a search through the alias with
  :func:`vectune.resolve`, the never-seen test claims scored on both versions, and a
  rollback that brings the old version back.
* ``pydoc``: CPython's reference topics (shipped with every Python, see
  :mod:`vectune.demo.corpus`) with the offline teacher, decided by a hand-written golden
  set — the safe "kept" path.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import UTC, datetime, timedelta
from importlib.resources import files

import numpy as np

from vectune.api import Alias
from vectune.config.settings import Settings
from vectune.core.jsonl import iter_objects
from vectune.core.vectors import normalize
from vectune.demo.corpus import golden_set_path, write_demo_corpus
from vectune.models.store import ModelStore
from vectune.observe import report as report_mod
from vectune.pipeline.evaluate import EvalQuery, evaluate
from vectune.pipeline.paired import paired_bootstrap
from vectune.pipeline.pairs.labeled import load as load_labeled
from vectune.qdrant import lineage
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)


#: The cross-fit's time budget in the demo (the setting's default, 900 s, is sized for a nightly cron); an explicit
#: ``VECTUNE_CROSSFIT_BUDGET_S`` wins.
DEMO_CROSSFIT_BUDGET_S = 300.0

def reset_alias(settings: Settings, alias: str) -> None:
    """Delete every collection of a demo alias and its run state."""
    with Store.open(settings) as store:
        for name, _ in lineage.versions(store, alias):
            store.delete_collection(name)
    shutil.rmtree(settings.run_dir(alias), ignore_errors=True)


def run_demo(settings: Settings, alias: str = "pydoc-demo", max_train_chunks: int = 300,
             queries_per_chunk: int = 2, epochs: float = 1.0, golden: bool = True) -> dict:
    """Index the demo corpus and run one cycle.

    Args:
        settings: base settings (paths, Qdrant).
        alias: the demo's alias.
        max_train_chunks: chunks sampled for training (kept small: CPU minutes).
        queries_per_chunk: offline queries per chunk.
        epochs: training epochs.
        golden: decide with the shipped golden set (else synthetic, allowed explicitly).

    Returns:
        The run report.
    """
    corpus = write_demo_corpus(settings.work_dir / "demo" / "pydoc_topics.jsonl")
    reset_alias(settings, alias)
    logger.info("indexing the demo corpus (%s) ...", corpus)
    Alias(alias, settings).index(corpus, replace=True)
    tuned = Alias(alias, settings, **{
        "max_train_chunks": max_train_chunks,
        "queries_per_chunk": queries_per_chunk,
        "epochs": epochs,
        "max_seq_length": min(settings.model.max_seq_length, 128),
        "eval_set": golden_set_path() if golden else None,
        "allow_synthetic_gate": settings.gate.allow_synthetic or not golden,
    })
    return tuned.run()


# ----------------------------------------------------------------------------- SciFact: the product working
def scifact_path(name: str):
    """A file of the shipped SciFact subset (``corpus``, ``train`` or ``test``)."""
    return files("vectune") / "data" / "scifact_demo" / f"{name}.jsonl.gz"


def run_scifact_demo(settings: Settings, alias: str = "scifact-demo", say=print) -> dict:
    """Index the SciFact subset, log its train claims as feedback, run one query-side cycle, then
    show status, a search through the alias, the test claims on both versions, and a rollback.

    Args:
        settings: where state lives (embedded Qdrant by default).
        alias: the demo alias.
        say: where the narration goes (one line per call).

    Returns:
        ``{"run": report dict, "test": {...}, "rollback": {...}}``.
    """
    t0 = time.perf_counter()
    if "budget_s" not in settings.labels.model_fields_set:  # a cron's default is 15 min; the demo's, 5
        settings = settings.replace(crossfit_budget_s=DEMO_CROSSFIT_BUDGET_S)
    demo = Alias(alias, settings)
    corpus = scifact_path("corpus")
    reset_alias(settings, alias)
    with Store.open(settings) as store:
        store.delete_where(settings.labels.collection, "alias", alias)
    say(f"1/6 indexing {corpus.name} (2,000 SciFact abstracts) with the bundled MiniLM into embedded Qdrant ...")
    out = demo.index(corpus, with_title=True, replace=True)
    say(f"    {out['points']} points -> {out['collection']}  ({time.perf_counter() - t0:.0f} s)")

    claims = [obj for _, obj in iter_objects(scifact_path("train"), "train claims")]
    start = datetime.now(UTC) - timedelta(minutes=len(claims))
    rows = [{"alias": alias, "query": c["query"], "relevant_ids": list(c["relevant"]), "signal": "click",
             "ts": (start + timedelta(minutes=i)).isoformat()} for i, c in enumerate(claims)]
    n = demo.log_many(rows)
    say(f"2/6 the app logged {n} clicks (SciFact train claims -> the abstracts that answer them) with "
        "vectune.feedback.log_many")

    how = (f"every click trains and testifies, cross-fitted in {settings.labels.folds} folds by time, "
           f"{settings.labels.budget_s:.0f} s for all trainings"
           if settings.labels.crossfit else
           f"the newest {settings.labels.golden_fraction:.0%} of the clicks decide, the older rest trains")
    say(f"3/6 one cycle, default settings (mode {settings.mode}): {how}; the query side learns against the stored "
        "vectors (nothing re-encoded) ...")
    rep = demo.run().to_dict()
    say(report_mod.summary(rep))
    result: dict = {"run": rep}
    if rep.get("status") != "promoted":
        return result

    st = demo.status()
    lin = st["lineage"]
    say(f"4/6 status: alias '{alias}' -> {st['live_collection']}\n"
        f"    queries: {lin.get('query_model')}  passages (apps keep writing with): {lin.get('passage_model')}\n"
        f"    rollback target: {st['rollback_target']}")

    test = [q for q in load_labeled(scifact_path("test"), "test claims")]
    with Store.open(settings) as store:
        res = demo.resolve(store.client)
        collection, enc = res
        q = test[0]
        hits = store.client.query_points(collection, query=enc.encode_queries([q.text])[0].tolist(), limit=3,
                                         with_payload=["doc_id", "title"]).points
        say(f"5/6 search through the alias with vectune.resolve (query model {res.query_model}):\n"
            f"    claim: {q.text}")
        for h in hits:
            mark = "  <- the answer" if str((h.payload or {}).get("doc_id")) in q.relevant else ""
            say(f"    {h.score:.3f}  {(h.payload or {}).get('title', '')[:90]}{mark}")
        # the 300 test claims were never seen by the operator: score both versions on them
        keys, vecs = [], []
        for recs, _ in store.scroll(collection, vectors=True, batch=512):
            for r in recs:
                keys.append(str((r.payload or {}).get("doc_id")))
                vecs.append(r.vector)
        corpus_vecs = normalize(np.asarray(vecs, dtype=np.float32))
        qs = [EvalQuery(t.text, set(t.relevant)) for t in test]
        old = ModelStore.from_settings(settings).load_lineage(store.metadata(rep["live_collection"]))
        live_r = evaluate(old.encode_queries([x.text for x in qs]), corpus_vecs, keys, qs)
        new_r = evaluate(enc.encode_queries([x.text for x in qs]), corpus_vecs, keys, qs)
    lo, hi = paired_bootstrap(live_r.per_query["ndcg@10"], new_r.per_query["ndcg@10"])
    result["test"] = {"queries": len(qs), "live_ndcg@10": round(live_r.means["ndcg@10"], 4),
                      "new_ndcg@10": round(new_r.means["ndcg@10"], 4), "ci": [round(lo, 4), round(hi, 4)]}
    say(f"    the {len(qs)} test claims (never seen by vectune): nDCG@10 {live_r.means['ndcg@10']:.3f} -> "
        f"{new_r.means['ndcg@10']:.3f} ({new_r.means['ndcg@10'] - live_r.means['ndcg@10']:+.3f}, "
        f"95% CI [{lo:+.3f}, {hi:+.3f}])")

    rb = demo.rollback()
    result["rollback"] = rb
    say(f"6/6 rollback: '{alias}' {rb['from']} -> {rb['to']} (no re-encoding; writes since kept)")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    say(f"demo done in {result['seconds']:.0f} s")
    return result
