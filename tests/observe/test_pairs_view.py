"""Pair samples for people (vectune.observe.pairs_view): the Markdown table and the JSONL to edit."""

from __future__ import annotations

import json

from tests.pipeline.pairs.test_review import examples, key_of
from vectune.observe import pairs_view
from vectune.pipeline.pairs import review


def test_markdown_table_and_jsonl(tmp_path):
    rows = review.sample_pairs(examples(6), k=6, key_of=key_of)
    md = pairs_view.markdown(rows, title="pairs")
    assert md.startswith("# pairs") and md.count("\n| ") == 7  # header + 6 rows
    assert "with a pipe" in md and "\\|" in md  # pipes escaped, the table keeps its columns
    assert "vectune pairs reject" in md
    out = tmp_path / "x.jsonl"
    assert pairs_view.write_jsonl(rows, out) == 6 and [json.loads(x) for x in out.read_text().splitlines()] == rows
