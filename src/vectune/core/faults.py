"""Failpoints and hooks, for tests that try to break the operator.

``VECTUNE_FAILPOINT=<name>`` makes the process SIGKILL itself when it reaches the
named point — a crash at an exact stage, with no cleanup, as a pod eviction or an
OOM kill would do it. Hooks let a test act at those points in-process (e.g. an app
writing to the alias while the new collection is built). Both are inert unless set.

Points: the start of each cycle stage (``read`` … ``generate``, ``mine``, ``train``,
``evaluate``, ``save_model``, ``reindex``), then ``reindex_page`` (after each page
of the reindex; ``VECTUNE_FAILPOINT_AFTER=N`` lets N pages pass), ``before_verify``,
``before_final_sync``, ``before_swap`` and ``after_swap``, ``reconcile_batch`` (after each journalled
batch of the post-swap reconciliation); ``train_step`` (after each optimizer step of full-mode
training, only while it is the failpoint); and the two phases of every deletion
(:mod:`vectune.qdrant.deletion`): ``delete_mark`` (after the first fence, before the mark),
``delete_recheck`` (after the mark, before the second fence) and ``delete_collection`` (after the
re-check, right before ``delete_collection``).

``VECTUNE_FAILPOINT_ACTION=pause`` makes the failpoint pause instead of kill: the process
writes ``<name> <pid>`` to ``VECTUNE_FAILPOINT_FILE`` (when set) and sleeps there for
``VECTUNE_FAILPOINT_PAUSE_S`` seconds (default 600), once, then goes on. A test sends a
signal meanwhile (SIGTERM at an exact stage).
"""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable

HOOKS: dict[str, list[Callable[..., None]]] = defaultdict(list)


def active(name: str) -> bool:
    """True when a hook or the failpoint is set for ``name`` (callers may then pause concurrent work)."""
    return bool(HOOKS.get(name)) or os.environ.get("VECTUNE_FAILPOINT") == name


def point(name: str, **ctx) -> None:
    """Reached a named point: run hooks, and die here if the failpoint says so."""
    for hook in list(HOOKS.get(name, ())):
        hook(**ctx)
    want = os.environ.get("VECTUNE_FAILPOINT")
    if want and want == name:
        after = int(os.environ.get("VECTUNE_FAILPOINT_AFTER", "0") or 0)
        counts = _COUNTS
        counts[name] += 1
        if counts[name] > after:
            if os.environ.get("VECTUNE_FAILPOINT_ACTION") == "pause":
                _pause(name)
            else:
                os.kill(os.getpid(), signal.SIGKILL)


def _pause(name: str) -> None:
    """Sleep at ``name`` once (the pause action), after telling the test where we are."""
    if _PAUSED.get(name):
        return
    _PAUSED[name] = True
    flag = os.environ.get("VECTUNE_FAILPOINT_FILE")
    if flag:
        tmp = f"{flag}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{name} {os.getpid()}\n")
        os.replace(tmp, flag)
    deadline = time.monotonic() + float(os.environ.get("VECTUNE_FAILPOINT_PAUSE_S", "600") or 0)
    while time.monotonic() < deadline:
        time.sleep(0.05)


_COUNTS: dict[str, int] = defaultdict(int)
_PAUSED: dict[str, bool] = {}
