"""The alias lease: tokens, fencing, heartbeat, skew, release — on a real embedded Qdrant.

Fast (no model, no CLI): a fake clock drives expiry where time matters; the heartbeat
tests use real time with a sub-second TTL.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time

import pytest

from vectune.errors import LockHeld, QdrantUnavailable
from vectune.qdrant.lease import AliasLock, LockLost, default_owner


class Clock:
    """A settable clock shared by several operators."""

    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def store(home):
    from vectune.config.settings import load_settings
    from vectune.qdrant.store import Store

    with Store.open(load_settings()) as s:
        yield s


@pytest.fixture
def alias(tmp_path):
    return f"lock-{tmp_path.name}"  # unique, also on a shared server


@pytest.fixture
def clock():
    return Clock()


def _fail(store, monkeypatch, method: str, times: int | None):
    """Make ``store.<method>`` raise QdrantUnavailable ``times`` times (None: always); returns the call log."""
    real = getattr(store, method)
    calls = {"n": 0, "failed": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if times is None or calls["failed"] < times:
            calls["failed"] += 1
            raise QdrantUnavailable("simulated: connection reset by peer")
        return real(*a, **kw)

    monkeypatch.setattr(store, method, flaky)
    return calls


def _wait_for(cond, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_acquire_fence_release_and_generations(store, alias, clock):
    a = AliasLock(store, alias, "host-a:1:run-a", ttl_s=60, clock=clock).acquire()
    lease = a.current()
    assert (lease.owner, lease.token, lease.generation) == ("host-a:1:run-a", a.token, 1)
    assert lease.expires_at == clock() + 60
    assert a.owns(a.token) and not a.owns("someone-else") and not a.owns(None)
    assert a.stamp() == {"lease_owner": "host-a:1:run-a", "lease_token": a.token, "lease_generation": 1}

    clock.advance(20)
    a.fence("swap")  # renews
    assert a.current().expires_at == clock() + 60 == a.expires_at
    a.renew()

    a.release()
    assert a.current() is None and not a.held
    with pytest.raises(LockLost):
        a.fence("swap")  # released: nothing may be changed any more

    b = AliasLock(store, alias, "host-b:2:run-b", ttl_s=60, clock=clock).acquire()  # free at once
    assert b.generation == 2 and b.token != a.token and b.previous is None
    b.release()
    c = AliasLock(store, alias, "host-c:3:run-c", ttl_s=60, clock=clock).acquire()
    assert c.generation == 3, "generations only grow, across releases too"


def test_second_acquire_fails_naming_the_holder(store, alias, clock):
    a = AliasLock(store, alias, "nightly-pod-1:123:run-x", ttl_s=600, clock=clock).acquire()
    clock.advance(100)
    with pytest.raises(LockHeld) as e:
        AliasLock(store, alias, "manual:9:run-y", ttl_s=600, clock=clock).acquire()
    msg = str(e.value)
    assert "another vectune operator" in msg and "nightly-pod-1:123:run-x" in msg
    assert "expires in 530 s" in msg  # 600 - 100 + the 30 s skew allowance
    assert type(e.value) is LockHeld and e.value.exit_code == 5
    a.fence("swap")  # the failed attempt changed nothing
    assert a.current().token == a.token


def test_expiry_waits_for_the_clock_skew_allowance(store, alias, clock):
    a = AliasLock(store, alias, "host-a:1:run-a", ttl_s=10, clock_skew_s=30, clock=clock).acquire()
    t0 = clock()
    clock.t = t0 + 10 + 29  # expired by the holder's clock, but within the allowance
    with pytest.raises(LockHeld):
        AliasLock(store, alias, "host-b:2:run-b", ttl_s=10, clock_skew_s=30, clock=clock).acquire()
    assert a.current().owner == "host-a:1:run-a"
    clock.t = t0 + 10 + 31
    b = AliasLock(store, alias, "host-b:2:run-b", ttl_s=10, clock_skew_s=30, clock=clock).acquire()
    assert b.took_over == "expired" and b.previous.owner == "host-a:1:run-a" and b.previous.token == a.token
    # a host whose clock runs 25 s ahead still cannot take a lease that was just renewed
    ahead = Clock(clock() + 25)
    with pytest.raises(LockHeld):
        AliasLock(store, alias, "host-c:3:run-c", ttl_s=10, clock_skew_s=30, clock=ahead).acquire()


def test_expired_lease_lost_to_an_intruder_raises_lock_lost(store, alias, clock):
    a = AliasLock(store, alias, "host-a:1:run-a", ttl_s=10, clock=clock).acquire()
    clock.advance(45)
    b = AliasLock(store, alias, "host-b:2:run-b", ttl_s=10, clock=clock).acquire()
    with pytest.raises(LockLost) as e:
        a.fence("swap")
    assert "host-b:2:run-b" in str(e.value) and "swap" in str(e.value) and e.value.exit_code == 5
    assert a.lost and not a.owns(a.token)
    with pytest.raises(LockLost):
        a.check("page")  # stays lost, without asking Qdrant again
    b.fence("swap")  # the intruder's lease is untouched by a's attempts
    assert b.current().token == b.token


def test_release_by_a_non_owner_does_nothing(store, alias, clock):
    a = AliasLock(store, alias, "host-a:1:run-a", ttl_s=10, clock=clock).acquire()
    clock.advance(45)
    b = AliasLock(store, alias, "host-b:2:run-b", ttl_s=10, clock=clock).acquire()
    a.release()  # its lease is gone: must not free b's
    AliasLock(store, alias, "host-b:2:run-b", ttl_s=10, clock=clock).release()  # same owner name, never acquired
    assert b.current().token == b.token
    b.fence("prune")
    with pytest.raises(LockHeld):
        AliasLock(store, alias, "host-c:3:run-c", ttl_s=10, clock=clock).acquire()


def test_two_takers_of_an_expired_lease_one_wins(store, alias, clock, monkeypatch):
    AliasLock(store, alias, "host-a:1:run-a", ttl_s=10, clock=clock).acquire()
    clock.advance(45)
    b = AliasLock(store, alias, "host-b:2:run-b", ttl_s=10, clock=clock)
    c = AliasLock(store, alias, "host-c:3:run-c", ttl_s=10, clock=clock)
    real_put = store.lease_put
    raced = []

    def put_after_c(*args, **kwargs):
        if not raced:  # b has read the expired lease; c takes it before b's write lands
            raced.append(True)
            c.acquire()
        return real_put(*args, **kwargs)

    monkeypatch.setattr(store, "lease_put", put_after_c)
    with pytest.raises(LockHeld) as e:
        b.acquire()
    assert "host-c:3:run-c" in str(e.value) and not b.held
    assert c.current().token == c.token
    c.fence("swap")


def test_check_is_free_while_the_lease_is_fresh(store, alias, clock, monkeypatch):
    a = AliasLock(store, alias, "host-a:1:run-a", ttl_s=100, clock=clock).acquire()
    calls = _fail(store, monkeypatch, "lease_update", times=0)
    for _ in range(5):
        a.check("page")
        clock.advance(9)  # 45 s of 100: more than half left every time
    assert calls["n"] == 0
    clock.advance(10)  # 55 s since the last renewal: under half left
    a.check("page")
    assert calls["n"] == 1 and a.expires_at == clock() + 100


def test_a_transient_error_in_a_fence_is_retried_like_the_heartbeat(store, alias, monkeypatch, caplog):
    """Issue 22, item 6: the operator's own lease checks retry transient errors with the heartbeat's policy
    (0.5 s doubling while the lease is valid), instead of ending the run with exit 4."""
    a = AliasLock(store, alias, "host-a:1:run-a", ttl_s=60).acquire()
    calls = _fail(store, monkeypatch, "lease_update", times=2)
    with caplog.at_level(logging.WARNING, logger="vectune.qdrant.lease"):
        t0 = time.monotonic()
        a.fence("swap")  # succeeds on the third try
        a.check("page")
    assert calls["failed"] == 2 and calls["n"] == 3
    assert 1.4 <= time.monotonic() - t0 < 5, "waits of 0.5 s then 1 s"
    assert not a.lost
    retried = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retried) == 2 and all("the lease check before swap failed" in m for m in retried)
    a.release()


def test_a_fence_that_keeps_failing_gives_the_lease_up_before_it_expires(store, alias, monkeypatch, caplog):
    """Retries stop before the lease's own expiry: the state change does not happen (exit 4), the lease is
    marked lost, and every later check raises at once."""
    a = AliasLock(store, alias, "host-a:1:run-a", ttl_s=10, heartbeat_s=1).acquire()
    a.expires_at = time.time() + 2.2  # as if the lease had only 2.2 s left
    calls = _fail(store, monkeypatch, "lease_update", times=None)
    with caplog.at_level(logging.WARNING, logger="vectune.qdrant.lease"), pytest.raises(QdrantUnavailable):
        a.fence("swap")
    assert a.lost and time.time() <= a.expires_at
    assert calls["n"] >= 2
    n = calls["n"]
    with pytest.raises(LockLost):
        a.check("page")
    assert calls["n"] == n
    assert any(r.levelno == logging.ERROR and "not doing: swap" in r.getMessage() for r in caplog.records)
    a.release()


def test_heartbeat_survives_transient_renew_failures(store, alias, monkeypatch, caplog):
    a = AliasLock(store, alias, "host-a:1:run-a", ttl_s=3, heartbeat_s=0.1, clock_skew_s=0).acquire()
    first = a.expires_at
    calls = _fail(store, monkeypatch, "lease_update", times=3)
    with caplog.at_level(logging.WARNING, logger="vectune.qdrant.lease"):
        a.start_heartbeat()
        try:
            assert _wait_for(lambda: calls["n"] >= 6 and a.expires_at > first + 0.5), calls
            assert not a.lost
            a.fence("swap")
        finally:
            a.release()
    assert calls["failed"] == 3
    assert sum("renewal failed" in r.getMessage() for r in caplog.records) == 3
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


def test_heartbeat_gives_up_loudly_before_the_lease_expires(store, alias, monkeypatch, caplog):
    a = AliasLock(store, alias, "host-a:1:run-a", ttl_s=1, heartbeat_s=0.1, clock_skew_s=0).acquire()
    calls = _fail(store, monkeypatch, "lease_update", times=None)
    with caplog.at_level(logging.WARNING, logger="vectune.qdrant.lease"):
        a.start_heartbeat()
        assert _wait_for(lambda: a.lost, timeout=5)
    gave_up = [r for r in caplog.records if r.levelno == logging.ERROR and "gives up" in r.getMessage()]
    assert len(gave_up) == 1
    assert gave_up[0].created <= a.expires_at, "the holder must stop believing in the lease before it expires"
    n = calls["n"]
    with pytest.raises(LockLost) as e:
        a.fence("swap")
    assert "could not renew" in str(e.value)
    with pytest.raises(LockLost):
        a.check("page")
    assert calls["n"] == n, "a lost lock raises at once, without asking Qdrant"
    a.release()


def test_heartbeat_notices_an_intruder(store, alias, caplog):
    a = AliasLock(store, alias, "host-a:1:run-a", ttl_s=2, heartbeat_s=0.1, clock_skew_s=0).acquire()
    with caplog.at_level(logging.WARNING, logger="vectune.qdrant.lease"):
        a.start_heartbeat()
        try:
            # a host whose clock is far ahead sees the lease as long expired and takes it
            b = AliasLock(store, alias, "host-b:2:run-b", ttl_s=2, clock_skew_s=0,
                          clock=lambda: time.time() + 3600).acquire()
            assert _wait_for(lambda: a.lost)
        finally:
            a.release()
    assert any(r.levelno == logging.ERROR and "host-b:2:run-b" in r.getMessage() for r in caplog.records)
    assert b.current().token == b.token, "the old holder's release must not free the intruder's lease"


def test_intruder_during_the_reindex_stops_the_first_operator_before_the_swap(store, alias, clock):
    """Operator A reindexes page by page (check before each page write, fence before the swap).

    A stalls mid-reindex past its lease's expiry; B takes the lease. A must write no further page,
    never swap, and end with LockLost (exit code 5) with the alias untouched.
    """
    from qdrant_client import models

    live, target = f"{alias}-live", f"{alias}-target"
    store.create_collection(live, 4)
    store.create_collection(target, 4)
    store.swap_alias(alias, live)
    a = AliasLock(store, alias, "host-a:1:run-a", ttl_s=60, clock=clock).acquire()
    swapped = []

    def operator_a():
        for page in range(6):
            a.check(f"reindex page {page}")
            store.upsert(target, [models.PointStruct(id=page * 10 + i, vector=[1.0, 0.0, 0.0, float(i)])
                                  for i in range(10)])
            clock.advance(20)
            if page == 2:  # A stalls (GC pause, slow page, dead heartbeat) ...
                clock.advance(120)
                # ... and B, finding the lease expired, takes it over
                AliasLock(store, alias, "host-b:2:run-b", ttl_s=60, clock=clock).acquire()
        a.fence("swap")
        swapped.append(True)
        store.swap_alias(alias, target)

    with pytest.raises(LockLost) as e:
        operator_a()
    assert e.value.exit_code == 5 and "reindex page 3" in str(e.value)
    assert not swapped
    assert store.aliases()[alias] == live
    assert store.count(target) == 30, "no page may be written after the lease was lost"
    assert a.current().owner == "host-b:2:run-b"


def test_a_dead_holder_on_this_host_is_taken_over_at_once(store, alias):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = f"{socket.gethostname()}:{proc.pid}:run-crashed"
    AliasLock(store, alias, dead, ttl_s=3600).acquire()
    b = AliasLock(store, alias, default_owner("run-new"), ttl_s=3600).acquire()
    assert b.took_over == "dead holder" and b.previous.owner == dead and b.generation == 2
    # a live process of this host (this one) is not taken over
    with pytest.raises(LockHeld):
        AliasLock(store, alias, "elsewhere:7:run-z", ttl_s=3600).acquire()

