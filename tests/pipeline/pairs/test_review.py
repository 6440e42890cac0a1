"""Pairs people can read and veto, and the `feedback` / `pairs` commands through the real CLI."""

from __future__ import annotations

import json

import pytest

from vectune.pipeline.pairs import rejections, review
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
    kept, n = rejections.Rejections(run_dir).filter(examples(30), key_of=key_of)
    assert n == 2 and rows[0]["query"] not in {e.anchor for e in kept}
    assert rows[1]["query"] not in {e.anchor for e in kept}
