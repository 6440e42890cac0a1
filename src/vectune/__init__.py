"""vectune: a reindexing operator for Qdrant.

Apps resolve the alias to the live collection and the query encoder that made it::

    from vectune import resolve
    collection, encoder = resolve(client, "docs")
"""

__version__ = "0.1.0"


def resolve(client, alias, settings=None):
    """Return ``(collection_name, query_encoder)`` for ``alias``. See :mod:`vectune.resolve`."""
    from vectune.resolve import resolve as _resolve

    return _resolve(client, alias, settings)


__all__ = ["resolve", "__version__"]
