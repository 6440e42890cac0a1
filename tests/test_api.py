"""The Python API (vectune.Alias): the same cycle from Python and from the CLI, the README's example."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers.cli import invoke
from vectune import Alias
from vectune.config.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_alias_takes_settings_by_flat_name_over_the_environment(monkeypatch):
    monkeypatch.setenv("VECTUNE_MIN_DELTA", "0.02")
    assert Alias("docs").settings.gate.min_delta == pytest.approx(0.02)
    docs = Alias("docs", min_delta=0.03, mode="query", seed=None)  # None: not given
    assert docs.settings.gate.min_delta == pytest.approx(0.03) and docs.settings.mode == "query"
    assert docs.settings.seed == 42
    assert docs.with_settings(seed=7).settings.seed == 7 and docs.settings.seed == 42
    base = Settings(confidence=0.9)
    assert Alias("docs", base, min_delta=0.1).settings.gate.confidence == pytest.approx(0.9)
    with pytest.raises(ValueError):
        Alias("")


@pytest.mark.slow
def test_python_and_cli_runs_of_one_cycle_report_the_same_settings(indexed, monkeypatch):
    """One default per setting: no second set of defaults on either side (issue 19)."""
    monkeypatch.setenv("VECTUNE_MODE", "query")
    out = invoke("run", "--alias", "docs", "--dry-run", "--json", "--min-delta", "0.01")
    from_cli = json.loads(out.output[out.output.index("{"):])
    from_python = Alias("docs", min_delta=0.01).run(dry_run=True).to_dict()
    assert from_cli["settings"] == from_python["settings"]
    assert from_python["settings"]["gate"]["min_delta"] == 0.01
    assert from_python["settings"]["query"]["epochs"] == Settings().query.epochs
    assert from_cli["counts"]["train"]["kind"] == from_python["counts"]["train"]["kind"]


@pytest.mark.slow
def test_the_readmes_python_example_runs(indexed):
    """The README's ``vectune.Alias`` example, as written, against the indexed tiny corpus."""
    text = README.read_text()
    block = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README: the Python API example (marked <!-- api-example -->) is missing"
    code = block.group(1)
    scope: dict = {}
    exec(compile(code, "README.md (api example)", "exec"), scope)  # noqa: S102 - the documented example itself
    assert scope["report"].status in ("promoted", "kept", "noop")
    assert scope["hits"] and "score" in scope["hits"][0]
