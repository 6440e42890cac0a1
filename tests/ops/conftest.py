"""Fixtures of the operations tests: short texts of the shared corpus, fault hooks cleared after every test."""

from __future__ import annotations

import pytest

from vectune.core import faults


@pytest.fixture
def texts(corpus_records):
    """The first 30 corpus texts, cut to 240 characters (small truth-model worlds)."""
    return [r["text"][:240] for r in corpus_records[:30]]


@pytest.fixture(autouse=True)
def _clean_hooks():
    yield
    faults.HOOKS.clear()
