"""People's vetoes (vectune.pipeline.pairs.rejections): the store, the file formats, torn lines."""

from __future__ import annotations

import json

import pytest

from tests.pipeline.pairs.test_review import examples, key_of
from vectune.errors import BadInput
from vectune.observe import pairs_view
from vectune.pipeline.pairs import rejections, review
from vectune.pipeline.pairs.labeled import LabeledQuery
from vectune.pipeline.pairs.teachers.base import Query


def test_rejected_pair_and_query_never_reach_training_again(tmp_path):
    run = tmp_path / "run"
    rej = rejections.Rejections(run)
    assert rej.add_pair("Question 3?", "p3") == 1
    assert rej.add_pair("question 3", "p3") == 0  # known already: not repeated
    assert rej.add_query("QUESTION 5") == 1
    exs = examples(8)
    kept, n = rej.filter(exs, key_of=key_of)
    assert n == 2 and [e.anchor for e in kept] == [f"Question {i}?" for i in (0, 1, 2, 4, 6, 7)]

    # a later cycle: a new Rejections reads the file; the same pair as a Query, a LabeledQuery, a text-only Example
    later = rejections.Rejections(run)
    assert later.counts() == {"pairs": 1, "queries": 1}
    qs = [Query("Question 3?", "p3", "feedback"), Query("Question 3?", "p9", "feedback"),
          Query("question 5", "p5", "openai")]
    kept_q, n_q = later.filter(qs)
    assert n_q == 2 and [(q.text, q.chunk_id) for q in kept_q] == [("Question 3?", "p9")]
    lq = [LabeledQuery("Question 3?", {"p3", "p4"}), LabeledQuery("Question 3?", {"p3"}),
          LabeledQuery("question 5?", {"p1"}), LabeledQuery("Question 6?", {"p6"})]
    kept_l, n_l = later.filter(lq)
    assert n_l == 2 and [(q.text, q.relevant) for q in kept_l] == [("Question 3?", {"p4"}), ("Question 6?", {"p6"})]
    assert lq[0].relevant == {"p3", "p4"}  # the input is not changed
    kept_none, n_none = later.filter(exs)  # without key_of, only the whole-query veto can match
    assert n_none == 1


def test_rejection_by_text_hash_when_keys_are_unknown(tmp_path):
    rows = review.sample_pairs(examples(4), k=4)  # no key_of: positives named by text hash
    assert all(r["positive_key"] is None and r["pair_id"] for r in rows)
    rows[2]["reject"] = True
    f = tmp_path / "review.jsonl"
    pairs_view.write_jsonl(rows, f)
    records, skipped = rejections.reject_file(f)
    assert skipped == 0 and len(records) == 1 and records[0]["kind"] == "pair"
    rej = rejections.Rejections(tmp_path / "run")
    assert rej.add(records) == 1
    kept, n = rej.filter(examples(4))
    assert n == 1 and [e.anchor for e in kept] == ["Question 0?", "Question 1?", "Question 3?"]
    assert rej.row_rejected(rows[2]) and not rej.row_rejected(rows[1])


def test_reject_file_formats(tmp_path):
    rows = review.sample_pairs(examples(4), k=4, key_of=key_of)
    rows[0]["reject"] = True
    rows[1]["reject"] = "query"
    rows[3]["reject"] = "false"
    f = tmp_path / "a.jsonl"
    pairs_view.write_jsonl(rows + [{"reject": True}], f)  # the last one names nothing: counted
    records, skipped = rejections.reject_file(f)
    assert skipped == 1
    assert [(r["kind"], r.get("pair_id"), r.get("query")) for r in records] == [
        ("pair", rows[0]["pair_id"], "Question 0?"), ("query", None, "Question 1?")]

    plain = tmp_path / "b.txt"
    plain.write_text(f"{rows[2]['pair_id']}\nQuestion 7?\n\n")
    assert [r["kind"] for r in rejections.reject_file(plain)[0]] == ["pair", "query"]
    arr = tmp_path / "c.json"
    arr.write_text(json.dumps([rows[2]["pair_id"], "Question 8?"]))
    assert [r["kind"] for r in rejections.reject_file(arr)[0]] == ["pair", "query"]

    none = tmp_path / "d.jsonl"
    pairs_view.write_jsonl(review.sample_pairs(examples(2), k=2), none)
    with pytest.raises(BadInput, match="marks no pair or query as rejected"):
        rejections.reject_file(none)
    with pytest.raises(BadInput, match="not found"):
        rejections.reject_file(tmp_path / "missing.jsonl")


def test_rejections_survive_a_torn_last_line(tmp_path):
    rej = rejections.Rejections(tmp_path)
    rej.add_query("bad one")
    with open(rej.path, "a") as f:
        f.write('{"kind": "query", "que')  # a crash mid-write
    again = rejections.Rejections(tmp_path)
    assert again.counts() == {"pairs": 0, "queries": 1}
