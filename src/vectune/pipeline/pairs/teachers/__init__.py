"""Query generators ("teachers"): offline, OpenAI-compatible, and their cache."""

from __future__ import annotations

from vectune.pipeline.pairs.teachers.base import GenerationResult, GenerationStats, Query, QueryGenerator

__all__ = ["GenerationResult", "GenerationStats", "Query", "QueryGenerator", "make_generator"]


def make_generator(settings, examples=()) -> QueryGenerator:
    """Build the generator the settings select.

    Args:
        settings: :class:`vectune.config.settings.Settings`.
        examples: real user queries an LLM teacher shows as examples (few-shot; part of its cache key).

    Returns:
        A :class:`QueryGenerator`.
    """
    teacher = settings.teacher
    if teacher.kind == "offline":
        from vectune.pipeline.pairs.teachers.offline import OfflineGenerator

        return OfflineGenerator(method=teacher.method, seed=settings.seed)
    if teacher.kind == "openai":
        from vectune.pipeline.pairs.teachers.openai import OpenAIGenerator

        gen = OpenAIGenerator(teacher, cache_dir=settings.work_dir / "cache" / "teacher")
        if examples:
            gen.prompt = gen.prompt.with_examples(examples)
        return gen
    raise ValueError(f"unknown teacher {teacher.kind!r}")
