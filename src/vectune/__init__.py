"""vectune: a reindexing operator for Qdrant.

Apps resolve the alias to the live collection and the query encoder that made it::

    from vectune.apps import resolve
    collection, encoder = resolve(client, "docs")
"""

from vectune.apps.resolve import resolve

__version__ = "0.1.0"

__all__ = ["resolve", "__version__"]
