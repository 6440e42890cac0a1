"""Pairs people can read and veto, and the `feedback` / `pairs` commands through the real CLI."""

from __future__ import annotations

import json

import pytest

from vectune.observe import pairs_view
from vectune.pipeline.pairs import review
from vectune.pipeline.pairs.labeled import LabeledQuery
from vectune.pipeline.pairs.negatives import Example
from vectune.pipeline.pairs.teachers.base import Query


def examples(n: int = 30) -> list[Example]:
    srcs = ["feedback", "openai", "offline:title", "train-set"]
    return [Example(f"Question {i}?", f"positive passage {i} | with a pipe\nand a newline", [f"negative {i}"],
                    srcs[i % 4]) for i in range(n)]


def key_of(text: str) -> str | None:
    for prefix, k in (("positive passage ", "p"), ("negative ", "n")):
        if text.startswith(prefix):
            return k + text[len(prefix):].split(" ")[0]
    return None


# --------------------------------------------------------------------------- sample
def test_sample_is_seeded_and_readable():
    rows = review.sample_pairs(examples(), k=10, seed=1, key_of=key_of, snippet_chars=20)
    assert len(rows) == 10 and rows == review.sample_pairs(examples(), k=10, seed=1, key_of=key_of, snippet_chars=20)
    assert rows != review.sample_pairs(examples(), k=10, seed=2, key_of=key_of, snippet_chars=20)
    r = rows[0]
    assert set(r) == {"pair_id", "query", "positive_key", "positive_hash", "positive_snippet", "negative_key",
                      "negative_snippet", "source", "source_detail", "reject"}
    i = int(r["query"].split()[1].rstrip("?"))
    assert r["positive_key"] == f"p{i}" and r["negative_key"] == f"n{i}" and r["negative_snippet"] == f"negative {i}"
    snip = r["positive_snippet"]
    assert len(snip) <= 20 and "\n" not in snip and snip.endswith("…")
    assert r["pair_id"] == review.pair_id(r["query"], f"p{i}") and r["reject"] is False
    assert {x["source"] for x in review.sample_pairs(examples(), k=100)} == set(review.SOURCES)
    assert len(review.sample_pairs(examples(5), k=100)) == 5


def test_pair_id_is_stable_and_ignores_case_and_spacing():
    assert review.pair_id("What is MI?", "17") == review.pair_id("what  is mi", "17")
    assert review.pair_id("What is MI?", "17") != review.pair_id("What is MI?", "18")
    assert review.pair_id("a", 17) == review.pair_id("a", "17")  # int and str keys agree
    q = Query("What is MI?", "17", "openai")
    (row,) = review.sample_pairs([q], k=5)
    assert row["pair_id"] == review.pair_id("What is MI?", "17") and row["source"] == "teacher"
    assert row["negative_snippet"] is None


def test_writers_and_the_run_sample(tmp_path):
    rows = review.sample_pairs(examples(6), k=6, key_of=key_of)
    path = review.write_run_sample(tmp_path / "run", rows)
    assert path.name == review.SAMPLE_FILE
    assert review.read_run_sample(tmp_path / "run") == rows
    with pytest.raises(review.BadInput, match="no training-pair sample for alias 'a' yet.*run a cycle"):
        review.read_run_sample(tmp_path / "empty", "a")


# --------------------------------------------------------------------------- rejections
def test_rejected_pair_and_query_never_reach_training_again(tmp_path):
    run = tmp_path / "run"
    rej = review.Rejections(run)
    assert rej.add_pair("Question 3?", "p3") == 1
    assert rej.add_pair("question 3", "p3") == 0  # known already: not repeated
    assert rej.add_query("QUESTION 5") == 1
    exs = examples(8)
    kept, n = rej.filter(exs, key_of=key_of)
    assert n == 2 and [e.anchor for e in kept] == [f"Question {i}?" for i in (0, 1, 2, 4, 6, 7)]

    # a later cycle: a new Rejections reads the file; the same pair as a Query, a LabeledQuery, a text-only Example
    later = review.Rejections(run)
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
    records, skipped = review.reject_file(f)
    assert skipped == 0 and len(records) == 1 and records[0]["kind"] == "pair"
    rej = review.Rejections(tmp_path / "run")
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
    records, skipped = review.reject_file(f)
    assert skipped == 1
    assert [(r["kind"], r.get("pair_id"), r.get("query")) for r in records] == [
        ("pair", rows[0]["pair_id"], "Question 0?"), ("query", None, "Question 1?")]

    plain = tmp_path / "b.txt"
    plain.write_text(f"{rows[2]['pair_id']}\nQuestion 7?\n\n")
    assert [r["kind"] for r in review.reject_file(plain)[0]] == ["pair", "query"]
    arr = tmp_path / "c.json"
    arr.write_text(json.dumps([rows[2]["pair_id"], "Question 8?"]))
    assert [r["kind"] for r in review.reject_file(arr)[0]] == ["pair", "query"]

    none = tmp_path / "d.jsonl"
    pairs_view.write_jsonl(review.sample_pairs(examples(2), k=2), none)
    with pytest.raises(review.BadInput, match="marks no pair or query as rejected"):
        review.reject_file(none)
    with pytest.raises(review.BadInput, match="not found"):
        review.reject_file(tmp_path / "missing.jsonl")


def test_rejections_survive_a_torn_last_line(tmp_path):
    rej = review.Rejections(tmp_path)
    rej.add_query("bad one")
    with open(rej.path, "a") as f:
        f.write('{"kind": "query", "que')  # a crash mid-write
    again = review.Rejections(tmp_path)
    assert again.counts() == {"pairs": 0, "queries": 1}


# --------------------------------------------------------------------------- CLI
def run(*args, expect: int = 0):
    """The real ``vectune`` CLI (its feedback and pairs groups)."""
    from tests.helpers.cli import invoke

    return invoke(*args, expect=expect)


def make_alias(alias: str = "docs", n: int = 10) -> None:
    from qdrant_client import models

    from vectune.config.settings import load_settings
    from vectune.qdrant.store import Store, point_id_for

    with Store.open(load_settings()) as store:
        store.create_collection(f"{alias}-live", 4)
        store.upsert(f"{alias}-live", [models.PointStruct(id=point_id_for(f"doc-{i}"), vector=[1.0, i, 0, 0],
                                                          payload={"text": f"t{i}"}) for i in range(n)])
        store.swap_alias(alias, f"{alias}-live")


def test_cli_feedback_import_stats_export(home, tmp_path, monkeypatch):
    make_alias("docs")
    res = run("feedback", "stats", "--alias", "docs")
    assert "no feedback logged for alias 'docs'" in res.output

    f = tmp_path / "events.jsonl"
    f.write_text("\n".join([
        json.dumps({"query": "a", "ids": ["doc-1"], "ts": "2025-01-01T00:00:00Z"}),
        json.dumps({"query": "b", "ids": ["doc-2", "gone"], "signal": "thumbs_down", "ts": "2025-01-02T00:00:00Z"}),
        json.dumps({"query": "c", "ids": ["gone"], "signal": "cite", "ts": "2025-01-03T00:00:00Z"}),
        "not json",
        json.dumps({"query": "d", "ids": ["doc-3"], "signal": "meh"}),
    ]) + "\n")
    res = run("feedback", "import", f, "--alias", "docs")
    assert "imported 3 of 5 rows into 'vectune_feedback'; skipped 2 malformed" in res.output
    assert "not_json" in res.output and "unknown_signal" in res.output

    res = run("feedback", "stats", "--alias", "docs")
    assert "3 rows, 3 distinct queries" in res.output and "by signal: cite 1, click 1, thumbs_down 1" in res.output
    assert "usable rows: 2 of 3 (67%); 1 ids no longer in docs-live" in res.output
    assert "2025-01-01T00:00:00" in res.output and "2025-01-03T00:00:00" in res.output
    monkeypatch.setenv("VECTUNE_ALIAS", "docs")  # options fall back to the environment like the main CLI
    st = json.loads(run("feedback", "stats", "--json").output)
    assert st["rows"] == 3 and st["usable_share"] == pytest.approx(0.6667)

    out = tmp_path / "out" / "fb.jsonl"
    res = run("feedback", "export", "-o", out)
    assert "exported 3 feedback rows of alias 'docs'" in res.output
    assert [json.loads(x)["query"] for x in out.read_text().splitlines()] == ["a", "b", "c"]
    res = run("feedback", "stats", "--alias", "elsewhere")
    assert res.output.startswith("no feedback logged for alias 'elsewhere'")


def test_cli_import_of_only_bad_rows_is_bad_input(home, tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text("nope\n{}\n")
    res = run("feedback", "import", f, "--alias", "docs", expect=3)
    assert "every row was malformed" in res.output
    res = run("feedback", "import", tmp_path / "missing.jsonl", expect=3)
    assert "feedback file not found" in res.output


def test_cli_pairs_show_export_and_reject(home, tmp_path):
    from vectune.config.settings import load_settings

    res = run("pairs", "--alias", "docs", expect=3)
    assert "no training-pair sample for alias 'docs' yet" in res.output

    run_dir = load_settings().run_dir("docs")
    review.write_run_sample(run_dir, review.sample_pairs(examples(30), k=100, key_of=key_of))
    md = run("pairs", "--alias", "docs", "--sample", "5").output
    assert md.startswith("# Training pairs of alias 'docs' (last run, 5 shown)") and md.count("\n| ") == 6
    out = tmp_path / "review.jsonl"
    res = run("pairs", "--alias", "docs", "--sample", "10", "--seed", "3", "-o", out)
    assert "wrote 10 pairs" in res.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 10 and all(r["rejected"] is False for r in rows)
    rows[0]["reject"] = True
    rows[1]["reject"] = "query"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = run("pairs", "reject", out, "--alias", "docs")
    assert "recorded 2 new rejections for alias 'docs' (1 pairs, 1 whole queries" in res.output
    assert "1 pairs and 1 queries vetoed in all" in res.output
    res = run("pairs", "reject", out, "--alias", "docs")  # the same file again: nothing new
    assert "recorded 0 new rejections" in res.output and "2 already known" in res.output

    again = [json.loads(x) for x in run("pairs", "--alias", "docs", "--sample", "10", "--seed", "3",
                                        "--format", "jsonl").output.splitlines()]
    assert [r["rejected"] for r in again[:2]] == [True, True] and not any(r["rejected"] for r in again[2:])
    # what the next cycle does with them
    kept, n = review.Rejections(run_dir).filter(examples(30), key_of=key_of)
    assert n == 2 and rows[0]["query"] not in {e.anchor for e in kept}
    assert rows[1]["query"] not in {e.anchor for e in kept}
