"""The ``vectune`` command line: a thin layer over the stage modules.

Every option can also be set by its ``VECTUNE_*`` environment variable or a
``.env`` file (through :mod:`vectune.settings`); options given on the command line
win. Exit codes are documented in :mod:`vectune.errors`.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from vectune.cli_common import _emit, _redact, _require_alias, _settings, connection_options, handle_errors
from vectune.errors import VectuneError

logger = logging.getLogger("vectune")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vectune")
def cli():
    """vectune: fine-tune your embedding model on your own Qdrant collection, evaluate it, promote it safely."""


# ----------------------------------------------------------------------------- index / adopt
@cli.command()
@click.argument("corpus", type=click.Path(path_type=Path))
@click.option("--alias", required=True, help="Alias to create.")
@click.option("--model", default=None, help="Model reference [VECTUNE_BASE_MODEL]; default: the bundled MiniLM.")
@click.option("--with-title", is_flag=True, help="Store '<title>. <text>' as the text (BEIR style).")
@click.option("--replace", is_flag=True, help="Re-index even if the alias exists.")
@connection_options
@handle_errors
def index(corpus, alias, model, with_title, replace, **kw):
    """Embed CORPUS (JSONL file or BEIR folder) into a new collection behind ALIAS."""
    from vectune.index import index as do_index

    s = _settings(kw)
    out = do_index(s, corpus, alias, model=model, with_title=with_title, replace=replace)
    click.echo(f"indexed {out['points']} points into {out['collection']} (model {out['model']}); "
               f"alias '{alias}' -> {out['collection']}")


@cli.command()
@click.option("--collection", required=True, help="Existing collection to take over.")
@click.option("--alias", required=True, help="Alias to point at it.")
@click.option("--model", required=True, help="The model that wrote its vectors.")
@click.option("--force", is_flag=True, help="Skip the vector check; re-point an existing alias.")
@connection_options
@handle_errors
def adopt(collection, alias, model, force, **kw):
    """Take over a collection another tool wrote, recording which model made it."""
    from vectune.index import adopt as do_adopt

    s = _settings(kw)
    out = do_adopt(s, collection, alias, model, force=force)
    check = f" (vector check: mean cosine {out['vector_check']:.3f})" if out["vector_check"] is not None else ""
    click.echo(f"adopted {collection} as '{alias}', model {model}{check}")


# ----------------------------------------------------------------------------- run
def cycle_options(f):
    opts = [
        click.option("--eval-set", type=click.Path(path_type=Path), default=None,
                     help="Golden set of real queries (JSONL: query, relevant ids) that decides [VECTUNE_EVAL_SET]."),
        click.option("--train-set", type=click.Path(path_type=Path), default=None,
                     help="Real labeled queries to add as training pairs [VECTUNE_TRAIN_SET]."),
        click.option("--mode", type=click.Choice(["auto", "query", "full"]), default=None,
                     help="What learns: the query side (against the stored vectors), both towers, or auto "
                          "[VECTUNE_MODE, default auto]."),
        click.option("--no-feedback", "feedback", flag_value=False, default=None,
                     help="Ignore the alias's logged feedback [VECTUNE_FEEDBACK=false]."),
        click.option("--query-epochs", type=float, default=None, help="[VECTUNE_QUERY_EPOCHS, default 8]"),
        click.option("--candidates", "query_candidates", default=None,
                     callback=lambda ctx, p, v: [x.strip() for x in v.split(",") if x.strip()] if v else None,
                     help="Query-side candidates, cheapest first [VECTUNE_QUERY_CANDIDATES, default linear,query]."),
        click.option("--teacher", type=click.Choice(["offline", "openai"]), default=None, help="[VECTUNE_TEACHER]"),
        click.option("--offline-method", "teacher_method", type=click.Choice(["mix", "title", "keyphrase", "cloze"]),
                     default=None, help="[VECTUNE_OFFLINE_METHOD]"),
        click.option("--teacher-model", default=None, help="Teacher LLM name [VECTUNE_TEACHER_MODEL]."),
        click.option("--queries-per-chunk", type=int, default=None, help="[VECTUNE_QUERIES_PER_CHUNK, default 3]"),
        click.option("--max-train-chunks", type=int, default=None, help="[VECTUNE_MAX_TRAIN_CHUNKS, default 2000]"),
        click.option("--min-train-chunks", type=int, default=None, help="[VECTUNE_MIN_TRAIN_CHUNKS, default 20]"),
        click.option("--epochs", type=float, default=None, help="[VECTUNE_EPOCHS, default 1]"),
        click.option("--max-steps", type=int, default=None, help="[VECTUNE_MAX_STEPS]"),
        click.option("--batch-size", type=int, default=None, help="[VECTUNE_BATCH_SIZE, default 16]"),
        click.option("--learning-rate", type=float, default=None, help="[VECTUNE_LEARNING_RATE, default 2e-5]"),
        click.option("--max-seq-length", type=int, default=None, help="[VECTUNE_MAX_SEQ_LENGTH, default 256]"),
        click.option("--hard-negatives", type=int, default=None, help="[VECTUNE_HARD_NEGATIVES, default 1]"),
        click.option("--relative-margin", type=float, default=None, help="[VECTUNE_RELATIVE_MARGIN, default 0.05]"),
        click.option("--gate-metric", default=None, help="[VECTUNE_GATE_METRIC, default ndcg@10]"),
        click.option("--gate-test", type=click.Choice(["bootstrap", "permutation", "wilcoxon"]), default=None,
                     help="Paired test that the gain is not noise [VECTUNE_GATE_TEST, default permutation]."),
        click.option("--min-delta", type=float, default=None, help="[VECTUNE_MIN_DELTA, default 0.005]"),
        click.option("--bootstrap/--no-bootstrap", default=None,
                     help="Require a significant gain (by --gate-test); off: min delta only [VECTUNE_BOOTSTRAP]."),
        click.option("--allow-synthetic-gate", is_flag=True, default=None,
                     help="Promote on synthetic evidence alone (risky) [VECTUNE_ALLOW_SYNTHETIC_GATE]."),
        click.option("--eval-corpus-cap", type=int, default=None, help="[VECTUNE_EVAL_CORPUS_CAP, default 20000]"),
        click.option("--seed", type=int, default=None, help="[VECTUNE_SEED]"),
        click.option("--max-train-pairs", type=int, default=None, help="Training budget [VECTUNE_MAX_TRAIN_PAIRS, default 1500]."),
        click.option("--keep-candidate", is_flag=True, default=None,
                     help="Save a rejected candidate in the model store too [VECTUNE_KEEP_CANDIDATE]."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@cli.command()
@click.option("--alias", default=None, help="Alias to tune [VECTUNE_ALIAS].")
@click.option("--dry-run", is_flag=True, help="Stop after evaluation; never touch the alias.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@cycle_options
@connection_options
@handle_errors
def run(alias, dry_run, as_json, **kw):
    """One full cycle, then exit (for cron): read, mine, fine-tune, evaluate, promote if better."""
    from vectune import cycle
    from vectune import report as report_mod

    s = _settings(kw)
    alias = _require_alias(alias, s)
    rep = cycle.run(s, alias, dry_run=dry_run)
    files = rep.report_files or {}
    _emit(rep.to_dict(), as_json, report_mod.summary(rep) + (f"\nreport: {files.get('md')}" if files else "")
          + (f"\npage: {files['html']}" if files.get("html") else ""))


# ----------------------------------------------------------------------------- status / history
@cli.command()
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--json", "as_json", is_flag=True)
@connection_options
@handle_errors
def status(alias, as_json, **kw):
    """Live collection, its model and lineage, previous versions with their scores."""
    from vectune.status import status as do_status

    s = _settings(kw)
    alias = _require_alias(alias, s)
    st = do_status(s, alias)
    lin = st["lineage"]
    lines = [f"alias '{alias}' -> {st['live_collection']}",
             f"  model: {lin.get('model_ref')} (base {lin.get('base_model')}, parent {lin.get('parent_model')})",
             f"  queries: {lin.get('query_model') or lin.get('model_ref')}; passages (apps write with): "
             f"{lin.get('passage_model') or lin.get('model_ref')}; mode {lin.get('mode') or 'full'}",
             f"  created by {lin.get('created_by')} at {lin.get('created_at')}; parent collection: {lin.get('parent_collection')}",
             f"  rollback target: {st['rollback_target']}", "versions:"]
    for v in st["versions"]:
        g = v["gate"]
        score = f"{g.get('metric')} {g.get('live')}->{g.get('candidate')} ({g.get('evidence')})" if g else ""
        lines.append(f"  {'*' if v['live'] else ' '} {v['collection']:<55} {v['state'] or '':<9} {v['points']:>8} pts  "
                     f"model {v['model']}{'' if v['model_available'] else ' (MISSING)'}  {score}")
    if st["last_run"]:
        lr = st["last_run"]
        lines.append(f"last run: {lr['run_id']} {lr['status']}: {lr['reason']}")
    for ev in st["history"][-5:]:
        lines.append(f"  {ev.get('time')} {ev.get('event')}: {_event_text(ev)}")
    _emit(st, as_json, "\n".join(lines))


def _event_text(ev: dict) -> str:
    e = ev.get("event")
    if e == "rollback":
        synced = ev.get("synced") or {}
        return f"{ev.get('from')} -> {ev.get('to')} (synced {synced.get('upserted', 0)} upserted, {synced.get('deleted', 0)} deleted)"
    if e == "promotion":
        g = ev.get("gate") or {}
        return f"{ev.get('live_collection')} -> {ev.get('new_collection')} {g.get('metric')} {g.get('live')}->{g.get('candidate')}"
    if e in ("rejection", "failure", "crash"):
        return str(ev.get("reason"))
    return json.dumps({k: v for k, v in ev.items() if k not in ("time", "alias", "event")}, default=str)


@cli.command()
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--json", "as_json", is_flag=True)
@connection_options
@handle_errors
def history(alias, as_json, **kw):
    """Every promotion, rejection and rollback of an alias, with time, models and scores."""
    from vectune.lineage import read_history

    s = _settings(kw)
    alias = _require_alias(alias, s)
    events = read_history(s, alias)
    text = "\n".join(f"{ev.get('time')} {ev.get('event'):<10} {_event_text(ev)}" for ev in events) or "no history"
    _emit({"alias": alias, "events": events}, as_json, text)


# ----------------------------------------------------------------------------- report pages / pair review
@cli.command()
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--run", "run_id", default=None, help="Which run's page (default: the latest).")
@click.option("--open", "open_", is_flag=True, help="Open the history page in a web browser.")
@connection_options
@handle_errors
def report(alias, run_id, open_, **kw):
    """Write the alias's history page (and a run's report page) from its reports and history; print their paths."""
    from vectune.ops.report_pages import refresh

    s = _settings(kw)
    alias = _require_alias(alias, s)
    out = refresh(s, alias, run_id)
    click.echo(f"history: {out['history']}")
    if out.get("run"):
        click.echo(f"run {out['run_id']}: {out['run']}")
    if open_:
        import webbrowser

        webbrowser.open(out["history"].resolve().as_uri())


@cli.command()
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--open", "open_", is_flag=True, help="Open the page in a web browser.")
@connection_options
@handle_errors
def review(alias, port, open_, **kw):
    """Serve the last run's pair sample on 127.0.0.1 to read and reject pairs in a browser (Ctrl-C stops)."""
    from vectune.ops.review_server import ReviewServer

    s = _settings(kw)
    alias = _require_alias(alias, s)
    server = ReviewServer(s.run_dir(alias), alias, port=port)
    click.echo(f"reviewing the pair sample of alias '{alias}' at {server.url}\n"
               "(only this machine can reach it, and only with the token; Ctrl-C stops)")
    sys.stdout.flush()
    if open_:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


# ----------------------------------------------------------------------------- rollback / prune
@cli.command()
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--to", "to", default=None, help="Target collection (default: the previous version).")
@click.option("--force", is_flag=True, help="Swap even if the target's model is missing (no sync: loses writes).")
@connection_options
@handle_errors
def rollback(alias, to, force, **kw):
    """Sync a previous (or named) version with the live data, then swap the alias back to it."""
    from vectune.rollback import rollback as do_rollback

    s = _settings(kw)
    alias = _require_alias(alias, s)
    out = do_rollback(s, alias, to=to, force=force)
    synced = out["synced"]
    how = (f"synced {synced['upserted']} re-embedded, {synced['deleted']} deleted" if synced
           else "NOT synced (forced)")
    click.echo(f"rolled back '{alias}': {out['from']} -> {out['to']} (model {out['model']}; {how})")
    _refresh_pages(s, alias)


def _refresh_pages(s, alias: str) -> None:
    """Bring the alias's history page (and the undone promotion's page) up to date; never fails the command."""
    try:
        from vectune.ops.report_pages import refresh

        refresh(s, alias)
    except Exception as e:  # noqa: BLE001 - the pages are for people; the rollback itself is done
        logger.warning("could not rewrite the history page of '%s': %s", alias, e)


@cli.command()
@click.option("--alias", default=None, help="[VECTUNE_ALIAS]")
@click.option("--keep", type=int, default=None, help="Versions to keep [VECTUNE_KEEP_VERSIONS, default 3].")
@click.option("--delete-models", is_flag=True, help="Also delete model-store entries no kept version uses.")
@click.option("--dry-run", is_flag=True)
@connection_options
@handle_errors
def prune(alias, keep, delete_models, dry_run, **kw):
    """Delete old versions; never the live one or the rollback target."""
    from vectune.rollback import prune as do_prune

    s = _settings(kw)
    alias = _require_alias(alias, s)
    out = do_prune(s, alias, keep if keep is not None else s.keep_versions, delete_models, dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"kept {len(out['kept'])}: {', '.join(out['kept'])}\n{verb} {len(out['deleted'])}: "
               f"{', '.join(out['deleted']) or '-'}")


# ----------------------------------------------------------------------------- demo
@cli.command()
@click.option("--corpus", type=click.Choice(["scifact", "pydoc"]), default="scifact", show_default=True,
              help="scifact: learn from an app's feedback and promote; pydoc: the safe 'kept' path.")
@click.option("--alias", default=None, help="Demo alias [default: scifact-demo or pydoc-demo].")
@click.option("--max-train-chunks", type=int, default=300, show_default=True, help="pydoc only.")
@click.option("--queries-per-chunk", type=int, default=2, show_default=True, help="pydoc only.")
@click.option("--epochs", type=float, default=1.0, show_default=True, help="pydoc only.")
@click.option("--allow-synthetic-gate", is_flag=True, help="pydoc only: decide on synthetic queries.")
@connection_options
@handle_errors
def demo(corpus, alias, max_train_chunks, queries_per_chunk, epochs, allow_synthetic_gate, **kw):
    """The main job on embedded defaults: index a shipped corpus, run a cycle, print the decision."""
    from vectune import report as report_mod
    from vectune.demo import run_demo, run_scifact_demo

    s = _settings(kw)
    if corpus == "scifact":
        out = run_scifact_demo(s, alias or "scifact-demo", say=click.echo)
        rep = out["run"]
        if rep.get("report_files"):
            click.echo(f"report: {rep['report_files'].get('md')}")
        return
    rep = run_demo(s, alias or "pydoc-demo", max_train_chunks=max_train_chunks, queries_per_chunk=queries_per_chunk,
                   epochs=epochs, golden=not allow_synthetic_gate)
    click.echo(report_mod.summary(rep))
    if rep.report_files:
        click.echo(f"report: {rep.report_files.get('md')}")


# ----------------------------------------------------------------------------- serve / check
@cli.command()
@click.option("--alias", default=None, help="Alias to tune [VECTUNE_ALIAS].")
@click.option("--schedule", default=None, help="Cron expression [VECTUNE_SCHEDULE, default '0 3 * * *'].")
@click.option("--tz", "schedule_tz", default=None, help="Time zone of the schedule [VECTUNE_SCHEDULE_TZ, default UTC].")
@click.option("--run-at-start/--no-run-at-start", default=None, help="Also run once at start [VECTUNE_RUN_AT_START].")
@click.option("--exit-on-error/--no-exit-on-error", default=False, show_default=True,
              help="Stop serving when a cycle fails (default: log it and wait for the next slot).")
@cycle_options
@connection_options
@handle_errors
def serve(alias, schedule, schedule_tz, run_at_start, exit_on_error, **kw):
    """Run the cycle on a cron schedule (for containers: no crond needed)."""
    from vectune import cycle
    from vectune import report as report_mod
    from vectune.schedule import CronError, Cron
    from vectune.schedule import serve as do_serve

    s = _settings({**kw, "schedule": schedule, "schedule_tz": schedule_tz, "run_at_start": run_at_start})
    alias = _require_alias(alias, s)
    try:
        cron = Cron.parse(s.schedule)
    except CronError as e:
        raise click.UsageError(f"bad schedule {s.schedule!r}: {e}") from None
    stop = {"code": 0}

    def job() -> int:
        try:
            rep = cycle.run(s, alias)
            click.echo(report_mod.summary(rep))
            return 0
        except VectuneError as e:
            click.echo(f"error: {_redact(str(e))}", err=True)
            if exit_on_error:
                stop["code"] = e.exit_code
                raise SystemExit(e.exit_code) from None
            return e.exit_code

    sys.exit(do_serve(job, cron, s.run_at_start, tz=s.schedule_tz) or stop["code"])


@cli.command()
@click.option("--alias", default=None, help="Also check that this alias resolves [VECTUNE_ALIAS].")
@connection_options
def check(alias, **kw):
    """Health check: settings valid, Qdrant reachable, alias resolves, model store writable, teacher reachable."""
    try:
        s = _settings(kw)
    except Exception as e:  # noqa: BLE001 - invalid settings
        click.echo(f"settings: INVALID ({_redact(str(e)).splitlines()[0]})", err=True)
        sys.exit(2)
    from vectune.health import run_checks

    results = run_checks(s, alias or s.alias)
    code = 0
    for name, (ok, detail, fail_code) in results.items():
        click.echo(f"{name}: {'ok' if ok else 'FAIL'} {detail}".rstrip())
        if not ok and not code:
            code = fail_code
    sys.exit(code)


from vectune.cli_feedback import feedback, pairs  # noqa: E402 - the groups use the shared options above

cli.add_command(feedback)
cli.add_command(pairs)


def main() -> None:
    import signal

    def _term(signum, frame):  # SIGTERM (k8s deadline, docker stop): unwind so finally-blocks release locks
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, _term)
    cli(prog_name="vectune")


if __name__ == "__main__":
    main()
