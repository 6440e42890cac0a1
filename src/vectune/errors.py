"""Errors with a clear message and a documented exit code.

Exit codes of ``vectune``:

* 0 — success: promoted, kept live, or nothing to do (normal cron outcomes)
* 1 — unexpected failure (a bug; the traceback is logged)
* 2 — usage error (bad option)
* 3 — bad input: alias/collection missing, payloads unusable, too few chunks,
  model that does not load, bad eval/train set
* 4 — Qdrant unreachable or refused the request
* 5 — another operator holds the lock on this alias
* 6 — verification of a new collection failed; the alias was not touched
* 7 — the watch rolled the live model back: fresh feedback showed it significantly worse than
  its rollback target (a completed, consistent outcome that a person should look at)
* 143 — stopped by SIGTERM at a safe point (see :class:`Terminated`); the next run resumes or starts clean
"""

from __future__ import annotations

#: Exit code of a run whose watch rolled the live model back (:mod:`vectune.ops.watch`).
EXIT_WATCH_ROLLBACK = 7


class VectuneError(Exception):
    """Base error: one clear message, a distinct exit code."""

    exit_code = 1


class BadInput(VectuneError):
    """The data or configuration cannot be used."""

    exit_code = 3


class TornState(BadInput):
    """A state file vectune wrote (checkpoint, snapshot, journal, in-flight marker, history) cannot be read.

    Attributes:
        path: the file.
    """

    def __init__(self, path, message: str) -> None:
        super().__init__(message)
        self.path = path


class QdrantUnavailable(VectuneError):
    """Qdrant could not be reached or refused a request."""

    exit_code = 4


class LockHeld(VectuneError):
    """Another operator is working on this alias."""

    exit_code = 5


class VerificationFailed(VectuneError):
    """A freshly built collection failed verification; nothing was swapped."""

    exit_code = 6


class Terminated(SystemExit):
    """A signal (SIGTERM, SIGINT) stopped the process: unwind, clean up, exit ``128 + signum`` (143 for SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
