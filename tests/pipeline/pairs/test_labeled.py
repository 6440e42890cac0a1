"""Labeled query files (golden eval sets, query logs): good rows, bad rows, id normalisation."""

from __future__ import annotations

import gzip
import json
import uuid

import pytest

from vectune.errors import BadInput
from vectune.pipeline.pairs.labeled import LabeledQuery, load
from vectune.qdrant.store import point_id_for


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_good_rows_with_every_key_spelling(tmp_path):
    u = str(uuid.UUID(int=7))
    p = _write(tmp_path / "eval.jsonl", [
        {"query": "  what is MI? ", "relevant": ["doc-17", "doc-18"]},
        {"text": "second", "relevant_ids": [3, "4"]},
        {"question": "third", "doc_ids": u},
        "",
        {"query": "fourth", "ids": 12},
        {"query": "fifth", "positive_ids": ["x"], "extra": "ignored"},
    ])
    got = load(p)
    assert got == [
        LabeledQuery("what is MI?", {str(point_id_for("doc-17")), str(point_id_for("doc-18"))}),
        LabeledQuery("second", {"3", "4"}),
        LabeledQuery("third", {u}),
        LabeledQuery("fourth", {"12"}),
        LabeledQuery("fifth", {str(point_id_for("x"))}),
    ]


def test_ids_normalise_like_the_indexer_does(tmp_path):
    # string ids become the same UUID5 that `vectune index` gives the point; digit strings become ints
    p = _write(tmp_path / "q.jsonl", [{"query": "q", "relevant": ["doc-17", "0042", 42]}])
    rel = load(p)[0].relevant
    assert rel == {str(uuid.uuid5(uuid.UUID("6f1c1f3e-9a43-4c55-9d38-6c1b8a5e0a11"), "doc-17")), "42"}


def test_gzip_file(tmp_path):
    p = tmp_path / "q.jsonl.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"query": "zipped", "relevant": [1]}) + "\n")
    assert load(p) == [LabeledQuery("zipped", {"1"})]


@pytest.mark.parametrize("row,message", [
    ({"relevant": ["a"]}, "needs a 'query' string"),
    ({"query": "   ", "relevant": ["a"]}, "needs a 'query' string"),
    ({"query": 5, "relevant": ["a"]}, "needs a 'query' string"),
    ({"query": "q"}, "non-empty 'relevant' id list"),
    ({"query": "q", "relevant": []}, "non-empty 'relevant' id list"),
    ({"query": "q", "relevant": {"a": 0}}, "non-empty 'relevant' id list"),
    ({"query": "q", "relevant": {"a": "high"}}, "graded 'relevant' must map ids to numbers"),
    ("[1, 2]", "must be a JSON object"),
    ("{not json", "not valid JSON"),
])
def test_bad_row_names_file_and_line(tmp_path, row, message):
    p = _write(tmp_path / "bad.jsonl", [{"query": "fine", "relevant": ["a"]}, row])
    with pytest.raises(BadInput) as e:
        load(p, "train set")
    assert message in str(e.value)
    assert f"{p}:2" in str(e.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(BadInput, match="eval set file not found"):
        load(tmp_path / "nope.jsonl")
    with pytest.raises(BadInput, match="holds no queries"):
        load(_write(tmp_path / "empty.jsonl", ["", "  "]))


def test_graded_labels_keep_their_grades(tmp_path):
    from vectune.qdrant.store import point_id_for

    path = tmp_path / "graded.jsonl"
    path.write_text(json.dumps({"query": "what is MI?", "relevant": {"doc-1": 2, "doc-2": 1, "doc-3": 0}}) + "\n")
    (q,) = load(path)
    one, two = str(point_id_for("doc-1")), str(point_id_for("doc-2"))
    assert q.relevant == {one, two}  # grade 0 is not relevant
    assert q.grades == {one: 2.0, two: 1.0}
