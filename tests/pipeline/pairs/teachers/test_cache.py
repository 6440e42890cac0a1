"""The teacher's reply cache (vectune.pipeline.pairs.teachers.cache): reuse, torn lines, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest

from tests.helpers.fake_openai import FakeOpenAI, chunk_texts
from tests.helpers.openai_teacher import ROOT, SRC, cache_lines, make_chunks, make_gen
from vectune.core.chunks import Chunk, text_hash
from vectune.pipeline.pairs.teachers.cache import CACHE_FILE, CacheEntry, ReplyCache


# --------------------------------------------------------------------------- cache and resume
def test_second_run_is_served_from_cache(server, tmp_path):
    chunks = make_chunks(5)
    first = make_gen(server, tmp_path).generate(chunks, 3)
    assert server.count == 5
    second = make_gen(server, tmp_path).generate(chunks, 3)
    assert server.count == 5  # no LLM calls
    s = second.stats
    assert (s.cache_hits, s.chunks_sent, s.llm_calls, s.prompt_tokens) == (5, 0, 0, 0)
    assert [(q.text, q.chunk_id) for q in second.queries] == [(q.text, q.chunk_id) for q in first.queries]
    # new chunks only are sent; a different n or prompt is a different key
    make_gen(server, tmp_path).generate(chunks + make_chunks(2, prefix="New. "), 3)
    assert server.count == 7
    make_gen(server, tmp_path).generate(chunks, 2)
    assert server.count == 12
    make_gen(server, tmp_path, domain_hint="questions a vet would ask").generate(chunks[:1], 3)
    assert server.count == 13
    assert len(cache_lines(tmp_path)) == 13


def test_cache_survives_a_torn_line(tmp_path):
    with ReplyCache(tmp_path) as c:
        c.put("a", CacheEntry(["What is a?"], Counter(), 1, 10, 2))
        c.put("b", CacheEntry(["What is b?"], Counter({"too_short": 1}), 2, 10, 2))
    path = tmp_path / CACHE_FILE
    with open(path, "ab") as f:
        f.write(b"not json at all\n")
        f.write(b'{"key": "c", "questions": ["What is')  # killed mid-write
    with ReplyCache(tmp_path) as c:
        assert set(c.entries) == {"a", "b"} and c.bad_lines == 1
        assert c.get("b").rejected == Counter({"too_short": 1})
        assert path.read_bytes().endswith(b"\n")
        c.put("c", CacheEntry(["What is c?"]))
    with ReplyCache(tmp_path) as c:
        assert set(c.entries) == {"a", "b", "c"}
    assert ReplyCache(None).path is None


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [{src!r}, {root!r}]
    from tests.helpers.fake_openai import chunk_texts
    from vectune.core.chunks import Chunk
    from vectune.pipeline.pairs.teachers.openai import OpenAIGenerator
    from vectune.config.settings import OpenAITeacher
    url, cache = sys.argv[1], sys.argv[2]
    chunks = [Chunk(key=f"c{{i}}", point_id=i, text=t) for i, t in enumerate(chunk_texts(30))]
    cfg = OpenAITeacher(model="fake-model", base_url=url, api_key="k", concurrency=2, timeout_s=10)
    OpenAIGenerator(cfg, cache).generate(chunks, 3)
    print("FINISHED")
    """
)


@pytest.mark.slow
def test_resume_after_kill(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT.format(src=SRC, root=ROOT))
    cache = tmp_path / "cache"
    texts = chunk_texts(30)
    with FakeOpenAI(delay=0.1) as srv:
        proc = subprocess.Popen(
            [sys.executable, str(script), srv.url, str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                if len(cache_lines(cache)) >= 6 or proc.poll() is not None:
                    break
                time.sleep(0.02)
            assert proc.poll() is None, proc.communicate()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL
        first_requests = srv.count
        # the file is intact (a torn last line would be cut on open)
        path = cache / CACHE_FILE
        raw = path.read_bytes()
        done = [json.loads(line) for line in raw.splitlines() if line.strip()]
        if not raw.endswith(b"\n"):
            done = done[:-1]
        n_done = len(done)
        assert 6 <= n_done < 30 and first_requests < 30
        done_hashes = {d["chunk_hash"] for d in done}

        srv.reset()
        chunks = [Chunk(key=f"c{i}", point_id=i, text=t) for i, t in enumerate(texts)]
        res = make_gen(srv, cache).generate(chunks, 3)
        assert srv.count == 30 - n_done  # only the missing chunks were requested
        assert {text_hash(p) for p in srv.passages} == {text_hash(t) for t in texts} - done_hashes
        assert res.stats.cache_hits == n_done and len(res.queries) == 90
        lines = cache_lines(cache)  # every line parses
        assert len({d["key"] for d in lines}) == 30
