"""Training on several processes (DDP under torchrun, gloo on CPU here; one process per GPU in production)."""

from __future__ import annotations

import json

import pytest
from conftest import PERMISSIVE, invoke

pytestmark = pytest.mark.slow  # a whole `vectune run` with training under torchrun


def test_run_trains_with_two_ddp_processes(indexed, monkeypatch):
    monkeypatch.setenv("VECTUNE_TRAIN_PROCESSES", "2")
    out = invoke("run", "--alias", "docs", "--json", *PERMISSIVE)
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["counts"]["train"]["processes"] == 2
    assert rep["counts"]["train"]["steps"] >= 1
    assert rep["status"] == "promoted"
    # the trained weights came back from the ranks: the candidate differs from the live model
    syn = rep["evaluation"]["synthetic"]
    assert syn["candidate"] != syn["live"] or rep["counts"]["train"]["loss"] is not None
