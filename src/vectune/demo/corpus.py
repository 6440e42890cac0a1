"""The demo corpus: CPython's own reference topics, chunked.

``pydoc_data.topics`` ships with every CPython, so the demo needs no download. It is
a real jargon-heavy domain ("dunder", "MRO", "walrus"), which is what vectune is for.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path


def demo_chunks(max_chars: int = 900) -> list[dict]:
    """Chunk the pydoc topics into passages of at most about ``max_chars``.

    Args:
        max_chars: target chunk size; paragraphs are packed up to it.

    Returns:
        Records ``{"_id": "<topic>-<n>", "title": topic, "text": passage}`` in a stable order.
    """
    from pydoc_data.topics import topics

    out: list[dict] = []
    for topic in sorted(topics):
        paras = [p.strip() for p in topics[topic].split("\n\n") if p.strip()]
        buf: list[str] = []
        n = 0
        for p in paras:
            if buf and sum(len(x) for x in buf) + len(p) > max_chars:
                out.append({"_id": f"{topic}-{n}", "title": topic, "text": "\n\n".join(buf)})
                n += 1
                buf = []
            buf.append(p[: max_chars * 2])
        if buf:
            out.append({"_id": f"{topic}-{n}", "title": topic, "text": "\n\n".join(buf)})
    return out


def write_demo_corpus(path: Path) -> Path:
    """Write the demo corpus as JSONL to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for rec in demo_chunks():
            f.write(json.dumps(rec) + "\n")
    return path


def golden_set_path() -> Path:
    """The hand-written golden eval set shipped with the demo corpus."""
    return Path(str(resources.files("vectune") / "data" / "demo_golden.jsonl"))
