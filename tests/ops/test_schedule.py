"""Tests for the cron parser and the in-process scheduler."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from vectune.ops.schedule import Cron, CronError, next_fire, serve

UTC = UTC


def u(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        # the default schedule
        ("0 3 * * *", u(2025, 1, 1, 0, 0), u(2025, 1, 1, 3, 0)),
        ("0 3 * * *", u(2025, 1, 1, 3, 0), u(2025, 1, 2, 3, 0)),  # strictly after
        ("0 3 * * *", u(2025, 1, 1, 3, 0, 30), u(2025, 1, 2, 3, 0)),  # seconds into the slot
        ("0 3 * * *", u(2025, 12, 31, 4, 0), u(2026, 1, 1, 3, 0)),  # year rollover
        ("* * * * *", u(2025, 1, 1, 0, 0, 59), u(2025, 1, 1, 0, 1)),
        ("*/15 * * * *", u(2025, 1, 1, 0, 16), u(2025, 1, 1, 0, 30)),
        ("*/15 * * * *", u(2025, 1, 1, 23, 50), u(2025, 1, 2, 0, 0)),
        ("5/20 * * * *", u(2025, 1, 1, 0, 6), u(2025, 1, 1, 0, 25)),
        ("0-30/10 9 * * *", u(2025, 1, 1, 9, 31), u(2025, 1, 2, 9, 0)),
        ("15,45 8-9 * * *", u(2025, 1, 1, 9, 15), u(2025, 1, 1, 9, 45)),
        ("15,45 8-9 * * *", u(2025, 1, 1, 9, 45), u(2025, 1, 2, 8, 15)),
        # months and month lengths
        ("0 0 31 * *", u(2025, 4, 1, 0, 0), u(2025, 5, 31, 0, 0)),  # April has no 31st
        ("0 0 30 * *", u(2025, 1, 31, 0, 0), u(2025, 3, 30, 0, 0)),  # February has no 30th
        ("0 0 29 2 *", u(2025, 1, 1, 0, 0), u(2028, 2, 29, 0, 0)),  # next leap day
        ("0 0 29 2 *", u(2100, 1, 1, 0, 0), u(2104, 2, 29, 0, 0)),  # 2100 is not a leap year
        ("0 12 1 jan,jul *", u(2025, 1, 2, 0, 0), u(2025, 7, 1, 12, 0)),
        ("0 0 1 */3 *", u(2025, 2, 1, 0, 0), u(2025, 4, 1, 0, 0)),
        ("0 0 * dec *", u(2025, 12, 31, 0, 0), u(2026, 12, 1, 0, 0)),
        # days of the week (2025-01-01 is a Wednesday)
        ("0 9 * * 1", u(2025, 1, 1, 0, 0), u(2025, 1, 6, 9, 0)),
        ("0 9 * * mon-fri", u(2025, 1, 3, 9, 0), u(2025, 1, 6, 9, 0)),  # Friday -> Monday
        ("0 0 * * 0", u(2025, 1, 1, 0, 0), u(2025, 1, 5, 0, 0)),  # Sunday as 0
        ("0 0 * * 7", u(2025, 1, 1, 0, 0), u(2025, 1, 5, 0, 0)),  # Sunday as 7
        ("0 0 * * 5-7", u(2025, 1, 1, 0, 0), u(2025, 1, 3, 0, 0)),
        ("0 0 * * SAT,sun", u(2025, 1, 1, 0, 0), u(2025, 1, 4, 0, 0)),
        # both day fields restricted: either matches (Vixie)
        ("0 0 13 * 5", u(2025, 1, 1, 0, 0), u(2025, 1, 3, 0, 0)),  # a Friday comes before the 13th
        ("0 0 13 * 5", u(2025, 1, 10, 0, 0), u(2025, 1, 13, 0, 0)),  # the 13th (a Monday)
        # a starred day-of-month with a step still counts as "*": day-of-week alone decides
        ("0 0 */1 * 1", u(2025, 1, 1, 0, 0), u(2025, 1, 6, 0, 0)),
        # macros
        ("@hourly", u(2025, 1, 1, 0, 30), u(2025, 1, 1, 1, 0)),
        ("@daily", u(2025, 1, 1, 0, 30), u(2025, 1, 2, 0, 0)),
        ("@midnight", u(2025, 1, 1, 0, 30), u(2025, 1, 2, 0, 0)),
        ("@weekly", u(2025, 1, 1, 0, 0), u(2025, 1, 5, 0, 0)),
        ("@monthly", u(2025, 1, 15, 0, 0), u(2025, 2, 1, 0, 0)),
        ("@yearly", u(2025, 1, 15, 0, 0), u(2026, 1, 1, 0, 0)),
        ("@annually", u(2025, 1, 15, 0, 0), u(2026, 1, 1, 0, 0)),
    ],
)
def test_next_fire_utc(expr: str, after: datetime, expected: datetime) -> None:
    got = next_fire(expr, after)
    assert got == expected
    assert got.tzinfo is not None
    assert Cron.parse(expr).matches(got)



@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("0 3 L * *", u(2025, 2, 10, 0, 0), u(2025, 2, 28, 3, 0)),  # last day of the month
        ("0 3 L * *", u(2024, 2, 10, 0, 0), u(2024, 2, 29, 3, 0)),
        ("0 0 LW * *", u(2025, 5, 1, 0, 0), u(2025, 5, 30, 0, 0)),  # last weekday: May 31 2025 is a Saturday
        ("0 9 * * mon#1", u(2025, 1, 1, 0, 0), u(2025, 1, 6, 9, 0)),  # first Monday
        ("0 9 * * 5L", u(2025, 1, 1, 0, 0), u(2025, 1, 31, 9, 0)),  # last Friday
    ],
)
def test_cronsim_extensions(expr: str, after: datetime, expected: datetime) -> None:
    """cronsim's L, LW, # and nL work (the module docstring promises them)."""
    assert next_fire(expr, after) == expected
    assert Cron.parse(expr).matches(expected) and not Cron.parse(expr).matches(expected - timedelta(days=1))

def test_naive_reference_is_wall_time_in_tz() -> None:
    assert next_fire("0 3 * * *", datetime(2025, 1, 1, 1, 0)) == u(2025, 1, 1, 3, 0)
    got = next_fire("0 3 * * *", datetime(2025, 1, 1, 1, 0), "Europe/Berlin")
    assert got.utcoffset() == timedelta(hours=1)
    assert got.astimezone(UTC) == u(2025, 1, 1, 2, 0)


def test_aware_reference_in_other_zone() -> None:
    # 01:30 UTC is 02:30 in Berlin, so 03:00 Berlin (02:00 UTC) is next
    got = next_fire("0 3 * * *", u(2025, 1, 1, 1, 30), "Europe/Berlin")
    assert got.astimezone(UTC) == u(2025, 1, 1, 2, 0)


def test_dst_spring_forward_gap_fires_after_gap() -> None:
    # 2024-03-10 02:30 does not exist in New York; it fires at 03:30 EDT
    got = next_fire("30 2 * * *", datetime(2024, 3, 10, 0, 0), "America/New_York")
    assert got.astimezone(UTC) == u(2024, 3, 10, 7, 30)
    # and the next day at the normal 02:30 EDT
    nxt = next_fire("30 2 * * *", got, "America/New_York")
    assert nxt.astimezone(UTC) == u(2024, 3, 11, 6, 30)


def test_dst_fall_back_fires_once() -> None:
    tz = "America/New_York"
    first = next_fire("30 1 * * *", datetime(2024, 11, 3, 0, 0), tz)
    assert first.astimezone(UTC) == u(2024, 11, 3, 5, 30)  # 01:30 EDT
    second = next_fire("30 1 * * *", first, tz)
    assert second.astimezone(UTC) == u(2024, 11, 4, 6, 30)  # not 01:30 EST the same night
    # starting inside the repeated hour still moves forward
    inside = u(2024, 11, 3, 6, 10)  # 01:10 EST (second occurrence)
    assert next_fire("30 1 * * *", inside, tz).astimezone(UTC) == u(2024, 11, 3, 6, 30)
    assert next_fire("*/20 * * * *", inside, tz).astimezone(UTC) == u(2024, 11, 3, 6, 20)


def test_sequence_is_strictly_increasing() -> None:
    cron = Cron.parse("*/7 */5 * * *")
    t = u(2025, 2, 27, 0, 0)
    for _ in range(200):
        n = cron.next_after(t)
        assert n > t
        t = n


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "* * * *",
        "* * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
        "a * * * *",
        "1,,2 * * * *",
        "* * * foo *",
        "@reboot",
        "@often",
        "0 0 30 2 *",  # never fires
        "0 0 31 4,6,9,11 *",
    ],
)
def test_bad_expressions(expr: str) -> None:
    with pytest.raises(CronError):
        Cron.parse(expr)


def test_bad_timezone() -> None:
    with pytest.raises(CronError):
        next_fire("@daily", tz="Mars/Olympus_Mons")


def test_cron_error_is_value_error() -> None:
    assert issubclass(CronError, ValueError)


class FakeClock:
    """A clock whose time only moves when someone waits on the event."""

    def __init__(self, start: datetime) -> None:
        self.t = start
        self.waits: list[float] = []

    def now(self) -> datetime:
        return self.t


class FakeEvent(threading.Event):
    """An event whose wait() advances the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        if timeout:
            self.clock.waits.append(timeout)
            self.clock.t += timedelta(seconds=timeout)
        return self.is_set()


def test_serve_runs_on_each_slot_with_fake_clock() -> None:
    clock = FakeClock(u(2025, 1, 1, 2, 59, 30))
    stop = FakeEvent(clock)
    fired: list[datetime] = []

    def job() -> int:
        fired.append(clock.now())
        clock.t += timedelta(minutes=10)  # the run takes a while
        return 0

    rc = serve(job, "0 3 * * *", stop_event=stop, now=clock.now, max_runs=2, handle_signals=False)
    assert rc == 0
    assert fired == [u(2025, 1, 1, 3, 0), u(2025, 1, 2, 3, 0)]
    assert max(clock.waits) <= 30.0  # polls so clock jumps are noticed


def test_serve_run_at_start_and_stop_event() -> None:
    clock = FakeClock(u(2025, 1, 1, 12, 0))
    stop = FakeEvent(clock)
    calls: list[datetime] = []

    def job() -> int:
        calls.append(clock.now())
        if len(calls) == 2:
            stop.set()
        return 0

    rc = serve(job, "@hourly", run_at_start=True, stop_event=stop, now=clock.now, handle_signals=False)
    assert rc == 0
    assert calls == [u(2025, 1, 1, 12, 0), u(2025, 1, 1, 13, 0)]


def test_serve_survives_job_exception_and_sys_exit(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(u(2025, 1, 1, 0, 0, 30))
    stop = FakeEvent(clock)
    calls = {"n": 0}

    def job() -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        if calls["n"] == 2:
            raise SystemExit(3)
        return 0

    with caplog.at_level("INFO"):
        rc = serve(job, "* * * * *", stop_event=stop, now=clock.now, max_runs=3, handle_signals=False)
    assert rc == 0
    assert calls["n"] == 3
    failed = [r for r in caplog.records if r.exc_info]
    assert failed and "boom" in str(failed[0].exc_info[1])
    assert any(getattr(r, "exit_code", None) == 3 for r in caplog.records)


def test_serve_never_overlaps_and_skips_missed_slots(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(u(2025, 1, 1, 0, 0, 30))
    stop = FakeEvent(clock)
    active = {"n": 0, "max": 0}
    fired: list[datetime] = []

    def job() -> int:
        active["n"] += 1
        active["max"] = max(active["max"], active["n"])
        fired.append(clock.now())
        clock.t += timedelta(minutes=2, seconds=30)  # outlasts two every-minute slots
        active["n"] -= 1
        return 0

    with caplog.at_level("WARNING"):
        serve(job, "* * * * *", stop_event=stop, now=clock.now, max_runs=2, handle_signals=False)
    assert active["max"] == 1
    assert fired == [u(2025, 1, 1, 0, 1), u(2025, 1, 1, 0, 4)]
    assert any("skipped" in r.getMessage() for r in caplog.records)


def test_serve_real_time_in_thread_stops_promptly() -> None:
    stop = threading.Event()
    runs: list[float] = []

    def job() -> int:
        runs.append(time.monotonic())
        return 0

    th = threading.Thread(target=serve, args=(job, "@yearly", True, stop), kwargs={"poll_s": 0.05}, daemon=True)
    th.start()
    deadline = time.monotonic() + 5
    while not runs and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(runs) == 1  # run_at_start
    stop.set()
    th.join(timeout=5)
    assert not th.is_alive()


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_sigterm_while_idle_stops_cleanly() -> None:
    clock = FakeClock(u(2025, 1, 1, 0, 0))

    class SignalOnWait(FakeEvent):
        def wait(self, timeout: float | None = None) -> bool:
            os.kill(os.getpid(), signal.SIGTERM)
            return super().wait(timeout)

    before = signal.getsignal(signal.SIGTERM)
    stop = SignalOnWait(clock)
    rc = serve(lambda: 0, "@daily", stop_event=stop, now=clock.now)
    assert rc == 0
    assert stop.is_set()
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_sigterm_during_job_interrupts_it_and_runs_finally() -> None:
    cleaned: list[bool] = []

    def job() -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # the handler runs between bytecodes
                time.sleep(0.01)
            return 0
        finally:
            cleaned.append(True)

    rc = serve(job, "@yearly", run_at_start=True)
    assert rc == 128 + signal.SIGTERM
    assert cleaned == [True]
