"""JSON files: reading JSONL input (corpora, golden sets, query logs) with clear errors, writing state atomically."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Iterator

from vectune.errors import BadInput


def iter_objects(path: Path, what: str = "file") -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL or JSONL.gz file.

    Args:
        path: the file.
        what: how to name it in error messages ("corpus", "eval set", ...).

    Raises:
        BadInput: the file is missing, a line is not JSON, or not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{what} file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise BadInput(f"{what} {path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise BadInput(f"{what} {path}:{n}: each line must be a JSON object")
            yield n, obj


def write_json_atomic(path: Path, data: dict) -> None:
    """Write a small JSON state file so that a crash leaves the old or the new version, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
