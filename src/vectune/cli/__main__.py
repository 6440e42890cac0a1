"""``python -m vectune.cli``: the ``vectune`` command."""

from vectune.cli import main

main()
