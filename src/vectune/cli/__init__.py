"""The ``vectune`` command line: commands only, each a thin wrapper over :class:`vectune.api.Alias`.

Every option can also be set by its ``VECTUNE_*`` environment variable or a ``.env`` file
(:mod:`vectune.config`); options given on the command line win. Exit codes are documented in
:mod:`vectune.errors`.
"""

from __future__ import annotations

import click

from vectune.cli.cycle import demo, run, serve
from vectune.cli.feedback import feedback, pairs
from vectune.cli.people import report, review
from vectune.cli.setup import adopt, check, index
from vectune.cli.versions import history, prune, recover, rollback, status
from vectune.ops.interrupt import install as install_sigterm


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vectune")
def cli():
    """vectune: fine-tune your embedding model on your own Qdrant collection, evaluate it, promote it safely."""


for command in (index, adopt, run, status, history, rollback, prune, recover, demo, serve, check, feedback, pairs,
                report, review):
    cli.add_command(command)


def main() -> None:
    install_sigterm()  # SIGTERM (k8s deadline, docker stop): unwind so finally-blocks release locks; exit 143
    cli(prog_name="vectune")


if __name__ == "__main__":
    main()
