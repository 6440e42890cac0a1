"""A small in-process cron scheduler for ``vectune serve``.

A long-running container (``docker compose up``) has no crond, so ``serve`` runs
the reindexing cycle on a standard 5-field cron schedule itself::

    minute hour day-of-month month day-of-week

Each field takes ``*``, numbers, lists (``1,15``), ranges (``1-5``) and steps
(``*/15``, ``0-30/10``, ``5/20``); months and weekdays also take names
(``jan``..``dec``, ``sun``..``sat``); weekday 0 and 7 are both Sunday. The macros
``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily``
(``@midnight``) and ``@hourly`` are accepted. As in Vixie cron, when both
day-of-month and day-of-week are restricted (neither starts with ``*``) a day
matches if *either* matches.

Times are computed in UTC unless a time zone is given. In a zone with daylight
saving, a wall-clock time skipped by the spring-forward gap fires at the same
offset after the gap (02:30 becomes 03:30), and a wall-clock time that occurs
twice in the autumn fires once, at its first occurrence.

The job never overlaps itself: it runs in the serving thread, and slots that
pass while it runs are skipped (and logged). A job that raises is logged and the
loop keeps serving. SIGTERM or SIGINT stop the loop: while idle it returns at
once; while the job runs, the job is interrupted with :class:`Terminated` (a
``SystemExit``) so its ``finally`` blocks release locks before the container
stops.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vectune.errors import Terminated

logger = logging.getLogger(__name__)

MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, low, high, names -> number)
_FIELDS: list[tuple[str, int, int, dict[str, int]]] = [
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, {n: i + 1 for i, n in enumerate(_MONTHS)}),
    ("day-of-week", 0, 7, {n: i for i, n in enumerate(_DAYS)}),
]
# The longest each month can be (February in a leap year).
_MAX_MONTH_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
_SEARCH_YEARS = 30


class CronError(ValueError):
    """A cron expression that cannot be parsed or can never fire."""


def _parse_value(token: str, name: str, lo: int, hi: int, names: dict[str, int]) -> int:
    tok = token.strip().lower()
    if tok in names:
        return names[tok]
    if not re.fullmatch(r"\d+", tok):
        raise CronError(f"{name}: {token!r} is not a number" + (" or a name" if names else ""))
    value = int(tok)
    if not lo <= value <= hi:
        raise CronError(f"{name}: {value} is outside {lo}-{hi}")
    return value


def _parse_field(text: str, name: str, lo: int, hi: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{name}: empty list item in {text!r}")
        rng, _, step_s = part.partition("/")
        step = 1
        if _:
            if not re.fullmatch(r"\d+", step_s) or int(step_s) == 0:
                raise CronError(f"{name}: bad step {step_s!r} in {part!r}")
            step = int(step_s)
        if rng == "*":
            start, end = lo, hi
        elif "-" in rng:
            a, _, b = rng.partition("-")
            start = _parse_value(a, name, lo, hi, names)
            end = _parse_value(b, name, lo, hi, names)
            if start > end:
                raise CronError(f"{name}: range {rng!r} runs backwards")
        else:
            start = _parse_value(rng, name, lo, hi, names)
            # "5/20" means "from 5 to the end, every 20"; a bare "5" is just 5.
            end = hi if _ else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed 5-field cron expression.

    Attributes:
        expr: the expression as given.
        minutes, hours, days, months, weekdays: the allowed values of each field
            (weekdays 0-6, Sunday = 0).
        dom_restricted, dow_restricted: whether day-of-month / day-of-week were
            restricted (did not start with ``*``), for the Vixie OR rule.
    """

    expr: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_restricted: bool
    dow_restricted: bool

    @classmethod
    def parse(cls, expr: str) -> Cron:
        """Parse a cron expression or macro.

        Args:
            expr: e.g. ``"0 3 * * *"``, ``"*/15 9-17 * * mon-fri"`` or ``"@daily"``.

        Returns:
            The parsed expression.

        Raises:
            CronError: if the expression is malformed or can never fire.
        """
        if not isinstance(expr, str) or not expr.strip():
            raise CronError("empty cron expression")
        text = expr.strip()
        if text.startswith("@"):
            if text.lower() == "@reboot":
                raise CronError("@reboot is not a schedule: use run-at-start instead")
            if text.lower() not in MACROS:
                raise CronError(f"unknown macro {text!r}; known: {', '.join(sorted(MACROS))}")
            text = MACROS[text.lower()]
        parts = text.split()
        if len(parts) != 5:
            raise CronError(
                f"{expr!r} has {len(parts)} fields; expected 5 (minute hour day-of-month month day-of-week)"
            )
        sets = [_parse_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])
        cron = cls(
            expr=expr.strip(),
            minutes=sets[0],
            hours=sets[1],
            days=sets[2],
            months=sets[3],
            weekdays=weekdays,
            dom_restricted=not parts[2].startswith("*"),
            dow_restricted=not parts[4].startswith("*"),
        )
        if cron.dom_restricted and not cron.dow_restricted:
            if not any(min(cron.days) <= _MAX_MONTH_DAYS[m - 1] for m in cron.months):
                raise CronError(f"{expr!r} can never fire: no chosen month has day {min(cron.days)}")
        return cron

    def _day_matches(self, d: datetime) -> bool:
        dom = d.day in self.days
        dow = (d.weekday() + 1) % 7 in self.weekdays
        if self.dom_restricted and self.dow_restricted:
            return dom or dow
        if self.dom_restricted:
            return dom
        if self.dow_restricted:
            return dow
        return True

    def matches(self, dt: datetime) -> bool:
        """Whether the minute of ``dt`` (wall clock, as given) is a slot.

        Args:
            dt: a datetime; its own wall-clock fields are checked.

        Returns:
            True if the expression fires at that minute.
        """
        return (
            dt.minute in self.minutes
            and dt.hour in self.hours
            and dt.month in self.months
            and self._day_matches(dt)
        )

    def _next_naive(self, t: datetime) -> datetime:
        """First matching wall-clock minute at or after naive ``t`` (minute-aligned)."""
        limit = t.year + _SEARCH_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            later = [m for m in self.minutes if m >= t.minute]
            if not later:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            return t.replace(minute=min(later))
        raise CronError(f"{self.expr!r} does not fire within {_SEARCH_YEARS} years")

    def next_after(self, after: datetime, tz: tzinfo | str | None = None) -> datetime:
        """The first slot strictly after ``after``.

        Args:
            after: the reference instant; a naive datetime is read as wall-clock
                time in ``tz``.
            tz: the zone the expression is written in: a tzinfo, an IANA name
                (``"Europe/Berlin"``) or None for UTC.

        Returns:
            An aware datetime in ``tz``.
        """
        zone = resolve_tz(tz)
        ref = after.replace(tzinfo=zone) if after.tzinfo is None else after.astimezone(zone)
        ref_utc = ref.astimezone(UTC)
        naive = ref.replace(tzinfo=None, second=0, microsecond=0, fold=0) + timedelta(minutes=1)
        if ref.fold:
            # In the repeated hour the same wall time comes twice; start from its
            # first occurrence so nothing in between is skipped.
            naive = ref.replace(tzinfo=None, second=0, microsecond=0, fold=0) - timedelta(hours=3)
        while True:
            cand = self._next_naive(naive)
            for fold in (0, 1):
                aware = cand.replace(tzinfo=zone, fold=fold)
                if aware.astimezone(UTC) > ref_utc:
                    # Normalise (a time in a spring-forward gap becomes the real instant).
                    return aware.astimezone(UTC).astimezone(zone)
            naive = cand + timedelta(minutes=1)

    def __str__(self) -> str:
        return self.expr


def resolve_tz(tz: tzinfo | str | None) -> tzinfo:
    """Turn a zone name, tzinfo or None into a tzinfo (None and "UTC" are UTC).

    Args:
        tz: a tzinfo, an IANA zone name, or None.

    Returns:
        The tzinfo.

    Raises:
        CronError: if the name is not a known zone.
    """
    if tz is None or (isinstance(tz, str) and tz.strip().upper() in ("", "UTC", "Z", "ETC/UTC")):
        return UTC
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {tz!r}") from exc


def next_fire(expr: str, after: datetime | None = None, tz: tzinfo | str | None = None) -> datetime:
    """Next time a cron expression fires.

    Args:
        expr: a 5-field cron expression or macro.
        after: reference instant (default: now); naive means wall time in ``tz``.
        tz: zone of the expression (default UTC).

    Returns:
        An aware datetime in ``tz``, strictly after ``after``.
    """
    zone = resolve_tz(tz)
    return Cron.parse(expr).next_after(after or datetime.now(zone), zone)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def serve(
    job: Callable[[], int | None],
    cron: str | Cron,
    run_at_start: bool = False,
    stop_event: threading.Event | None = None,
    *,
    tz: tzinfo | str | None = None,
    now: Callable[[], datetime] = _utcnow,
    max_runs: int | None = None,
    poll_s: float = 30.0,
    handle_signals: bool = True,
) -> int:
    """Run ``job`` on a cron schedule until stopped.

    The loop sleeps until the next slot, runs the job in this thread (so runs never
    overlap), logs its exit code, and computes the next slot from the time the
    job finished (slots that passed meanwhile are skipped and logged). A job that
    raises is logged with its traceback and the loop keeps serving.

    Args:
        job: the work; returns an exit code (0 = fine) or None.
        cron: a cron expression or a parsed :class:`Cron`.
        run_at_start: also run once immediately, before the first slot.
        stop_event: set it to stop the loop; one is created if None.
        tz: zone of the expression (default UTC).
        now: clock returning an aware datetime (injectable for tests).
        max_runs: stop after this many runs (None = forever).
        poll_s: longest single sleep, so wall-clock jumps are noticed.
        handle_signals: install SIGTERM/SIGINT handlers (only possible, and only
            done, in the main thread).

    Returns:
        0 after a clean stop, or 128+signal if a signal interrupted a running job.
    """
    schedule = cron if isinstance(cron, Cron) else Cron.parse(cron)
    zone = resolve_tz(tz)
    stop = stop_event if stop_event is not None else threading.Event()
    state = {"running": False, "signum": 0}

    def _on_signal(signum: int, _frame: object) -> None:
        first = not stop.is_set()
        stop.set()
        state["signum"] = signum
        name = signal.Signals(signum).name
        if state["running"] and first:
            logger.warning("received %s during a run: interrupting it", name)
            raise Terminated(signum)
        logger.info("received %s: stopping", name)

    previous: dict[int, object] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _on_signal)

    runs = 0
    rc = 0

    def _run_once(slot: datetime | None) -> None:
        nonlocal runs
        runs += 1
        started = time.monotonic()
        logger.info(
            "scheduled run starting",
            extra={"slot": slot.isoformat() if slot else "start", "run": runs},
        )
        state["running"] = True
        try:
            try:
                code = job()
            except Terminated:
                raise
            except SystemExit as exc:  # a job that calls sys.exit() must not end the server
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:
            logger.exception("scheduled run failed with an exception; will run again at the next slot")
        else:
            level = logging.INFO if not code else logging.WARNING
            logger.log(
                level,
                "scheduled run finished with exit code %s",
                0 if code is None else code,
                extra={"exit_code": 0 if code is None else code, "duration_s": round(time.monotonic() - started, 3)},
            )
        finally:
            state["running"] = False

    try:
        logger.info("serving schedule %r (%s)", schedule.expr, getattr(zone, "key", None) or str(zone))
        if run_at_start and not stop.is_set():
            _run_once(None)
        while not stop.is_set() and (max_runs is None or runs < max_runs):
            current = now()
            slot = schedule.next_after(current, zone)
            logger.info("next run at %s", slot.isoformat(), extra={"next_run": slot.isoformat()})
            while not stop.is_set():
                remaining = (slot - now()).total_seconds()
                if remaining <= 0:
                    break
                stop.wait(min(remaining, poll_s))
            if stop.is_set():
                break
            _run_once(slot)
            after = now()
            missed = 0
            probe = schedule.next_after(slot, zone)
            while probe <= after and missed < 10_000:
                missed += 1
                probe = schedule.next_after(probe, zone)
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
