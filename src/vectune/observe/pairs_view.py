"""Training-pair samples for people: JSONL to edit and veto, a Markdown table to read."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any


def write_jsonl(rows: Iterable[Mapping], out: Path | str | IO[str]) -> int:
    """Write rows as JSONL to a path or an open text file; returns how many."""
    if isinstance(out, (str, Path)):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            return write_jsonl(rows, f)
    n = 0
    for r in rows:
        out.write(json.dumps(dict(r), ensure_ascii=False) + "\n")
        n += 1
    return n


def _cell(value: Any) -> str:
    s = "" if value is None else str(value)
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(rows: Sequence[Mapping], title: str | None = None) -> str:
    """The rows as a Markdown table (for reading and for the run report)."""
    md = [f"# {title}", ""] if title else []
    md += ["| # | source | query | positive | hard negative | pair id |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        mark = " **(rejected)**" if r.get("rejected") else ""
        md.append(f"| {i} | {_cell(r.get('source'))} | {_cell(r.get('query'))}{mark} "
                  f"| {_cell(r.get('positive_snippet'))} | {_cell(r.get('negative_snippet'))} "
                  f"| `{_cell(r.get('pair_id'))}` |")
    md += ["", "To veto pairs: export as JSONL, set `\"reject\": true` on a bad pair (or `\"reject\": \"query\"` to "
           "drop every pair of its query), then run `vectune pairs reject FILE --alias ALIAS`."]
    return "\n".join(md) + "\n"


def write_markdown(rows: Sequence[Mapping], out: Path | str | IO[str], title: str | None = None) -> int:
    """Write rows as a Markdown table to a path or an open text file; returns how many."""
    text = markdown(rows, title)
    if isinstance(out, (str, Path)):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
    else:
        out.write(text)
    return len(rows)
