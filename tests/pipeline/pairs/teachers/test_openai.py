"""The OpenAI-compatible teacher (vectune.pipeline.pairs.teachers.openai) against a real loopback HTTP server and
the real client: reply shapes, retries and timeouts, JSON mode, budgets, secrets, calling contexts."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pytest

from tests.helpers.fake_openai import FakeOpenAI, chunk_texts
from tests.helpers.openai_teacher import KEY, make_chunks, make_gen
from vectune.config.settings import OpenAITeacher
from vectune.core.chunks import Chunk
from vectune.errors import BadInput
from vectune.pipeline.pairs.teachers.openai import OpenAIGenerator


# --------------------------------------------------------------------------- basics
def test_valid_output(server, tmp_path):
    gen = make_gen(server, tmp_path, usd_per_1k_prompt_tokens=1.0, usd_per_1k_completion_tokens=2.0, concurrency=2)
    server.delay = 0.05
    chunks = make_chunks(6)
    res = gen.generate(chunks, 3)
    s = res.stats
    assert len(res.queries) == 18 and s.kept == 18 and s.generated == 18
    assert {q.chunk_id for q in res.queries} == {c.key for c in chunks}
    assert all(q.source == "openai" for q in res.queries)
    assert (s.chunks_in, s.chunks_sent, s.llm_calls, s.cache_hits, s.failed_chunks) == (6, 6, 6, 0, 0)
    assert (s.prompt_tokens, s.completion_tokens) == (600, 120)
    assert s.cost_usd == pytest.approx(0.6 + 0.24)
    assert s.budget_hit is None and not s.rejected
    assert gen.name == "openai:fake-model" and gen.synthetic is True
    assert gen.fingerprint().startswith("openai:fake-model:")
    # JSON mode on, bounded concurrency, the key sent as a bearer token
    assert all(r["response_format"] == {"type": "json_object"} for r in server.requests)
    assert server.max_inflight == 2
    assert server.requests[0]["authorization"] == f"Bearer {KEY}"
    assert json.dumps(s.to_dict())  # report-ready


@pytest.mark.parametrize(
    "action, kept, rejected",
    [
        ("wrapped", 3, {}),
        ("fenced", 3, {}),
        ("numbered", 3, {}),
        ("prose", 0, {"unparseable": 1}),
        ("empty", 0, {"empty_reply": 1}),
        ("null", 0, {"empty_reply": 1}),
        ("copy", 2, {"copy_of_chunk": 1}),
        ("long", 2, {"too_long": 1}),
        (
            "mixed",
            1,
            {"duplicate": 1, "empty": 1, "not_a_string": 1, "too_short": 1, "not_a_question": 1, "copy_of_chunk": 1},
        ),
        ({"content": '["What is one?", "What is two?", "What is three?", "What is four?"]'}, 3, {"over_n": 1}),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_reply_shapes(server, tmp_path, action, kept, rejected):
    server.default = action
    res = make_gen(server, tmp_path).generate(make_chunks(1), 3)
    assert len(res.queries) == kept
    assert dict(res.stats.rejected) == rejected
    assert res.stats.failed_chunks == 0  # a bad reply is not a failed request
    assert res.stats.kept + sum(
        v for k, v in res.stats.rejected.items() if k not in ("unparseable", "empty_reply")
    ) == res.stats.generated


def test_retries_on_429_and_500_then_success(server, tmp_path):
    server.script({"status": 429, "headers": {"Retry-After": "0"}}, {"status": 500}, {"status": 503})
    gen = make_gen(server, tmp_path, max_retries=3)
    res = gen.generate(make_chunks(1), 3)
    assert len(res.queries) == 3
    assert res.stats.llm_calls == 4 and server.count == 4
    assert res.stats.failed_chunks == 0
    assert gen.last_info["retries"] == 3


def test_retry_cap_and_failed_chunk_does_not_fail_run(server, tmp_path):
    server.rule("ALWAYS_FAIL", {"status": 500})
    chunks = make_chunks(3) + [Chunk(key="bad", point_id=99, text="ALWAYS_FAIL " + chunk_texts(1)[0])]
    gen = make_gen(server, tmp_path, max_retries=2)
    res = gen.generate(chunks, 3)
    assert len(res.queries) == 9
    assert res.stats.failed_chunks == 1
    assert sum("ALWAYS_FAIL" in p for p in server.passages) == 3  # 1 try + 2 retries, capped
    assert gen.last_info["errors"] == {"http_500": 1}
    # failed chunks are not cached: the next run retries only them
    server.reset()
    res2 = make_gen(server, tmp_path, max_retries=0).generate(chunks, 3)
    assert server.count == 1 and "ALWAYS_FAIL" in server.passages[0]
    assert res2.stats.cache_hits == 3 and res2.stats.failed_chunks == 1


def test_timeout_then_success(server, tmp_path):
    # The slow reply takes 6 s; a client that honours its 0.3 s timeout is done long before (the wide margin keeps
    # a loaded CI machine from flipping this), one that waits for the reply cannot be.
    server.script({"delay": 6.0, "then": "valid"})
    gen = make_gen(server, tmp_path, timeout_s=0.3)
    t0 = time.monotonic()
    res = gen.generate(make_chunks(1), 3)
    assert time.monotonic() - t0 < 5.0  # did not wait for the slow reply
    assert len(res.queries) == 3 and server.count == 2
    assert gen.last_info["retries"] == 1


def test_timeout_every_time_is_a_failed_chunk(server, tmp_path):
    server.rule("SLOW", {"delay": 0.6, "then": "valid"})
    chunks = [Chunk(key="slow", point_id=1, text="SLOW " + chunk_texts(1)[0])] + make_chunks(2)
    gen = make_gen(server, tmp_path, timeout_s=0.2, max_retries=1)
    res = gen.generate(chunks, 3)
    assert res.stats.failed_chunks == 1 and len(res.queries) == 6
    assert gen.last_info["errors"] == {"timeout": 1}


def test_connection_refused_counts_and_aborts_when_everything_fails(tmp_path):
    dead = FakeOpenAI().start()
    url = dead.url
    dead.stop()  # nothing listens on that port now
    gen = make_gen(None, tmp_path, base_url=url, max_retries=1, concurrency=1)
    res = gen.generate(make_chunks(2), 3)
    assert res.stats.failed_chunks == 2 and res.queries == []
    assert gen.last_info["errors"] == {"connection": 2}
    gen = make_gen(None, tmp_path, base_url=url, max_retries=0, concurrency=1, abort_after_failures=3)
    with pytest.raises(BadInput, match="3 chunks failed in a row"):
        gen.generate(make_chunks(10), 3)


def test_model_not_found_is_a_clear_error(server, tmp_path):
    server.default = {"status": 404, "message": "The model `nope` does not exist"}
    with pytest.raises(BadInput, match="http_404"):
        make_gen(server, tmp_path).generate(make_chunks(3), 3)


def test_missing_usage_is_estimated(server, tmp_path):
    server.default = "no_usage"
    res = make_gen(server, tmp_path).generate(make_chunks(1), 3)
    assert len(res.queries) == 3
    assert res.stats.prompt_tokens > 50 and res.stats.completion_tokens > 10


# --------------------------------------------------------------------------- JSON mode
def test_json_mode_fallback_when_response_format_rejected(server, tmp_path):
    server.reject_response_format = True
    gen = make_gen(server, tmp_path, concurrency=1)
    res = gen.generate(make_chunks(3), 3)
    assert len(res.queries) == 9 and res.stats.failed_chunks == 0
    formats = [r["response_format"] for r in server.requests]
    assert formats == [{"type": "json_object"}, None, None, None]  # one probe, then plain for the run
    assert gen.last_info["json_mode_fallback"] is True and gen.last_info["json_mode"] is False
    assert "JSON array" in server.requests[1]["body"]["messages"][1]["content"]


def test_json_mode_off(server, tmp_path):
    res = make_gen(server, tmp_path, json_mode=False).generate(make_chunks(2), 3)
    assert len(res.queries) == 6
    assert all(r["response_format"] is None for r in server.requests)


def test_json_mode_asks_for_an_object(server, tmp_path):
    make_gen(server, tmp_path).generate(make_chunks(1), 3)
    user = server.requests[0]["body"]["messages"][1]["content"]
    assert '{"questions"' in user and "JSON" in user  # json_object mode needs the word JSON


# --------------------------------------------------------------------------- budgets
def test_chunk_cap(server, tmp_path):
    chunks = make_chunks(6)
    res = make_gen(server, tmp_path, max_chunks=3, concurrency=1).generate(chunks, 3)
    assert server.count == 3 and res.stats.chunks_sent == 3 and len(res.queries) == 9
    assert res.stats.budget_hit == "chunk cap 3 reached after 3 chunks"
    # cached chunks do not count against the budget
    res2 = make_gen(server, tmp_path, max_chunks=3, concurrency=1).generate(chunks, 3)
    assert res2.stats.cache_hits == 3 and res2.stats.chunks_sent == 3 and len(res2.queries) == 18
    assert res2.stats.budget_hit is None


def test_budget_spans_calls_of_one_generator(server, tmp_path):
    gen = make_gen(server, tmp_path, max_chunks=3, concurrency=1)
    first = gen.generate(make_chunks(2), 3)  # e.g. the cycle's train call
    assert first.stats.chunks_sent == 2 and first.stats.budget_hit is None
    second = gen.generate(make_chunks(3, prefix="Eval. "), 1)  # ... then its eval call
    assert second.stats.chunks_sent == 1 and server.count == 3
    assert second.stats.budget_hit == "chunk cap 3 reached after 3 chunks"
    gen.reset_budget()
    third = gen.generate(make_chunks(3, prefix="Eval. "), 1)
    assert third.stats.cache_hits == 1 and third.stats.chunks_sent == 2 and third.stats.budget_hit is None


def test_token_cap(server, tmp_path):
    res = make_gen(server, tmp_path, max_tokens_total=250, concurrency=1).generate(make_chunks(6), 3)
    # 120 tokens per reply: 240 < 250 after two, 360 after three -> stop
    assert res.stats.chunks_sent == 3 and server.count == 3 and len(res.queries) == 9
    assert res.stats.budget_hit.startswith("token cap 250 reached after 3 chunks")


def test_cost_cap(server, tmp_path):
    gen = make_gen(server, tmp_path, max_cost_usd=0.25, usd_per_1k_prompt_tokens=1.0, concurrency=1)
    res = gen.generate(make_chunks(6), 3)  # $0.10 per request
    assert res.stats.chunks_sent == 3 and res.stats.cost_usd == pytest.approx(0.3)
    assert res.stats.budget_hit.startswith("cost cap $0.25 reached after 3 chunks")
    assert gen.last_info["skipped_budget"] == 3


# --------------------------------------------------------------------------- secrets
def test_api_key_never_in_errors_or_logs(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server.script({"status": 500, "message": f"upstream echoed {KEY}"})
    res = make_gen(server, tmp_path, max_retries=0).generate(make_chunks(2), 3)
    assert res.stats.failed_chunks == 1
    server.default = "echo_auth_401"
    gen = make_gen(server, tmp_path / "other")
    with pytest.raises(BadInput) as err:
        gen.generate(make_chunks(2, prefix="x "), 3)
    assert server.requests[-1]["authorization"] == f"Bearer {KEY}"  # it was sent...
    assert "http_401" in str(err.value)
    for text in (str(err.value), repr(err.value), caplog.text, repr(gen.config), str(gen.__dict__)):
        assert KEY not in text  # ...but never shown
    assert "upstream echoed ***" in caplog.text


def test_no_key_for_public_endpoint_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BadInput, match="OPENAI_API_KEY"):
        OpenAIGenerator(OpenAITeacher(), tmp_path)


# --------------------------------------------------------------------------- calling contexts
def test_generate_from_a_thread_and_from_a_running_loop(server, tmp_path):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", make_gen(server, tmp_path).generate(make_chunks(2), 3)))
    t.start()
    t.join(20)
    assert len(out["r"].queries) == 6

    async def inside_loop():
        return make_gen(server, tmp_path / "b").generate(make_chunks(2), 3)

    assert len(asyncio.run(inside_loop()).queries) == 6


def test_empty_input(server, tmp_path):
    res = make_gen(server, tmp_path).generate([], 3)
    assert res.queries == [] and res.stats.chunks_in == 0 and server.count == 0
