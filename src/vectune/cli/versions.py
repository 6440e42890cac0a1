"""``vectune status``, ``history``, ``rollback``, ``prune`` and ``recover``: an alias's versions and state."""

from __future__ import annotations

import json

import click

from vectune.cli.common import alias_from, connection_options, emit, handle_errors


@click.command()
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--json", "as_json", is_flag=True)
@connection_options
@handle_errors
def status(alias, as_json, **kw):
    """Live collection, its model and lineage, previous versions with their scores."""
    target = alias_from(alias, kw)
    st = target.status()
    lin = st["lineage"]
    lines = [f"alias '{target.name}' -> {st['live_collection']}",
             f"  model: {lin.get('model_ref')} (base {lin.get('base_model')}, parent {lin.get('parent_model')})",
             f"  queries: {lin.get('query_model') or lin.get('model_ref')}; passages (apps write with): "
             f"{lin.get('passage_model') or lin.get('model_ref')}; mode {lin.get('mode') or 'full'}",
             f"  created by {lin.get('created_by')} at {lin.get('created_at')}; parent collection: "
             f"{lin.get('parent_collection')}",
             f"  rollback target: {st['rollback_target']}", "versions:"]
    for v in st["versions"]:
        g = v["gate"]
        score = f"{g.get('metric')} {g.get('live')}->{g.get('candidate')} ({g.get('evidence')})" if g else ""
        size = f"  {size_text(v.get('disk_bytes'), v.get('ram_bytes'))}" if v.get("disk_bytes") or v.get(
            "ram_bytes") else ""
        doomed = "  MARKED FOR DELETION" if v.get("marked_for_deletion") else ""
        lines.append(f"  {'*' if v['live'] else ' '} {v['collection']:<55} {v['state'] or '':<9} {v['points']:>8} pts  "
                     f"model {v['model']}{'' if v['model_available'] else ' (MISSING)'}  {score}{size}{doomed}")
    ret = st.get("retention") or {}
    nxt = ret.get("next_promotion") or {}
    lines.append(f"retention: {ret.get('policy')}, keep {ret.get('keep_versions')} versions; the next promotion "
                 f"needs about {nbytes(nxt.get('needs_bytes'))} ({nxt.get('how')})"
                 + (f", headroom {nbytes(nxt.get('headroom_bytes'))} ({nxt.get('headroom_from')})"
                    if nxt.get("headroom_bytes") is not None else ", headroom not checked"))
    if nxt.get("warning"):
        lines.append(f"WARNING: {nxt['warning']}")
    for problem in st.get("state_problems") or ():
        lines.append(f"DAMAGED STATE: {problem}")
    if st["last_run"]:
        lr = st["last_run"]
        lines.append(f"last run: {lr['run_id']} {lr['status']}: {lr['reason']}")
    for ev in st["history"][-5:]:
        lines.append(f"  {ev.get('time')} {ev.get('event')}: {event_text(ev)}")
    emit(st, as_json, "\n".join(lines))


def nbytes(n: float | None) -> str:
    """Bytes as MB or GB."""
    if n is None:
        return "-"
    return f"{n / 1024 ** 3:.2f} GB" if n >= 1024 ** 3 else f"{n / 1024 ** 2:.1f} MB"


def size_text(disk: float | None, ram: float | None = None) -> str:
    """A collection's footprint: on disk, in memory, as reported."""
    parts = ([nbytes(disk) + " on disk"] if disk else []) + ([nbytes(ram) + " in memory"] if ram else [])
    return ", ".join(parts) or "-"


def event_text(ev: dict) -> str:
    """One history event as a line of text."""
    e = ev.get("event")
    if e == "rollback":
        synced = ev.get("synced") or {}
        w = ev.get("watch") or {}
        by = (f" by the watch: {w.get('metric')} {w['delta']:+.4f} on {w.get('queries')} fresh queries"
              if w.get("delta") is not None else "")
        return (f"{ev.get('from')} -> {ev.get('to')}{by} (synced {synced.get('upserted', 0)} upserted, "
                f"{synced.get('deleted', 0)} deleted)")
    if e == "promotion":
        g = ev.get("gate") or {}
        return (f"{ev.get('live_collection')} -> {ev.get('new_collection')} {g.get('metric')} "
                f"{g.get('live')}->{g.get('candidate')}")
    if e in ("rejection", "failure", "crash", "watch"):
        return str(ev.get("reason"))
    if e in ("retention", "prune"):
        return f"deleted {', '.join(ev.get('deleted') or []) or '-'}; models deleted: " \
               f"{', '.join(ev.get('models_deleted') or []) or '-'}"
    return json.dumps({k: v for k, v in ev.items() if k not in ("time", "alias", "event")}, default=str)


@click.command()
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--json", "as_json", is_flag=True)
@connection_options
@handle_errors
def history(alias, as_json, **kw):
    """Every promotion, rejection and rollback of an alias, with time, models and scores."""
    target = alias_from(alias, kw)
    events = target.history()
    text = "\n".join(f"{ev.get('time')} {ev.get('event'):<10} {event_text(ev)}" for ev in events) or "no history"
    emit({"alias": target.name, "events": events}, as_json, text)


@click.command()
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--to", "to", default=None, help="Target collection (default: the previous version).")
@click.option("--force", is_flag=True, help="Swap even if the target's model is missing (no sync: loses writes).")
@connection_options
@handle_errors
def rollback(alias, to, force, **kw):
    """Sync a previous (or named) version with the live data, then swap the alias back to it."""
    target = alias_from(alias, kw)
    out = target.rollback(to, force=force)
    synced = out["synced"]
    how = (f"synced {synced['upserted']} re-embedded, {synced['deleted']} deleted" if synced
           else "NOT synced (forced)")
    click.echo(f"rolled back '{target.name}': {out['from']} -> {out['to']} (model {out['model']}; {how})")


@click.command()
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--keep", type=int, default=None, help="Versions to keep [VECTUNE_KEEP_VERSIONS, default 3].")
@click.option("--delete-models", is_flag=True, help="Also delete model-store entries no kept version uses.")
@click.option("--dry-run", is_flag=True)
@connection_options
@handle_errors
def prune(alias, keep, delete_models, dry_run, **kw):
    """Delete old versions; never the live one or the rollback target."""
    out = alias_from(alias, kw).prune(keep, delete_models=delete_models, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"kept {len(out['kept'])}: {', '.join(out['kept'])}\n{verb} {len(out['deleted'])}: "
               f"{', '.join(out['deleted']) or '-'}")


@click.command()
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--abandon-window", is_flag=True,
              help="When a swapped publish lost every copy of its snapshot: give up the writes made in its window.")
@click.option("--json", "as_json", is_flag=True)
@connection_options
@handle_errors
def recover(alias, abandon_window, as_json, **kw):
    """Finish the job after a damaged state file: set it aside, rebuild from what is intact, recover."""
    target = alias_from(alias, kw)
    out = target.recover(abandon_window=abandon_window)
    lines = [f"recovered '{target.name}': alias -> {out['live_collection']}"]
    lines += [f"  set aside: {p}" for p in out["set_aside"]] or ["  nothing was damaged"]
    lines += [f"  rebuilt {k}: {v}" for k, v in out["rebuilt"].items()]
    if out.get("finished"):
        lines.append(f"  {out['finished']}")
    for k, v in (out.get("recovered") or {}).items():
        lines.append(f"  {k}: {json.dumps(v, default=str)}")
    emit(out, as_json, "\n".join(lines))
