"""vectune: a reindexing operator for Qdrant.

Python users and the CLI share one object per alias::

    from vectune import Alias
    report = Alias("docs").run()

Apps resolve the alias to the live collection and the query encoder that made it, and log feedback::

    from vectune import feedback, resolve
    collection, encoder = resolve(client, "docs")
    feedback.log(client, "docs", "what is MI?", ["doc-17"], signal="click")

Importing vectune does not import torch (models load on first use).
"""

from vectune.api import Alias
from vectune.apps import feedback
from vectune.apps.dualwrite import DualWriter
from vectune.apps.resolve import resolve
from vectune.config.settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = ["Alias", "DualWriter", "Settings", "__version__", "feedback", "load_settings", "resolve"]
