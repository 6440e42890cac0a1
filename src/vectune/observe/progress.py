"""Progress for long stages: a tqdm bar on a TTY (text logs), a log line every ``every_s`` seconds otherwise.

Cron and container logs stay readable: no bar is drawn where logs are JSON or not a terminal.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

from vectune.observe.logs import is_tty, json_logs

logger = logging.getLogger(__name__)

T = TypeVar("T")


def progress(
    iterable: Iterable[T],
    total: int | None = None,
    desc: str = "",
    *,
    every_s: float = 30.0,
    log: logging.Logger | None = None,
    stream: IO[str] | None = None,
    bar: bool | None = None,
) -> Iterator[T]:
    """Iterate with progress: a tqdm bar on a TTY, periodic log lines otherwise.

    Args:
        iterable: what to iterate.
        total: number of items (taken from ``len(iterable)`` when it has one).
        desc: what is being done, e.g. ``"encoding chunks"``.
        every_s: seconds between log lines when not on a TTY.
        log: logger for the lines (default: this module's).
        stream: where the bar draws (default ``sys.stderr``).
        bar: force the bar on/off (default: on a TTY with text logs).

    Yields:
        The items of ``iterable``.
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    counter = Progress(total, desc, every_s=every_s, stream=stream, bar=bar, log=log)
    try:
        for item in iterable:
            yield item
            counter.update(1)
    except GeneratorExit:  # abandoned early: close the bar, log no "done" line
        if counter.bar is not None:
            counter.bar.close()
        raise
    counter.close()


def _log_progress(
    log: logging.Logger, desc: str, n: int, total: int | None, elapsed: float, done: bool = False
) -> None:
    rate = n / elapsed if elapsed > 0 else 0.0
    label = desc or "progress"
    if done:
        log.info(
            "%s: done, %d items in %.1fs (%.1f/s)", label, n, elapsed, rate,
            extra={"desc": label, "n": n, "total": total, "elapsed_s": round(elapsed, 3)},
        )
        return
    if total:
        eta = (total - n) / rate if rate > 0 else float("nan")
        log.info(
            "%s: %d/%d (%.0f%%), %.1f/s, eta %.0fs", label, n, total, 100.0 * n / total, rate, eta,
            extra={"desc": label, "n": n, "total": total, "elapsed_s": round(elapsed, 3)},
        )
    else:
        log.info(
            "%s: %d items, %.1f/s", label, n, rate,
            extra={"desc": label, "n": n, "total": total, "elapsed_s": round(elapsed, 3)},
        )


class Progress:
    """A counter for long stages: a tqdm bar on a TTY (text logs), periodic log lines otherwise.

    Args:
        total: expected count (None if unknown).
        desc: what is counted, e.g. ``"reindex (points)"``.
        every_s: seconds between log lines when not on a TTY.
        stream: where the bar draws (default ``sys.stderr``).
        bar: force the bar on/off (default: on a TTY with text logs).
        log: logger for the lines (default: this module's).
    """

    def __init__(self, total: int | None, desc: str, every_s: float = 30.0, stream: IO[str] | None = None,
                 bar: bool | None = None, log: logging.Logger | None = None):
        self.total, self.desc, self.every_s = total, desc, every_s
        self.log = log or logger
        self.n = 0
        self.start = self.last = time.monotonic()
        stream = stream if stream is not None else sys.stderr
        if bar is None:
            bar = is_tty(stream) and not json_logs()
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, file=stream, dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            _log_progress(self.log, self.desc, self.n, self.total, now - self.start)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            _log_progress(self.log, self.desc, self.n, self.total, time.monotonic() - self.start, done=True)


def interactive() -> bool:
    """True when logs go to a terminal as text (progress bars are welcome)."""
    return is_tty(sys.stderr) and not json_logs()
