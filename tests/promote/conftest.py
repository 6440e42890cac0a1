"""Fixtures of the exact-write tests: the two deterministic models and the corpus texts."""

from __future__ import annotations

import pytest

from tests.helpers.truth import N_POINTS, load_models
from vectune.core import faults


@pytest.fixture(scope="module")
def models():
    return load_models()


@pytest.fixture(scope="module")
def texts(corpus_records):
    return [r["text"][:240] for r in corpus_records[:N_POINTS]]


@pytest.fixture(autouse=True)
def _clean_hooks():
    yield
    faults.HOOKS.clear()
