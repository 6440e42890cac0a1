"""Stable content hashes: of texts, payloads and files (change detection, caches, no-op checks).

Both digests are persisted (teacher cache keys and offline-generator seeds use
:func:`text_hash`; promotion snapshots use :func:`payload_hash`), so their
algorithms must not change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def text_hash(text: str) -> str:
    """Hex digest of a text (SHA-256, 24 hex digits)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def payload_hash(payload: dict | None) -> str:
    """Stable hash of a payload (key order does not matter; BLAKE2b, 24 hex digits)."""
    raw = json.dumps(payload or {}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def file_hash(path: Path | None) -> str | None:
    """Hash of a file's bytes (16 hex digits), or None when there is no such file."""
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
