"""``vectune demo``: the main job on embedded defaults, end to end.

Indexes CPython's reference topics (shipped with every Python, see
:mod:`vectune.demo_corpus`) with the bundled MiniLM into embedded Qdrant, then runs
one cycle with the offline teacher, decided by the hand-written golden set of real
developer questions that ships with the demo. Each demo starts from a clean alias
so it shows the whole job every time.
"""

from __future__ import annotations

import logging

from vectune import lineage
from vectune.demo_corpus import golden_set_path, write_demo_corpus
from vectune.settings import Settings
from vectune.store import Store

logger = logging.getLogger(__name__)


def reset_alias(settings: Settings, alias: str) -> None:
    """Delete every collection of a demo alias and its run state."""
    import shutil

    with Store(settings) as store:
        for name, _ in lineage.versions(store, alias):
            store.delete_collection(name)
    shutil.rmtree(settings.run_dir(alias), ignore_errors=True)


def run_demo(settings: Settings, alias: str = "pydoc-demo", max_train_chunks: int = 300,
             queries_per_chunk: int = 2, epochs: float = 1.0, golden: bool = True) -> dict:
    """Index the demo corpus and run one cycle.

    Args:
        settings: base settings (paths, Qdrant).
        alias: the demo's alias.
        max_train_chunks: chunks sampled for training (kept small: CPU minutes).
        queries_per_chunk: offline queries per chunk.
        epochs: training epochs.
        golden: decide with the shipped golden set (else synthetic, allowed explicitly).

    Returns:
        The run report.
    """
    from vectune import cycle
    from vectune.index import index

    corpus = write_demo_corpus(settings.resolved_work_dir / "demo" / "pydoc_topics.jsonl")
    reset_alias(settings, alias)
    logger.info("indexing the demo corpus (%s) ...", corpus)
    index(settings, corpus, alias, replace=True)
    tuned = settings.model_copy(update={
        "max_train_chunks": max_train_chunks,
        "queries_per_chunk": queries_per_chunk,
        "epochs": epochs,
        "max_seq_length": min(settings.max_seq_length, 128),
        "eval_set": golden_set_path() if golden else None,
        "allow_synthetic_gate": settings.allow_synthetic_gate or not golden,
    })
    return cycle.run(tuned, alias)
