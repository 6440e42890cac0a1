"""Helpers shared by the OpenAI-teacher tests: the generator under test against the fake server."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.fake_openai import FakeOpenAI, chunk_texts
from vectune.config.settings import OpenAITeacher
from vectune.core.chunks import Chunk
from vectune.pipeline.pairs.teachers.cache import CACHE_FILE
from vectune.pipeline.pairs.teachers.openai import OpenAIGenerator

KEY = "sk-test-SECRET-4242-do-not-leak"
SRC = str(Path(__file__).resolve().parents[2] / "src")
#: The repository root (``tests`` is a package under it).
ROOT = str(Path(__file__).resolve().parents[2])


def make_chunks(k: int, prefix: str = "") -> list[Chunk]:
    return [Chunk(key=f"c{i}", point_id=i, text=t) for i, t in enumerate(chunk_texts(k, prefix))]



def make_gen(srv: FakeOpenAI | None, cache_dir, *, base_url: str | None = None, abort_after_failures=None, **cfg):
    fields = dict(
        model="fake-model",
        base_url=base_url or srv.url,
        api_key=KEY,
        timeout_s=2.0,
        max_retries=2,
        concurrency=4,
    )
    fields.update(cfg)
    return OpenAIGenerator(
        OpenAITeacher(**fields),
        cache_dir,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        abort_after_failures=abort_after_failures,
    )


def cache_lines(cache_dir: Path) -> list[dict]:
    path = Path(cache_dir) / CACHE_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]
