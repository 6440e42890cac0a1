"""The cycle's default evidence: every label trains and testifies (cross-fitted), then a final fit on all labels."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers.cli import invoke, qdrant

pytestmark = pytest.mark.slow


def _latest(home, alias="docs"):
    return json.loads((home / "work" / "reports" / alias / "latest.json").read_text())


def _query(r):
    return f"{r['title']}: {' '.join(r['text'].split()[3:12])}"


def _harder(r):
    """Words from the middle of the passage: the live model ranks its passage first for 3 in 4 (room to learn)."""
    return " ".join(r["text"].split()[12:20])


def _log(records, n, start_minute=0, query=_query):
    """One click per record (query = its title and first words, or ``query(record)``), one minute apart."""
    from vectune.apps import feedback

    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=start_minute)
    rows = [{"alias": "docs", "query": query(r), "relevant_ids": [r["_id"]], "signal": "click",
             "ts": (start + timedelta(minutes=i)).isoformat()} for i, r in enumerate(records[:n])]
    with qdrant() as c:
        return feedback.log_many(c, rows)


@pytest.fixture
def trained(monkeypatch):
    """Every query-side training the cross-fit makes: (kind, texts trained on, packaged?)."""
    import vectune.pipeline.crossfit as cf

    calls = []
    real = cf.train_one

    def spy(kind, read, texts, *a, **k):
        calls.append((kind, set(texts), k.get("package", True)))
        return real(kind, read, texts, *a, **k)

    monkeypatch.setattr(cf, "train_one", spy)
    return calls


def test_feedback_is_cross_fitted_by_time_and_no_fold_model_saw_its_own_queries(indexed, home, corpus_records,
                                                                                  monkeypatch, trained):
    monkeypatch.setenv("VECTUNE_MODE", "auto")
    assert _log(corpus_records, 40) == 40
    invoke("run", "--alias", "docs", "--dry-run")
    rep = _latest(home)
    assert rep["evidence"] == "cross-fitted" and rep["status"] == "dry-run"
    cf = rep["crossfit"]
    assert cf["folds"] == 5 and cf["by"] == "time" and cf["queries"] == 40 and cf["sizes"] == [8] * 5
    assert cf["spans"][0][1] < cf["spans"][1][0]  # fold 0 is the oldest stretch
    # every label decides: the pooled evidence covers all 40 queries, for both candidates
    for kind in ("linear", "query"):
        ev = rep["candidates"][kind]["evaluation"]["cross-fitted"]
        assert ev["live"]["queries"] == 40 and ev["candidate"]["queries"] == 40
        assert len(cf["candidates"][kind]["folds"]) == 5 and len(cf["candidates"][kind]["chosen"]) == 5
        assert rep["candidates"][kind]["cost"] == {"serve": "one query-encoder pass", "promote": "copy", "rank": 0}
    assert rep["gate"]["evidence"] == "cross-fitted" and rep["gate"]["family"] == 2
    # the fold models: 2 kinds x 5 folds, none packaged; each trained on 32 queries, never its own fold's 8
    assert len(trained) == 10 and not any(p for _, _, p in trained)
    folds = [{_query(r) for r in corpus_records[8 * k:8 * (k + 1)]} for k in range(5)]
    for i, (_kind, texts, _) in enumerate(trained):
        assert len(texts) == 32 and not texts & folds[i // 2]
    assert "final_fit" not in rep["timings"]  # a dry run does not fit on all labels


def test_a_cross_fitted_promotion_fits_on_every_label_checks_it_and_records_the_labels(indexed, home, corpus_records,
                                                                                       monkeypatch, trained):
    from vectune.config.settings import load_settings
    from vectune.models.store import ModelStore
    from vectune.pipeline.pairs.provenance import fresh_rows
    from vectune.qdrant.feedback import read_rows

    monkeypatch.setenv("VECTUNE_MODE", "query")
    monkeypatch.setenv("VECTUNE_QUERY_CANDIDATES", "linear")
    monkeypatch.setenv("VECTUNE_QUERY_BATCH_SIZE", "8")
    _log(corpus_records, 40, query=_harder)
    invoke("run", "--alias", "docs", "--min-delta", "-1", "--no-bootstrap")
    rep = _latest(home)
    assert rep["status"] == "promoted", rep["reason"]
    n = rep["crossfit"]["queries"]
    assert n == 39  # two passages share their words 12-20: one query, merged
    final = trained[-1]
    assert final[0] == "linear" and final[2] and len(final[1]) == n  # the final fit: every label, packaged
    assert len(trained) == 6  # K fold models + the final fit
    st = rep["crossfit"]["candidates"]["linear"]
    assert st["final"]["train_queries"] == n and st["final"]["point"] == st["final_point"]
    assert st["final_point"][1] > 0  # a trained point beat live over all folds
    assert st["check"]["ok"] and st["check"]["labeled"]["queries"] == n
    assert "final_fit" in rep["timings"]
    assert rep["labels"]["source"] == "feedback" and rep["labels"]["queries"] == n and rep["labels"]["events"] == 40
    assert rep["labels"]["last_ts"].startswith("2026-01-01T00:39")
    with qdrant() as c:
        meta = json.loads(json.dumps(c.get_collection(rep["new_collection"]).config.metadata["vectune"]))
    assert meta["labels"]["last_ts"] == rep["labels"]["last_ts"] and "event_ids" not in meta["labels"]
    manifest = ModelStore.from_settings(load_settings()).manifest(rep["candidate_model"])
    assert len(manifest["labels"]["event_ids"]) == 40 and len(manifest["labels"]["query_keys"]) == n
    # what the watch can score later: only feedback the model neither trained on nor was gated on
    _log(corpus_records, 5, start_minute=60)  # new queries (title + first words)
    _log(corpus_records[:2], 2, start_minute=120, query=_harder)  # old queries asked again: not fresh evidence
    with qdrant() as c:
        rows, _ = read_rows(c, "docs")
    assert len(rows) == 47 and len(fresh_rows(rows, manifest["labels"])) == 5


def test_a_train_set_without_eval_set_is_cross_fitted_in_seeded_folds(indexed, home, tmp_path, corpus_records,
                                                                      monkeypatch):
    monkeypatch.setenv("VECTUNE_MODE", "query")
    monkeypatch.setenv("VECTUNE_CROSSFIT_FOLDS", "4")
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"query": _query(r), "relevant": [r["_id"]]}) + "\n"
                             for r in corpus_records[:24]))
    invoke("run", "--alias", "docs", "--train-set", train, "--dry-run")
    rep = _latest(home)
    assert rep["evidence"] == "cross-fitted"
    assert rep["crossfit"]["by"] == "seeded" and rep["crossfit"]["sizes"] == [6] * 4
    # a fixed eval set keeps its meaning: it decides, nothing is cross-fitted
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(json.dumps({"query": _query(r), "relevant": [r["_id"]]}) + "\n"
                              for r in corpus_records[24:34]))
    invoke("run", "--alias", "docs", "--train-set", train, "--eval-set", golden, "--dry-run")
    rep = _latest(home)
    assert rep["evidence"] == "golden" and "crossfit" not in rep


def test_a_final_fit_unlike_the_fold_models_is_not_promoted(indexed, home, corpus_records, monkeypatch):
    """The check catches a final fit that lost what the fold models had (here: a random rotation of the queries)."""
    import numpy as np

    import vectune.pipeline.crossfit as cf
    from vectune.models.encoder import Encoder
    from vectune.pipeline.train.candidate import Candidate
    from vectune.pipeline.train.query.router import build_asymmetric_model

    monkeypatch.setenv("VECTUNE_MODE", "query")
    monkeypatch.setenv("VECTUNE_QUERY_CANDIDATES", "linear")
    _log(corpus_records, 40)

    def broken(self, kind):
        q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(384, 384)))
        model = build_asymmetric_model(self.live_enc.model, linear=q.astype(np.float32))
        enc = Encoder(model=model, ref="broken", query_prompt=self.live_enc.query_prompt)
        return Candidate(enc, "all-minilm-l6-v2-ft-20260101t000000-linear", self.stats[kind], kind)

    monkeypatch.setattr(cf.CrossFit, "final_fit", broken)
    invoke("run", "--alias", "docs", "--min-delta", "-1", "--no-bootstrap")
    rep = _latest(home)
    check = rep["crossfit"]["candidates"]["linear"]["check"]
    assert not check["ok"] and check["labeled"]["folds_held_out"] > check["labeled"]["final_in_sample"], check
    assert check["unseen"]["final"] < check["unseen"]["fold_models_mean"]
    assert rep["status"] == "kept" and "failed its check" in rep["reason"], rep["reason"]


def test_cross_fitted_evidence_is_scored_on_the_whole_collection_when_the_sample_is_capped(indexed, home,
                                                                                           corpus_records, monkeypatch):
    """Epochs are chosen on the capped sample; the pooled evidence the gate decides on covers every stored vector."""
    monkeypatch.setenv("VECTUNE_MODE", "query")
    monkeypatch.setenv("VECTUNE_EVAL_CORPUS_CAP", "10")  # the sample: only the chunks the queries point at
    monkeypatch.setenv("VECTUNE_MAX_TRAIN_CHUNKS", "20")  # the read keeps 20 of the 40 chunks: widen acts
    assert _log(corpus_records, 20) == 20  # 20 of the 40 chunks are answers
    invoke("run", "--alias", "docs", "--dry-run")
    rep = _latest(home)
    assert rep["evidence"] == "cross-fitted"
    assert rep["counts"]["eval_corpus"]["whole"] is True
    assert rep["counts"]["eval_corpus"]["size"] == len(corpus_records)
    ev = rep["evaluation"]["cross-fitted"]
    assert ev["live"]["corpus"] == ev["candidate"]["corpus"] == len(corpus_records) and ev["live"]["queries"] == 20
    widened = rep["counts"]["query_corpus"]  # the training queries' neighbours joined the query side's corpus,
    assert widened["added"] > 0 and widened["searched"] == 0  # found once, by mining: not searched again

    monkeypatch.setenv("VECTUNE_WHOLE_COLLECTION", "false")  # the old behaviour: decided on the sample, said so
    invoke("run", "--alias", "docs", "--dry-run")
    rep = _latest(home)
    assert rep["counts"]["eval_corpus"]["capped"] is True and "whole" not in rep["counts"]["eval_corpus"]
    assert rep["evaluation"]["cross-fitted"]["live"]["corpus"] < len(corpus_records)
