"""The query-generator interface every teacher implements.

A generator turns chunks into training/eval queries. It never talks to Qdrant and
never trains: it only writes text. Stats it returns go into the run report.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from vectune.core.chunks import Chunk
from vectune.core.stats import Stats


@dataclass
class Query:
    """One query for one chunk.

    Attributes:
        text: the query text.
        chunk_id: the key (string point id) of the chunk that answers it.
        source: where it came from, e.g. ``offline:title``, ``openai``, ``train-set``.
        positive: the positive passage text when it differs from the chunk's text
            (inverse cloze removes the query sentence from the passage).
    """

    text: str
    chunk_id: str
    source: str
    positive: str | None = None


@dataclass
class GenerationStats(Stats):
    """What a generator did, for the run report."""

    ROUND = 6

    chunks_in: int = 0
    chunks_sent: int = 0
    generated: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    llm_calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    budget_hit: str | None = None
    failed_chunks: int = 0
    retries: int = 0
    errors: dict = field(default_factory=dict)


@dataclass
class GenerationResult:
    queries: list[Query]
    stats: GenerationStats


class QueryGenerator(abc.ABC):
    """A teacher: chunks in, queries out."""

    #: short name recorded in reports and lineage
    name: str = "generator"
    #: True when the queries are made from the chunk text itself (not a real teacher):
    #: the gate treats evidence from them as synthetic.
    synthetic: bool = True

    @abc.abstractmethod
    def generate(self, chunks: Sequence[Chunk], n: int) -> GenerationResult:
        """Generate up to ``n`` queries for each chunk.

        Args:
            chunks: the chunks to write queries for.
            n: queries wanted per chunk.

        Returns:
            The queries (any order) and the stats of the run. Must not raise for a
            single bad chunk: count it in ``stats.rejected`` or ``stats.failed_chunks``.
        """

    def fingerprint(self) -> str:
        """A stable string naming this generator's configuration (for caching/no-op checks)."""
        return self.name
