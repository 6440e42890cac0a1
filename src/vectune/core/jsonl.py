"""JSON files: reading JSONL input (corpora, golden sets, query logs) with clear errors, writing state atomically."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
            except json.JSONDecodeError as e:
                raise BadInput(f"{what} {path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise BadInput(f"{what} {path}:{n}: each line must be a JSON object")
            yield n, obj


def write_atomic(path: Path | str, data: str | bytes, mode: int = 0o644) -> None:
    """Write a file so that a crash leaves the old or the new version, never a torn one.

    The temporary file is ``.<name>.<random>.tmp`` in the same directory (collectors that
    glob ``*.prom`` or ``*.json`` never see it), fsync'd, then renamed over ``path``.

    Args:
        path: the target file (its directory is created).
        data: text (UTF-8) or bytes.
        mode: permission bits of the result (mkstemp would leave 0600).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path | str, data: dict) -> None:
    """Write a small JSON state file atomically (see :func:`write_atomic`)."""
    write_atomic(path, json.dumps(data, default=str))


def append_durable(path: Path | str, data: bytes) -> None:
    """Append ``data`` to a file with one ``write`` on an ``O_APPEND`` descriptor, then fsync.

    One small write lands whole or not at all, so a crash never leaves half a record behind: a
    record that cannot be read back is damage, not an interrupted append.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def set_aside(path: Path | str, stamp: str) -> Path:
    """Rename a damaged state file to ``<name>.torn-<stamp>`` beside it (kept for inspection, never deleted).

    Returns:
        The new path.
    """
    src = Path(path)
    dst = src.with_name(f"{src.name}.torn-{stamp}")
    n = 1
    while dst.exists():
        n += 1
        dst = src.with_name(f"{src.name}.torn-{stamp}-{n}")
    os.replace(src, dst)
    return dst
