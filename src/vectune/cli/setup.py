"""``vectune index``, ``adopt`` and ``check``: putting an alias under vectune, and the health check."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vectune.api import check as run_checks
from vectune.cli.common import alias_from, connection_options, handle_errors, redact, settings_from


@click.command()
@click.argument("corpus", type=click.Path(path_type=Path))
@click.option("--alias", required=True, help="Alias to create.")
@click.option("--model", default=None, help="Model reference [VECTUNE_BASE_MODEL]; default: the bundled MiniLM.")
@click.option("--with-title", is_flag=True, help="Store '<title>. <text>' as the text (BEIR style).")
@click.option("--replace", is_flag=True, help="Re-index even if the alias exists.")
@connection_options
@handle_errors
def index(corpus, alias, model, with_title, replace, **kw):
    """Embed CORPUS (JSONL file or BEIR folder) into a new collection behind ALIAS."""
    out = alias_from(alias, kw).index(corpus, model=model, with_title=with_title, replace=replace)
    click.echo(f"indexed {out['points']} points into {out['collection']} (model {out['model']}); "
               f"alias '{alias}' -> {out['collection']}")


@click.command()
@click.option("--collection", required=True, help="Existing collection to take over.")
@click.option("--alias", required=True, help="Alias to point at it.")
@click.option("--model", required=True, help="The model that wrote its vectors.")
@click.option("--force", is_flag=True, help="Skip the vector check; re-point an existing alias.")
@connection_options
@handle_errors
def adopt(collection, alias, model, force, **kw):
    """Take over a collection another tool wrote, recording which model made it."""
    out = alias_from(alias, kw).adopt(collection, model, force=force)
    check = f" (vector check: mean cosine {out['vector_check']:.3f})" if out["vector_check"] is not None else ""
    click.echo(f"adopted {collection} as '{alias}', model {model}{check}")


@click.command()
@click.option("--alias", default=None, help="Also check that this alias resolves [VECTUNE_ALIAS].")
@connection_options
def check(alias, **kw):
    """Health check: settings valid, Qdrant reachable, alias resolves, model store writable, teacher reachable."""
    try:
        s = settings_from(kw)
    except Exception as e:  # noqa: BLE001 - invalid settings
        click.echo(f"settings: INVALID ({redact(str(e)).splitlines()[0]})", err=True)
        sys.exit(2)
    results = run_checks(s, alias or s.alias)
    code = 0
    for name, (ok, detail, fail_code) in results.items():
        click.echo(f"{name}: {'ok' if ok else 'FAIL'} {detail}".rstrip())
        if not ok and not code:
            code = fail_code
    sys.exit(code)
