"""Driving the real CLI in-process, and a client on the store it uses."""

from __future__ import annotations

from contextlib import contextmanager

from click.testing import CliRunner

from vectune.cli import cli
from vectune.config.settings import load_settings
from vectune.qdrant.store import Store

PERMISSIVE = ["--allow-synthetic-gate", "--min-delta", "-1", "--no-bootstrap"]


def invoke(*args, expect: int | None = 0):
    """Run the real CLI in-process; assert the exit code; return the result."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
    if expect is not None and result.exit_code != expect:
        raise AssertionError(f"vectune {' '.join(map(str, args))} exited {result.exit_code}, expected {expect}\n"
                             f"output:\n{result.output}\nexception: {result.exception!r}")
    return result


@contextmanager
def qdrant():
    """A Qdrant client on the same store the CLI uses (close it before the next CLI call)."""
    store = Store.open(load_settings())
    try:
        yield store.client
    finally:
        store.close()


