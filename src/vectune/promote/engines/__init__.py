"""Re-embedding engines.

``local`` (the default) is :func:`vectune.promote.build`: one process streams the
source collection page by page. ``ray`` is :func:`vectune.promote.engines.ray_engine.build_ray`:
the same contract, spread over a Ray cluster (``pip install 'vectune[ray]'``).
Modules here import Ray lazily, so importing ``vectune.promote.engines`` never needs it.
"""

ENGINES = ("local", "ray")

__all__ = ["ENGINES"]
