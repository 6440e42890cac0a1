"""The one time stamp format of vectune's records (lineage, history, reports)."""

from __future__ import annotations

from datetime import datetime, timezone


def now() -> str:
    """UTC now, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
