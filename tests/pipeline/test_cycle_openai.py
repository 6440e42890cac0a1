"""`vectune run` end to end with the OpenAI-compatible teacher against a loopback server."""

from __future__ import annotations

import json

import pytest

from tests.helpers.cli import PERMISSIVE, invoke
from tests.helpers.fake_openai import FakeOpenAI

pytestmark = pytest.mark.slow  # a whole `vectune run` with the OpenAI teacher


def test_run_with_openai_teacher_end_to_end(indexed, monkeypatch, home):
    with FakeOpenAI(default="valid") as srv:
        # a few replies are malformed, as small models' are: counted by reason, never fatal
        srv.script("mixed", "fenced", {"status": 429, "headers": {"Retry-After": "0"}}, "prose")
        monkeypatch.setenv("VECTUNE_TEACHER", "openai")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-test")
        monkeypatch.setenv("VECTUNE_TEACHER_MODEL", "smol-teacher")
        out = invoke("run", "--alias", "docs", "--json", "--queries-per-chunk", "2", *PERMISSIVE)
        rep = json.loads(out.output[out.output.index("{"):])
        assert rep["status"] == "promoted", rep.get("reason")
        assert rep["teacher"] == "openai:smol-teacher"
        gen = rep["counts"]["generate"]
        train, ev = gen["train"], gen["eval"]
        assert train["llm_calls"] + ev["llm_calls"] >= 40  # one per chunk, plus the retried 429
        assert train["retries"] + ev["retries"] >= 1
        assert train["prompt_tokens"] > 0 and train["completion_tokens"] > 0
        rejected = {**train["rejected"], **ev["rejected"]}
        assert rejected, "the mixed/prose replies must be counted by reason"
        assert gen["roundtrip_filter"]["kept"] > 0
        assert "openai" in rep["counts"]["pairs"]["by_source"]
        calls = srv.count

        # a second run over the unchanged collection makes no LLM call
        out = invoke("run", "--alias", "docs", "--queries-per-chunk", "2", *PERMISSIVE)
        assert "NOTHING TO DO" in out.output
        # and even a forced re-evaluation is served from the teacher cache
        out = invoke("run", "--alias", "docs", "--dry-run", "--json", "--queries-per-chunk", "2", *PERMISSIVE)
        rep2 = json.loads(out.output[out.output.index("{"):])
        assert srv.count == calls
        assert rep2["counts"]["generate"]["train"]["cache_hits"] > 0
        # the report on disk shows the counts and tokens too
        md = (home / "work" / "reports" / "docs" / f"{rep['run_id']}.md").read_text()
        assert "prompt_tokens" in md and "rejected" in md
