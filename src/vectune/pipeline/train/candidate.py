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


@dataclass(frozen=True)
class Cost:
    """What a candidate costs once promoted: to serve (per query) and to promote (once).

    Attributes:
        serve: what an app pays per query. Every kind runs one pass of a query encoder of the live
            model's size (the linear map adds one d×d product, which is noise beside the transformer).
        promote: ``copy`` (the stored passage vectors are copied into the new collection) or
            ``re-encode`` (every point is embedded again with the new model).
        rank: cheapest first (0: copy, 1: re-encode); candidates of equal cost compete on gain alone.
    """

    serve: str
    promote: str
    rank: int

    def to_dict(self) -> dict:
        return {"serve": self.serve, "promote": self.promote, "rank": self.rank}


#: The cost of each kind. The linear map and the query encoder cost the same (one query pass, a copy).
COSTS = {
    "linear": Cost("one query-encoder pass", "copy", 0),
    "query": Cost("one query-encoder pass", "copy", 0),
    "full": Cost("one query-encoder pass", "re-encode", 1),
}


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

    ``encoder`` is None only for a cross-fit's placeholder (:mod:`vectune.pipeline.crossfit`): the
    candidate judged on its fold models, before its final fit on all labels exists.
    """

    encoder: Encoder | None
    tag: str
    stats: Any
    kind: str = "full"

    @property
    def cost(self) -> Cost:
        """What promoting and serving this candidate costs (:data:`COSTS`)."""
        return COSTS[self.kind]

    @property
    def reencodes(self) -> bool:
        """True when promoting it re-encodes the passages."""
        return self.kind == "full"
