"""The train stage: the candidates a cycle's mode asks for.

Query side (modes ``query``/``auto``): only the query side learns, against the live collection's
stored passage vectors — a linear map on the query embeddings, or the query encoder itself
(:mod:`vectune.pipeline.train.query`); each candidate is one asymmetric model whose document route
is the live passage model. Full (mode ``full``, or ``auto`` with ``full.in_auto`` or on a GPU):
both towers (:mod:`vectune.pipeline.train.full`).
"""

from __future__ import annotations

from collections.abc import Sequence

from vectune.config.sections import FullConfig, QueryConfig
from vectune.errors import BadInput
from vectune.models.device import cuda
from vectune.models.encoder import Encoder
from vectune.models.store import ModelStore
from vectune.pipeline.train.candidate import Candidate
from vectune.pipeline.train.full import fine_tune
from vectune.pipeline.train.query.candidates import train_query_side


def wants_full(mode: str, full: FullConfig) -> bool:
    """Whether a cycle in ``mode`` trains the full candidate (auto: with ``full.in_auto`` or on a GPU)."""
    return mode == "full" or (mode == "auto" and (full.in_auto or cuda()))


def candidate_kinds(mode: str, kinds: Sequence[str], full: FullConfig) -> list[str]:
    """The candidates a cycle in ``mode`` trains, cheapest first.

    Raises:
        BadInput: the mode and candidate settings leave nothing to train.
    """
    out = list(kinds) if mode in ("auto", "query") else []
    if wants_full(mode, full):
        out.append("full")
    if not out:
        raise BadInput(f"no candidate to train: mode '{mode}' with query candidates {list(kinds)} "
                       "(set VECTUNE_QUERY_CANDIDATES or --mode full)")
    return out


def train_candidates(read, pairs, live_enc: Encoder, *, mode: str, kinds: Sequence[str], query: QueryConfig,
                     full: FullConfig, models: ModelStore, seed: int = 42,
                     device: str | None = None) -> list[Candidate]:
    """Train every candidate of this cycle, cheapest first.

    Args:
        read: the read stage's result (lineage, stored vectors).
        pairs: the pairs stage's result (queries, relevant keys, training examples).
        live_enc: the live model.
        mode: ``auto``, ``query`` or ``full``.
        kinds: the query-side candidates to train (``linear``, ``query``) in modes auto and query.
        query: query-side settings.
        full: full-training settings.
        models: the model store.
        seed: the training seed.
        device: torch device.

    Returns:
        The candidates.

    Raises:
        BadInput: the mode and candidate settings leave nothing to train.
    """
    cands: list[Candidate] = []
    if mode in ("auto", "query") and kinds:
        cands += train_query_side(read, pairs.queries, pairs.relevant, live_enc, query, kinds=kinds, seed=seed,
                                  device=device)
    if wants_full(mode, full):
        cands.append(fine_tune(read.meta, live_enc, pairs.examples, full, models, seed))
    if not cands:
        raise BadInput(f"no candidate to train: mode '{mode}' with query candidates {list(kinds)} "
                       "(set VECTUNE_QUERY_CANDIDATES or --mode full)")
    return cands
