"""Holding an alias: the lease, its heartbeat, and recovery of a crashed run — written once.

Every operation that changes an alias (a cycle, a rollback, prune, retention) runs inside
:func:`hold`: it takes the alias's fenced lease (:class:`~vectune.qdrant.lease.AliasLock`),
renews it from a heartbeat on a server, finishes what a crashed run left behind
(:func:`~vectune.ops.recover.recover`) and releases the lease on the way out, whatever happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from vectune.config.settings import Settings
from vectune.errors import BadInput
from vectune.ops.recover import Recovery, recover
from vectune.qdrant.lease import AliasLock, default_owner
from vectune.qdrant.store import Store


@dataclass
class Session:
    """An alias held by this process.

    Attributes:
        lock: the lease; fence it before every state change.
        recovery: what recovery found and did (None when it was not asked for).
    """

    lock: AliasLock
    recovery: Recovery | None = None


@contextmanager
def hold(store: Store, settings: Settings, alias: str, run_id: str, *, recover_first: bool = True,
         expect_live: str | None = None) -> Iterator[Session]:
    """Hold ``alias`` for the ``with`` block.

    Args:
        store: Qdrant access.
        settings: lease length and clock skew, and what recovery needs.
        alias: the alias.
        run_id: this run (part of the lease's owner).
        recover_first: finish a crashed run's promotion or rollback before the block runs.
        expect_live: the collection the caller saw behind the alias before waiting for the lease;
            a clear error if the alias moved meanwhile.

    Yields:
        The session (lease and recovery).

    Raises:
        LockHeld: another operator holds the alias (exit code 5).
        BadInput: the alias moved while waiting.
    """
    lock = AliasLock(store, alias, default_owner(run_id), settings.lock.ttl_s,
                     clock_skew_s=settings.lock.clock_skew_s).acquire()
    try:
        if store.on_server:
            lock.start_heartbeat()
        live = store.resolve_alias(alias)
        if expect_live is not None and live != expect_live:
            raise BadInput(f"alias '{alias}' moved while waiting (now '{live}'); run the command again")
        rec = recover(store, settings, alias, live, lock) if recover_first else None
        yield Session(lock, rec)
    finally:
        lock.release()
