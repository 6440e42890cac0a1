"""report.py: the RunReport record, its JSON schema, Markdown, latest.json."""

from __future__ import annotations

import json

from vectune.observe.report import RunReport, latest, summary, write


def _report(**kw) -> RunReport:
    r = RunReport(run_id="20260101T000000Z-abc123", alias="docs", started_at="2026-01-01T00:00:00+00:00",
                  timings={"read": 1.5}, counts={"read": {"points": 40}})
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_to_dict_omits_unset_fields_and_round_trips():
    r = _report(status="kept", reason="within noise", live_collection="docs--m")
    d = r.to_dict()
    assert d["status"] == "kept" and d["timings"] == {"read": 1.5}
    assert "new_collection" not in d and "gate" not in d
    back = RunReport.from_dict({**d, "schema": 1, "unknown": 2})
    assert back == r


def test_write_makes_json_md_and_latest(tmp_path):
    evals = {"golden": {"live": {"queries": 3, "corpus": 10, "recall@5": 0.5},
                        "candidate": {"queries": 3, "corpus": 10, "recall@5": 0.75}}}
    gate = {"metric": "recall@5", "evidence": "golden", "delta": 0.25, "ci_low": 0.1, "ci_high": 0.4}
    r = _report(status="promoted", reason="better", evaluation=evals, gate=gate, new_collection="docs--m2")
    paths = write(r, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["schema"] == 1 and data["status"] == "promoted" and data["evaluation"] == evals
    md = paths["md"].read_text()
    assert "| golden | **recall@5 (gate)** | 0.5000 | 0.7500 | +0.2500 | [+0.1000, +0.4000] |" in md
    assert "```" not in md  # sentences and tables, no JSON dumps
    assert latest(tmp_path) == RunReport.from_dict(data)
    text = summary(r)
    assert text.startswith("PROMOTED: alias 'docs' -> docs--m2")
    assert "recall@5     0.5000     0.7500  +0.2500  <- gate" in text
    assert "95% CI [+0.1000, +0.4000]" in text


def test_latest_missing_or_torn_is_none(tmp_path):
    assert latest(tmp_path) is None
    (tmp_path / "latest.json").write_text("{torn")
    assert latest(tmp_path) is None
