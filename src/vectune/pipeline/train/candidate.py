"""A candidate waiting for the gate: the tuned model, its kind, and how it trained."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vectune.core.stats import Stats
from vectune.models.encoder import Encoder


@dataclass
class TrainStats(Stats):
    """What a full (both-tower) training run did."""

    ROUND = 5

    examples: int
    steps: int
    seconds: float
    loss: float | None
    examples_per_s: float
    processes: int = 1


#: Candidate kinds, cheapest first.
KINDS = ("linear", "query", "full")


@dataclass
class Candidate:
    """A tuned model waiting for the gate.

    Attributes:
        encoder: the tuned model. For ``linear`` and ``query`` it is asymmetric: its query route
            is new, its document route is the live passage model (passages are never re-encoded).
        tag: its model-store tag (and the new collection's suffix).
        stats: training statistics.
        kind: ``linear`` (a map on the query embeddings), ``query`` (the query encoder) or
            ``full`` (both towers; promotion re-embeds every point).
    """

    encoder: Encoder
    tag: str
    stats: Any
    kind: str = "full"

    @property
    def reencodes(self) -> bool:
        """True when promoting it re-encodes the passages."""
        return self.kind == "full"
