"""Operational commands: the health check and the scheduler's front door."""

from __future__ import annotations

from tests.helpers.cli import invoke


def test_check_ok_on_embedded_defaults(home):
    out = invoke("check")
    assert "qdrant: ok" in out.output and "model_store: ok" in out.output and "work_dir: ok" in out.output


def test_check_fails_with_exit_4_when_qdrant_is_unreachable(home, monkeypatch):
    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("QDRANT_API_KEY", "do-not-print-me")
    out = invoke("check", expect=4)
    assert "qdrant: FAIL" in out.output and "do-not-print-me" not in out.output


def test_check_reports_invalid_settings_with_exit_2(home, monkeypatch):
    monkeypatch.setenv("VECTUNE_MIN_DELTA", "not-a-number")
    out = invoke("check", expect=2)
    assert "settings: INVALID" in out.output


def test_serve_rejects_a_bad_schedule(home):
    out = invoke("serve", "--alias", "docs", "--schedule", "61 * * * *", expect=2)
    assert "bad schedule" in out.output
