"""The alias's event history (vectune.observe.history)."""

from __future__ import annotations

import json

import pytest

from vectune.errors import TornState
from vectune.observe.history import History


def test_history_round_trip_and_torn_last_line(settings):
    assert History(settings.work_dir, "docs").read() == []
    e1 = History(settings.work_dir, "docs").append({"event": "promote", "collection": "docs--a"})
    e2 = History(settings.work_dir, "docs").append({"event": "rollback", "to": "docs--b"})
    History(settings.work_dir, "other").append({"event": "adopt"})
    path = History(settings.work_dir, "docs").path
    assert path == settings.work_dir / "history" / "docs.jsonl"
    assert e1["alias"] == "docs" and "time" in e1
    assert History(settings.work_dir, "docs").read() == [e1, e2]
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"event": "torn')  # a damaged last line (appends are one write each: not a crash)
    with pytest.raises(TornState) as e:  # never skipped silently: named, with what to do (issue 22, item 3)
        History(settings.work_dir, "docs").read()
    assert str(path) in str(e.value) and "line 3" in str(e.value) and "vectune recover --alias docs" in str(e.value)
    assert [e["event"] for e in History(settings.work_dir, "docs").read(strict=False)] == ["promote", "rollback"]
    assert History(settings.work_dir, "docs").problems() == [f"{path}:3: not JSON (JSONDecodeError)"]
    e3 = History(settings.work_dir, "docs").append({"event": "prune"})  # lands on its own line, readable
    assert [e["event"] for e in History(settings.work_dir, "docs").read(strict=False)] == ["promote", "rollback",
                                                                                            "prune"]
    aside = History(settings.work_dir, "docs").set_aside_torn("T")
    assert aside == path.with_name("docs.jsonl.torn-T") and aside.read_text() == '{"event": "torn\n'
    assert History(settings.work_dir, "docs").read() == [e1, e2, e3]
    assert [json.loads(x)["event"] for x in History(settings.work_dir, "other").path.read_text().splitlines()] == [
        "adopt"]
