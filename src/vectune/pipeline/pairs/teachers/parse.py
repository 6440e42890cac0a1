"""Turn an LLM reply into validated questions, counting every rejection by reason.

Accepted reply shapes, tried in order: a JSON array; an object wrapping a list
(``{"questions": [...]}`` or any object with a single list value); either inside a
code fence; JSON embedded in prose; and, as a fallback, numbered or bulleted lines
(or lines ending with ``?``).

Rejection reasons, per question: ``not_a_string``, ``empty``, ``too_long``,
``too_short``, ``copy_of_chunk``, ``not_a_question``, ``duplicate``, ``over_n``
(valid but beyond the ``n`` wanted). Per reply: ``empty_reply``, ``unparseable``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from typing import Any

logger = logging.getLogger(__name__)

MAX_CHARS = 300
MAX_WORDS = 40
MIN_WORDS = 3
#: a question is a copy when this share of its words is one run of the chunk's words ...
COPY_SHARE = 0.85
#: ... and that run is at least this long (or covers most of a short chunk)
COPY_MIN_RUN = 8

_LIST_KEYS = ("questions", "queries", "question_list", "items", "results", "data")
_ITEM_KEYS = ("question", "query", "text", "q")

_FENCE_RE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\r?\n?(.*?)```", re.DOTALL)
_LINE_RE = re.compile(r"^\s*(?:(?:\d{1,3}|[a-zA-Z])[.):]|[-*•+]|Q\d{0,3}[.:)]|\(\d{1,3}\))\s+(.+?)\s*$")
_WORD_RE = re.compile(r"\w+", re.UNICODE)
_QUESTION_MARKS = ("?", "？", "؟", ";")  # ';' is the Greek question mark

#: first words that make a question (or a search-style imperative) without a '?'
INTERROGATIVES = frozenset(
    """
    what whats what's how hows how's why which who whom whose when where whether
    does do did is are was were am can could should would will shall may might must
    has have had isn't aren't doesn't don't didn't can't won't
    explain list describe name define compare contrast give identify summarize summarise
    tell find show outline discuss state provide determine calculate evaluate
    """.split()
)


def _from_json_value(value: Any) -> list | None:
    """The list of candidate questions inside a decoded JSON value, if any."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for k in _LIST_KEYS:
            if isinstance(value.get(k), list):
                return value[k]
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
        # {"question": "..."} alone: one question
        for k in _ITEM_KEYS:
            if isinstance(value.get(k), str):
                return [value[k]]
    return None


def _try_json(text: str) -> list | None:
    try:
        return _from_json_value(json.loads(text))
    except (ValueError, RecursionError):
        return None


def _embedded_json(text: str) -> list | None:
    """The first JSON array/object embedded in prose that holds a list."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except (ValueError, RecursionError):
            continue
        found = _from_json_value(value)
        if found and any(isinstance(x, (str, dict)) for x in found):
            return found
    return None


def _lines(text: str) -> list | None:
    """Numbered/bulleted lines; failing that, lines that end with a question mark."""
    items = []
    for line in text.splitlines():
        m = _LINE_RE.match(line)
        if m:
            items.append(m.group(1))
    if items:
        return items
    items = [ln.strip() for ln in text.splitlines() if ln.strip().endswith(_QUESTION_MARKS)]
    return items or None


def extract_items(reply: str | None) -> tuple[list | None, str | None]:
    """Find the list of candidate questions in a reply.

    Args:
        reply: the model's message content (may be None).

    Returns:
        ``(items, None)`` or ``(None, reason)`` with reason ``empty_reply`` or ``unparseable``.
    """
    if reply is None or not reply.strip():
        return None, "empty_reply"
    text = reply.strip()
    found = _try_json(text)
    if found is None:
        for block in _FENCE_RE.findall(text):
            found = _try_json(block.strip()) or _embedded_json(block)
            if found is not None:
                break
    if found is None:
        found = _embedded_json(text)
    if found is None:
        # fences without valid JSON inside: read the lines, fences removed
        found = _lines(re.sub(r"```[^\n]*", "", text))
    if found is None:
        return None, "unparseable"
    if not found:
        return None, "empty_reply"
    return found, None


def _words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD_RE.findall(text)]


def _clean(item: Any) -> str | None:
    """A candidate as a one-line string, or None if it is not text."""
    if isinstance(item, dict):
        for k in _ITEM_KEYS:
            if isinstance(item.get(k), str):
                item = item[k]
                break
    if not isinstance(item, str):
        return None
    s = " ".join(item.split())
    # stray quotes/bullets left by loose formats
    s = s.strip().strip('"“”\'`').strip()
    s = re.sub(r"^(?:\d{1,3}[.)]|[-*•]|Q\d{0,3}[.:)])\s+", "", s)
    return s


class _ChunkIndex:
    """Word n-grams of a chunk, to spot questions that copy it."""

    def __init__(self, chunk_text: str):
        self.words = _words(chunk_text)
        self._grams: dict[int, set[tuple[str, ...]]] = {}

    def has_run(self, words: list[str], length: int) -> bool:
        if length <= 0 or length > len(words) or length > len(self.words):
            return False
        grams = self._grams.get(length)
        if grams is None:
            grams = {tuple(self.words[i : i + length]) for i in range(len(self.words) - length + 1)}
            self._grams[length] = grams
        return any(tuple(words[i : i + length]) in grams for i in range(len(words) - length + 1))


def is_copy(question_words: list[str], index: _ChunkIndex) -> bool:
    """Whether a question is (nearly) a verbatim run of the chunk.

    A question is a copy when one contiguous run of the chunk's words makes up at
    least :data:`COPY_SHARE` of its words and that run is long (at least
    :data:`COPY_MIN_RUN` words, or most of a short chunk).
    """
    n = len(question_words)
    if n == 0 or not index.words:
        return False
    need = max(1, math.ceil(COPY_SHARE * n - 1e-9))
    if need < COPY_MIN_RUN and need < COPY_SHARE * len(index.words):
        return False
    return index.has_run(question_words, need)


def looks_like_question(text: str) -> bool:
    """Heuristic: ends with a question mark or starts with an interrogative/imperative."""
    if text.rstrip().endswith(_QUESTION_MARKS):
        return True
    first = text.split(maxsplit=1)[0].casefold().strip("¿¡\"'(").rstrip(",:")
    return first in INTERROGATIVES


def validate(items: list, chunk_text: str, n: int) -> tuple[list[str], Counter]:
    """Validate candidates; keep at most ``n``.

    Args:
        items: candidate questions from :func:`extract_items`.
        chunk_text: the chunk they were written for (to catch copies).
        n: questions wanted.

    Returns:
        ``(questions, rejected)``: kept questions in reply order and a Counter of
        rejection reasons.
    """
    rejected: Counter = Counter()
    kept: list[str] = []
    seen: set[tuple[str, ...]] = set()
    index = _ChunkIndex(chunk_text)
    for item in items:
        q = _clean(item)
        if q is None:
            rejected["not_a_string"] += 1
            continue
        words = _words(q)
        if not q or not words:
            rejected["empty"] += 1
        elif len(q) > MAX_CHARS or len(words) > MAX_WORDS:
            rejected["too_long"] += 1
        elif len(words) < MIN_WORDS:
            rejected["too_short"] += 1
        elif is_copy(words, index):
            rejected["copy_of_chunk"] += 1
        elif not looks_like_question(q):
            rejected["not_a_question"] += 1
        elif tuple(words) in seen:
            rejected["duplicate"] += 1
        elif len(kept) >= n:
            rejected["over_n"] += 1
        else:
            seen.add(tuple(words))
            kept.append(q)
    return kept, rejected


def parse_questions(reply: str | None, chunk_text: str, n: int) -> tuple[list[str], Counter, int]:
    """Parse and validate one reply.

    Args:
        reply: the model's message content.
        chunk_text: the chunk the reply is about.
        n: questions wanted.

    Returns:
        ``(questions, rejected, generated)``: at most ``n`` valid questions, a Counter
        of rejection reasons (including whole-reply ``unparseable``/``empty_reply``),
        and the number of candidates the reply held.
    """
    items, reason = extract_items(reply)
    if items is None:
        return [], Counter({reason: 1}), 0
    kept, rejected = validate(items, chunk_text, n)
    return kept, rejected, len(items)
