"""On-disk cache of teacher replies, safe against ``kill -9``.

The cache is one append-only JSONL file. Each finished chunk appends one line —
written with a single ``write`` on an ``O_APPEND`` descriptor and ``fsync``'d — so a
killed run loses at most the line being written. A torn last line (no trailing
newline) is cut off when the cache is next opened; any other unreadable line is
skipped and counted. Later lines win over earlier ones with the same key.

Keys combine the chunk text hash, the teacher model, the prompt hash and ``n``.
Only successful requests are cached, so failed chunks are retried next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_FILE = "teacher-cache.jsonl"


def cache_key(chunk_hash: str, model: str, prompt_hash: str, n: int) -> str:
    """The cache key of one chunk's reply.

    Args:
        chunk_hash: :func:`vectune.core.chunks.text_hash` of the chunk text.
        model: the teacher model name.
        prompt_hash: :attr:`vectune.pipeline.pairs.teachers.prompt.Prompt.hash`.
        n: questions asked for.

    Returns:
        A hex digest.
    """
    raw = "\x00".join((chunk_hash, model, prompt_hash, str(n)))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


@dataclass
class CacheEntry:
    """A cached, already-validated reply.

    Attributes:
        questions: the kept questions.
        rejected: rejection counts of the reply.
        generated: number of candidates the reply held.
        prompt_tokens: prompt tokens the request used.
        completion_tokens: completion tokens the request used.
    """

    questions: list[str]
    rejected: Counter = field(default_factory=Counter)
    generated: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ReplyCache:
    """Append-only JSONL cache of teacher replies.

    Args:
        directory: folder holding the cache file (created if missing); ``None``
            disables the cache (nothing read, nothing written).
        fsync: fsync every appended line (turn off only in tests).
    """

    def __init__(self, directory: Path | str | None, fsync: bool = True):
        self.path = Path(directory) / CACHE_FILE if directory is not None else None
        self.fsync = fsync
        self.entries: dict[str, CacheEntry] = {}
        self.bad_lines = 0
        self._fd: int | None = None
        if self.path is not None:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            # a write torn by a kill: cut the partial line so the next append starts clean
            cut = data.rfind(b"\n") + 1
            logger.warning("teacher cache %s: dropping a partial last line (%d bytes)", self.path, len(data) - cut)
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
            data = data[:cut]
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                entry = CacheEntry(
                    questions=[str(q) for q in rec["questions"]],
                    rejected=Counter({str(k): int(v) for k, v in rec.get("rejected", {}).items()}),
                    generated=int(rec.get("generated", 0)),
                    prompt_tokens=int(rec.get("prompt_tokens", 0)),
                    completion_tokens=int(rec.get("completion_tokens", 0)),
                )
                self.entries[str(rec["key"])] = entry
            except (ValueError, KeyError, TypeError, AttributeError):
                self.bad_lines += 1
        if self.bad_lines:
            logger.warning("teacher cache %s: skipped %d unreadable lines", self.path, self.bad_lines)
        logger.debug("teacher cache %s: %d entries", self.path, len(self.entries))

    def get(self, key: str) -> CacheEntry | None:
        """The cached entry for ``key``, or None."""
        return self.entries.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, key: str, entry: CacheEntry, **extra) -> None:
        """Record a reply: in memory, and durably on disk when the cache has a file.

        Args:
            key: from :func:`cache_key`.
            entry: the validated reply.
            **extra: more JSON-safe fields for the line (e.g. ``model``, ``chunk_hash``).
        """
        self.entries[key] = entry
        if self.path is None:
            return
        rec = {
            "key": key,
            "questions": entry.questions,
            "rejected": dict(entry.rejected),
            "generated": entry.generated,
            "prompt_tokens": entry.prompt_tokens,
            "completion_tokens": entry.completion_tokens,
            "ts": round(time.time(), 3),
            **extra,
        }
        line = (json.dumps(rec) + "\n").encode("ascii")
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        """Close the file descriptor (safe to call twice)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ReplyCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
