"""The alias's event history (vectune.observe.history)."""

from __future__ import annotations

import json

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
        f.write('{"event": "torn')  # a crash mid-write
    assert [e["event"] for e in History(settings.work_dir, "docs").read()] == ["promote", "rollback"]
    assert [json.loads(x)["event"] for x in History(settings.work_dir, "other").path.read_text().splitlines()] == [
        "adopt"]
