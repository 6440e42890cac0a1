"""``vectune report`` and ``vectune review``: what a person reads and clicks."""

from __future__ import annotations

import sys
import webbrowser

import click

from vectune.cli.common import alias_from, connection_options, handle_errors


@click.command()
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--run", "run_id", default=None, help="Which run's page (default: the latest).")
@click.option("--open", "open_", is_flag=True, help="Open the history page in a web browser.")
@connection_options
@handle_errors
def report(alias, run_id, open_, **kw):
    """Write the alias's history page (and a run's report page) from its reports and history; print their paths."""
    out = alias_from(alias, kw).pages(run_id)
    click.echo(f"history: {out['history']}")
    if out.get("run"):
        click.echo(f"run {out['run_id']}: {out['run']}")
    if open_:
        webbrowser.open(out["history"].resolve().as_uri())


@click.command()
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--open", "open_", is_flag=True, help="Open the page in a web browser.")
@connection_options
@handle_errors
def review(alias, port, open_, **kw):
    """Serve the last run's pair sample on 127.0.0.1 to read and reject pairs in a browser (Ctrl-C stops)."""
    target = alias_from(alias, kw)
    server = target.review_server(port)
    click.echo(f"reviewing the pair sample of alias '{target.name}' at {server.url}\n"
               "(only this machine can reach it, and only with the token; Ctrl-C stops)")
    sys.stdout.flush()
    if open_:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
