"""Real labeled queries: golden eval sets (``--eval-set``) and query logs (``--train-set``).

Format: JSONL, one query per line::

    {"query": "what is MI?", "relevant": ["doc-17", "doc-18"]}

``text`` may stand for ``query``; ``relevant_ids``/``doc_ids``/``ids`` for
``relevant``. Graded labels (BEIR qrels 1/2, say) give ``relevant`` as an object of
id -> grade: ``{"query": "...", "relevant": {"doc-17": 2, "doc-18": 1}}``; the gate's nDCG uses the
grades as gains (a grade of 0 or less is not relevant). Ids are the external ids given at ``vectune index``
time (kept in the payload) or Qdrant point ids: both map to the same point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vectune.core.jsonl import iter_objects
from vectune.core.labels import QUERY_KEYS, RELEVANT_KEYS
from vectune.errors import BadInput
from vectune.qdrant.store import point_id_for


@dataclass
class LabeledQuery:
    """A real query with the ids of the chunks that answer it.

    Attributes:
        text: the query.
        relevant: point-id strings of the chunks that answer it.
        grades: point-id string -> grade for graded labels (None: all grade 1).
        ts: when it was last asked (ISO time; feedback only): cross-fitting blocks folds by it.
        events: the feedback events (point ids in the feedback collection) it was made of (feedback only).
    """

    text: str
    relevant: set[str]
    grades: dict[str, float] | None = None
    ts: str | None = None
    events: tuple[str, ...] = ()


def load(path: Path, what: str = "eval set") -> list[LabeledQuery]:
    """Read a labeled query file.

    Args:
        path: JSONL file.
        what: name used in error messages.

    Returns:
        The queries, relevant ids as point-id strings.

    Raises:
        BadInput: missing file, bad JSON, or a line without query/relevant ids.
    """

    out = []
    for n, obj in iter_objects(path, what):
        text = next((obj.get(k) for k in QUERY_KEYS if isinstance(obj.get(k), str)), None)
        rel = next((obj.get(k) for k in RELEVANT_KEYS if obj.get(k) is not None), None)
        if isinstance(rel, (str, int)):
            rel = [rel]
        grades = None
        if isinstance(rel, dict):
            try:
                grades = {str(point_id_for(k)): float(g) for k, g in rel.items() if float(g) > 0}
            except (TypeError, ValueError):
                raise BadInput(f"{what} {path}:{n}: graded 'relevant' must map ids to numbers") from None
            rel = list(grades)
        if not text or not text.strip() or not isinstance(rel, list) or not rel:
            raise BadInput(f"{what} {path}:{n}: needs a 'query' string and a non-empty 'relevant' id list "
                           "(or an object of id -> grade)")
        out.append(LabeledQuery(text.strip(), {str(point_id_for(r)) for r in rel}, grades))
    if not out:
        raise BadInput(f"{what} {path} holds no queries")
    return out
