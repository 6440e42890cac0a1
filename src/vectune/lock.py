"""One operator per alias: a lease stored in Qdrant itself.

The lock is a point in the small collection ``vectune_locks`` (one point per
alias, no vectors), so it works for every machine that shares a Qdrant server —
two cron pods, a manual run during the nightly one. A lease has an owner and an
expiry: a crashed holder blocks the alias only until its lease runs out (or, on
the same host, as soon as its process is gone), and a live holder renews it at
every stage and — against a server — from a heartbeat thread. Taking an existing lease is a *conditional
upsert* (Qdrant ≥ 1.16 ``update_filter``): it only overwrites a lease that has
expired or is already ours, so two takers cannot both win; a read-back confirms.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

from vectune.errors import LockHeld
from vectune.store import Store

logger = logging.getLogger(__name__)

LOCK_COLLECTION = "vectune_locks"
_NS = uuid.UUID("0b4c7d0e-5f7e-4d8a-8f63-3f0f9c2b6a51")


@dataclass
class Lease:
    alias: str
    owner: str
    expires_at: float


def _point_id(alias: str) -> str:
    return str(uuid.uuid5(_NS, alias))


def default_owner(run_id: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{run_id}"


class AliasLock:
    """A renewable lease on an alias.

    Args:
        store: Qdrant access.
        alias: the alias to guard.
        owner: who holds it (host:pid:run id).
        ttl_s: lease length; renewed by :meth:`renew`.
    """

    def __init__(self, store: Store, alias: str, owner: str, ttl_s: int):
        self.store = store
        self.alias = alias
        self.owner = owner
        self.ttl_s = ttl_s
        self.held = False

    def _ensure_collection(self) -> None:
        self.store.create_payload_collection(LOCK_COLLECTION)

    def current(self) -> Lease | None:
        """The lease as stored, or None."""
        if not self.store.collection_exists(LOCK_COLLECTION):
            return None
        recs = self.store.retrieve(LOCK_COLLECTION, [_point_id(self.alias)])
        if not recs:
            return None
        p = recs[0].payload or {}
        return Lease(self.alias, str(p.get("owner")), float(p.get("expires_at", 0)))

    def _write(self, now: float, stale_owner: str | None = None) -> None:
        from qdrant_client import models

        cond = models.Filter(should=[
            models.FieldCondition(key="expires_at", range=models.Range(lt=now)),
            models.FieldCondition(key="owner", match=models.MatchValue(value=stale_owner or self.owner)),
        ])
        point = models.PointStruct(id=_point_id(self.alias), vector={}, payload={
            "alias": self.alias, "owner": self.owner, "acquired_at": now, "expires_at": now + self.ttl_s})
        self.store.upsert(LOCK_COLLECTION, [point], update_filter=cond)

    def acquire(self) -> "AliasLock":
        """Take the lease or raise :class:`LockHeld` naming the holder and its expiry."""
        self._ensure_collection()
        now = time.time()
        lease = self.current()
        stale = lease.owner if lease and lease.owner != self.owner and _dead_here(lease.owner) else None
        if stale:
            logger.warning("taking over the lock on '%s' from %s: that process is gone", self.alias, stale)
        self._write(now, stale_owner=stale)
        time.sleep(0.05)
        lease = self.current()
        if lease is None or lease.owner != self.owner:
            holder = lease.owner if lease else "unknown"
            left = max(0, int(lease.expires_at - now)) if lease else 0
            raise LockHeld(f"another vectune operator is working on alias '{self.alias}' ({holder}); "
                           f"its lease expires in {left} s unless renewed. Try again later")
        self.held = True
        logger.info("lock on '%s' taken by %s for %d s", self.alias, self.owner, self.ttl_s)
        return self

    def renew(self) -> None:
        """Extend the lease; raise :class:`LockHeld` if someone else took it meanwhile."""
        if not self.held:
            return
        self._write(time.time())
        lease = self.current()
        if lease is None or lease.owner != self.owner:
            self.held = False
            raise LockHeld(f"lost the lock on alias '{self.alias}' to {lease.owner if lease else 'nobody'}; "
                           "stopping before touching the alias")

    def start_heartbeat(self) -> None:
        """Renew the lease every ``ttl/4`` s from a daemon thread (server mode: the client is thread-safe)."""
        import threading

        self._stop = threading.Event()

        def beat():
            while not self._stop.wait(max(1.0, self.ttl_s / 4)):
                try:
                    self.renew()
                except Exception as e:  # noqa: BLE001 - the main thread finds out at its next renew
                    logger.warning("lock heartbeat for '%s': %s", self.alias, e)
                    return

        self._beat = threading.Thread(target=beat, name=f"vectune-lock-{self.alias}", daemon=True)
        self._beat.start()

    def release(self) -> None:
        """Give the lease back (only if it is still ours)."""
        if getattr(self, "_stop", None):
            self._stop.set()
        if not self.held:
            return
        try:
            lease = self.current()
            if lease and lease.owner == self.owner:
                self.store.delete_points(LOCK_COLLECTION, [_point_id(self.alias)])
        except Exception as e:  # noqa: BLE001 - the lease expires anyway
            logger.warning("could not release the lock on '%s': %s", self.alias, e)
        self.held = False

    def __enter__(self) -> "AliasLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


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
