"""Bootstrap: index a corpus into a new model-tagged collection, or adopt one.

``vectune index`` embeds a JSONL or BEIR corpus (``corpus.jsonl[.gz]``) into
``<alias>--<model-tag>`` and points the alias at it. String ids (BEIR ``_id``) map
to stable UUIDs; the original id stays in the payload (``doc_id``).
``vectune adopt`` takes over a collection another tool wrote, recording which
model produced it (after checking the stored vectors agree with that model).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from vectune.config.settings import Settings
from vectune.core.chunks import ReadStats, filter_chunks
from vectune.core.jsonl import iter_objects
from vectune.errors import BadInput
from vectune.models.store import ModelStore, safe_tag
from vectune.observe.history import History
from vectune.pipeline.read import check_live_vectors
from vectune.qdrant import lineage
from vectune.qdrant.store import DenseSpec, Store, dense_of, new_point, point_id_for

logger = logging.getLogger(__name__)


def corpus_file(path: Path) -> Path:
    """The JSONL file of a corpus path (a file, or a BEIR folder)."""
    path = Path(path)
    if path.is_dir():
        for name in ("corpus.jsonl", "corpus.jsonl.gz"):
            if (path / name).is_file():
                return path / name
        raise BadInput(f"{path} is a folder without corpus.jsonl or corpus.jsonl.gz")
    if not path.is_file():
        raise BadInput(f"corpus not found: {path}")
    return path


def iter_records(path: Path, id_keys=("_id", "id", "doc_id")) -> Iterator[tuple[str, dict]]:
    """Yield ``(external_id, record)`` from a JSONL(.gz) file; a clear error on bad lines."""

    for n, rec in iter_objects(corpus_file(path), "corpus"):
        rid = next((rec[k] for k in id_keys if rec.get(k) not in (None, "")), None)
        yield (str(rid) if rid is not None else str(n - 1)), rec


def index(settings: Settings, corpus: Path, alias: str, model: str | None = None, with_title: bool = False,
          replace: bool = False) -> dict:
    """Embed a corpus into a new collection and point ``alias`` at it.

    Args:
        settings: connection, model store, text field, batch sizes.
        corpus: JSONL file or BEIR folder.
        alias: alias to create.
        model: model reference (defaults to ``settings.model.base``).
        with_title: store ``"<title>. <text>"`` as the text (BEIR style).
        replace: allow re-pointing an existing alias.

    Returns:
        A summary: collection, points, model.
    """
    model = model or settings.model.base
    corpus_file(corpus)  # fail before loading a model
    enc = ModelStore.from_settings(settings).load(model)
    tag = safe_tag(model)
    name = lineage.collection_name(alias, tag)
    field = settings.collection.text_field
    with Store.open(settings) as store:
        if alias in store.aliases() and not replace:
            raise BadInput(f"alias '{alias}' already exists (-> {store.aliases()[alias]}); "
                           "use `vectune run` to tune it, or --replace to re-index")
        if store.collection_exists(name):
            if alias in store.aliases() and store.aliases()[alias] == name:
                raise BadInput(f"'{name}' is live behind '{alias}': refusing to overwrite it")
            store.delete_collection(name)
        rec = lineage.record(alias=alias, model_ref=model, model_tag=tag, created_by="index",
                             dense_vector=settings.collection.vector_name or "", query_prompt=enc.query_prompt,
                             source=str(corpus), max_seq_length=enc.max_seq_length, text_field=field)
        store.create_collection(name, enc.dim, "Cosine", rec, vector_name=settings.collection.vector_name or "")
        batch: list[tuple[str, dict]] = []
        total = skipped = 0

        def flush():
            nonlocal total
            texts = [r[field] for _, r in batch]
            emb = enc.encode_passages(texts)
            spec = DenseSpec(settings.collection.vector_name or "", enc.dim, "Cosine")
            pts = [new_point(point_id_for(rid), v, r, spec) for (rid, r), v in zip(batch, emb)]
            store.upsert(name, pts)
            total += len(pts)
            batch.clear()
            logger.info("indexed %d points", total)

        for rid, r in iter_records(corpus):
            r = {k: v for k, v in r.items() if k != "_id"}
            r.setdefault(settings.collection.id_field, rid)
            text = r.get(field)
            if not isinstance(text, str) or not text.strip():
                skipped += 1
                continue
            if with_title and isinstance(r.get("title"), str) and r["title"].strip():
                r[field] = f"{r['title'].strip()}. {text}"
            batch.append((rid, r))
            if len(batch) >= settings.promote.upsert_batch:
                flush()
        if batch:
            flush()
        if total == 0:
            store.delete_collection(name)
            raise BadInput(f"no record in {corpus} has a non-empty '{field}' field; nothing indexed")
        count = store.count(name)
        rec.update(state="live", data={"points": count, "skipped_records": skipped})
        store.set_metadata(name, rec)
        store.swap_alias(alias, name)
    logger.info("alias '%s' -> %s (%d points, model %s)", alias, name, count, model)
    return {"alias": alias, "collection": name, "points": count, "skipped_records": skipped, "model": model}


def adopt(settings: Settings, collection: str, alias: str, model: str, force: bool = False) -> dict:
    """Record which model made ``collection`` and point ``alias`` at it.

    Checks a sample of stored vectors against the model (``--force`` skips the check).
    """

    enc = ModelStore.from_settings(settings).load(model)
    with Store.open(settings) as store:
        if not store.collection_exists(collection):
            raise BadInput(f"collection '{collection}' does not exist")
        current = store.aliases().get(alias)
        if current and current != collection and not force:
            raise BadInput(f"alias '{alias}' already points at '{current}' (use --force to re-point it)")
        spec = store.dense_spec(collection, settings.collection.vector_name)
        if spec.size != enc.dim:
            raise BadInput(f"'{collection}' holds {spec.size}-d vectors but model {model!r} makes {enc.dim}-d ones")
        mean = None
        if not force:
            page, _ = next(store.scroll(collection, vectors=spec.selector, batch=64))
            stats = ReadStats()
            chunks = list(filter_chunks(((r.id, r.payload, dense_of(r, spec)) for r in page),
                                        settings.collection.text_field, 1, 10**9, stats))
            chunks = [c for c in chunks if c.vector is not None]
            if not chunks:
                raise BadInput(f"no point of '{collection}' has text in payload field "
                               f"'{settings.collection.text_field}' "
                               "(choose it with --text-field, e.g. page_content for LangChain)")
            mean = check_live_vectors(enc, chunks, collection)
        old = store.metadata(collection)
        rec = lineage.record(alias=alias, model_ref=model, model_tag=safe_tag(model), created_by="adopt",
                             dense_vector=spec.name, query_prompt=enc.query_prompt, state="live",
                             max_seq_length=enc.max_seq_length,
                             text_field=settings.collection.text_field, previous_metadata=old or None)
        store.set_metadata(collection, rec)
        store.swap_alias(alias, collection)
    History(settings.work_dir, alias).append({"event": "adopt", "collection": collection, "model": model})
    return {"alias": alias, "collection": collection, "model": model, "vector_check": mean}
