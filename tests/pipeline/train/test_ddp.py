"""Training on several processes (DDP under torchrun, gloo on CPU here; one process per GPU in production)."""

from __future__ import annotations

import json

import pytest

from tests.helpers.cli import PERMISSIVE, invoke

pytestmark = pytest.mark.slow  # a whole `vectune run` with training under torchrun


def test_run_trains_with_two_ddp_processes(indexed, monkeypatch):
    monkeypatch.setenv("VECTUNE_TRAIN_PROCESSES", "2")
    out = invoke("run", "--alias", "docs", "--json", *PERMISSIVE)
    rep = json.loads(out.output[out.output.index("{"):])
    assert rep["counts"]["train"]["processes"] == 2
    assert rep["counts"]["train"]["steps"] >= 1
    assert rep["status"] == "promoted"
    # the trained weights came back from the ranks: the promoted model's weights differ from the live model's
    from vectune.config.settings import BUNDLED_MODEL, Settings
    from vectune.models.store import ModelStore

    models = ModelStore.from_settings(Settings())
    tuned = models.load(rep["candidate_model"]).model.state_dict()
    live = models.load(BUNDLED_MODEL).model.state_dict()
    moved = [k for k, v in live.items() if v.dtype.is_floating_point and not bool((tuned[k] == v).all())]
    assert len(moved) > 10, "the ranks' training did not reach the saved model"
