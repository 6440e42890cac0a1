"""Every call vectune makes to Qdrant lives here.

The same code talks to qdrant-client's embedded mode (``QDRANT_URL`` unset: a
local path) and to a server (``QDRANT_URL`` + ``QDRANT_API_KEY``).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vectune.config.sections import QdrantConfig
from vectune.errors import BadInput, LockHeld, QdrantUnavailable

logger = logging.getLogger(__name__)

#: Key under which vectune keeps its lineage in collection metadata.
META_KEY = "vectune"
#: Namespace for mapping string ids (BEIR ``_id``) to stable UUIDs.
ID_NAMESPACE = uuid.UUID("6f1c1f3e-9a43-4c55-9d38-6c1b8a5e0a11")


def point_id_for(raw_id: Any) -> Any:
    """Map an external id to a valid Qdrant point id (ints kept, strings → UUID5)."""
    if isinstance(raw_id, int) and not isinstance(raw_id, bool) and raw_id >= 0:
        return raw_id
    s = str(raw_id)
    if s.isdigit():
        return int(s)
    with contextlib.suppress(ValueError):
        return str(uuid.UUID(s))
    return str(uuid.uuid5(ID_NAMESPACE, s))


@dataclass
class DenseSpec:
    """The dense vector vectune tunes in a collection.

    Attributes:
        name: vector name, or ``""`` for the unnamed default vector.
        size: dimension.
        distance: Qdrant distance name.
    """

    name: str
    size: int
    distance: str

    @property
    def selector(self) -> list[str] | bool:
        """``with_vectors`` for reading this vector: its name, or True for the unnamed one."""
        return [self.name] if self.name else True

    def vector(self, values: np.ndarray) -> Any:
        """A point's vector field holding only this vector."""
        new = np.asarray(values, dtype=np.float32).tolist()
        return {self.name: new} if self.name else new


class Store:
    """A connection to Qdrant with the handful of operations vectune needs.

    Args:
        cfg: the connection (a server URL and key, or embedded storage).
        path: embedded Qdrant's folder, used when ``cfg.url`` is unset (``":memory:"`` for a throwaway store).
    """

    def __init__(self, cfg: QdrantConfig, path: Path | str | None = None):
        from qdrant_client import QdrantClient

        self.cfg = cfg
        path = Path(cfg.path or path or ".vectune/qdrant")
        where = cfg.url or f"embedded path {path}"
        try:
            if cfg.url:
                key = cfg.api_key.get_secret_value() if cfg.api_key else None
                self.client = QdrantClient(url=cfg.url, api_key=key, timeout=cfg.timeout_s)
                self.client.get_collections()  # fail fast, clearly
                self.where = cfg.url
            elif str(path) == ":memory:":  # throwaway, for experiments and benchmarks
                self.client = QdrantClient(location=":memory:")
                self.where = "embedded:memory"
            else:
                path.mkdir(parents=True, exist_ok=True)
                self.client = QdrantClient(path=str(path))
                self.where = f"embedded:{path}"
        except BadInput:
            raise
        except Exception as e:  # noqa: BLE001 - turn any connection failure into one clear message
            if "already accessed by another instance" in str(e):
                raise LockHeld(f"embedded Qdrant at {where} is in use by another vectune process "
                               "(embedded mode allows one process at a time; use a Qdrant server via QDRANT_URL "
                               "for concurrent access)") from None
            raise QdrantUnavailable(f"cannot reach Qdrant at {where}: {_short(e)}") from None

    @classmethod
    def open(cls, settings) -> Store:
        """The Qdrant a :class:`~vectune.config.settings.Settings` names (its ``qdrant`` section and embedded path)."""
        return cls(settings.qdrant, settings.qdrant_path)

    @classmethod
    def from_client(cls, client) -> Store:
        """A Store over an app's own ``QdrantClient`` (vectune's calls and error mapping; the app keeps
        and closes its client)."""
        store = cls.__new__(cls)
        store.cfg = None
        store.client = client
        opts = getattr(client, "init_options", {}) or {}
        if opts.get("path"):
            store.where = f"embedded:{opts['path']}"
        elif opts.get("location") == ":memory:" or not (opts.get("location") or opts.get("url") or opts.get("host")):
            store.where = "embedded:memory"
        else:
            store.where = str(opts.get("url") or opts.get("location") or opts.get("host"))
        store._borrowed = True
        return store

    # -- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        if getattr(self, "_borrowed", False):
            return  # the app's client: the app closes it
        with contextlib.suppress(Exception):
            self.client.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (BadInput, QdrantUnavailable):
            raise
        except ValueError as e:  # local mode raises ValueError for "not found" and bad requests
            raise BadInput(f"{what}: {_short(e)}") from None
        except Exception as e:  # noqa: BLE001
            raise QdrantUnavailable(f"{what} failed at {self.where}: {_short(e)}") from None

    # -- aliases and collections ------------------------------------------------
    def aliases(self) -> dict[str, str]:
        """All aliases as ``{alias: collection}``."""
        res = self._call("list aliases", self.client.get_aliases)
        return {a.alias_name: a.collection_name for a in res.aliases}

    def resolve_alias(self, alias: str) -> str:
        """The collection an alias points at; a clear error if it does not exist."""
        target = self.aliases().get(alias)
        if target is None:
            if self.collection_exists(alias):
                raise BadInput(
                    f"'{alias}' is a collection, not an alias: take it over with "
                    f"`vectune adopt --collection {alias} --alias <new-alias> --model <model>`"
                )
            raise BadInput(f"alias '{alias}' does not exist in Qdrant ({self.where})")
        return target

    def collection_exists(self, name: str) -> bool:
        return bool(self._call("check collection", self.client.collection_exists, name))

    def collections(self) -> list[str]:
        res = self._call("list collections", self.client.get_collections)
        return sorted(c.name for c in res.collections)

    def info(self, name: str):
        if not self.collection_exists(name):
            raise BadInput(f"collection '{name}' does not exist")
        return self._call(f"read collection '{name}'", self.client.get_collection, name)

    def metadata(self, name: str) -> dict:
        """vectune's lineage record stored in the collection's metadata ({} if none)."""
        meta = self.info(name).config.metadata or {}
        return dict(meta.get(META_KEY) or {})

    def set_metadata(self, name: str, record: dict) -> None:
        """Replace vectune's lineage record in a collection's metadata."""
        self._call(f"write metadata of '{name}'", self.client.update_collection, name, metadata={META_KEY: record})

    def meta_key(self, name: str, key: str) -> Any:
        """One top-level key of a collection's metadata beside vectune's lineage record (None if unset)."""
        return (self.info(name).config.metadata or {}).get(key)

    def set_meta_key(self, name: str, key: str, value: Any) -> None:
        """Set (or, with None, clear) one top-level metadata key; Qdrant merges it, other keys stay as they are."""
        self._call(f"write metadata of '{name}'", self.client.update_collection, name, metadata={key: value})

    def count(self, name: str) -> int:
        return int(self._call(f"count '{name}'", self.client.count, name, exact=True).count)

    def dense_spec(self, name: str, vector_name: str | None = None) -> DenseSpec:
        """Find the dense vector to tune.

        Args:
            name: collection name.
            vector_name: a named vector, or None for the unnamed one (or the only named one).

        Returns:
            The vector's name (``""`` if unnamed), size and distance.

        Raises:
            BadInput: the collection has no dense vector, or the name is ambiguous/missing.
        """
        vectors = self.info(name).config.params.vectors
        if vectors is None or (isinstance(vectors, dict) and not vectors):
            raise BadInput(f"collection '{name}' has no dense vectors to tune")
        if not isinstance(vectors, dict):
            if vector_name not in (None, ""):
                raise BadInput(f"collection '{name}' has only an unnamed vector, not '{vector_name}'")
            return DenseSpec("", vectors.size, str(vectors.distance.value))
        if vector_name is None:
            if len(vectors) != 1:
                raise BadInput(
                    f"collection '{name}' has several named vectors {sorted(vectors)}: choose one with --vector-name"
                )
            vector_name = next(iter(vectors))
        if vector_name not in vectors:
            raise BadInput(f"collection '{name}' has no vector named '{vector_name}' (has {sorted(vectors)})")
        p = vectors[vector_name]
        return DenseSpec(vector_name, p.size, str(p.distance.value))

    def create_collection(self, name: str, size: int, distance: str = "Cosine", metadata: dict | None = None,
                          vector_name: str = "") -> None:
        """Create a fresh collection with one dense vector (used by ``index``)."""
        from qdrant_client import models

        params = models.VectorParams(size=size, distance=models.Distance(distance))
        vectors = {vector_name: params} if vector_name else params
        self._call(f"create '{name}'", self.client.create_collection, name, vectors_config=vectors,
                   metadata={META_KEY: metadata or {}})

    def create_like(self, source: str, name: str, spec: DenseSpec, new_size: int, metadata: dict) -> None:
        """Create ``name`` with ``source``'s whole configuration; only the tuned vector's size may change.

        Distance, HNSW, quantization, on-disk flags, shards/replication, optimizers, WAL,
        other named and sparse vectors and payload indexes are copied as they are.
        """
        from qdrant_client import models

        info = self.info(source)
        cfg = info.config
        params = cfg.params
        vectors = params.vectors
        if isinstance(vectors, dict):
            vectors = {k: v.model_copy() for k, v in vectors.items()}
            vectors[spec.name] = vectors[spec.name].model_copy(update={"size": new_size})
        else:
            vectors = vectors.model_copy(update={"size": new_size})
        kwargs: dict[str, Any] = {
            "vectors_config": vectors,
            "sparse_vectors_config": params.sparse_vectors or None,
            "shard_number": params.shard_number,
            "sharding_method": params.sharding_method,
            "replication_factor": params.replication_factor,
            "write_consistency_factor": params.write_consistency_factor,
            "on_disk_payload": params.on_disk_payload,
            "quantization_config": cfg.quantization_config,
            "metadata": {META_KEY: metadata},
        }
        if cfg.hnsw_config is not None:
            kwargs["hnsw_config"] = models.HnswConfigDiff(**cfg.hnsw_config.model_dump(exclude_none=True))
        if cfg.optimizer_config is not None:
            kwargs["optimizers_config"] = models.OptimizersConfigDiff(
                **{k: v for k, v in cfg.optimizer_config.model_dump(exclude_none=True).items()
                   if k in models.OptimizersConfigDiff.model_fields}
            )
        if cfg.wal_config is not None:
            kwargs["wal_config"] = models.WalConfigDiff(
                **{k: v for k, v in cfg.wal_config.model_dump(exclude_none=True).items()
                   if k in models.WalConfigDiff.model_fields}
            )
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        self._call(f"create '{name}'", self.client.create_collection, name, **kwargs)
        for field_name, schema in (info.payload_schema or {}).items():
            self._call(f"create payload index '{field_name}' on '{name}'", self.client.create_payload_index, name,
                       field_name, field_schema=schema.params or schema.data_type)

    def delete_collection(self, name: str) -> None:
        self._call(f"delete '{name}'", self.client.delete_collection, name)

    def swap_alias(self, alias: str, new: str) -> None:
        """Point ``alias`` at ``new`` in one atomic request (delete + create together)."""
        from qdrant_client import models

        ops: list[Any] = []
        if alias in self.aliases():
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=new, alias_name=alias)))
        self._call(f"swap alias '{alias}'", self.client.update_collection_aliases, change_aliases_operations=ops)

    # -- points -------------------------------------------------------------------
    def scroll(self, name: str, *, vectors: bool | Sequence[str] = False, batch: int = 256,
               offset: Any = None, ids_only: bool = False, where: Any = None) -> Iterator[tuple[list, Any]]:
        """Stream a collection page by page (only the points matching the filter ``where``, if given).

        Yields:
            ``(records, next_offset)`` for each page; ``next_offset`` is None on the last one.
        """
        with_vectors = list(vectors) if isinstance(vectors, (list, tuple)) else vectors
        extra = {"scroll_filter": where} if where is not None else {}
        while True:
            records, nxt = self._call(
                f"scroll '{name}'", self.client.scroll, name, limit=batch, offset=offset,
                with_payload=not ids_only, with_vectors=with_vectors, **extra,
            )
            yield records, nxt
            if nxt is None:
                return
            offset = nxt

    def retrieve(self, name: str, ids: Sequence[Any], *, vectors: bool | Sequence[str] = False,
                 payload: bool = True) -> list:
        with_vectors = list(vectors) if isinstance(vectors, (list, tuple)) else vectors
        return self._call(f"retrieve from '{name}'", self.client.retrieve, name, ids=list(ids),
                          with_payload=payload, with_vectors=with_vectors)

    def upsert(self, name: str, points: list, update_filter=None) -> None:
        """Upsert points; with ``update_filter`` an existing point is only overwritten if it matches
        (Qdrant's conditional upsert, ≥ 1.16)."""
        if points:
            kwargs = {"update_filter": update_filter} if update_filter is not None else {}
            self._call(f"upsert into '{name}'", self.client.upsert, name, points=points, wait=True, **kwargs)

    def create_payload_collection(self, name: str) -> None:
        """Create a collection without vectors (small records such as leases), unless it exists."""
        if not self.collection_exists(name):
            try:
                self._call(f"create '{name}'", self.client.create_collection, name, vectors_config={})
            except (BadInput, QdrantUnavailable):
                if not self.collection_exists(name):  # else: another operator created it first
                    raise

    def delete_points(self, name: str, ids: Sequence[Any]) -> None:
        from qdrant_client import models

        if ids:
            self._call(f"delete from '{name}'", self.client.delete, name,
                       points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def delete_where(self, name: str, key: str, value: Any) -> None:
        """Delete every point whose payload field ``key`` equals ``value`` (no-op without the collection)."""
        from qdrant_client import models

        if not self.collection_exists(name):
            return
        flt = models.Filter(must=[models.FieldCondition(key=key, match=models.MatchValue(value=value))])
        self._call(f"delete from '{name}'", self.client.delete, name,
                   points_selector=models.FilterSelector(filter=flt), wait=True)

    def search_batch(self, name: str, vectors: np.ndarray, limit: int,
                     using: str = "") -> list[list[tuple[Any, float]]]:
        """Nearest neighbours for many query vectors in one request.

        Returns:
            For each query, ``[(point_id, score), ...]`` best first.
        """
        from qdrant_client import models

        reqs = [
            models.QueryRequest(query=v.tolist(), using=using or None, limit=limit, with_payload=False)
            for v in np.asarray(vectors, dtype=np.float32)
        ]
        out = []
        for i in range(0, len(reqs), 64):
            res = self._call(f"query '{name}'", self.client.query_batch_points, name, requests=reqs[i:i + 64])
            out.extend([[(p.id, float(p.score)) for p in r.points] for r in res])
        return out

    # -- space ------------------------------------------------------------------------
    @property
    def embedded_folder(self) -> Path | None:
        """Embedded Qdrant's storage folder (None against a server or in memory)."""
        where = str(self.where)
        if not where.startswith("embedded:") or where == "embedded:memory":
            return None
        return Path(where.removeprefix("embedded:"))

    def footprints(self, names: Sequence[str]) -> dict[str, dict]:
        """Disk and memory each collection takes, where Qdrant reports it.

        Embedded on disk: the bytes of the collection's storage folder (``disk_bytes``). A server:
        its telemetry (``/telemetry``, details level 3), the sum over the collection's local segments
        of ``disk_usage_bytes`` and ``ram_usage_bytes``. In memory, or when the server does not say
        (telemetry off, or a key without the right to read it): nothing.

        Returns:
            ``{name: {"disk_bytes": int | None, "ram_bytes": int | None, "source": str}}`` for the
            names something was found for.
        """
        folder = self.embedded_folder
        out: dict[str, dict] = {}
        if folder is not None:
            for name in names:
                path = folder / "collection" / name
                if path.is_dir():
                    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                    out[name] = {"disk_bytes": size, "ram_bytes": None, "source": "embedded storage folder"}
            return out
        if not self.on_server:
            return out
        try:
            tele = self.client.http.service_api.telemetry(details_level=3).result
            data = tele.model_dump() if hasattr(tele, "model_dump") else dict(tele)
        except Exception as e:  # noqa: BLE001 - telemetry is optional: no footprint then
            logger.debug("no telemetry from %s: %s", self.where, _short(e))
            return out
        for coll in ((data.get("collections") or {}).get("collections") or []):
            if not isinstance(coll, dict) or coll.get("id") not in names:
                continue
            disk = _sum_key(coll, "disk_usage_bytes")
            ram = _sum_key(coll, "ram_usage_bytes")
            if disk is not None or ram is not None:
                out[coll["id"]] = {"disk_bytes": disk, "ram_bytes": ram, "source": "qdrant telemetry"}
        return out

    # ======================================================================================
    # Lease operations (used by vectune.qdrant.lease).
    # Every lease write is conditional, waits for the write and uses WriteOrdering.STRONG, so a
    # replicated cluster applies competing lease writes in one order and cannot give a lease to two
    # holders. qdrant-client's embedded mode takes the same calls (``update_filter`` and filtered
    # selectors natively; ``ordering``/``consistency`` are accepted and moot on its single copy).
    # ======================================================================================
    @property
    def on_server(self) -> bool:
        """True against a Qdrant server, False in embedded mode."""
        return not str(self.where).startswith("embedded")

    def lease_collection(self, name: str, keyword_fields: Sequence[str] = ()) -> None:
        """Create a payload-only collection for leases unless it exists.

        On a server, ``keyword_fields`` get a keyword payload index, so the lease filters also pass
        a strict-mode server (embedded mode has no payload indexes, so none is made there).
        """
        self.create_payload_collection(name)
        if not self.on_server:
            return
        from qdrant_client import models

        for field_name in keyword_fields:
            try:
                self._call(f"index '{field_name}' of '{name}'", self.client.create_payload_index, name, field_name,
                           field_schema=models.PayloadSchemaType.KEYWORD, wait=True,
                           ordering=models.WriteOrdering.STRONG)
            except QdrantUnavailable as e:  # leases still work without it, unless strict mode forbids the filter
                logger.warning("could not index '%s' of '%s': %s", field_name, name, e)

    def lease_read(self, name: str, point_id: Any) -> dict | None:
        """The payload of one lease point, or None when there is none (majority read on a server)."""
        from qdrant_client import models

        kwargs = {"consistency": models.ReadConsistencyType.MAJORITY} if self.on_server else {}
        recs = self._call(f"read lease in '{name}'", self.client.retrieve, name, ids=[point_id],
                          with_payload=True, with_vectors=False, **kwargs)
        return dict(recs[0].payload or {}) if recs else None

    def lease_put(self, name: str, point_id: Any, payload: dict, only_if: dict) -> None:
        """Write a lease point whole: created if missing, an existing one replaced only if it matches ``only_if``.

        A conditional upsert (``update_filter``, Qdrant >= 1.16). The caller reads the point back to
        learn whether its write won.

        Args:
            name: lease collection.
            point_id: the lease point.
            payload: the whole new payload.
            only_if: ``{field: value}``, all must hold; ``None`` means the field is absent or null.
        """
        from qdrant_client import models

        point = models.PointStruct(id=point_id, vector={}, payload=payload)
        self._call(f"write lease in '{name}'", self.client.upsert, name, points=[point], wait=True,
                   update_filter=self._lease_filter(point_id, only_if, with_id=False),
                   ordering=models.WriteOrdering.STRONG)

    def lease_update(self, name: str, point_id: Any, payload: dict, only_if: dict) -> None:
        """Merge ``payload`` into a lease point only if it exists and matches ``only_if`` (never creates it).

        A ``set_payload`` whose selector is a filter on the point's id plus ``only_if``, which the
        server evaluates and applies as one operation.
        """
        from qdrant_client import models

        self._call(f"update lease in '{name}'", self.client.set_payload, name, payload=payload,
                   points=models.FilterSelector(filter=self._lease_filter(point_id, only_if, with_id=True)),
                   wait=True, ordering=models.WriteOrdering.STRONG)

    @staticmethod
    def _lease_filter(point_id: Any, only_if: dict, with_id: bool):
        """A Qdrant filter: ``point_id`` (if ``with_id``) and every ``field == value`` of ``only_if``.

        ``None`` matches an absent or null field; a float matches exactly (a one-point range); str, int
        and bool match by value.
        """
        from qdrant_client import models

        must: list[Any] = [models.HasIdCondition(has_id=[point_id])] if with_id else []
        for key, value in only_if.items():
            if value is None:
                must.append(models.IsEmptyCondition(is_empty=models.PayloadField(key=key)))
            elif isinstance(value, float):
                must.append(models.FieldCondition(key=key, range=models.Range(gte=value, lte=value)))
            elif isinstance(value, (str, int, bool)):
                must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
            else:
                raise BadInput(f"lease condition on '{key}': unsupported value {value!r}")
        return models.Filter(must=must)
    # ======================================================================================
    # end of lease operations
    # ======================================================================================

    # ======================================================================================
    # Conditional point writes (exact promotions; used by vectune.promote and vectune.apps.dualwrite).
    # Qdrant applies a filtered write
    # only to the points the filter matches when it executes, so a write conditioned on a
    # point's marker never overwrites a newer write that replaced or re-marked that point.
    # qdrant-client's embedded mode (1.20) takes the same calls (update_filter, update_mode,
    # filtered set/delete payload, batch updates).
    # ======================================================================================
    def upsert_where(self, name: str, points: list, update_filter=None, update_mode: str | None = None) -> None:
        """Upsert points, conditionally.

        Args:
            name: collection.
            points: PointStructs.
            update_filter: an existing point is only replaced if it matches (Qdrant >= 1.16).
            update_mode: ``"insert_only"`` (never replace an existing point) or ``"update_only"``
                (never create a missing one), Qdrant >= 1.17; None: plain upsert.
        """
        from qdrant_client import models

        if not points:
            return
        kwargs: dict[str, Any] = {}
        if update_filter is not None:
            kwargs["update_filter"] = update_filter
        if update_mode:
            kwargs["update_mode"] = models.UpdateMode(update_mode)
        self._call(f"upsert into '{name}'", self.client.upsert, name, points=points, wait=True, **kwargs)

    def batch_update(self, name: str, operations: list) -> None:
        """Apply update operations (``models.*Operation``) in one request, in order."""
        if operations:
            self._call(f"update points of '{name}'", self.client.batch_update_points, name,
                       update_operations=operations, wait=True)

    def delete_matching(self, name: str, points_filter) -> None:
        """Delete the points a filter matches (one request)."""
        from qdrant_client import models

        self._call(f"delete from '{name}'", self.client.delete, name,
                   points_selector=models.FilterSelector(filter=points_filter), wait=True)

    def delete_payload_where(self, name: str, keys: Sequence[str], points_filter) -> None:
        """Remove payload ``keys`` from the points a filter matches (one request)."""
        from qdrant_client import models

        self._call(f"delete payload from '{name}'", self.client.delete_payload, name, keys=list(keys),
                   points=models.FilterSelector(filter=points_filter), wait=True)

    def index_keyword(self, name: str, field_name: str) -> None:
        """A keyword payload index on ``field_name`` (on a server only: embedded mode has none), so
        filters on it also pass a strict-mode server. A failure is only logged."""
        if not self.on_server:
            return
        from qdrant_client import models

        try:
            self._call(f"index '{field_name}' of '{name}'", self.client.create_payload_index, name, field_name,
                       field_schema=models.PayloadSchemaType.KEYWORD, wait=True)
        except QdrantUnavailable as e:
            logger.warning("could not index '%s' of '%s': %s", field_name, name, e)

    # ======================================================================================
    # end of conditional point writes
    # ======================================================================================


def point_with_vector(record, vector: np.ndarray, spec: DenseSpec):
    """A PointStruct with a record's id, payload and other vectors, and a new value for the tuned vector."""
    from qdrant_client import models

    v = record.vector
    if isinstance(v, dict):
        vec: Any = {**v, spec.name: np.asarray(vector, dtype=np.float32).tolist()}
    else:
        vec = spec.vector(vector)
    return models.PointStruct(id=record.id, vector=vec, payload=record.payload or {})


def copy_point(record):
    """A PointStruct equal to a retrieved record: id, payload and every vector, unchanged."""
    from qdrant_client import models

    return models.PointStruct(id=record.id, vector=record.vector if record.vector is not None else {},
                              payload=record.payload or {})


def new_point(point_id: Any, vector: np.ndarray, payload: dict, spec: DenseSpec):
    """A PointStruct for a new point with only the tuned vector (used by ``index``)."""
    from qdrant_client import models

    return models.PointStruct(id=point_id, vector=spec.vector(vector), payload=payload)


def dense_of(record, spec: DenseSpec) -> np.ndarray | None:
    """The tuned dense vector of a scrolled record, or None."""
    v = record.vector
    if isinstance(v, dict):
        v = v.get(spec.name)
    if v is None or not isinstance(v, list):
        return None
    return np.asarray(v, dtype=np.float32)


def _sum_key(data: Any, key: str) -> int | None:
    """The sum of every ``key`` found anywhere in nested dicts and lists (None if none is there)."""
    total, seen = 0, False
    stack = [data]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            for k, v in x.items():
                if k == key and isinstance(v, (int, float)) and not isinstance(v, bool):
                    total += int(v)
                    seen = True
                elif isinstance(v, (dict, list)):
                    stack.append(v)
        elif isinstance(x, list):
            stack.extend(x)
    return total if seen else None


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "already accessed by another instance" in msg:
        msg = ("the embedded Qdrant folder is in use by another process (one process at a time; "
               "use a Qdrant server via QDRANT_URL for concurrent access)")
    return msg[:500]
