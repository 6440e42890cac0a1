"""``python -m vectune``: the ``vectune`` command."""

from vectune.cli import main

main()
