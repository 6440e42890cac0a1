"""Fixtures of the exact-write tests: the two deterministic models and the corpus texts."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.truth import N_POINTS, Memo, app_text
from vectune.core import faults


@pytest.fixture(scope="module")
def models():
    from vectune.config.settings import Settings
    from vectune.models.store import ModelStore

    base = ModelStore.from_settings(Settings()).load("bundled:all-MiniLM-L6-v2", max_seq_length=64)
    perm = np.random.default_rng(7).permutation(base.dim)
    out = {"base": Memo(base), "cand": Memo(base, perm, ref="cand")}
    for m in out.values():  # every text an app writes in these tests, encoded in one batch
        m.encode_passages([app_text(n) for n in range(1, 80)])
    return out


@pytest.fixture(scope="module")
def texts(corpus_records):
    return [r["text"][:240] for r in corpus_records[:N_POINTS]]


@pytest.fixture(autouse=True)
def _clean_hooks():
    yield
    faults.HOOKS.clear()
