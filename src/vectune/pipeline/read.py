"""Read stage: resolve the alias, read the lineage, stream and filter the live collection's chunks.

Returns a :class:`ReadResult`: the live collection, its lineage record, the dense
vector being tuned, a seeded sample of chunks (with their stored vectors, so no
later stage re-encodes the corpus) and a fingerprint of the collection's content
for the no-op check.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field

import numpy as np

from vectune.config.sections import CollectionConfig, ReadConfig
from vectune.core.chunks import Chunk, ReadStats, extract_text, filter_chunks
from vectune.core.vectors import normalize
from vectune.errors import BadInput
from vectune.models.encoder import Encoder
from vectune.qdrant.store import DenseSpec, Store, dense_of, point_id_for

logger = logging.getLogger(__name__)

#: Skip reasons that mean a point cannot be re-embedded at promotion.
UNEMBEDDABLE = ("no_payload", "missing_field", "not_a_string", "empty", "bad_node_content")


@dataclass
class ReadResult:
    """What the read stage found.

    Attributes:
        live: the collection the alias points at.
        meta: its lineage record.
        spec: the dense vector being tuned.
        collection: the collection settings with the effective text field applied.
        chunks: the sampled chunks, sorted by key, with stored vectors.
        stats: points seen and skips by reason.
        fingerprint: hash of the collection's ids and texts (the no-op check).
        by_key: every chunk the cycle knows, by key (labeled sets may add more).
    """

    live: str
    meta: dict
    spec: DenseSpec
    collection: CollectionConfig
    chunks: list[Chunk]
    stats: ReadStats
    fingerprint: str
    by_key: dict[str, Chunk] = field(default_factory=dict)

    @property
    def text_field(self) -> str:
        """The payload field that holds the text in this collection."""
        return self.collection.text_field

    def ensure(self, store: Store, keys: set[str]) -> int:
        """Fetch chunks that labeled queries point at but the sample missed.

        Returns:
            How many of ``keys`` are not (usable) points of the live collection.
        """
        need = [k for k in sorted(keys) if k not in self.by_key]
        unknown = 0
        for i in range(0, len(need), 256):
            batch = need[i:i + 256]
            recs = store.retrieve(self.live, [point_id_for(k) for k in batch], vectors=self.spec.selector)
            found = set()
            for r in recs:
                text, _ = extract_text(r.payload, self.text_field)
                vec = dense_of(r, self.spec)
                if text and vec is not None:
                    self.by_key[str(r.id)] = Chunk(str(r.id), r.id, text, r.payload or {}, vec)
                    found.add(str(r.id))
            unknown += len(set(batch) - found)
        return unknown


def read(store: Store, alias: str, cfg: ReadConfig, collection: CollectionConfig, *, seed: int = 42,
         keep: int | None = None) -> ReadResult:
    """Run the read stage on ``alias``.

    Args:
        store: Qdrant access.
        alias: the alias apps query.
        cfg: the read settings (text length limits, sample size, page size).
        collection: the collection settings (text field, dense vector name).
        seed: the sample's seed.
        keep: chunks kept in memory (default ``cfg.max_train_chunks``; the cycle keeps more for evaluation).

    Returns:
        The live collection, lineage, spec, sampled chunks, stats and content fingerprint.

    Raises:
        BadInput: no lineage, an empty collection, points that a promotion would lose, too few chunks.
    """
    live = store.resolve_alias(alias)
    meta = store.metadata(live)
    if not meta.get("model_ref"):
        raise BadInput(f"collection '{live}' has no vectune lineage (which model made it?): "
                       f"take it over first with `vectune adopt --collection {live} --alias {alias} --model <model>`")
    collection = collection.for_meta(meta)
    spec = store.dense_spec(live, collection.vector_name or meta.get("dense_vector") or None)
    keep = max(cfg.max_train_chunks, keep or 0)
    chunks, stats, fp = sample_collection(store, live, spec, cfg, collection.text_field, seed, keep)
    if stats.points == 0:
        raise BadInput(f"collection '{live}' is empty: nothing to learn from")
    bad = {k: v for k, v in stats.skipped.items() if k in UNEMBEDDABLE or k in ("no_vector", "wrong_dimension")}
    if bad:
        raise BadInput(f"{sum(bad.values())} of {stats.points} points in '{live}' cannot be used "
                       f"(payload field '{collection.text_field}': {bad}); a promotion would lose them. "
                       "Fix the payloads or choose the right --text-field")
    if stats.usable < cfg.min_train_chunks:
        raise BadInput(f"only {stats.usable} usable chunks in '{live}' (need at least {cfg.min_train_chunks} to train)")
    return ReadResult(live, meta, spec, collection, chunks, stats, fp, {c.key: c for c in chunks})


def sample_collection(store: Store, collection: str, spec: DenseSpec, cfg: ReadConfig, text_field: str, seed: int,
                      keep: int) -> tuple[list[Chunk], ReadStats, str]:
    """Stream the collection, filter chunks, keep a seeded reservoir sample of ``keep``.

    Returns:
        The sampled chunks (with stored vectors), read stats and a fingerprint of the
        collection's content (ids + text hashes) for the no-op check.
    """
    stats = ReadStats()
    rng = random.Random(seed)
    reservoir: list[Chunk] = []
    fp = hashlib.sha256()
    seen = 0

    def points():
        for records, _ in store.scroll(collection, vectors=spec.selector, batch=cfg.scroll_batch):
            for r in records:
                vec = dense_of(r, spec)
                if vec is None:
                    stats.skipped["no_vector"] += 1
                    continue
                if vec.shape[0] != spec.size:
                    stats.skipped["wrong_dimension"] += 1
                    continue
                yield r.id, r.payload, vec

    for chunk in filter_chunks(points(), text_field, cfg.min_chars, cfg.max_chars, stats):
        fp.update(f"{chunk.key}:{chunk.text_hash};".encode())
        seen += 1
        if len(reservoir) < keep:
            reservoir.append(chunk)
        else:
            j = rng.randrange(seen)
            if j < keep:
                reservoir[j] = chunk
    stats.points += stats.skipped.get("no_vector", 0) + stats.skipped.get("wrong_dimension", 0)
    reservoir.sort(key=lambda c: c.key)
    return reservoir, stats, fp.hexdigest()


def check_live_vectors(encoder: Encoder, chunks: list[Chunk], collection: str, n: int = 8) -> float:
    """Check the stored vectors were made by the live model (cosine of re-encoded samples).

    Returns:
        The median cosine between stored and re-encoded vectors.

    Raises:
        BadInput: they were not — evaluation and mining would be meaningless.
    """
    picked = chunks[:: max(1, len(chunks) // n)][:n]
    emb = encoder.encode_passages([c.text for c in picked])
    stored = normalize(np.stack([np.asarray(c.vector) for c in picked]))
    sims = np.einsum("ij,ij->i", emb, stored)
    mean = float(np.median(sims))
    # Same model, other truncation length or hardware: ~0.93-1.0. Another model: far lower.
    if mean < 0.9:
        raise BadInput(f"the vectors stored in '{collection}' do not match model '{encoder.ref}' "
                       f"(median cosine {mean:.3f} on {len(picked)} chunks): is the lineage right? "
                       f"Re-adopt with the model that wrote them (vectune adopt --model ...)")
    return mean
