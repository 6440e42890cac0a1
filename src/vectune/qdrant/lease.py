"""One operator per alias: a fenced lease stored in Qdrant itself.

The lease is a point in the small collection ``vectune_locks`` (one point per
alias, no vectors), so it works for every machine that shares a Qdrant server —
two cron pods, a manual run during the nightly one.

**Tokens.** Every :meth:`AliasLock.acquire` writes a fresh random ``token`` and a
``generation`` one above the previous holder's (the point is never deleted, so
generations only grow), and every write to the point stores a fresh ``nonce``.
All lease writes are conditional and go through :class:`~vectune.qdrant.store.Store`
(``lease_put``/``lease_update``, ``WriteOrdering.STRONG``):

* *taking* the lease is a compare-and-swap on the ``nonce`` (and ``expires_at``)
  just read: it only replaces the lease exactly as it was seen to be free,
  expired, or left by a dead process, so of two takers one wins;
* :meth:`~AliasLock.fence` (``renew`` is a fence) merges a new expiry into the
  point only if ``owner`` and ``token`` are still ours — one filtered
  ``set_payload`` that never creates the point;
* :meth:`~AliasLock.release` clears owner and token the same way (a conditional
  write, not read-then-delete; it keeps the generation).

Qdrant does not say whether a conditional write matched, so each one is read back:
our fresh nonce in the point proves it applied. A read that is stale or races
only ever makes us conclude "not ours" (acquire fails, fence raises), never the
reverse.

**Fencing.** Before every state change (swap, delete, reconcile, prune) the
holder calls ``lock.fence(what)``; it raises :class:`LockLost` (exit code 5, a
:class:`~vectune.errors.LockHeld`) if another operator took the lease, and
renews it otherwise. Before every plain write batch (a reindex page, a
checkpoint) it calls ``lock.check(what)``, which costs nothing while more than
half the TTL is left and fences otherwise. So a holder that lost its lease stops
writing before anyone else can hold it, and recovery, which runs under the lock,
only ever finds work whose owner has stopped.

**Expiry and clock skew.** The holder writes ``expires_at = its now + ttl`` and
renews every ``ttl/4`` from the heartbeat (and at every fence). A taker treats a
lease as expired only when *its* clock is past ``expires_at + clock_skew_s``
(setting ``lock_clock_skew_s``, 30 s by default); a holder whose heartbeat cannot
renew gives up at its own ``expires_at`` and :meth:`check` fences once less than
``ttl/2`` is left. Clocks of two hosts may thus differ by up to ``clock_skew_s``
in either direction with no overlap. With a larger skew, or a process frozen (SIGSTOP, VM
pause) for longer than the lease between a check and the request it guards, that one request can
still land after the next holder took over: a fence proves the lease at the moment it is made, and
Qdrant checks no token on a delete, a swap or a data write. Deletes are made safe against this by
their order (:mod:`vectune.qdrant.deletion`: marked, re-checked, deleted; a marked collection is never
made live); a swap or a data write in that case is bounded by time, not exact.

**Embedded mode** (qdrant-client local, checked with qdrant-client 1.20): the
conditional upsert (``update_filter``), ``update_mode``, filtered ``set_payload``
and filtered delete all work natively; ``ordering`` and read ``consistency`` are
accepted and moot (one copy). The server path is used unchanged there. Embedded
mode has no internal locking, so all lease operations of this process run under
one process-wide lock: with one process per embedded folder, each read-check-write
is then exact there too.

**Same host.** A lease whose holder is a process of this host that no longer
runs is taken at once, without waiting for expiry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from vectune.errors import LockHeld, QdrantUnavailable
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)

LOCK_COLLECTION = "vectune_locks"
#: Default clock-skew allowance between hosts (setting ``lock_clock_skew_s``).
DEFAULT_CLOCK_SKEW_S = 30
_NS = uuid.UUID("0b4c7d0e-5f7e-4d8a-8f63-3f0f9c2b6a51")
#: Serialises this process's lease operations (embedded Qdrant has no locking of its own).
_MUTEX = threading.RLock()


class LockLost(LockHeld):
    """This operator no longer holds the alias's lease: it must stop before touching anything."""


@dataclass
class Lease:
    """A lease as stored.

    Attributes:
        alias: the alias it guards.
        owner: ``host:pid:run`` of the holder.
        expires_at: holder's clock, seconds since the epoch.
        token: random per acquire (None for a lease written by an older vectune).
        generation: one more than the previous holder's.
    """

    alias: str
    owner: str
    expires_at: float
    token: str | None = None
    generation: int = 0


def _point_id(alias: str) -> str:
    return str(uuid.uuid5(_NS, alias))


class NoFence:
    """Stands in for a lock where none is held (tests, benchmarks): every check passes."""

    def check(self, what: str = "write") -> None:
        pass

    def fence(self, what: str) -> None:
        pass

    def stamp(self) -> dict:
        return {}


NO_FENCE = NoFence()


def default_owner(run_id: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{run_id}"


def _lease_of(alias: str, payload: dict | None) -> Lease | None:
    if not payload or not payload.get("owner"):
        return None  # no lease, or a released one
    return Lease(alias, str(payload["owner"]), float(payload.get("expires_at") or 0), payload.get("token"),
                 int(payload.get("generation") or 0))


class AliasLock:
    """A renewable, fenced lease on an alias.

    Args:
        store: Qdrant access.
        alias: the alias to guard.
        owner: who holds it (``host:pid:run``, see :func:`default_owner`).
        ttl_s: lease length.
        clock_skew_s: how far another host's clock may differ; a lease counts as expired only
            this long after its ``expires_at``.
        heartbeat_s: renewal interval of :meth:`start_heartbeat` (default ``ttl_s / 4``).
        clock: time source (seconds since the epoch); injectable for tests.
    """

    def __init__(self, store: Store, alias: str, owner: str, ttl_s: float, *,
                 clock_skew_s: float = DEFAULT_CLOCK_SKEW_S, heartbeat_s: float | None = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.alias = alias
        self.owner = owner
        self.ttl_s = float(ttl_s)
        self.clock_skew_s = float(clock_skew_s)
        self.heartbeat_s = float(heartbeat_s) if heartbeat_s else max(0.05, self.ttl_s / 4)
        self.clock = clock
        self.held = False
        self.token: str | None = None
        self.generation = 0
        self.expires_at = 0.0
        #: The lease this acquire replaced (None if the alias was free), and why it could be taken:
        #: "expired", "dead holder" or None.
        self.previous: Lease | None = None
        self.took_over: str | None = None
        self._lost = threading.Event()
        self._lost_reason = ""
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._pid = _point_id(alias)

    # -- reading --------------------------------------------------------------------------
    @property
    def lost(self) -> bool:
        """True once this holder knows it lost the lease (its next fence or check raises)."""
        return self._lost.is_set()

    def current(self) -> Lease | None:
        """The lease as stored, or None when the alias is free."""
        if not self.store.collection_exists(LOCK_COLLECTION):
            return None
        return _lease_of(self.alias, self.store.lease_read(LOCK_COLLECTION, self._pid))

    def owns(self, token: str | None) -> bool:
        """Whether ``token`` (as recorded in a checkpoint) is the lease this object holds now."""
        return bool(token) and self.held and not self.lost and token == self.token

    def stamp(self) -> dict:
        """What a checkpoint or in-flight marker records of the lease that wrote it."""
        return {"lease_owner": self.owner, "lease_token": self.token, "lease_generation": self.generation}

    # -- taking -----------------------------------------------------------------------------
    def acquire(self) -> AliasLock:
        """Take the lease or raise :class:`LockHeld` naming the holder and when its lease runs out."""
        self.store.lease_collection(LOCK_COLLECTION, keyword_fields=("owner", "token", "nonce"))
        with _MUTEX:
            now = self.clock()
            seen = self.store.lease_read(LOCK_COLLECTION, self._pid)
            lease = _lease_of(self.alias, seen)
            why = None
            if lease is not None:
                if now > lease.expires_at + self.clock_skew_s:
                    why = "expired"
                elif _dead_here(lease.owner):
                    why = "dead holder"
                else:
                    raise self._held_by(lease, now)
            token, nonce = uuid.uuid4().hex, uuid.uuid4().hex
            generation = int((seen or {}).get("generation") or 0) + 1
            payload = {"alias": self.alias, "owner": self.owner, "token": token, "generation": generation,
                       "nonce": nonce, "acquired_at": now, "renewed_at": now, "expires_at": now + self.ttl_s}
            cas = ({"nonce": seen.get("nonce"), "expires_at": _num(seen.get("expires_at"))} if seen is not None
                   else {"nonce": None, "expires_at": None})
            self.store.lease_put(LOCK_COLLECTION, self._pid, payload, only_if=cas)
            back = self.store.lease_read(LOCK_COLLECTION, self._pid) or {}
            if back.get("nonce") != nonce:  # someone else's write came first
                other = _lease_of(self.alias, back)
                raise self._held_by(other, now) if other else LockHeld(
                    f"could not take the lock on alias '{self.alias}': it changed while taking it. Try again")
            if why == "expired":
                logger.warning("took over the expired lock on '%s' from %s (generation %d)", self.alias,
                               lease.owner, lease.generation)
            elif why:
                logger.warning("taking over the lock on '%s' from %s: that process is gone", self.alias, lease.owner)
            self.token, self.generation, self.expires_at = token, generation, now + self.ttl_s
            self.previous, self.took_over = lease, why
            self.held = True
            self._lost.clear()
            self._stop.clear()
        logger.info("lock on '%s' taken by %s for %d s (generation %d)", self.alias, self.owner, self.ttl_s,
                    generation)
        return self

    def _held_by(self, lease: Lease, now: float) -> LockHeld:
        left = max(0, int(lease.expires_at + self.clock_skew_s - now))
        return LockHeld(f"another vectune operator is working on alias '{self.alias}' ({lease.owner}); "
                        f"its lease expires in {left} s unless renewed. Try again later")

    # -- fencing ------------------------------------------------------------------------------
    def fence(self, what: str) -> None:
        """Prove we still hold the lease, right before ``what`` (a state change), and renew it.

        One conditional write on the lease point (only if owner and token are still ours), read
        back. A transient Qdrant error is retried with the heartbeat's policy (:meth:`_retrying`:
        0.5 s doubling, at most ``heartbeat_s`` apart, while the lease is still valid).

        Raises:
            LockLost: another operator holds the lease now, it was released, or the heartbeat gave
                up; nothing may be changed.
            QdrantUnavailable: Qdrant could not be asked before the lease ran out (the lease is then
                given up, and the state change must not happen either).
        """
        self._retrying(lambda: self._fence_once(what), what)

    def _fence_once(self, what: str) -> None:
        """One fence attempt (see :meth:`fence`), without retries."""
        if self.lost:
            raise LockLost(f"lost the lock on alias '{self.alias}' ({self._lost_reason}); "
                           f"not doing: {what}")
        if not self.held:
            raise LockLost(f"the lock on alias '{self.alias}' is not held; not doing: {what}")
        with _MUTEX:
            now = self.clock()
            nonce = uuid.uuid4().hex
            self.store.lease_update(LOCK_COLLECTION, self._pid,
                                    {"nonce": nonce, "renewed_at": now, "expires_at": now + self.ttl_s},
                                    only_if={"owner": self.owner, "token": self.token})
            back = self.store.lease_read(LOCK_COLLECTION, self._pid) or {}
            if back.get("nonce") != nonce:
                other = _lease_of(self.alias, back)
                self._lose(f"taken by {other.owner} (generation {other.generation})" if other else "released")
                raise LockLost(f"lost the lock on alias '{self.alias}' ({self._lost_reason}); not doing: {what}")
            if now > self.expires_at:  # nobody took it meanwhile; expected in embedded mode (no heartbeat)
                (logger.warning if self.store.on_server else logger.debug)(
                    "lock on '%s' had lapsed %.0f s ago; still ours, renewed", self.alias, now - self.expires_at)
            self.expires_at = now + self.ttl_s

    def _retrying(self, attempt: Callable[[], None], what: str, stop: threading.Event | None = None) -> bool:
        """Run ``attempt`` until it succeeds, retrying transient Qdrant errors while the lease is valid.

        The one retry policy of the lease, shared by :meth:`fence` (and so :meth:`check`) and the
        heartbeat: waits of 0.5 s doubling, at most ``heartbeat_s``; it gives up when the next wait
        would outlast the lease's own ``expires_at`` — the lease is then marked lost, so the holder
        stops at once and never writes after another could hold it.

        Args:
            attempt: one try (raises :class:`LockLost`, or a transient error).
            what: what the attempt is for (logs).
            stop: the heartbeat's stop flag (a set flag ends the retries quietly).

        Returns:
            True when it succeeded, False when ``stop`` was set meanwhile.

        Raises:
            LockLost: not ours any more (never retried).
            QdrantUnavailable: the error went on until the lease would expire (the last one is raised).
        """
        delay = min(0.5, self.heartbeat_s)
        while True:
            try:
                attempt()
                return True
            except LockLost:
                raise
            except (QdrantUnavailable, OSError, TimeoutError) as e:
                left = self.expires_at - self.clock()
                if left <= delay:
                    self._lose(f"could not renew it before it expired: {e}")
                    logger.error("lock on '%s': could not renew the lease before it expires (%s); giving it up, "
                                 "not doing: %s", self.alias, e, what)
                    raise
                logger.warning("lock on '%s': %s failed (%s); retrying in %.1f s (lease valid %.0f s more)",
                               self.alias, "renewal" if what == "heartbeat" else f"the lease check before {what}",
                               e, delay, left)
                if stop is not None:
                    if stop.wait(delay):
                        return False
                else:
                    time.sleep(delay)
                delay = min(delay * 2, self.heartbeat_s)

    def renew(self) -> None:
        """Extend the lease; raise :class:`LockLost` if it is not ours any more."""
        self.fence("renew")

    def check(self, what: str = "write") -> None:
        """Cheap guard before a plain write batch: free while more than half the TTL is left, else a fence.

        Raises:
            LockLost: as :meth:`fence`.
        """
        if self.lost or not self.held or self.clock() + self.ttl_s / 2 > self.expires_at:
            self.fence(what)

    def _lose(self, reason: str) -> None:
        self._lost_reason = reason
        self._lost.set()
        self.held = False

    # -- heartbeat -------------------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        """Renew every ``heartbeat_s`` from a daemon thread until :meth:`release`.

        A failed renewal is retried with backoff (0.5 s doubling, at most ``heartbeat_s``) while
        the lease is still valid; when it cannot be renewed before its own ``expires_at``, or
        another operator took it, the heartbeat logs an error and marks the lock lost, so the
        next :meth:`fence`/:meth:`check` raises at once.
        """
        if self._beat is not None and self._beat.is_alive():
            return
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name=f"vectune-lock-{self.alias}", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self._retrying(lambda: self._fence_once("heartbeat"), "heartbeat", stop=self._stop):
                    return
            except LockLost as e:
                if not self._stop.is_set():
                    logger.error("lock heartbeat for '%s': %s; the run stops at its next lock check", self.alias, e)
                return
            except Exception as e:  # noqa: BLE001 - gave up: the lease is marked lost, the run stops at its next check
                logger.error("lock heartbeat for '%s' gives up (%s); the run stops at its next lock check",
                             self.alias, e)
                return

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=5)
        self._beat = None

    # -- giving back ---------------------------------------------------------------------------------
    def release(self) -> None:
        """Give the lease back — one conditional write, only if owner and token are still ours."""
        self.stop_heartbeat()
        if not self.held:
            return
        with _MUTEX:
            try:
                self.store.lease_update(LOCK_COLLECTION, self._pid,
                                        {"owner": None, "token": None, "expires_at": 0.0,
                                         "nonce": uuid.uuid4().hex, "released_at": self.clock(),
                                         "released_by": self.owner},
                                        only_if={"owner": self.owner, "token": self.token})
            except Exception as e:  # noqa: BLE001 - the lease expires anyway
                logger.warning("could not release the lock on '%s': %s", self.alias, e)
            self.held = False

    def __enter__(self) -> AliasLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _dead_here(owner: str) -> bool:
    """True if ``owner`` (host:pid:run) is a process on this host that no longer runs."""
    parts = owner.split(":")
    if len(parts) < 2 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
