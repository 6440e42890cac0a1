"""The offline teacher: pseudo-queries made from the chunk itself, no network.

Methods:

* ``title`` — the chunk's title/heading payload field, when it has one (title→body
  pairs are what many embedding models were pre-trained on);
* ``keyphrase`` — the chunk's most distinctive terms by TF-IDF over the sample,
  joined as a keyword query;
* ``cloze`` — inverse cloze: one sentence of the chunk is the query and the rest
  of the chunk the positive;
* ``mix`` (default) — title when present, then keyphrase, then cloze, up to n.

All are synthetic: the gate does not promote on their held-out scores alone unless
told to (measured on SciFact, they raise their own held-out scores while real-query
recall falls).
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections import Counter
from collections.abc import Sequence

from vectune.core.chunks import Chunk, get_field
from vectune.pipeline.pairs.teachers.base import GenerationResult, GenerationStats, Query, QueryGenerator

logger = logging.getLogger(__name__)

TITLE_FIELDS = ("title", "heading", "metadata.title", "metadata.heading", "meta.title")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_\-']+")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
    now of off on once only or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves may might must
    shall one two also using used use however thus therefore e g i e et al within without via per""".split()
)


def sentences(text: str) -> list[str]:
    """Split a passage into sentences (a simple, dependency-free splitter)."""
    return [s.strip() for s in _SENT.split(text.replace("\n", " ")) if s.strip()]


class OfflineGenerator(QueryGenerator):
    """Pseudo-queries from the chunk text (see module doc).

    Args:
        method: ``mix``, ``title``, ``keyphrase`` or ``cloze``.
        seed: for the choice of cloze sentences.
        keyphrase_terms: how many terms make a keyphrase query.
    """

    synthetic = True

    def __init__(self, method: str = "mix", seed: int = 42, keyphrase_terms: int = 4):
        if method not in ("mix", "title", "keyphrase", "cloze"):
            raise ValueError(f"unknown offline method {method!r}")
        self.method = method
        self.seed = seed
        self.keyphrase_terms = keyphrase_terms
        self.name = f"offline:{method}"

    def fingerprint(self) -> str:
        return f"{self.name}:seed={self.seed}:k={self.keyphrase_terms}"

    def generate(self, chunks: Sequence[Chunk], n: int) -> GenerationResult:
        stats = GenerationStats(chunks_in=len(chunks))
        idf = self._idf(chunks) if self.method in ("mix", "keyphrase") else {}
        out: list[Query] = []
        for chunk in chunks:
            made = self._for_chunk(chunk, n, idf, stats)
            stats.generated += len(made)
            out.extend(made)
            if not made:
                stats.rejected["no_query_possible"] += 1
        stats.kept = len(out)
        return GenerationResult(out, stats)

    # -- methods ----------------------------------------------------------------
    def _for_chunk(self, chunk: Chunk, n: int, idf: dict[str, float], stats: GenerationStats) -> list[Query]:
        rng = random.Random(f"{self.seed}:{chunk.text_hash}")
        makers = {"title": [self._title], "keyphrase": [self._keyphrase], "cloze": [self._cloze],
                  "mix": [self._title, self._keyphrase, self._cloze]}[self.method]
        out: list[Query] = []
        seen: set[str] = set()
        # Round-robin over the makers until n queries or nothing new comes.
        for _ in range(n):
            progressed = False
            for make in makers:
                if len(out) >= n:
                    break
                q = make(chunk, idf, rng, seen)
                if q is not None and q.text.lower() not in seen:
                    seen.add(q.text.lower())
                    out.append(q)
                    progressed = True
            if not progressed or len(out) >= n:
                break
        return out

    def _title(self, chunk: Chunk, idf, rng, seen) -> Query | None:
        for f in TITLE_FIELDS:
            t = get_field(chunk.payload, f)
            if isinstance(t, str) and len(t.split()) >= 2 and t.lower() not in seen:
                t = t.strip()
                # A title the passage starts with would be found by string overlap alone: train on the body.
                positive = None
                if chunk.text.lower().startswith(t.lower().rstrip(".")):
                    body = chunk.text[len(t):].lstrip(" .:\n")
                    positive = body if len(body.split()) >= 5 else None
                return Query(t, chunk.key, "offline:title", positive=positive)
        return None

    def _keyphrase(self, chunk: Chunk, idf, rng, seen) -> Query | None:
        tf = Counter(w.lower() for w in _WORD.findall(chunk.text) if w.lower() not in STOPWORDS and len(w) > 2)
        if len(tf) < 2:
            return None
        ranked = sorted(tf, key=lambda w: (-(1 + math.log(tf[w])) * idf.get(w, 1.0), w))
        k = self.keyphrase_terms
        # Successive calls give successive windows of terms.
        for start in range(0, max(1, len(ranked) - 1), k):
            q = " ".join(ranked[start:start + k])
            if q.lower() not in seen and len(q.split()) >= 2:
                return Query(q, chunk.key, "offline:keyphrase")
        return None

    def _cloze(self, chunk: Chunk, idf, rng, seen) -> Query | None:
        sents = sentences(chunk.text)
        if len(sents) < 2:
            return None
        cands = [i for i, s in enumerate(sents) if 5 <= len(s.split()) <= 40 and s.lower() not in seen]
        if not cands:
            return None
        i = rng.choice(cands)
        rest = " ".join(s for j, s in enumerate(sents) if j != i)
        return Query(sents[i], chunk.key, "offline:cloze", positive=rest)

    @staticmethod
    def _idf(chunks: Sequence[Chunk]) -> dict[str, float]:
        df: Counter = Counter()
        for c in chunks:
            df.update({w.lower() for w in _WORD.findall(c.text)})
        n = max(1, len(chunks))
        return {w: math.log((n + 1) / (d + 0.5)) for w, d in df.items()}
