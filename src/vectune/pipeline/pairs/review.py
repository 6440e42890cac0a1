"""Training pairs people can read and veto.

Practitioners' first rule for synthetic pairs: sample a hundred and read them. Each
cycle keeps a seeded sample of its training pairs — query, a snippet of the
positive, the hard negative, and where the pair came from (``feedback``,
``teacher``, ``offline`` or ``train-set``) — in ``<run_dir>/pairs-sample.jsonl``
(:func:`write_run_sample`). ``vectune pairs`` prints or exports it as JSONL or
Markdown.

A reviewer vetoes a pair (or a whole query): :mod:`vectune.pipeline.pairs.rejections`.

A pair's id is a stable hash of the normalised query and the positive's key, so the
same pair gets the same id in every cycle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vectune.core.chunks import text_hash
from vectune.errors import BadInput
from vectune.observe.pairs_view import write_jsonl
from vectune.qdrant.feedback import normalize_query

logger = logging.getLogger(__name__)

SAMPLE_FILE = "pairs-sample.jsonl"
REJECTIONS_FILE = "rejections.jsonl"
SOURCES = ("feedback", "teacher", "offline", "train-set")
PAIR_ID = re.compile(r"^[0-9a-f]{16}$")

KeyOf = Callable[[str], Any] | Mapping[str, Any] | None


# --------------------------------------------------------------------------- ids and sources
def pair_id(query: str, positive_key: Any) -> str:
    """Stable id of a (query, positive) pair: the same in every cycle and on every machine.

    Args:
        query: the query text (normalised before hashing: case and spacing do not matter).
        positive_key: the positive chunk's key, or ``"sha:<text hash>"`` when the key is unknown.
    """
    raw = f"{normalize_query(query)}\x1f{positive_key}"
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def source_kind(source: str | None) -> str:
    """Map a query's detailed source (``offline:title``, ``openai``, ``train-set`` ...) to one of :data:`SOURCES`."""
    s = (source or "").lower()
    if s.startswith("feedback"):
        return "feedback"
    if s.startswith(("train-set", "train_set")):
        return "train-set"
    if s.startswith("offline"):
        return "offline"
    return "teacher"


def lookup(key_of: KeyOf, text: str | None) -> Any:
    if key_of is None or text is None:
        return None
    if callable(key_of):
        return key_of(text)
    return key_of.get(text)


def pos_ref(key: Any, text: str | None) -> Any:
    if key is not None:
        return str(key)
    return f"sha:{text_hash(text)}" if text else None


def snippet(text: str | None, chars: int = 240) -> str | None:
    """One line of at most ``chars`` characters."""
    if text is None:
        return None
    t = re.sub(r"\s+", " ", text).strip()
    return t if len(t) <= chars else t[: chars - 1].rstrip() + "…"


# --------------------------------------------------------------------------- sampling and writing
def sample_pairs(examples: Sequence[Any], k: int = 100, seed: int = 42, *, key_of: KeyOf = None,
                 snippet_chars: int = 240) -> list[dict]:
    """A seeded sample of training pairs, as rows a person can read.

    Args:
        examples: :class:`~vectune.pipeline.pairs.negatives.Example` objects (``anchor``, ``positive``, ``negatives``,
            ``source``) or :class:`~vectune.pipeline.pairs.teachers.base.Query` objects (``text``, ``chunk_id``,
            ``source``).
        k: how many rows at most.
        seed: which ones.
        key_of: passage text → chunk key (a dict or a function), to name positives and negatives by key.
        snippet_chars: length of the passage snippets.

    Returns:
        Rows ``{pair_id, query, positive_key, positive_hash, positive_snippet, negative_key, negative_snippet,
        source, source_detail, reject}`` in the examples' order; ``source`` is one of :data:`SOURCES`.
    """
    rows = []
    for ex in subsample(examples, k, seed):
        query = getattr(ex, "anchor", None) or getattr(ex, "text", "")
        pos_text = getattr(ex, "positive", None)
        pos_key = getattr(ex, "chunk_id", None)
        if pos_key is None:
            pos_key = lookup(key_of, pos_text)
        negs = list(getattr(ex, "negatives", None) or [])
        neg_text = negs[0] if negs else None
        ref = pos_ref(pos_key, pos_text)
        src = getattr(ex, "source", "") or ""
        rows.append({
            "pair_id": pair_id(query, ref),
            "query": query,
            "positive_key": None if pos_key is None else str(pos_key),
            "positive_hash": text_hash(pos_text) if pos_text else None,
            "positive_snippet": snippet(pos_text, snippet_chars),
            "negative_key": None if neg_text is None or lookup(key_of, neg_text) is None
            else str(lookup(key_of, neg_text)),
            "negative_snippet": snippet(neg_text, snippet_chars),
            "source": source_kind(src),
            "source_detail": src,
            "reject": False,
        })
    return rows


def subsample(rows: Sequence[Any], k: int, seed: int = 42) -> list[Any]:
    """At most ``k`` of ``rows``, seeded, in their original order."""
    if k < 0:
        raise BadInput(f"sample size must be >= 0, got {k}")
    if len(rows) <= k:
        return list(rows)
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), k))]


def write_run_sample(run_dir: Path | str, rows: Sequence[Mapping]) -> Path:
    """Keep a run's pair sample in ``<run_dir>/pairs-sample.jsonl`` (atomically replaced); returns the path."""
    path = Path(run_dir) / SAMPLE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        write_jsonl(rows, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_run_sample(run_dir: Path | str, alias: str | None = None) -> list[dict]:
    """The last run's pair sample.

    Raises:
        BadInput: no run has written one yet.
    """
    path = Path(run_dir) / SAMPLE_FILE
    if not path.is_file():
        who = f" for alias '{alias}'" if alias else ""
        raise BadInput(f"no training-pair sample{who} yet ({path} is missing): run a cycle first "
                       "(`vectune run`), then `vectune pairs` shows its pairs")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                logger.warning("%s:%d: not JSON, skipped", path, n)
    return rows


# --------------------------------------------------------------------------- rejections
def record_sample(read, pairs, k: int, seed: int, run_dir: Path | str) -> list[dict]:
    """A seeded sample of a cycle's training pairs, kept with the run state for people to read and veto.

    Args:
        read: the read stage's result (chunk keys by text).
        pairs: the pairs stage's result.
        k: pairs sampled (0: none).
        seed: the sample's seed.
        run_dir: the alias's run folder (``pairs-sample.jsonl``).

    Returns:
        The first 20 rows (what the run report shows).
    """
    if not k:
        return []
    rows = sample_pairs(pairs.examples, k, seed, key_of={c.text: c.key for c in read.by_key.values()})
    write_run_sample(run_dir, rows)
    return rows[:20]
