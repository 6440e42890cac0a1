"""jsonl.py: JSONL input with clear errors; the one atomic writer."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from vectune.core.jsonl import iter_objects, write_atomic, write_json_atomic
from vectune.errors import BadInput


def test_iter_objects_plain_and_gzip(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert [o["a"] for _, o in iter_objects(p)] == [1, 2]
    g = tmp_path / "a.jsonl.gz"
    g.write_bytes(gzip.compress(b'{"a": 3}\n'))
    assert [(n, o) for n, o in iter_objects(g)] == [(1, {"a": 3})]


@pytest.mark.parametrize("body, msg", [("{nope\n", "not valid JSON"), ("[1, 2]\n", "JSON object")])
def test_iter_objects_bad_lines_name_the_line(tmp_path, body, msg):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"ok": 1}\n' + body)
    with pytest.raises(BadInput, match=rf"corpus .*bad.jsonl:2: .*{msg}"):
        list(iter_objects(p, "corpus"))


def test_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="eval set file not found"):
        list(iter_objects(tmp_path / "nope.jsonl", "eval set"))


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "state.json"
    write_json_atomic(target, {"v": 1})
    write_json_atomic(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 2}
    assert sorted(os.listdir(target.parent)) == ["state.json"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    write_atomic(target, b"\x00raw")
    assert target.read_bytes() == b"\x00raw"


def test_write_atomic_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    write_json_atomic(target, {"v": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_json_atomic(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["state.json"]
