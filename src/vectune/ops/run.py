"""``vectune run``: one cycle on an alias, held, recovered and recorded.

First the alias's models and state files are checked (:mod:`vectune.ops.integrity`). The alias is
held (:func:`vectune.ops.session.hold`: lease, heartbeat, recovery of a crashed run), an in-flight
marker follows the stages so a killed run is reported by the next one, the cycle runs
(:func:`vectune.pipeline.cycle.cycle`), and whatever happens the run leaves its records: the report
(JSON, Markdown), the metrics, and the history event. A run that moved the alias applies retention
under the same lease (:func:`vectune.ops.retention.after_run`).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from vectune.config.settings import Settings
from vectune.errors import LockHeld, Terminated, VectuneError
from vectune.observe import metrics
from vectune.observe import report as report_mod
from vectune.observe.history import History
from vectune.observe.report import RunReport
from vectune.ops import integrity, retention
from vectune.ops.interrupt import signal_name
from vectune.ops.session import hold
from vectune.ops.watch import watch
from vectune.pipeline.cycle import Timings, cycle
from vectune.promote.checkpoint import InFlight
from vectune.qdrant.lease import LockLost
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)


def run(settings: Settings, alias: str, dry_run: bool = False) -> RunReport:
    """Run one cycle on ``alias``.

    Args:
        settings: all settings.
        alias: the alias apps query.
        dry_run: stop after evaluation; never touch the alias (no lease, no recovery).

    Returns:
        The run report (also written to the work directory).
    """
    started = datetime.now(UTC)
    timings = Timings()
    rep = RunReport(run_id=started.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6], alias=alias,
                    started_at=started.isoformat(timespec="seconds"), dry_run=dry_run, timings=timings,
                    settings=settings.decisive())
    try:
        with Store.open(settings) as store:
            rep.models_verified = integrity.preflight(store, settings, alias)  # before anything else
            if dry_run:
                with timings.stage("watch"):
                    rep.watch = watch(store, settings, alias, run_id=rep.run_id, act=False).to_dict()
                cycle(store, settings, alias, rep, timings)
            else:
                _held_cycle(store, settings, alias, rep, timings)
    except LockHeld as e:
        rep.end("locked", str(e))
        _finish(settings, rep, started)
        raise
    except Terminated as e:  # SIGTERM: say so in the report and metrics, then exit 143
        rep.end("interrupted", f"stopped by {signal_name(e)} during stage '{timings.current or 'start'}'; the "
                               f"lock was released and the next run resumes or starts clean")
        _finish(settings, rep, started)
        raise
    except Exception as e:  # a handled failure or a bug: leave a report and metrics behind, then surface it
        bug = not isinstance(e, VectuneError)
        rep.end("failed", f"unexpected {type(e).__name__}: {e}" if bug else str(e))
        rep.error_type = type(e).__name__
        _finish(settings, rep, started)
        raise
    _finish(settings, rep, started)
    return rep


def _held_cycle(store: Store, settings: Settings, alias: str, rep: RunReport, timings: Timings) -> None:
    """Hold the alias, finish what a crashed run left, then run the cycle with an in-flight marker."""
    live = store.resolve_alias(alias)  # a clear error for a missing alias before anything else
    inflight = InFlight(settings.run_dir(alias))
    with hold(store, settings, alias, rep.run_id, expect_live=live) as session:
        lock, rec = session.lock, session.recovery
        try:
            rep.recovered = rec.found or None
            if rec.done:
                rep.new_collection, rep.live_collection = rec.new_collection, rec.live_collection
                rep.candidate_model = rec.candidate_model or rep.candidate_model
                if rec.reindex is not None:
                    rep.counts["reindex"] = rec.reindex
                rep.end("promoted", rec.reason)
                inflight.clear()
                rep.retention = retention.after_run(store, settings, alias, lock, moved=True)
                return
            inflight.set(rep.run_id, "read")

            def on_stage(name: str) -> None:
                lock.renew()
                inflight.set(rep.run_id, name)

            timings.on_stage = on_stage
            with timings.stage("watch"):  # first judge the live model on the feedback that came after it
                judged = watch(store, settings, alias, run_id=rep.run_id, lock=lock)
            rep.watch = judged.to_dict()
            if judged.rolled_back:
                rep.live_collection, rep.live_model = judged.live, judged.live_model
                rep.new_collection, rep.candidate_model = judged.target, judged.target_model
                rep.end("rolled-back", judged.reason)
                inflight.clear()
                return
            cycle(store, settings, alias, rep, timings, lock)
            inflight.clear()
            moved = rep.status == "promoted" or bool(rec.found.get("finished_rollback"))
            rep.retention = retention.after_run(store, settings, alias, lock, moved=moved)
        except LockLost:
            raise  # another operator holds the alias now: touch nothing, leave the marker
        except Terminated as e:  # SIGTERM: stop here; the marker (and any checkpoint) lets the next run recover
            inflight.interrupted(signal_name(e) or "a signal")
            raise
        except VectuneError:
            inflight.clear()  # a handled failure leaves a report, not a crash marker
            raise
        finally:
            timings.on_stage = None


def _finish(settings: Settings, rep: RunReport, started: datetime) -> None:
    """Append the history event, write the report (JSON, Markdown, its page and the history page), export metrics."""
    rep.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    rep.duration_s = round((datetime.now(UTC) - started).total_seconds(), 1)
    history = History(settings.work_dir, rep.alias)
    if rep.status in ("promoted", "kept", "failed"):
        history.append({
            "event": {"promoted": "promotion", "kept": "rejection", "failed": "failure"}[rep.status],
            "run_id": rep.run_id, "live_collection": rep.live_collection, "new_collection": rep.new_collection,
            "live_model": rep.live_model, "candidate_model": rep.candidate_model, "reason": rep.reason,
            "gate": rep.gate})
    try:
        paths = report_mod.write(rep, settings.work_dir / "reports" / rep.alias, history.read(strict=False))
        rep.report_files = {k: str(v) for k, v in paths.items()}
    except OSError as e:
        logger.warning("could not write the run report: %s", e)
    observe = settings.observe
    if observe.metrics_dir or observe.pushgateway_url:
        metrics.export(rep, textfile_dir=observe.metrics_dir, pushgateway_url=observe.pushgateway_url)


__all__ = ["run"]
