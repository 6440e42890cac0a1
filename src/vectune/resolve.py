"""The query side for apps: which collection, and which encoder made it.

An app that queries through the alias must encode its queries with the model that
produced the collection the alias points at — after a promotion or a rollback that
model changes. ``resolve`` reads it from the collection's lineage::

    from qdrant_client import QdrantClient
    from vectune import resolve

    client = QdrantClient(url="http://localhost:6333")
    collection, encoder = resolve(client, "docs")
    hits = client.query_points(collection, query=encoder.encode_queries(["what is MI?"])[0].tolist())
"""

from __future__ import annotations

from vectune.errors import BadInput
from vectune.models import Encoder, load_lineage_encoder
from vectune.settings import Settings
from vectune.store import META_KEY


def resolve(client, alias: str, settings: Settings | None = None) -> tuple[str, Encoder]:
    """Resolve ``alias`` to ``(collection_name, query_encoder)``.

    Args:
        client: a ``qdrant_client.QdrantClient``.
        alias: the alias apps query.
        settings: where the model store is (defaults to the environment's settings).

    Returns:
        The collection the alias points at and an :class:`~vectune.models.Encoder`
        (use ``encode_queries``; it applies the model's query prompt).

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
    return name, load_lineage_encoder(meta, settings)
