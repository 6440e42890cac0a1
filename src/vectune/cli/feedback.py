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

from vectune.api import export_feedback, import_feedback
from vectune.cli.common import alias_from, connection_options, handle_errors, settings_from
from vectune.errors import BadInput
from vectune.observe import pairs_view
from vectune.pipeline.pairs.rejections import reject_file


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
    s = settings_from(kw)
    res = import_feedback(file, alias=alias, settings=s)
    skipped = sum(res.skipped.values())
    click.echo(f"imported {res.imported} of {res.rows} rows into '{s.labels.collection}'"
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
    s = settings_from(kw)
    alias = alias or s.alias
    n = export_feedback(output if output else sys.stdout, alias=alias, settings=s)
    click.echo(f"exported {n} feedback rows{f' of alias {alias!r}' if alias else ''}"
               f"{f' to {output}' if output else ''}", err=True)


@feedback.command("stats")
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--json", "as_json", is_flag=True)
@connection_options
@handle_errors
def stats_cmd(alias, as_json, **kw):
    """Counts by signal, time span and usable share of an alias's feedback."""

    target = alias_from(alias, kw)
    alias = target.name
    st = target.feedback_stats()
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

    target = alias_from(alias, kw)
    rows = target.pairs(k, seed)
    fmt = fmt or ("jsonl" if output and output.suffix == ".jsonl" else "md")
    out = output if output else sys.stdout
    if fmt == "jsonl":
        pairs_view.write_jsonl(rows, out)
    else:
        pairs_view.write_markdown(rows, out,
                                  title=f"Training pairs of alias '{target.name}' (last run, {len(rows)} shown)")
    if output:
        click.echo(f"wrote {len(rows)} pairs to {output}", err=True)


@pairs.command("reject")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@connection_options
@handle_errors
def reject_cmd(file, alias, **kw):
    """Veto pairs or whole queries listed in FILE (exported JSONL with "reject": true, or ids/queries one per line)."""
    target = alias_from(alias, kw)
    alias = target.name
    records, skipped = reject_file(file)
    rej = target.rejections()
    new = rej.add(records)
    by_kind = {k: sum(r["kind"] == k for r in records) for k in ("pair", "query")}
    c = rej.counts()
    click.echo(f"recorded {new} new rejections for alias '{alias}' ({by_kind['pair']} pairs, {by_kind['query']} "
               f"whole queries in {file}; {len(records) - new} already known)"
               + (f"; {skipped} marked rows unusable" if skipped else "")
               + f". Later cycles leave them out: {c['pairs']} pairs and {c['queries']} queries vetoed in all.")
