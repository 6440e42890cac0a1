"""vectune.interrupt: the SIGTERM handler of one-shot commands, and how recovery names an interrupted run."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest

from vectune import lineage
from vectune.interrupt import install, signal_name
from vectune.resume import InFlight, recover
from vectune.schedule import Terminated


@pytest.fixture
def restore_sigterm():
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs in the main thread between bytecodes


def test_first_sigterm_raises_143_and_later_ones_do_not_cut_cleanup_short(restore_sigterm, caplog):
    install()
    caplog.set_level(logging.WARNING, logger="vectune.interrupt")
    cleaned = False
    with pytest.raises(Terminated) as exc:
        try:
            _deliver(signal.SIGTERM)
            pytest.fail("SIGTERM did not interrupt")
        finally:
            _deliver(signal.SIGTERM)  # a second one, during cleanup: logged, ignored
            cleaned = True
    assert cleaned
    assert exc.value.code == 143 and signal_name(exc.value) == "SIGTERM"
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs[0].startswith("received SIGTERM: stopping here (exit code 143)")
    assert msgs[1] == "received SIGTERM again: already stopping, cleaning up"


def test_signal_name_only_for_terminated():
    assert signal_name(Terminated(signal.SIGINT)) == "SIGINT"
    assert signal_name(SystemExit(143)) is None
    assert signal_name(ValueError()) is None


def test_interrupted_marker_is_reported_as_stopped_not_died(settings, store):
    from test_recover import _collection

    _collection(store, "docs--base", "live")
    store.swap_alias("docs", "docs--base")
    marker = InFlight(settings, "docs")
    marker.set("run7", "train")
    marker.interrupted("SIGTERM")
    assert marker.load()["stage"] == "train" and marker.load()["interrupted_by"] == "SIGTERM"

    rec = recover(store, settings, "docs", "docs--base")
    assert rec.found["previous_run"]["interrupted_by"] == "SIGTERM"
    crash = [e for e in lineage.read_history(settings, "docs") if e["event"] == "crash"]
    assert [e["reason"] for e in crash] == ["run run7 was stopped by SIGTERM during stage 'train'"]


def test_interrupted_without_marker_writes_nothing(settings):
    marker = InFlight(settings, "docs")
    marker.interrupted("SIGTERM")
    assert not marker.path.exists()
