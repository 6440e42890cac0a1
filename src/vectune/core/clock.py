"""The one time stamp format of vectune's records (lineage, history, reports)."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> str:
    """UTC now, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
