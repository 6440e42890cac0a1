"""What a build or sync did."""

from __future__ import annotations

from dataclasses import dataclass, field

from vectune.core.stats import Stats


@dataclass
class SyncStats(Stats):
    """What a build or sync did."""

    upserted: int = 0
    deleted: int = 0
    reused_vectors: int = 0
    passes: int = 0
    seconds: float = 0.0
    window_s: float | None = None
    window_writes: int = 0
    window_conflicts: int = 0
    text_followed: int = 0  # reconciled points re-encoded because their vector was not their final text's
    pass_deltas: list[int] = field(default_factory=list)


