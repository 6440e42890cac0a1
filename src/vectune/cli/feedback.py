"""``vectune feedback ...`` and ``vectune pairs ...``: the app's feedback and the pairs people can veto.

Two click groups for the main CLI (``cli.add_command(feedback)``, ``cli.add_command(pairs)``). They share
the main CLI's connection options, settings loading (``VECTUNE_*`` environment, ``.env``) and error
handling, so ``--alias`` falls back to ``VECTUNE_ALIAS`` and errors exit with the documented codes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vectune.cli.common import _require_alias, _settings, connection_options, handle_errors


def _collection(s) -> str:
    from vectune.qdrant.feedback import FEEDBACK_COLLECTION

    return getattr(s, "feedback_collection", None) or FEEDBACK_COLLECTION


# ----------------------------------------------------------------------------- feedback
@click.group()
def feedback():
    """Feedback logged by your app (clicks, citations, thumbs): import, export, stats."""


@feedback.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--alias", default=None,
              help="Alias for every row (overrides the rows' own); rows without one use VECTUNE_ALIAS.")
@connection_options
@handle_errors
def import_cmd(file, alias, **kw):
    """Import feedback events from FILE (JSONL: query, ids, signal, ts); malformed rows are counted and skipped."""
    from vectune.errors import BadInput
    from vectune.ops.feedback import import_jsonl
    from vectune.qdrant.store import Store

    s = _settings(kw)
    with Store.open(s) as store:
        res = import_jsonl(store, file, alias=alias, default_alias=s.alias, collection=_collection(s))
    skipped = sum(res.skipped.values())
    click.echo(f"imported {res.imported} of {res.rows} rows into '{_collection(s)}'"
               + (f"; skipped {skipped} malformed: {dict(res.skipped)}" if skipped else ""))
    for ex in res.examples if skipped else []:
        click.echo(f"  {ex}", err=True)
    if res.rows and not res.imported:
        raise BadInput(f"no usable row in {file}: every row was malformed")


@feedback.command("export")
@click.option("--alias", default=None, help="Only this alias [VECTUNE_ALIAS]; default: every alias.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="File to write (default: stdout).")
@connection_options
@handle_errors
def export_cmd(alias, output, **kw):
    """Export feedback events as JSONL (the format `feedback import` reads)."""
    from vectune.ops.feedback import export
    from vectune.qdrant.store import Store

    s = _settings(kw)
    alias = alias or s.alias
    with Store.open(s) as store:
        n = export(store, output if output else sys.stdout, alias, collection=_collection(s))
    click.echo(f"exported {n} feedback rows{f' of alias {alias!r}' if alias else ''}"
               f"{f' to {output}' if output else ''}", err=True)


@feedback.command("stats")
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--json", "as_json", is_flag=True)
@connection_options
@handle_errors
def stats_cmd(alias, as_json, **kw):
    """Counts by signal, time span and usable share of an alias's feedback."""
    from vectune.ops.feedback import stats
    from vectune.qdrant.store import Store

    s = _settings(kw)
    alias = _require_alias(alias, s)
    with Store.open(s) as store:
        st = stats(store, alias, collection=_collection(s))
    if as_json:
        click.echo(json.dumps(st, indent=2, default=str))
        return
    if not st["rows"]:
        click.echo(st["message"])
        return
    share = (f"{st['usable_rows']} of {st['rows']} ({st['usable_share']:.0%}); {st['missing_ids']} ids no longer "
             f"in {st['live_collection']}" if st["usable_share"] is not None else "unknown")
    lines = [f"feedback for alias '{alias}' ({st['collection']}): {st['rows']} rows, {st['queries']} distinct queries",
             "  by signal: " + ", ".join(f"{k} {v}" for k, v in st["by_signal"].items()),
             f"  window: {st['window']['first']} .. {st['window']['last']}",
             f"  usable rows: {share}"]
    if st["malformed"]:
        lines.append(f"  malformed points (ignored): {st['malformed']}")
    if st["message"]:
        lines.append(f"  note: {st['message']}")
    click.echo("\n".join(lines))


# ----------------------------------------------------------------------------- pairs
@click.group(invoke_without_command=True)
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--sample", "k", type=click.IntRange(min=1), default=100, show_default=True,
              help="How many pairs to show.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "md"]), default=None,
              help="Output format (default: md, or jsonl for an -o file ending in .jsonl).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="File to write (default: stdout).")
@click.option("--seed", type=int, default=None, help="[VECTUNE_SEED]")
@connection_options
@click.pass_context
@handle_errors
def pairs(ctx, alias, k, fmt, output, seed, **kw):
    """Show a sample of the last run's training pairs (query, positive, hard negative, source) to read and veto."""
    if ctx.invoked_subcommand is not None:
        return
    from vectune.pipeline.pairs import review

    s = _settings(kw)
    alias = _require_alias(alias, s)
    rows = review.read_run_sample(s.run_dir(alias), alias)
    rows = review.subsample(rows, k, s.seed if seed is None else seed)
    rej = review.Rejections(s.run_dir(alias))
    for r in rows:
        r["rejected"] = rej.row_rejected(r)
    fmt = fmt or ("jsonl" if output and output.suffix == ".jsonl" else "md")
    out = output if output else sys.stdout
    if fmt == "jsonl":
        review.write_jsonl(rows, out)
    else:
        review.write_markdown(rows, out, title=f"Training pairs of alias '{alias}' (last run, {len(rows)} shown)")
    if output:
        click.echo(f"wrote {len(rows)} pairs to {output}", err=True)


@pairs.command("reject")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@connection_options
@handle_errors
def reject_cmd(file, alias, **kw):
    """Veto pairs or whole queries listed in FILE (exported JSONL with "reject": true, or ids/queries one per line)."""
    from vectune.pipeline.pairs import review

    s = _settings(kw)
    alias = _require_alias(alias, s)
    records, skipped = review.reject_file(file)
    rej = review.Rejections(s.run_dir(alias))
    new = rej.add(records)
    by_kind = {k: sum(r["kind"] == k for r in records) for k in ("pair", "query")}
    c = rej.counts()
    click.echo(f"recorded {new} new rejections for alias '{alias}' ({by_kind['pair']} pairs, {by_kind['query']} "
               f"whole queries in {file}; {len(records) - new} already known)"
               + (f"; {skipped} marked rows unusable" if skipped else "")
               + f". Later cycles leave them out: {c['pairs']} pairs and {c['queries']} queries vetoed in all.")
