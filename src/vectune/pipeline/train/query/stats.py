"""What a query-side training did (:class:`QuerySideStats`), and the shape of its labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Union

#: One query's positives: passage keys (all relevant), or key -> grade (grade > 0 is relevant).
Positives = Union[Sequence[str], Mapping[str, float]]


@dataclass
class QuerySideStats:
    """What one query-side training did.

    Attributes:
        kind: ``"encoder"`` or ``"linear"``.
        train_queries: queries trained on (after the validation slice was taken out).
        val_queries: queries in the validation slice.
        dropped_queries: queries with no positive among the corpus keys (not used).
        train_indices: indices (into the queries passed in) trained on in the selection run.
        val_indices: indices of the validation slice.
        corpus_in_memory: stored vectors the loss ran against.
        pooled: True when the corpus did not fit and a pool stood in for it.
        steps: optimizer steps (selection run + refit).
        examples: query-positive pairs seen in those steps.
        seconds: wall time of the training (both runs, validation included).
        examples_per_s: ``examples / seconds``.
        epochs_run: epochs of the selection run (fractional when a budget stopped it).
        stopped_by: ``"epochs"``, ``"max_steps"`` or ``"time"``.
        chosen_epoch: epoch of the kept checkpoint (0: the live model was best, nothing learned).
        val_metric: the selection metric.
        val_live: its value for the live model on the slice.
        val_best: its value for the kept checkpoint on the slice (selection run).
        val_curve: ``[epoch, value]`` after each evaluation.
        val_new_docs: slice queries none of whose positives is a positive of a training query.
        val_curve_new_docs: ``[epoch, value]`` on those queries alone (reported, not selected on): whether
            the gain reaches documents training never pointed at, or only re-finds known ones.
        epoch_loss: mean training loss per epoch of the selection run.
        refit: True when the returned model was retrained on all training queries.
        refit_epochs: epochs of that refit.
        threads: torch CPU threads used.
        frozen_params: parameters kept fixed (``freeze_embeddings``).
        beats_live: whether the kept checkpoint scored above the live model on the slice (None: no
            slice). The best *trained* checkpoint is returned either way; the golden gate decides.
        identity_weight: the linear map's chosen identity-pull weight.
        weight_scores: slice value of the best epoch for each identity weight tried.
    """

    kind: str
    train_queries: int = 0
    val_queries: int = 0
    dropped_queries: int = 0
    train_indices: list[int] = field(default_factory=list, repr=False)
    val_indices: list[int] = field(default_factory=list, repr=False)
    corpus_in_memory: int = 0
    pooled: bool = False
    steps: int = 0
    examples: int = 0
    seconds: float = 0.0
    examples_per_s: float = 0.0
    epochs_run: float = 0.0
    stopped_by: str = "epochs"
    chosen_epoch: float = 0.0
    val_metric: str = "ndcg@10"
    val_live: float | None = None
    val_best: float | None = None
    val_curve: list[list[float]] = field(default_factory=list)
    val_new_docs: int = 0
    val_curve_new_docs: list[list[float]] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    refit: bool = False
    refit_epochs: float = 0.0
    threads: int = 0
    frozen_params: int = 0
    beats_live: bool | None = None
    identity_weight: float | None = None
    weight_scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready summary (without the index lists)."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("train_indices", "val_indices")}
        for k, v in out.items():
            if isinstance(v, float):
                out[k] = round(v, 4)
        out["val_curve"] = [[round(e, 3), round(v, 4)] for e, v in self.val_curve]
        out["val_curve_new_docs"] = [[round(e, 3), round(v, 4)] for e, v in self.val_curve_new_docs]
        out["epoch_loss"] = [round(v, 4) for v in self.epoch_loss]
        return out
