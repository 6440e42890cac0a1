"""The cycle learns from the alias's feedback: golden = newest share (crossfit off), explicit negatives, vetoes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers.cli import invoke, qdrant

pytestmark = pytest.mark.slow


def _latest(home, alias="docs"):
    return json.loads((home / "work" / "reports" / alias / "latest.json").read_text())


def _log(records, n, *, negatives=False):
    """Log one click per record (query = the record's title and first words), one minute apart."""
    from vectune.apps import feedback

    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i, r in enumerate(records[:n]):
        words = r["text"].split()[3:12]
        row = {"alias": "docs", "query": f"{r['title']}: {' '.join(words)}", "relevant_ids": [r["_id"]],
               "signal": "click", "ts": (start + timedelta(minutes=i)).isoformat()}
        if negatives and i % 2 == 0:
            other = records[(i + 7) % len(records)]["_id"]
            rows.append({**row, "relevant_ids": [other], "signal": "thumbs_down",
                         "ts": (start + timedelta(minutes=i, seconds=30)).isoformat()})
        rows.append(row)
    with qdrant() as c:
        return feedback.log_many(c, rows)


def test_cycle_learns_from_feedback_with_explicit_negatives(indexed, home, corpus_records, monkeypatch):
    monkeypatch.setenv("VECTUNE_MODE", "query")
    monkeypatch.setenv("VECTUNE_CROSSFIT", "false")  # the held-out golden share (cross-fitting: test_cycle_crossfit)
    monkeypatch.setenv("VECTUNE_FEEDBACK_MIN_GOLDEN", "5")
    monkeypatch.setenv("VECTUNE_FEEDBACK_MIN_TRAIN", "5")
    assert _log(corpus_records, 40, negatives=True) == 60
    invoke("run", "--alias", "docs", "--dry-run", "--no-bootstrap", "--min-delta", "-1")
    rep = _latest(home)
    fb = rep["counts"]["feedback"]
    assert fb["enough"] and fb["rows"] == 60 and fb["golden"] == 12 and fb["train"] == 28
    assert fb["negatives"] >= 1
    assert rep["evidence"] == "golden"
    assert rep["counts"]["eval_set"]["usable"] == 12
    assert rep["counts"]["feedback_pairs"]["pairs"] == 28
    assert rep["counts"]["negatives"]["explicit"] >= 1  # users' thumbs-down reached the hard negatives
    assert rep["pairs_sample"]
    # golden and training queries never overlap: the newest 12 minutes decide, the older train
    lines = [json.loads(x) for x in (home / "work" / "runs" / "docs" / "pairs-sample.jsonl").read_text().splitlines()]
    assert {row["source"] for row in lines} >= {"feedback"}
    trained = {row["query"] for row in lines if row["source"] == "feedback"}
    assert len(trained) == 28
    newest = {f"{r['title']}: {' '.join(r['text'].split()[3:12])}" for r in corpus_records[28:40]}
    assert not trained & newest


def test_too_little_feedback_says_so_and_falls_back(indexed, home, corpus_records, monkeypatch):
    monkeypatch.setenv("VECTUNE_MODE", "query")
    _log(corpus_records, 5)
    invoke("run", "--alias", "docs")
    rep = _latest(home)
    assert "too little feedback" in rep["counts"]["feedback"]["message"]
    assert rep["status"] == "kept" and rep["evidence"] == "synthetic"  # the usual evidence rules


def test_a_rejected_query_never_trains_again(indexed, home, corpus_records, monkeypatch, tmp_path):
    monkeypatch.setenv("VECTUNE_MODE", "query")
    monkeypatch.setenv("VECTUNE_FEEDBACK_MIN_GOLDEN", "5")
    monkeypatch.setenv("VECTUNE_FEEDBACK_MIN_TRAIN", "5")
    _log(corpus_records, 30)
    invoke("run", "--alias", "docs", "--dry-run")
    out = tmp_path / "pairs.jsonl"
    invoke("pairs", "--alias", "docs", "--sample", "100", "--format", "jsonl", "-o", out)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    bad = rows[0]
    bad["reject"] = True
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    invoke("pairs", "reject", out, "--alias", "docs")
    invoke("run", "--alias", "docs", "--dry-run")
    rep = _latest(home)
    rej = rep["counts"]["rejected"]
    assert rej["labeled_queries"] + rej["train"] >= 1
    lines = (home / "work" / "runs" / "docs" / "pairs-sample.jsonl").read_text().splitlines()
    assert bad["pair_id"] not in {json.loads(x)["pair_id"] for x in lines}
