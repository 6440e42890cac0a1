"""Point fingerprints and vectune's revision marker.

**Fingerprint.** A point's fingerprint covers its whole state as an app sees it: the payload
(:func:`vectune.core.hashing.payload_hash`, vectune's marker left out) and a hash of every vector
vectune does not manage — other named dense vectors, sparse vectors, multivectors — plus, in
*copy* mode (``encoder=None``: every vector copied verbatim), the managed dense vector too.
Fingerprints are computed on the fly while streaming (``scroll`` with vectors, keep only the
hashes), and only ever compared with fingerprints taken in the *same* collection: Qdrant
re-normalises cosine vectors on every write, so a vector copied to another collection may
differ in its last bit (about one vector in three does), and a hash must not be compared
across collections.

**Sketch.** Whether an app rewrote a vector of the *new* collection after the swap is told by
a sketch (the norm and four fixed random projections) compared with a relative tolerance of
1e-5, not by a hash: embedded Qdrant re-normalises cosine vectors in place when it searches
them, so their last bits may change without any write. A real rewrite moves the sketch by
orders of magnitude more; a rewrite to (almost exactly) the same value is no change.

**Marker.** Every point vectune writes into the collection it publishes carries the payload key
``_vectune`` = ``{"r": <fingerprint of the source state it reflects>, "p": {key: hash}}``.
The source-side fingerprint ``r`` is what the delta passes compare with the source (same
collection, exact); the per-key hashes ``p`` let reconciliation tell which payload keys an app
changed after the swap. An app ``upsert`` or ``overwrite_payload`` replaces the payload and with
it the marker; ``set_payload``, ``delete_payload`` and ``update_vectors`` keep it. Markers are
removed once the promotion's window is reconciled.

The dual-write helper (:mod:`vectune.apps.dualwrite`) writes ``_vectune`` = ``{"dw": <target>, "n":
<nonce>}`` instead: "an app wrote this point to both collections".
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from vectune.core.hashing import payload_hash

#: The payload key vectune reserves for its marker.
MARK = "_vectune"
#: Hash of an absent vector / payload key.
NONE = "-"


@dataclass(frozen=True)
class Shape:
    """Which vectors of a collection a fingerprint covers.

    Attributes:
        names: every vector name of the collection, sorted (``""`` for the unnamed dense one).
        managed: the tuned dense vector's name.
        copy: True when the managed vector is copied verbatim (it is then tracked like the others).
    """

    names: tuple[str, ...]
    managed: str
    copy: bool

    @property
    def tracked(self) -> tuple[str, ...]:
        """The vectors a fingerprint covers, in a fixed order."""
        return self.names if self.copy else tuple(n for n in self.names if n != self.managed)

    @property
    def selector(self) -> list[str] | bool:
        """``with_vectors`` that reads at least the tracked vectors (False when there are none)."""
        tracked = self.tracked
        if not tracked:
            return False
        if "" in tracked or tracked == self.names:
            return True
        return list(tracked)

    @classmethod
    def of(cls, store, collection: str, spec, copy: bool) -> Shape:
        """The shape of ``collection`` (its dense and sparse vector names)."""
        params = store.info(collection).config.params
        dense = params.vectors
        names = set(dense) if isinstance(dense, dict) else {""}
        names |= set(params.sparse_vectors or {})
        return cls(tuple(sorted(names)), spec.name, bool(copy))

    def to_json(self) -> dict:
        return {"names": list(self.names), "managed": self.managed, "copy": self.copy}

    @classmethod
    def from_json(cls, d: dict) -> Shape:
        return cls(tuple(d.get("names") or ()), d.get("managed") or "", bool(d.get("copy")))


# ------------------------------------------------------------------------------------- hashing
def _digest(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def vectors_of(record) -> dict[str, Any]:
    """A record's vectors as ``{name: value}`` (``""`` for an unnamed dense vector)."""
    v = getattr(record, "vector", None)
    if v is None:
        return {}
    if isinstance(v, dict):
        return dict(v)
    return {"": v}


def _sparse_parts(v) -> tuple[list, list] | None:
    if hasattr(v, "indices") and hasattr(v, "values"):
        return list(v.indices), list(v.values)
    if isinstance(v, dict) and "indices" in v and "values" in v:
        return list(v["indices"]), list(v["values"])
    return None


def vector_hash(v) -> str:
    """Hash of one stored vector (dense, sparse or multi), exact to the float32 bit; ``-`` if absent."""
    if v is None:
        return NONE
    sp = _sparse_parts(v)
    if sp is not None:
        order = np.argsort(np.asarray(sp[0], dtype=np.int64), kind="stable")
        idx = np.asarray(sp[0], dtype=np.int64)[order].astype("<u4")
        val = np.asarray(sp[1], dtype=np.float32)[order].astype("<f4")
        return _digest(b"s" + idx.tobytes() + b"|" + val.tobytes())
    arr = np.asarray(v, dtype=np.float32).astype("<f4")
    return _digest((b"m%d" % arr.shape[-1] if arr.ndim == 2 else b"d") + arr.tobytes())


def vectors_hash(vectors: dict[str, Any], names: tuple[str, ...]) -> str:
    """Per-vector hashes of ``names``, comma-joined in that order (``""`` for no names)."""
    return ",".join(vector_hash(vectors.get(n)) for n in names)


def split_vh(vh: str, names: tuple[str, ...]) -> dict[str, str]:
    """``{name: hash}`` from :func:`vectors_hash`'s string."""
    if not names:
        return {}
    parts = vh.split(",") if vh else []
    return {n: (parts[i] if i < len(parts) else NONE) for i, n in enumerate(names)}


@functools.lru_cache(maxsize=16)
def _projections(dim: int) -> np.ndarray:
    p = np.random.default_rng(dim).normal(size=(4, dim))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def vector_sketch(v) -> str:
    """A tolerance-comparable summary of a stored vector (see module doc); sparse ones are hashed."""
    if v is None:
        return NONE
    if _sparse_parts(v) is not None:
        return vector_hash(v)
    arr = np.asarray(v, dtype=np.float64).ravel()
    sk = np.concatenate([[np.linalg.norm(arr)], _projections(arr.size) @ arr]).astype("<f4")
    return "~" + base64.b64encode(sk.tobytes()).decode("ascii")


def vectors_sketch(vectors: dict[str, Any], names: tuple[str, ...]) -> str:
    """Per-vector sketches of ``names``, comma-joined in that order."""
    return ",".join(vector_sketch(vectors.get(n)) for n in names)


def same_sketch(a: str, b: str, rtol: float = 1e-5) -> bool:
    """Whether two sketches describe the same vector (up to float32 re-normalisation)."""
    if a == b:
        return True
    if not (a.startswith("~") and b.startswith("~")):
        return False
    x = np.frombuffer(base64.b64decode(a[1:]), dtype="<f4").astype(np.float64)
    y = np.frombuffer(base64.b64decode(b[1:]), dtype="<f4").astype(np.float64)
    return x.shape == y.shape and bool(np.all(np.abs(x - y) <= rtol * max(x[0], y[0]) + 1e-9))


def value_hash(value: Any) -> str:
    """Hash of one payload value (key order inside objects does not matter)."""
    raw = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return _digest(raw.encode("utf-8", "surrogatepass"))


def payload_of(payload: dict | None) -> dict:
    """A payload without vectune's marker."""
    return {k: v for k, v in (payload or {}).items() if k != MARK}


def key_hashes(payload: dict | None) -> dict[str, str]:
    """``{key: hash of its value}`` for a payload (marker left out)."""
    return {k: value_hash(v) for k, v in payload_of(payload).items()}


def fingerprint(record, shape: Shape) -> tuple[str, str]:
    """``(payload hash, tracked vectors' hashes)`` of a record."""
    return payload_hash(payload_of(record.payload)), vectors_hash(vectors_of(record), shape.tracked)


def fp_str(ph: str, vh: str) -> str:
    """The fingerprint as one string (what the marker's ``r`` holds)."""
    return f"{ph}/{vh}"


def parse_fp(r: str) -> tuple[str, str]:
    ph, _, vh = r.partition("/")
    return ph, vh


def marker_for(record, shape: Shape) -> dict:
    """The marker for a point that reflects ``record`` (a source record)."""
    ph, vh = fingerprint(record, shape)
    return {"r": fp_str(ph, vh), "p": key_hashes(record.payload)}


def seen_mark(payload: dict | None) -> str:
    """What marker a point carries, as a short string.

    Returns:
        ``"v:<r>"`` (vectune's), ``"dw:<nonce>"`` (the dual-write helper's) or ``""`` (none or unknown).
    """
    m = (payload or {}).get(MARK)
    if isinstance(m, dict):
        if isinstance(m.get("r"), str):
            return "v:" + m["r"]
        if m.get("dw") is not None and isinstance(m.get("n"), str):
            return "dw:" + m["n"]
    return ""


def dw_nonce(payload: dict | None, target: str) -> str:
    """The dual-write nonce of a point written by the helper for ``target`` (``""`` if none)."""
    m = (payload or {}).get(MARK)
    if isinstance(m, dict) and m.get("dw") == target and isinstance(m.get("n"), str):
        return m["n"]
    return ""


def with_marker(point, record, shape: Shape):
    """``point`` (a PointStruct made from ``record``) with vectune's marker for ``record``."""
    point.payload = {**payload_of(point.payload), MARK: marker_for(record, shape)}
    return point


# ------------------------------------------------------------------------------------- filters
def seen_condition(seen: str):
    """A filter condition true while a point still carries the marker ``seen`` (see :func:`seen_mark`)."""
    from qdrant_client import models

    if seen.startswith("v:"):
        return models.FieldCondition(key=f"{MARK}.r", match=models.MatchValue(value=seen[2:]))
    if seen.startswith("dw:"):
        return models.FieldCondition(key=f"{MARK}.n", match=models.MatchValue(value=seen[3:]))
    return models.IsEmptyCondition(is_empty=models.PayloadField(key=MARK))


def only_if(pid: Any, seen: str):
    """A filter matching point ``pid`` only while it carries the marker ``seen``."""
    from qdrant_client import models

    return models.Filter(must=[models.HasIdCondition(has_id=[pid]), seen_condition(seen)])


def any_of(filters: list):
    """A filter matching what any of ``filters`` matches."""
    from qdrant_client import models

    return models.Filter(should=list(filters))


def has_marker():
    """A filter matching every point that carries a marker."""
    from qdrant_client import models

    return models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=MARK))])


def same_vector(a, b, atol: float = 1e-6) -> bool:
    """Two stored vectors are equal up to float32 re-normalisation (for cross-collection checks)."""
    if a is None or b is None:
        return a is None and b is None
    sa, sb = _sparse_parts(a), _sparse_parts(b)
    if sa is not None or sb is not None:
        if sa is None or sb is None:
            return False
        ia, ib = np.asarray(sa[0]), np.asarray(sb[0])
        oa, ob = np.argsort(ia, kind="stable"), np.argsort(ib, kind="stable")
        return (ia.shape == ib.shape and np.array_equal(ia[oa], ib[ob])
                and np.allclose(np.asarray(sa[1], np.float32)[oa], np.asarray(sb[1], np.float32)[ob],
                                atol=atol, rtol=1e-5))
    xa, xb = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    return xa.shape == xb.shape and bool(np.allclose(xa, xb, atol=atol, rtol=1e-5))
