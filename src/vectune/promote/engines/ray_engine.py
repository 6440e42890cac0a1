"""Re-embedding on Ray Data: :func:`build_ray`, the ``ray`` engine (``VECTUNE_ENGINE=ray``).

Same contract as :func:`vectune.promote.build.build`: every point of ``source`` is written
into ``target`` with the same id, payload and other named/sparse vectors, and the tuned
dense vector re-embedded by the model ``models.load(encoder_ref, **encoder_kwargs)``. It is
meant for collections of tens of millions of points on several GPUs; on one machine the
local engine is as fast (see bench/RESULTS.md).

How the work is split
    The driver scrolls the source once for ids only (constant memory: it keeps one
    boundary id per partition, never the ids) and cuts the id space into N contiguous
    ranges ``[start, end)`` in Qdrant's scroll order (integer ids first, by value, then
    UUIDs, by their bytes). The first range starts at the beginning and the last one
    has no end, so the ranges cover the whole id space, including points written
    after the plan was made (the catch-up of :func:`vectune.promote.publish` takes
    care of writes to ranges already done). Collections with custom sharding (shard
    keys) are not partitioned by shard key: vectune's store does not address shard
    keys at all (neither engine supports custom-sharded collections yet).

    A ``ray.data`` dataset of partition descriptors is mapped with ``map_batches`` over
    an actor pool (``ActorPoolStrategy(size=concurrency)``): each actor loads the model
    once (``num_gpus=1`` per actor when the cluster has GPUs, else ``num_cpus=1``).

Two modes, chosen by where Qdrant is
    * **server** (``QDRANT_URL`` set): each actor opens its own Qdrant connection, and
      for each partition scrolls its range, embeds and upserts into ``target`` page by
      page (the local engine's pipelined loop, bounded to the range). The driver only
      plans and records progress, so it is never the bottleneck.
    * **embedded** (no ``QDRANT_URL``): embedded Qdrant is a single-process store, so
      workers cannot open it. The driver does all Qdrant I/O: it reads each partition's
      texts (into Ray's object store), the actors only encode, and the driver writes the
      vectors back. A point whose text changed between the read and the write is left
      out, for the catch-up to re-embed. Useful to spread encoding over local GPUs/CPUs;
      the whole source's texts pass through the object store.

Failures and resume
    * A worker process that dies (OOM kill, segfault, node loss) is restarted by Ray and
      its partition retried (``max_restarts``/``max_task_retries``, bounded); an exception
      inside a partition is caught in the actor and reported for that partition only.
    * Partitions that failed are retried by the driver in further rounds (``max_rounds``),
      never the whole job. Re-doing a partially written partition is harmless: upserts of
      the same ids are idempotent.
    * Completed partitions are recorded in ``progress_dir/ray-partitions.json`` (with the
      plan itself, so a resumed job uses the same ranges). A killed job called again with
      the same source, target, vector and model processes only the missing partitions.
    * Bad input (a point without usable text) fails at once with :class:`BadInput`, as
      with the local engine; other failures left after the last round raise
      :class:`QdrantUnavailable` (exit 4, when every failure was Qdrant's) or
      :class:`VectuneError` (exit 1), with the partitions done kept for the next run.

Models that exist only on the driver (a freshly tuned model in ``VECTUNE_MODEL_DIR``,
or a local directory) are shipped to the actors through the object store when the
cluster has more than one node (``ship_model=None``), so workers need no shared volume.
``bundled:`` and hub models are loaded by each worker itself.

The test hook ``VECTUNE_RAY_FAULT=exit|raise:<partition>:<marker file>`` (read on the
driver, passed to the actors) makes the first attempt at that partition kill its worker
(``os._exit``) or raise, once (the marker file records that it happened).
"""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vectune.config.sections import QdrantConfig
from vectune.core.chunks import extract_text
from vectune.core.hashing import text_hash
from vectune.core.jsonl import write_json_atomic
from vectune.errors import BadInput, QdrantUnavailable, VectuneError
from vectune.models.store import ModelStore
from vectune.promote.build import build
from vectune.promote.mark import Shape, with_marker
from vectune.promote.stats import SyncStats
from vectune.qdrant.store import DenseSpec, Store, point_with_vector

logger = logging.getLogger(__name__)

#: Name of the progress file in ``progress_dir``.
PROGRESS_FILE = "ray-partitions.json"
#: Test hook (see module doc).
FAULT_ENV = "VECTUNE_RAY_FAULT"
#: Default partition size: about a minute of one H100's encoding (MiniLM) per partition.
DEFAULT_PARTITION_POINTS = 50_000
#: Environment the driver passes on to the workers when set.
PASS_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "TOKENIZERS_PARALLELISM")


# ----------------------------------------------------------------------------- id ranges
def id_key(pid: Any) -> tuple:
    """Qdrant's scroll order of point ids: integers first (by value), then UUIDs (by bytes = hex text)."""
    if isinstance(pid, int) and not isinstance(pid, bool):
        return (0, pid, "")
    return (1, 0, str(pid).lower())


def scroll_range(store: Store, name: str, start: Any, end: Any, *, vectors: Any = False,
                 batch: int = 256) -> Iterator[tuple[list, Any]]:
    """``store.scroll`` restricted to ids in ``[start, end)`` (``None``: open end)."""
    stop = id_key(end) if end is not None else None
    for records, nxt in store.scroll(name, vectors=vectors, batch=batch, offset=start):
        if stop is not None:
            keep = [r for r in records if id_key(r.id) < stop]
            if len(keep) < len(records) or (nxt is not None and id_key(nxt) >= stop):
                yield keep, None
                return
        yield records, nxt


class _RangeStore:
    """A Store whose ``scroll`` stays inside one id range (lets :func:`promote.build` do one partition)."""

    def __init__(self, store: Store, end: Any):
        self._store, self._end = store, end

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def scroll(self, name: str, *, vectors: Any = False, batch: int = 256, offset: Any = None,
               ids_only: bool = False) -> Iterator[tuple[list, Any]]:
        return scroll_range(self._store, name, offset, self._end, vectors=vectors, batch=batch)


def plan_partitions(store: Store, source: str, n: int, page: int = 10_000) -> list[dict]:
    """Cut ``source``'s id space into ``n`` contiguous ranges of about equal size.

    Returns:
        ``[{"part": i, "start": id | None, "end": id | None}, ...]``; together they cover every id.
    """
    total = store.count(source)
    n = max(1, min(n, total))
    per = -(-total // n) if total else 1
    starts: list[Any] = [None]
    seen = 0
    for records, _ in store.scroll(source, ids_only=True, batch=min(max(per, 256), page)):
        for r in records:
            if seen and seen % per == 0:
                starts.append(r.id)
            seen += 1
    return [{"part": i, "start": s, "end": starts[i + 1] if i + 1 < len(starts) else None}
            for i, s in enumerate(starts)]


def default_partitions(total: int, workers: int) -> int:
    """Enough partitions to balance the workers (4 each) and keep each to ~50k points."""
    return max(1, 4 * workers, -(-total // DEFAULT_PARTITION_POINTS))


def embed_partition(store: Store, encoder, source: str, target: str, spec: DenseSpec, text_field: str,
                    part: dict, batch: int, on_page=None) -> int:
    """Re-embed one partition from ``source`` into ``target`` (server mode's unit of work); returns points written."""
    stats = build(_RangeStore(store, part["end"]), encoder, source, target, spec, text_field, batch,
                  start_offset=part["start"], on_page=on_page)
    return stats.upserted


# ----------------------------------------------------------------------------- progress
class Progress:
    """``progress_dir/ray-partitions.json``: the plan and the partitions done (nothing kept without a dir)."""

    def __init__(self, progress_dir: Path | None, key: dict):
        self.path = Path(progress_dir) / PROGRESS_FILE if progress_dir else None
        self.key = key
        self.parts: list[dict] = []
        self.done: dict[int, int] = {}

    def load(self) -> bool:
        """Load a previous job's plan and progress if it was for the same job; True if so."""
        if not self.path:
            return False
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        if data.get("key") != self.key:
            logger.info("ignoring %s: it is for another build (%s)", self.path, data.get("key"))
            return False
        self.parts = data["partitions"]
        self.done = {int(k): int(v) for k, v in data.get("done", {}).items()}
        return True

    def save(self) -> None:
        if not self.path:
            return
        data = {"key": self.key, "partitions": self.parts, "done": {str(k): v for k, v in sorted(self.done.items())},
                "complete": len(self.done) == len(self.parts)}
        write_json_atomic(self.path, data)


# ----------------------------------------------------------------------------- the actor
def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:400] if str(e).strip() else ''}"


class _Worker:
    """One Ray actor: holds the model (and, in server mode, a Qdrant connection)."""

    def __init__(self, models: ModelStore, qdrant: QdrantConfig, encoder_ref: str, encoder_kwargs: dict, device: str,
                 mode: str, source: str, target: str, spec: DenseSpec, text_field: str, batch: int,
                 model_blob: list | None = None, fault: str | None = None):
        root = models.root
        ref = encoder_ref
        if model_blob:
            import ray

            kind, name, data = ray.get(model_blob[0])
            tmp = Path(tempfile.mkdtemp(prefix="vectune-model-"))
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                tf.extractall(tmp, filter="data")
            if kind == "tag":
                root = tmp
            else:
                ref = str(tmp / name)
        here = ModelStore(root, models.cfg.model_copy(update={"device": device}))
        self.encoder = here.load(ref, **encoder_kwargs)
        self.mode, self.source, self.target, self.spec = mode, source, target, spec
        self.text_field, self.batch, self.fault = text_field, batch, fault
        self.store = Store(qdrant) if mode == "server" else None

    def _maybe_fail(self, part: int) -> None:
        if not self.fault:
            return
        how, p, marker = self.fault.split(":", 2)
        if int(p) == part and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            if how == "exit":
                os._exit(1)
            raise RuntimeError(f"injected failure in partition {part}")

    def __call__(self, batch: dict) -> dict:
        return self._server(batch) if self.mode == "server" else self._encode(batch)

    def _server(self, batch: dict) -> dict:
        parts, counts, errors = [], [], []
        for i in range(len(batch["part"])):
            part = {"part": int(batch["part"][i]), "start": json.loads(batch["start"][i]),
                    "end": json.loads(batch["end"][i])}
            try:
                # the fault hook fires after the first page is written: a partition half done
                n = embed_partition(self.store, self.encoder, self.source, self.target, self.spec, self.text_field,
                                    part, self.batch, on_page=lambda *_: self._maybe_fail(part["part"]))
                self._maybe_fail(part["part"])
                err = ""
            except Exception as e:  # noqa: BLE001 - reported for this partition; the driver retries it
                n, err = 0, _error(e)
            parts.append(part["part"])
            counts.append(n)
            errors.append(err)
        return {"part": np.asarray(parts, dtype=np.int64), "n": np.asarray(counts, dtype=np.int64),
                "error": np.asarray(errors, dtype=object)}

    def _encode(self, batch: dict) -> dict:
        parts = np.asarray(batch["part"], dtype=np.int64)
        texts = [str(t) for t in batch["text"]]
        try:
            for p in sorted(set(parts.tolist())):
                self._maybe_fail(p)
            vecs, err = self.encoder.encode_passages(texts), ""
        except Exception as e:  # noqa: BLE001
            vecs, err = np.zeros((len(texts), self.encoder.dim), dtype=np.float32), _error(e)
        return {"part": parts, "id": np.asarray(batch["id"], dtype=object), "h": np.asarray(batch["h"], dtype=object),
                "vec": np.asarray(vecs, dtype=np.float32), "error": np.asarray([err] * len(texts), dtype=object)}


# ----------------------------------------------------------------------------- the driver
def _model_blob(ref: str, models: ModelStore) -> tuple[str, str, bytes] | None:
    """The model's files as a tar, when it lives only on the driver (a model-store tag or a local dir)."""
    if ref.startswith("bundled:"):
        return None
    stored = models.root / ref
    if models.stored(ref):
        kind, path = "tag", stored
    elif Path(ref).is_dir():
        kind, path = "dir", Path(ref)
    else:
        return None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(str(path), arcname=path.name)
    return kind, path.name, buf.getvalue()


def _map(ds, ctor: dict, size: int, use_gpu: bool, batch_size: int | None,
         retries: int):
    """``ds.map_batches`` over an actor pool of ``size`` model-holding actors."""
    import ray.data

    env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
    kwargs: dict[str, Any] = dict(
        batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=size),
        fn_constructor_kwargs=ctor, num_gpus=1 if use_gpu else 0, num_cpus=1 if not use_gpu else None,
        runtime_env={"env_vars": env} if env else None)
    with warnings.catch_warnings():
        # Ray Data restarts dead actors and retries their tasks without end by default; bound both.
        # (Passed as extra remote args, which Ray deprecates without a named replacement yet.)
        warnings.simplefilter("ignore")
        try:
            return ds.map_batches(_Worker, max_restarts=retries, max_task_retries=retries, **kwargs)
        except TypeError:  # a Ray that no longer takes them: its defaults (unbounded retries) apply
            return ds.map_batches(_Worker, **kwargs)


def build_ray(models: ModelStore, qdrant: QdrantConfig, encoder_ref: str, encoder_kwargs: dict, source: str,
              target: str,
              spec: DenseSpec, text_field: str, batch: int, partitions: int | None = None,
              progress_dir: Path | None = None, *, store: Store | None = None, qdrant_path: Path | None = None,
              concurrency: int | None = None,
              max_rounds: int = 3, actor_retries: int = 3, ship_model: bool | None = None) -> SyncStats:
    """Re-embed every point of ``source`` into ``target`` on Ray (see module doc).

    Args:
        models: the model store (and how models load); sent to the actors.
        qdrant: the Qdrant connection (a server: every actor opens its own; embedded: only the driver does I/O).
        encoder_ref: the model to embed with (a model-store tag, ``bundled:…``, a directory or a hub id).
        encoder_kwargs: extra :meth:`~vectune.models.store.ModelStore.load` arguments (``query_prompt``,
            ``max_seq_length``).
        source: collection to copy from.
        target: collection to fill (already created, like :func:`vectune.promote.build`).
        spec: the tuned dense vector.
        text_field: payload field with the text.
        batch: points per Qdrant request (page).
        partitions: number of id ranges (default: :func:`default_partitions`). Ignored when resuming:
            a resumed job keeps its plan.
        progress_dir: where ``ray-partitions.json`` is kept (None: no resume).
        store: an open Store for the driver's own I/O (required in embedded mode when the caller
            already holds the embedded Qdrant open); one is opened (and closed) if None.
        qdrant_path: embedded Qdrant's folder, for the Store opened when ``store`` is None.
        concurrency: actors (default: the cluster's GPUs, else its CPUs; at most the partitions to do).
        max_rounds: driver-side attempts at the failed partitions.
        actor_retries: Ray restarts of a dead actor / retries of its task.
        ship_model: send a driver-only model to the actors (None: when the cluster has several nodes).

    Returns:
        Counts and time: ``upserted`` counts the points written by this call (a resumed job counts
        only the partitions it processed).

    Raises:
        BadInput: Ray is not installed, or a point has no usable text.
        QdrantUnavailable | VectuneError: partitions still failing after ``max_rounds``.
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise BadInput("the Ray engine needs Ray: pip install 'vectune[ray]'") from None

    t0 = time.perf_counter()
    stats = SyncStats(passes=1)
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=True)  # RAY_ADDRESS if set
    ray.data.DataContext.get_current().enable_progress_bars = False
    own = store is None
    store = store or Store(qdrant, qdrant_path)
    try:
        mode = "server" if qdrant.url else "embedded"
        res = ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
        use_gpu = gpus > 0
        workers = concurrency or (gpus if use_gpu else cpus)
        prog = Progress(progress_dir, {"source": source, "target": target, "dense_vector": spec.name,
                                       "text_field": text_field, "model": encoder_ref})
        if prog.load():
            logger.info("resuming the Ray build of %s: %d of %d partitions done", target, len(prog.done),
                        len(prog.parts))
        else:
            n = partitions or default_partitions(store.count(source), workers)
            prog.parts = plan_partitions(store, source, n)
            prog.save()
        todo = [p for p in prog.parts if int(p["part"]) not in prog.done]
        if not todo:
            stats.seconds = time.perf_counter() - t0
            return stats

        blob = None
        if ship_model or (ship_model is None and len([n for n in ray.nodes() if n.get("Alive")]) > 1):
            data = _model_blob(encoder_ref, models)
            blob = [ray.put(data)] if data else None
        fault = os.environ.get(FAULT_ENV) or None
        ctor = dict(models=models, qdrant=qdrant, encoder_ref=encoder_ref, encoder_kwargs=dict(encoder_kwargs or {}),
                    device="cuda" if use_gpu else "cpu", mode=mode, source=source, target=target, spec=spec,
                    text_field=text_field, batch=batch, model_blob=blob, fault=fault)
        logger.info("Ray build of %s: %d partitions to do (%s mode), %d %s actor(s)", target, len(todo), mode,
                    min(workers, len(todo)), "GPU" if use_gpu else "CPU")
        failures: dict[int, str] = {}
        for rnd in range(max_rounds):
            size = max(1, min(workers, len(todo)))
            failures = {}
            run = _round_server if mode == "server" else _round_embedded
            try:
                run(store, source, target, spec, text_field, batch, todo, prog, ctor, size, use_gpu,
                    actor_retries, stats, failures)
            except BadInput:
                raise
            except Exception as e:  # noqa: BLE001 - the round died: every partition not done is retried
                logger.warning("Ray round %d failed: %s", rnd + 1, _error(e))
                failures.update({int(p["part"]): _error(e) for p in todo if int(p["part"]) not in prog.done})
            for part, err in failures.items():
                if err.startswith("BadInput"):
                    raise BadInput(f"partition {part}: {err.split(': ', 1)[-1]}")
            todo = [p for p in prog.parts if int(p["part"]) not in prog.done]
            if not todo:
                break
            logger.warning("Ray round %d: %d partition(s) failed (%s); retrying them", rnd + 1, len(todo),
                           "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:3]))
        if todo:
            msg = (f"{len(todo)} of {len(prog.parts)} partitions still failing after {max_rounds} rounds "
                   f"(first: {next(iter(failures.values()), 'unknown')}); the {len(prog.done)} done are kept "
                   "for the next run")
            errs = list(failures.values())
            if errs and all(e.startswith("QdrantUnavailable") for e in errs):
                raise QdrantUnavailable(msg)
            raise VectuneError(msg)
    finally:
        if own:
            store.close()
    stats.seconds = time.perf_counter() - t0
    return stats


def _round_server(store, source, target, spec, text_field, batch, todo, prog, ctor, size, use_gpu,
                  retries, stats, failures) -> None:
    import ray.data

    rows = [{"part": int(p["part"]), "start": json.dumps(p["start"]), "end": json.dumps(p["end"])} for p in todo]
    ds = _map(ray.data.from_items(rows, override_num_blocks=len(rows)), ctor, size, use_gpu, 1, retries)
    for row in ds.iter_rows():
        part, err = int(row["part"]), str(row["error"] or "")
        if err:
            failures[part] = err
            continue
        prog.done[part] = int(row["n"])
        stats.upserted += int(row["n"])
        prog.save()


def _round_embedded(store, source, target, spec, text_field, batch, todo, prog, ctor, size, use_gpu,
                    retries, stats, failures) -> None:
    import pyarrow as pa
    import ray
    import ray.data

    refs, expected = [], {}
    for p in todo:
        part = int(p["part"])
        ids, hs, texts = [], [], []
        for records, _ in scroll_range(store, source, p["start"], p["end"], batch=max(batch, 256)):
            for r in records:
                text, reason = extract_text(r.payload, text_field)
                if text is None:
                    raise BadInput(f"point {r.id} has no usable text in payload field '{text_field}' ({reason}); "
                                   "it cannot be re-embedded, so nothing was promoted")
                ids.append(json.dumps(r.id))
                hs.append(text_hash(text))
                texts.append(text)
        if not ids:
            prog.done[part] = 0
            continue
        expected[part] = len(ids)
        refs.append(ray.put(pa.table({"part": [part] * len(ids), "id": ids, "h": hs, "text": texts})))
    prog.save()
    if not refs:
        return

    shape = Shape.of(store, source, spec, copy=False)  # marked like every point vectune publishes
    got = dict.fromkeys(expected, 0)
    written = dict.fromkeys(expected, 0)
    ds = _map(ray.data.from_arrow_refs(refs), ctor, size, use_gpu, None, retries)
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for part in sorted(set(np.asarray(b["part"]).tolist())):
            sel = np.asarray(b["part"]) == part
            errs = [e for e in b["error"][sel] if e]
            if errs:
                failures[part] = str(errs[0])
                continue
            ids = [json.loads(x) for x in b["id"][sel]]
            vecs, hs = np.asarray(b["vec"][sel]), list(b["h"][sel])
            for i in range(0, len(ids), batch):
                recs = {str(r.id): r for r in store.retrieve(source, ids[i:i + batch], vectors=True)}
                points = []
                for pid, v, h in zip(ids[i:i + batch], vecs[i:i + batch], hs[i:i + batch]):
                    r = recs.get(str(pid))
                    if r is None:
                        continue  # deleted meanwhile: the catch-up deletes it
                    text, _ = extract_text(r.payload, text_field)
                    if text is None or text_hash(text) != h:
                        continue  # changed meanwhile: the catch-up re-embeds it
                    points.append(with_marker(point_with_vector(r, v, spec), r, shape))
                store.upsert(target, points)
                written[part] += len(points)
                stats.upserted += len(points)
            got[part] += len(ids)
            if got[part] >= expected[part]:
                prog.done[part] = written[part]
                prog.save()
