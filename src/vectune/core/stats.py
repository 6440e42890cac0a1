"""One base for the small counters each stage reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields


class Stats:
    """Mixin for stage statistics dataclasses: ``to_dict`` for the run report.

    Floats are rounded to ``ROUND`` places; Counters become plain dicts.
    """

    ROUND = 3

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            if not f.repr:
                continue
            v = getattr(self, f.name)
            if isinstance(v, float):
                v = round(v, self.ROUND)
            elif isinstance(v, (Counter, dict)):
                v = dict(v)
            out[f.name] = v
        return out
