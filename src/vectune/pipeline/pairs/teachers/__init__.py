"""Query generators ("teachers"): offline, OpenAI-compatible, and their cache."""

from __future__ import annotations

from pathlib import Path

from vectune.pipeline.pairs.teachers.base import GenerationResult, GenerationStats, Query, QueryGenerator
from vectune.pipeline.pairs.teachers.offline import OfflineGenerator

__all__ = ["GenerationResult", "GenerationStats", "Query", "QueryGenerator", "make_generator"]


def make_generator(teacher, *, seed: int = 42, cache_dir: Path | None = None, examples=()) -> QueryGenerator:
    """Build the generator a teacher section selects.

    Args:
        teacher: :class:`~vectune.config.sections.OfflineTeacher` or :class:`~vectune.config.sections.OpenAITeacher`.
        seed: the offline teacher's seed.
        cache_dir: where an LLM teacher caches its answers (``<work_dir>/cache/teacher``).
        examples: real user queries an LLM teacher shows as examples (few-shot; part of its cache key).

    Returns:
        A :class:`QueryGenerator`.
    """
    if teacher.kind == "offline":
        return OfflineGenerator(method=teacher.method, seed=seed)
    if teacher.kind == "openai":
        # deferred: the openai SDK loads only when an LLM teacher is configured
        from vectune.pipeline.pairs.teachers.openai import OpenAIGenerator

        gen = OpenAIGenerator(teacher, cache_dir=cache_dir or Path(".vectune/work/cache/teacher"))
        if examples:
            gen.prompt = gen.prompt.with_examples(examples)
        return gen
    raise ValueError(f"unknown teacher {teacher.kind!r}")
