"""A small in-process cron scheduler for ``vectune serve``.

A long-running container (``docker compose up``) has no crond, so ``serve`` runs the reindexing
cycle on a standard 5-field cron schedule itself (``minute hour day-of-month month day-of-week``).
Parsing and the calendar come from `cronsim <https://pypi.org/project/cronsim/>`_: ``*``, lists,
ranges, steps (``*/15``, ``5/20``), month and weekday names, weekday 7 = Sunday, the Vixie rule
(both day fields restricted: a day matches if *either* does), and cronsim's ``L``, ``LW`` and ``#``. The
macros ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``) and
``@hourly`` are accepted; ``@reboot`` is not (use run-at-start).

Times are UTC unless a zone is given. cronsim walks wall-clock time; this module maps it onto the
zone: a time skipped by the spring-forward gap fires at the same offset after the gap (02:30
becomes 03:30), and a wall-clock time that occurs twice in the autumn fires once, at its first
occurrence.

The job never overlaps itself: it runs in the serving thread, and slots that pass while it runs
are skipped (and logged). A job that raises is logged and the loop keeps serving. SIGTERM or
SIGINT stop the loop: while idle it returns at once; while the job runs, the job is interrupted
with :class:`Terminated` (a ``SystemExit``) so its ``finally`` blocks release locks first.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from vectune.errors import Terminated

logger = logging.getLogger(__name__)

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
          "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


class CronError(ValueError):
    """A cron expression that cannot be parsed or can never fire."""


@dataclass(frozen=True)
class Cron:
    """A parsed 5-field cron expression: ``expr`` as given, ``fields`` after macro expansion."""

    expr: str
    fields: str

    @classmethod
    def parse(cls, expr: str) -> Cron:
        """Parse ``"0 3 * * *"``, ``"*/15 9-17 * * mon-fri"``, ``"@daily"``...; CronError if bad or never firing."""
        text = expr.strip() if isinstance(expr, str) else ""
        if text.lower() == "@reboot":
            raise CronError("@reboot is not a schedule: use run-at-start instead")
        if text.startswith("@") and text.lower() not in MACROS:
            raise CronError(f"unknown macro {text!r}; known: {', '.join(sorted(MACROS))}")
        fields = MACROS.get(text.lower(), text)
        if len(fields.split()) != 5:
            raise CronError(f"{expr!r} has {len(fields.split())} fields; expected 5 "
                            "(minute hour day-of-month month day-of-week)")
        try:
            CronSim(fields, datetime(2000, 1, 1))
        except CronSimError as exc:
            raise CronError(f"{expr!r}: {exc}") from None
        return cls(text, fields)

    def matches(self, dt: datetime) -> bool:
        """Whether the minute of ``dt`` (its own wall-clock fields) is a slot."""
        wall = dt.replace(tzinfo=None, second=0, microsecond=0)
        return next(CronSim(self.fields, wall - timedelta(seconds=1))) == wall

    def next_after(self, after: datetime, tz: tzinfo | str | None = None) -> datetime:
        """The first slot strictly after ``after`` (naive = wall time in ``tz``), aware in ``tz`` (default UTC)."""
        zone = resolve_tz(tz)
        ref = after.replace(tzinfo=zone) if after.tzinfo is None else after.astimezone(zone)
        ref_utc = ref.astimezone(UTC)
        wall = ref.replace(tzinfo=None, second=0, microsecond=0, fold=0)
        # In the repeated autumn hour a wall time comes twice: start before its first occurrence.
        for cand in CronSim(self.fields, wall - timedelta(hours=3) if ref.fold else wall):
            for fold in (0, 1):
                aware = cand.replace(tzinfo=zone, fold=fold)
                if aware.astimezone(UTC) > ref_utc:  # normalised: a time in the spring gap becomes real
                    return aware.astimezone(UTC).astimezone(zone)
        raise CronError(f"{self.expr!r} does not fire within 50 years")

    def __str__(self) -> str:
        return self.expr


def resolve_tz(tz: tzinfo | str | None) -> tzinfo:
    """A tzinfo for a zone name (IANA), a tzinfo or None (None and "UTC" are UTC); CronError if unknown."""
    if tz is None or (isinstance(tz, str) and tz.strip().upper() in ("", "UTC", "Z", "ETC/UTC")):
        return UTC
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {tz!r}") from exc


def next_fire(expr: str, after: datetime | None = None, tz: tzinfo | str | None = None) -> datetime:
    """Next time ``expr`` fires strictly after ``after`` (default now; naive = wall time in ``tz``), aware in ``tz``."""
    zone = resolve_tz(tz)
    return Cron.parse(expr).next_after(after or datetime.now(zone), zone)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def serve(job: Callable[[], int | None], cron: str | Cron, run_at_start: bool = False,
          stop_event: threading.Event | None = None, *, tz: tzinfo | str | None = None,
          now: Callable[[], datetime] = _utcnow, max_runs: int | None = None, poll_s: float = 30.0,
          handle_signals: bool = True) -> int:
    """Run ``job`` on a cron schedule until stopped.

    The loop sleeps until the next slot, runs the job in this thread (so runs never overlap), logs
    its exit code, and computes the next slot from the time the job finished (slots that passed
    meanwhile are skipped and logged). A job that raises (or calls ``sys.exit``) is logged and the
    loop keeps serving.

    Args:
        job: the work; returns an exit code (0 = fine) or None.
        cron: a cron expression or a parsed :class:`Cron`.
        run_at_start: also run once immediately, before the first slot.
        stop_event: set it to stop the loop; one is created if None.
        tz: zone of the expression (default UTC).
        now: clock returning an aware datetime (injectable for tests).
        max_runs: stop after this many runs (None = forever).
        poll_s: longest single sleep, so wall-clock jumps are noticed.
        handle_signals: install SIGTERM/SIGINT handlers (only in the main thread).

    Returns:
        0 after a clean stop, or 128+signal if a signal interrupted a running job.
    """
    schedule = cron if isinstance(cron, Cron) else Cron.parse(cron)
    zone = resolve_tz(tz)
    stop = stop_event if stop_event is not None else threading.Event()
    running = threading.Event()
    runs, rc = 0, 0

    def _on_signal(signum: int, _frame: object) -> None:
        first = not stop.is_set()
        stop.set()
        if running.is_set() and first:
            logger.warning("received %s during a run: interrupting it", signal.Signals(signum).name)
            raise Terminated(signum)
        logger.info("received %s: stopping", signal.Signals(signum).name)

    previous: dict[int, object] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _run_once(slot: datetime | None) -> None:
        nonlocal runs
        runs += 1
        started = time.monotonic()
        logger.info("scheduled run starting", extra={"slot": slot.isoformat() if slot else "start", "run": runs})
        running.set()
        try:
            try:
                code = job() or 0
            except SystemExit as exc:  # a job that calls sys.exit() must not end the server
                if isinstance(exc, Terminated):
                    raise
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:
            logger.exception("scheduled run failed with an exception; will run again at the next slot")
        else:
            logger.log(logging.WARNING if code else logging.INFO, "scheduled run finished with exit code %s", code,
                       extra={"exit_code": code, "duration_s": round(time.monotonic() - started, 3)})
        finally:
            running.clear()

    try:
        logger.info("serving schedule %r (%s)", schedule.expr, getattr(zone, "key", None) or str(zone))
        if run_at_start and not stop.is_set():
            _run_once(None)
        while not stop.is_set() and (max_runs is None or runs < max_runs):
            slot = schedule.next_after(now(), zone)
            logger.info("next run at %s", slot.isoformat(), extra={"next_run": slot.isoformat()})
            while not stop.is_set() and (remaining := (slot - now()).total_seconds()) > 0:
                stop.wait(min(remaining, poll_s))
            if stop.is_set():
                break
            _run_once(slot)
            missed, probe, after = 0, schedule.next_after(slot, zone), now()
            while probe <= after and missed < 10_000:
                missed, probe = missed + 1, schedule.next_after(probe, zone)
            if missed:
                logger.warning("the run outlasted %d later slot(s); they were skipped", missed)
    except Terminated as exc:
        rc = int(exc.code) if isinstance(exc.code, int) else 143
        logger.warning("run interrupted by %s; exiting", signal.Signals(exc.signum).name)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
    logger.info("scheduler stopped after %d run(s)", runs)
    return rc
