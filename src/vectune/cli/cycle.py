"""``vectune run``, ``serve`` and ``demo``: the cycle, once (cron), on a schedule, or on a shipped corpus."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vectune.cli.common import alias_from, connection_options, emit, handle_errors, redact, settings_from
from vectune.demo.run import run_demo, run_scifact_demo
from vectune.errors import EXIT_WATCH_ROLLBACK, VectuneError
from vectune.observe import report as report_mod
from vectune.ops.schedule import Cron, CronError
from vectune.ops.schedule import serve as serve_loop


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
        click.option("--crossfit/--no-crossfit", default=None,
                     help="Without --eval-set, decide on cross-fitted evidence over every label; off: hold out the "
                          "newest feedback [VECTUNE_CROSSFIT, default on]."),
        click.option("--crossfit-folds", type=int, default=None, help="[VECTUNE_CROSSFIT_FOLDS, default 5]"),
        click.option("--crossfit-budget-s", type=float, default=None,
                     help="Seconds for all of a cross-fit's trainings [VECTUNE_CROSSFIT_BUDGET_S, default 900]."),
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
        click.option("--max-train-pairs", type=int, default=None,
                     help="Training budget [VECTUNE_MAX_TRAIN_PAIRS, default 1500]."),
        click.option("--watch/--no-watch", "watch", default=None,
                     help="First judge the live model on the feedback that came after its promotion; roll it back "
                          "when significantly worse [VECTUNE_WATCH, default on]."),
        click.option("--keep-candidate", is_flag=True, default=None,
                     help="Save a rejected candidate in the model store too [VECTUNE_KEEP_CANDIDATE]."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.command()
@click.option("--alias", default=None, help="Alias to tune [VECTUNE_ALIAS].")
@click.option("--dry-run", is_flag=True, help="Stop after evaluation; never touch the alias.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@cycle_options
@connection_options
@handle_errors
def run(alias, dry_run, as_json, **kw):
    """One full cycle, then exit (for cron): read, mine, fine-tune, evaluate, promote if better."""
    rep = alias_from(alias, kw).run(dry_run=dry_run)
    files = rep.report_files or {}
    emit(rep.to_dict(), as_json, report_mod.summary(rep) + (f"\nreport: {files.get('md')}" if files else "")
         + (f"\npage: {files['html']}" if files.get("html") else ""))
    if rep.status == "rolled-back":  # the watch rolled the live model back: done, but a person should look
        sys.exit(EXIT_WATCH_ROLLBACK)


@click.command()
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
    target = alias_from(alias, {**kw, "schedule": schedule, "schedule_tz": schedule_tz, "run_at_start": run_at_start})
    cfg = target.settings.serve
    try:
        cron = Cron.parse(cfg.schedule)
    except CronError as e:
        raise click.UsageError(f"bad schedule {cfg.schedule!r}: {e}") from None
    stop = {"code": 0}

    def job() -> int:
        try:
            rep = target.run()
            click.echo(report_mod.summary(rep))
            return EXIT_WATCH_ROLLBACK if rep.status == "rolled-back" else 0
        except VectuneError as e:
            click.echo(f"error: {redact(str(e))}", err=True)
            if exit_on_error:
                stop["code"] = e.exit_code
                raise SystemExit(e.exit_code) from None
            return e.exit_code

    sys.exit(serve_loop(job, cron, cfg.run_at_start, tz=cfg.tz) or stop["code"])


@click.command()
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
    s = settings_from(kw)
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
