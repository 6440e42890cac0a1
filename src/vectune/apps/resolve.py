"""The query side for apps: which collection, which encoder for queries, which model for writes.

An app that queries through the alias must encode its queries with the collection's
query model — after a promotion or a rollback that model changes. ``resolve`` reads it
from the collection's lineage::

    from qdrant_client import QdrantClient
    from vectune import resolve

    client = QdrantClient(url="http://localhost:6333")
    collection, encoder = resolve(client, "docs")
    hits = client.query_points(collection, query=encoder.encode_queries(["what is MI?"])[0].tolist())

After a query-side promotion the query model and the passage model differ: apps keep
writing passages with ``resolved.passage_model`` (unchanged; ``encoder.encode_passages``
does exactly that) and encode queries with ``encoder.encode_queries``.
"""

from __future__ import annotations

from vectune.apps.dualwrite import DualWriter
from vectune.config.settings import Settings
from vectune.errors import BadInput
from vectune.models.encoder import Encoder
from vectune.models.store import ModelStore
from vectune.qdrant.lineage import passage_model, query_model
from vectune.qdrant.store import META_KEY


class Resolved(tuple):
    """``(collection, encoder)``, with what an app needs to know for writes.

    Unpacks as a pair (``collection, encoder = resolve(...)``). Also:

    Attributes:
        collection: the collection the alias points at.
        encoder: the query encoder (``encode_queries``); its ``encode_passages`` is the passage model.
        query_model: the model reference queries are encoded with.
        passage_model: the model reference the stored passage vectors were made with: write with it.
        lineage: the collection's whole lineage record.
    """

    lineage: dict
    alias: str

    def __new__(cls, collection: str, encoder: Encoder, meta: dict, alias: str = ""):
        obj = super().__new__(cls, (collection, encoder))
        obj.lineage = meta
        obj.alias = alias
        return obj

    def writer(self, client, settings: Settings | None = None):
        """A dual-write helper for this alias (:class:`vectune.apps.dualwrite.DualWriter`).

        Writes through it are exact even in the few cases a plain client's writes are not (a write
        made in a promotion's window and again through the alias right after the swap): while a
        promotion or rollback is publishing, each write goes to the new collection too.
        """

        return DualWriter(client, self.alias, settings)

    @property
    def collection(self) -> str:
        return self[0]

    @property
    def encoder(self) -> Encoder:
        return self[1]

    @property
    def query_model(self) -> str:
        return str(query_model(self.lineage))

    @property
    def passage_model(self) -> str:
        return str(passage_model(self.lineage))


def resolve(client, alias: str, settings: Settings | None = None) -> Resolved:
    """Resolve ``alias`` to ``(collection_name, query_encoder)``.

    Args:
        client: a ``qdrant_client.QdrantClient``.
        alias: the alias apps query.
        settings: where the model store is (defaults to the environment's settings).

    Returns:
        The collection the alias points at and an :class:`~vectune.models.encoder.Encoder`
        (use ``encode_queries``; it applies the model's query prompt and, after a query-side
        promotion, the new query route), as a :class:`Resolved` pair that also names the
        passage model apps write with.

    Raises:
        BadInput: the alias is missing, or its collection has no vectune lineage.
    """
    settings = settings or Settings()
    aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
    if alias not in aliases:
        raise BadInput(f"alias '{alias}' does not exist")
    name = aliases[alias]
    meta = (client.get_collection(name).config.metadata or {}).get(META_KEY) or {}
    if not meta.get("model_ref"):
        raise BadInput(f"collection '{name}' has no vectune lineage; adopt it first")
    return Resolved(name, ModelStore.from_settings(settings).load_lineage(meta), meta, alias)
