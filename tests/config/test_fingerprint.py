"""The no-op fingerprint covers every setting that can change a decision; the rest are listed on purpose.

Fields are enumerated from the settings' sections, so a new field fails here until it is either
fingerprinted (the default) or added to ``NOT_DECISIVE`` with a reason.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from annotated_types import Ge, Gt, Le, Lt

from vectune.config.sections import OpenAITeacher
from vectune.config.settings import FLAT, NOT_DECISIVE, SECTIONS, TOP_LEVEL, Settings

#: The settings issue 19 found missing from the hand-kept list: each must change the fingerprint.
ONCE_MISSED = ("confidence", "bootstrap_samples", "roundtrip_filter", "warmup_ratio", "query_time_budget_s",
               "max_seq_length", "query_prompt")


def _bounds(info) -> tuple[float | None, float | None]:
    lo = hi = None
    for m in info.metadata:
        if isinstance(m, (Ge, Gt)):
            lo = float(getattr(m, "ge", getattr(m, "gt", 0)))
        if isinstance(m, (Le, Lt)):
            hi = float(getattr(m, "le", getattr(m, "lt", 0)))
    return lo, hi


def _other(info, current):
    """A valid value different from ``current`` for a field."""
    ann = info.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    base = args[0] if (typing.get_origin(ann) in (typing.Union, getattr(typing, "UnionType", None)) or
                       str(typing.get_origin(ann)) == "<class 'types.UnionType'>") and args else ann
    origin = typing.get_origin(base)
    if origin is typing.Literal:
        return next(c for c in typing.get_args(base) if c != current)
    if origin is list:
        (inner,) = typing.get_args(base)
        if typing.get_origin(inner) is typing.Literal:
            choices = list(typing.get_args(inner))
            return [choices[0]] if current != [choices[0]] else [choices[-1]]
        return [0.5] if current != [0.5] else [0.25]
    if base is bool:
        return not current
    lo, hi = _bounds(info)
    if base is int:
        cand = (current if current is not None else 1) + 1
        return cand if hi is None or cand <= hi else (current - 1)
    if base is float:
        cur = current if current is not None else 0.5
        cand = cur * 0.9 if cur else 0.05
        if lo is not None and cand <= lo:
            cand = (cur + (hi if hi is not None else cur + 1)) / 2
        return cand
    if base is str:
        return (current or "") + "x"
    if base is Path:
        return Path("elsewhere")
    if "SecretStr" in str(base):
        return "another-secret"
    raise AssertionError(f"no test value for a field of type {ann}: extend _other()")


def _fields():
    for section, model in SECTIONS.items():
        for name, info in model.model_fields.items():
            yield f"{section}.{name}", section, name, info
    for name in TOP_LEVEL:
        yield name, None, name, Settings.model_fields[name]


def _decisive(key: str) -> bool:
    section = key.split(".")[0]
    return key not in NOT_DECISIVE and section not in NOT_DECISIVE


@pytest.mark.parametrize("key,section,name,info", list(_fields()), ids=[k for k, *_ in _fields()])
def test_each_setting_is_fingerprinted_or_excluded_on_purpose(key, section, name, info):
    base = Settings()
    current = getattr(getattr(base, section), name) if section else getattr(base, name)
    flat = next((f for f, (s, n) in FLAT.items() if (s, n) == (section, name)), name)
    changed = base.replace(**{flat: _other(info, current)})
    assert (getattr(getattr(changed, section), name) if section else getattr(changed, name)) != current
    if _decisive(key):
        assert changed.decisive() != base.decisive(), f"{key} changes what a cycle decides but is not fingerprinted"
    else:
        assert changed.decisive() == base.decisive(), f"{key} is listed as not decisive but changes the fingerprint"


@pytest.mark.parametrize("field", [f for f in OpenAITeacher.model_fields if f != "kind"])
def test_the_llm_teachers_fields_too(field):
    base = Settings(teacher="openai")
    info = OpenAITeacher.model_fields[field]
    changed = base.replace(teacher="openai", **{f"teacher_{field}": _other(info, getattr(base.teacher, field))})
    differs = changed.decisive() != base.decisive()
    assert differs == (f"teacher.{field}" not in NOT_DECISIVE), field


def test_the_settings_once_missed_are_decisive():
    for flat in ONCE_MISSED:
        section, name = FLAT[flat]
        assert _decisive(f"{section}.{name}"), flat


def test_every_exclusion_names_a_real_setting():
    known = {k for k, *_ in _fields()} | set(SECTIONS) | {"teacher." + f for f in OpenAITeacher.model_fields}
    assert NOT_DECISIVE <= known, sorted(NOT_DECISIVE - known)
