"""Feedback files and counts (vectune.ops.feedback): import, export, stats.

Real embedded Qdrant (in memory), no mocks.
"""

from __future__ import annotations

import gzip
import json

import pytest

from tests.helpers.feedback import make_live, ts
from vectune.apps.feedback import FEEDBACK_COLLECTION, log
from vectune.errors import BadInput
from vectune.ops.feedback import export, import_jsonl, stats
from vectune.qdrant.feedback import read_rows


# --------------------------------------------------------------------------- import / export / stats
def test_import_counts_malformed_rows_and_reimport_is_idempotent(memory_store, tmp_path):
    lines = [
        json.dumps({"alias": "docs", "query": "ok one", "ids": ["doc-1"], "ts": ts(0)}),
        json.dumps({"query": "ok two", "relevant": ["doc-2"], "signal": "thumbs_up", "ts": ts(1)}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"query": "", "ids": ["doc-3"]}),
        json.dumps({"query": "no ids", "ids": []}),
        json.dumps({"query": "bad signal", "ids": ["doc-3"], "signal": "love"}),
        json.dumps({"query": "bad time", "ids": ["doc-3"], "ts": "tomorrow"}),
        "",
        json.dumps({"query": "ok three", "ids": [4], "signal": "skip", "ts": 1735700000}),
    ]
    path = tmp_path / "jsonl"
    path.write_text("\n".join(lines) + "\n")
    res = import_jsonl(memory_store, path, default_alias="docs")
    assert res.rows == 9 and res.imported == 3
    assert res.skipped == {"not_json": 1, "not_an_object": 1, "no_query": 1, "no_ids": 1, "unknown_signal": 1,
                           "bad_ts": 1}
    assert res.examples[0].startswith("line 3:")
    assert import_jsonl(memory_store, path, default_alias="docs").imported == 3
    assert memory_store.count(FEEDBACK_COLLECTION) == 3  # same events, same points

    out = tmp_path / "out.jsonl"
    assert export(memory_store, out, "docs") == 3
    exported = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["query"] for r in exported] == ["ok one", "ok two", "ok three"]  # oldest first
    from qdrant_client import QdrantClient

    other = QdrantClient(location=":memory:")  # a second server: the export imports there as it was
    gz = tmp_path / "out.jsonl.gz"
    gz.write_bytes(gzip.compress(out.read_bytes()))
    assert import_jsonl(other, gz).imported == 3
    assert [r.to_json() for r in read_rows(other, "docs")[0]] == exported


def test_import_alias_override_and_missing_file(memory_store, tmp_path):
    path = tmp_path / "jsonl"
    path.write_text(json.dumps({"alias": "a", "query": "q", "ids": ["x"], "ts": ts(0)}) + "\n"
                    + json.dumps({"query": "r", "ids": ["y"], "ts": ts(1)}) + "\n")
    res = import_jsonl(memory_store, path)
    assert res.imported == 1 and res.skipped == {"no_alias": 1}
    assert import_jsonl(memory_store, path, alias="b").imported == 2
    assert len(read_rows(memory_store, "b")[0]) == 2
    with pytest.raises(BadInput, match="not found"):
        import_jsonl(memory_store, tmp_path / "nope.jsonl")


def test_stats_counts_signals_window_and_usable_share(memory_store):
    make_live(memory_store, 10)
    log(memory_store, "docs", "a", ["doc-1"], ts=ts(0))
    log(memory_store, "docs", "a", ["doc-2"], signal="cite", ts=ts(5))
    log(memory_store, "docs", "b", ["gone-1"], signal="thumbs_down", ts=ts(9))
    log(memory_store, "docs", "c", ["doc-3", "gone-2"], signal="skip", ts=ts(10))
    st = stats(memory_store, "docs")
    assert st["rows"] == 4 and st["queries"] == 3
    assert st["by_signal"] == {"cite": 1, "click": 1, "skip": 1, "thumbs_down": 1}
    assert st["positive"] == 2 and st["negative"] == 2
    assert st["window"]["first"].startswith("2025-01-01T00:00") and st["window"]["last"].startswith("2025-01-01T00:10")
    assert st["live_collection"] == "live" and st["usable_rows"] == 3 and st["usable_share"] == 0.75
    assert st["missing_ids"] == 2


def test_stats_for_an_alias_without_feedback_says_so(memory_store):
    st = stats(memory_store, "nothing-here")
    assert st["rows"] == 0
    assert "no feedback logged for alias 'nothing-here'" in st["message"]
    assert "vectune feedback import" in st["message"]
