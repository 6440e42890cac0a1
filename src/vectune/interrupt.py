"""SIGTERM for one-shot commands (``vectune run``, ``rollback``, ...): stop now, clean up, exit 143.

``docker stop``, ``podman kill --signal TERM``, a Kubernetes ``activeDeadlineSeconds`` or a
node drain send SIGTERM, then SIGKILL after a grace period. The handler installed by
:func:`install` raises :class:`~vectune.schedule.Terminated` (a ``SystemExit`` with code
128 + 15 = 143) in the main thread at the point the process has reached, so:

* every ``finally`` block runs: a promotion that has not swapped withdraws its migration
  announcement, and the alias lease is released at once (the next run need not wait for
  ``VECTUNE_LOCK_TTL_S``);
* the in-flight marker and the promotion checkpoint stay behind, marked as stopped by the
  signal, so the next run resumes the promotion where it stopped (or, stopped before the
  promotion began, runs a clean cycle) exactly as after a crash;
* a second SIGTERM while that cleanup runs is logged and ignored, so it cannot cut the
  cleanup short (SIGKILL still can; recovery handles that too).

``vectune serve`` installs its own handler (:func:`vectune.schedule.serve`): idle, it exits
0; during a cycle it interrupts it the same way and exits 143.
"""

from __future__ import annotations

import logging
import signal
import threading

from vectune.schedule import Terminated

logger = logging.getLogger(__name__)


def install(signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
    """Interrupt the main thread with :class:`~vectune.schedule.Terminated` on the first ``signals``.

    Args:
        signals: the signals to handle (SIGINT keeps Python's KeyboardInterrupt by default).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    stopping = {"signum": 0}

    def _on_signal(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stopping["signum"]:
            logger.warning("received %s again: already stopping, cleaning up", name)
            return
        stopping["signum"] = signum
        logger.warning("received %s: stopping here (exit code %d); the lock is released and the next run "
                       "resumes or starts clean", name, 128 + signum)
        raise Terminated(signum)

    for sig in signals:
        signal.signal(sig, _on_signal)


def signal_name(exc: BaseException) -> str | None:
    """``"SIGTERM"`` (etc.) when ``exc`` is a :class:`~vectune.schedule.Terminated`, else None."""
    if isinstance(exc, Terminated):
        return signal.Signals(exc.signum).name
    return None
