"""The no-op check, end to end: after a decided run, any decision-relevant setting changed means work, not ``noop``.

The kept run here decides on synthetic evidence (no golden set, no synthetic gate: training is skipped), so
each further run costs a read and the offline teacher — cheap enough to try every setting issue 19 found
missing from the old hand-kept list, through the environment, as a cron sets them.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers.cli import invoke

pytestmark = pytest.mark.slow

CHANGES = {  # the seven settings the old hand-kept list missed, and a value that differs from the default
    "VECTUNE_CONFIDENCE": "0.6",
    "VECTUNE_BOOTSTRAP_SAMPLES": "300",
    "VECTUNE_ROUNDTRIP_FILTER": "false",
    "VECTUNE_WARMUP_RATIO": "0.2",
    "VECTUNE_QUERY_TIME_BUDGET_S": "120",
    "VECTUNE_MAX_SEQ_LENGTH": "80",
    "VECTUNE_QUERY_PROMPT": "query: ",
}


def _status(*args) -> dict:
    out = invoke("run", "--alias", "docs", "--json", *args)
    return json.loads(out.output[out.output.index("{"):])


def test_changing_any_decisive_setting_after_a_kept_run_is_not_a_noop(indexed, monkeypatch):
    first = _status()
    assert first["status"] == "kept" and "synthetic" in first["reason"]
    assert _status()["status"] == "noop"  # nothing changed: nothing to do
    for var, value in CHANGES.items():
        with monkeypatch.context() as mp:
            mp.setenv(var, value)
            rep = _status()
            assert rep["status"] == "kept", f"{var}={value} after a kept run answered {rep['status']}: {rep['reason']}"
            assert _status()["status"] == "noop", f"the same {var}={value} again is a no-op"
    assert _status()["status"] == "kept"  # back to the defaults: a change again since the last decided run
    # settings that cannot change a decision do not trigger a run
    monkeypatch.setenv("VECTUNE_UPSERT_BATCH", "17")
    monkeypatch.setenv("VECTUNE_COPY_BATCH", "17")
    monkeypatch.setenv("VECTUNE_LOCK_TTL_S", "600")
    assert _status()["status"] == "noop"
