"""Before anything else: the alias's models are intact and its state files readable.

Every run (a no-op and a dry run too), ``vectune check`` and crash recovery start here:

* **models** (:func:`verify_models`): the live collection's query and passage models and the
  rollback target's are checked against the SHA-256 of every file their manifest records
  (:meth:`vectune.models.store.ModelStore.require_intact`); a truncated, altered or missing file is
  exit code 3 naming it. Models vectune did not save (the bundled one, a hub id) carry no manifest
  and are reported as not checked.
* **state files** (:func:`require_readable_state`): the promotion checkpoint, the swap's snapshot,
  the reconciliation journal, the in-flight marker and the history. One that exists but cannot be
  read stops the run with exit code 3 naming it and what to do (``vectune recover``); nothing is
  skipped or deleted silently.
"""

from __future__ import annotations

import logging

from vectune.config.settings import Settings
from vectune.errors import TornState
from vectune.models.store import ModelStore
from vectune.observe.history import History
from vectune.promote.checkpoint import Checkpoint, InFlight
from vectune.qdrant import lineage
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)


def model_refs(store: Store, alias: str) -> list[tuple[str, str]]:
    """``(model reference, role)`` of the live collection's and the rollback target's models, each once."""
    live = store.resolve_alias(alias)
    out: list[tuple[str, str]] = []
    for name, who in ((live, "the live collection"), (lineage.rollback_target(store, alias, live),
                                                       "the rollback target")):
        if not name:
            continue
        meta = store.metadata(name)
        for ref, side in ((lineage.query_model(meta), "query"), (lineage.passage_model(meta), "passage")):
            if ref and all(ref != r for r, _ in out):
                out.append((str(ref), f"the {side} model of {who} '{name}'"))
    return out


def verify_models(store: Store, settings: Settings, alias: str) -> list[dict]:
    """Verify the live and the rollback target's models against their manifests' hashes.

    Returns:
        One :meth:`~vectune.models.store.Verification.to_dict` per model.

    Raises:
        BadInput: a model is damaged (exit code 3), naming the file.
    """
    models = ModelStore.from_settings(settings)
    out = []
    for ref, role in model_refs(store, alias):
        v = models.require_intact(ref, role)
        out.append({**v.to_dict(), "role": role})
        if v.note:
            logger.debug("%s %s: %s", role, ref, v.note)
    return out


def state_problems(settings: Settings, alias: str) -> list[TornState]:
    """Every state file of ``alias`` that exists but cannot be read."""
    run_dir = settings.run_dir(alias)
    out = Checkpoint(run_dir).problems()
    for check in (InFlight(run_dir).load, History(settings.work_dir, alias).read):
        try:
            check()
        except TornState as e:
            out.append(e)
    return out


def require_readable_state(settings: Settings, alias: str) -> None:
    """Stop (exit code 3) when a state file of ``alias`` is damaged, naming each one and what to do.

    Raises:
        TornState: the first damaged file, with every other one listed.
    """
    problems = state_problems(settings, alias)
    if not problems:
        return
    first = problems[0]
    more = "".join(f"\nalso: {e}" for e in problems[1:])
    raise TornState(first.path, f"{first}{more}")


def preflight(store: Store, settings: Settings, alias: str) -> list[dict]:
    """What every run does before anything else: readable state files, intact models.

    Returns:
        The model verifications (for the report).
    """
    require_readable_state(settings, alias)
    return verify_models(store, settings, alias)


__all__ = ["model_refs", "preflight", "require_readable_state", "state_problems", "verify_models"]
