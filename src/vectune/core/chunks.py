"""Chunks: a collection's points seen as passages — text extraction, filtering, sampling, splitting.

The read stage (:mod:`vectune.pipeline.read`) streams points through these helpers. Chunks
keep their stored (live-model) vector so later stages — hard-negative mining and
the live model's evaluation — need not re-encode the corpus.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vectune.core.hashing import text_hash
from vectune.core.stats import Stats

logger = logging.getLogger(__name__)


@dataclass
class Chunk:
    """One point of the collection, seen as a passage.

    Attributes:
        key: the point id as a string (stable across collections).
        point_id: the point id as Qdrant holds it (int or UUID string).
        text: the passage text.
        payload: the full payload.
        vector: the stored dense vector (live model), or None if not loaded.
    """

    key: str
    point_id: Any
    text: str
    payload: dict = field(default_factory=dict)
    vector: np.ndarray | None = None

    @property
    def text_hash(self) -> str:
        return text_hash(self.text)


def get_field(payload: dict, path: str) -> Any:
    """Get a possibly dotted field (``metadata.text``) from a payload."""
    cur: Any = payload
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def extract_text(payload: dict | None, text_field: str) -> tuple[str | None, str | None]:
    """Pull the passage text out of a payload.

    LlamaIndex stores its node as JSON in ``_node_content``; its ``text`` is read
    from there.

    Returns:
        ``(text, None)`` or ``(None, reason)`` where reason names why it was skipped.
    """
    if not isinstance(payload, dict):
        return None, "no_payload"
    value = get_field(payload, text_field)
    if value is None:
        return None, "missing_field"
    if text_field == "_node_content" and isinstance(value, str):
        import json

        try:
            value = json.loads(value).get("text")
        except (ValueError, AttributeError):
            return None, "bad_node_content"
    if not isinstance(value, str):
        return None, "not_a_string"
    # Lone surrogates cannot be encoded to UTF-8 by tokenizers: clean them, don't crash.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    value = value.strip()
    if not value:
        return None, "empty"
    return value, None


@dataclass
class ReadStats(Stats):
    """Points seen, usable chunks, and skips by reason."""

    points: int = 0
    usable: int = 0
    skipped: Counter = field(default_factory=Counter)


def filter_chunks(
    points: Iterable[tuple[Any, dict | None, np.ndarray | None]],
    text_field: str,
    min_chars: int,
    max_chars: int,
    stats: ReadStats,
) -> Iterator[Chunk]:
    """Turn raw points into usable chunks, counting every skip by reason.

    Args:
        points: ``(point_id, payload, vector)`` triples.
        text_field: payload field holding the text (dotted paths allowed).
        min_chars: shorter texts are skipped (``too_short``).
        max_chars: longer texts are skipped (``too_long``).
        stats: counters, updated in place.

    Yields:
        Chunks with unique texts.
    """
    seen: set[str] = set()
    for pid, payload, vector in points:
        stats.points += 1
        text, reason = extract_text(payload, text_field)
        if text is None:
            stats.skipped[reason] += 1
            continue
        if len(text) < min_chars:
            stats.skipped["too_short"] += 1
            continue
        if len(text) > max_chars:
            stats.skipped["too_long"] += 1
            continue
        h = text_hash(text)
        if h in seen:
            stats.skipped["duplicate"] += 1
            continue
        seen.add(h)
        stats.usable += 1
        yield Chunk(key=str(pid), point_id=pid, text=text, payload=payload or {}, vector=vector)


def sample(chunks: list[Chunk], n: int, seed: int) -> list[Chunk]:
    """A seeded sample of at most ``n`` chunks, in a stable order."""
    if len(chunks) <= n:
        return list(chunks)
    rng = random.Random(seed)
    picked = rng.sample(range(len(chunks)), n)
    return [chunks[i] for i in sorted(picked)]


def split(chunks: list[Chunk], eval_fraction: float, seed: int) -> tuple[list[Chunk], list[Chunk]]:
    """Split chunks (not queries) into train and held-out eval, seeded.

    Splitting by chunk means no chunk's queries land on both sides.
    """
    keys = sorted(c.key for c in chunks)
    rng = random.Random(seed + 1)
    rng.shuffle(keys)
    n_eval = max(1, int(round(len(keys) * eval_fraction)))
    eval_keys = set(keys[:n_eval])
    train = [c for c in chunks if c.key not in eval_keys]
    held = [c for c in chunks if c.key in eval_keys]
    return train, held
