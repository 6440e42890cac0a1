"""settings.py: the effective text field rule, env names, nested env, the teacher's key."""

from __future__ import annotations

import pytest

from vectune.config.settings import OpenAITeacher, Settings, load_settings


def test_recorded_text_field_applies_when_none_is_set(home):
    s = Settings()
    assert s.collection.text_field == "text"
    assert s.for_collection({"text_field": "page_content"}).collection.text_field == "page_content"


def test_explicit_text_field_wins_over_the_recorded_one(home, monkeypatch):
    assert Settings(text_field="body").for_collection({"text_field": "page_content"}).collection.text_field == "body"
    monkeypatch.setenv("VECTUNE_TEXT_FIELD", "langchain")
    s = Settings()
    assert s.collection.text_field == "page_content"  # preset resolved
    assert s.for_collection({"text_field": "content"}).collection.text_field == "page_content"


def test_no_recorded_field_keeps_settings(home):
    s = Settings()
    assert s.for_collection({}) is s
    assert s.for_collection({"text_field": None}) is s


def test_openai_teacher_reads_the_conventional_key(home, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    assert OpenAITeacher().api_key.get_secret_value() == "sk-test-123"
    monkeypatch.setenv("VECTUNE_TEACHER", "openai")
    monkeypatch.setenv("VECTUNE_TEACHER_MODEL", "m-1")
    s = load_settings()
    assert s.teacher.kind == "openai" and s.teacher.model == "m-1"
    assert s.teacher.api_key.get_secret_value() == "sk-test-123"
    assert "sk-test-123" in s.secrets()


def test_no_key_in_env_means_none(home, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert OpenAITeacher().api_key is None


def test_nested_env_sets_teacher_fields(home, monkeypatch):
    monkeypatch.setenv("VECTUNE_TEACHER_CONFIG", '{"kind": "openai", "model": "m-2"}')
    s = Settings()
    assert s.teacher.kind == "openai" and s.teacher.model == "m-2"


def test_cli_overrides_env(home, monkeypatch):
    monkeypatch.setenv("VECTUNE_MIN_DELTA", "0.2")
    assert load_settings().gate.min_delta == pytest.approx(0.2)
    assert load_settings(min_delta=0.3).gate.min_delta == pytest.approx(0.3)
    assert load_settings(min_delta=None).gate.min_delta == pytest.approx(0.2)


def test_dead_settings_are_gone():
    assert "force" not in Settings.model_fields
