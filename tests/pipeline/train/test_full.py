"""Full fine-tuning (vectune.pipeline.train.full) on a handful of tiny examples with the bundled MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from vectune.config.settings import Settings
from vectune.errors import BadInput
from vectune.pipeline.pairs.negatives import Example

TOPICS = ["sorting lists", "garbage collection", "dictionaries", "generators", "decorators", "the GIL",
          "asyncio tasks", "context managers", "f-strings", "dataclasses", "type hints", "pathlib",
          "logging", "unit tests", "virtual environments", "regular expressions"]


def _examples(n_neg: int = 1) -> list[Example]:
    out = []
    for i, t in enumerate(TOPICS):
        negs = [f"A passage about {TOPICS[(i + k) % len(TOPICS)]} and nothing else." for k in range(1, n_neg + 1)]
        out.append(Example(f"how do {t} work in python", f"A passage explaining {t} in Python.", negs, "test"))
    return out


def _settings(**kw) -> Settings:
    return Settings(**{"batch_size": 8, "max_steps": 2, "epochs": 1, "learning_rate": 1e-4, "warmup_ratio": 0.0,
                       "max_seq_length": 64, **kw})


def _fresh_model(settings):
    from vectune.models.store import ModelStore

    return ModelStore.from_settings(settings).load("bundled:all-MiniLM-L6-v2")


@pytest.mark.slow
def test_train_local_two_steps_changes_weights_and_reports_sane_stats():
    from vectune.pipeline.train.full import train_local

    settings = _settings()
    enc = _fresh_model(settings)
    probe = ["how do generators work in python"]
    before_vec = enc.encode_queries(probe)
    before = {k: v.detach().clone() for k, v in enc.model.state_dict().items()}
    stats = train_local(enc.model, enc.query_prompt, _examples(), settings.full, settings.seed)
    assert stats.examples == 16
    assert stats.steps == 2
    assert stats.processes == 1
    assert stats.seconds > 0 and stats.examples_per_s > 0
    assert stats.loss is not None and np.isfinite(stats.loss) and stats.loss > 0
    after = enc.model.state_dict()
    changed = [k for k, v in before.items() if v.dtype.is_floating_point and not bool((after[k] == v).all())]
    assert len(changed) > 10, "two optimiser steps must move the weights"
    assert not enc.model.training  # back in eval mode
    assert not np.allclose(enc.encode_queries(probe), before_vec, atol=1e-6)
    assert set(stats.to_dict()) == {"examples", "steps", "seconds", "loss", "examples_per_s", "processes"}


def test_train_needs_two_examples(bundled_encoder):
    from vectune.pipeline.train.full import train

    with pytest.raises(BadInput, match="only 1 training pairs"):
        train(bundled_encoder, _examples()[:1], _settings().full)
