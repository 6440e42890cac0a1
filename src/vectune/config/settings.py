"""vectune's settings: one section per stage or concern (:mod:`vectune.config.sections`), composed here.

Every setting reads a ``VECTUNE_*`` environment variable (or a ``.env`` file) by its *flat name*
(``VECTUNE_MIN_DELTA`` sets ``gate.min_delta``) or by its nested name
(``VECTUNE_GATE__MIN_DELTA``); the Qdrant and OpenAI connection settings also read their
conventional names (``QDRANT_URL``, ``QDRANT_API_KEY``, ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``).
CLI options and keyword arguments override the environment; both accept flat names::

    Settings(min_delta=0.01)                      # flat, as the CLI and the environment spell it
    Settings(gate={"min_delta": 0.01})            # nested
    load_settings(min_delta=None, seed=7)         # None = "not given" (CLI options left unset)

The teacher (query generator) is a discriminated union selected by ``VECTUNE_TEACHER``
(``offline`` or ``openai``), in the style of pgai's vectorizer config.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from vectune.config.sections import (
    BUNDLED_MODEL,
    TEXT_FIELD_PRESETS,
    CollectionConfig,
    FullConfig,
    GateConfig,
    LabelsConfig,
    LockConfig,
    ModelConfig,
    NegativesConfig,
    ObserveConfig,
    OfflineTeacher,
    OpenAITeacher,
    PairsConfig,
    PathsConfig,
    PromoteConfig,
    QdrantConfig,
    QueryConfig,
    ReadConfig,
    ServeConfig,
    TeacherConfig,
    WatchConfig,
)

logger = logging.getLogger(__name__)

#: The sections of :class:`Settings`, by attribute name.
SECTIONS: dict[str, type[BaseModel]] = {
    "qdrant": QdrantConfig, "paths": PathsConfig, "collection": CollectionConfig, "model": ModelConfig,
    "read": ReadConfig, "pairs": PairsConfig, "labels": LabelsConfig, "negatives": NegativesConfig,
    "query": QueryConfig, "full": FullConfig, "gate": GateConfig, "promote": PromoteConfig, "lock": LockConfig,
    "serve": ServeConfig, "observe": ObserveConfig, "watch": WatchConfig,
}
#: Settings outside the sections.
TOP_LEVEL = ("alias", "mode", "seed")

#: Extra environment names (beyond ``VECTUNE_<FLAT>``) of some flat settings: the conventional ones.
CONVENTIONAL_ENV = {"qdrant_url": ("QDRANT_URL",), "qdrant_api_key": ("QDRANT_API_KEY",)}

#: The flat environment variables of the OpenAI teacher's fields (the documented names).
OPENAI_TEACHER_ENV = {
    "model": "VECTUNE_TEACHER_MODEL",
    "base_url": "OPENAI_BASE_URL",
    "api_key": "OPENAI_API_KEY",
    "concurrency": "VECTUNE_TEACHER_CONCURRENCY",
    "timeout_s": "VECTUNE_TEACHER_TIMEOUT_S",
    "max_retries": "VECTUNE_TEACHER_MAX_RETRIES",
    "prompt_file": "VECTUNE_TEACHER_PROMPT_FILE",
    "domain_hint": "VECTUNE_TEACHER_DOMAIN_HINT",
    "json_mode": "VECTUNE_TEACHER_JSON_MODE",
    "max_chunks": "VECTUNE_TEACHER_MAX_CHUNKS",
    "max_tokens_total": "VECTUNE_TEACHER_MAX_TOKENS",
    "max_cost_usd": "VECTUNE_TEACHER_MAX_COST_USD",
    "usd_per_1k_prompt_tokens": "VECTUNE_TEACHER_USD_PER_1K_PROMPT",
    "usd_per_1k_completion_tokens": "VECTUNE_TEACHER_USD_PER_1K_COMPLETION",
}

#: Settings that cannot change what a cycle decides, left out of the no-op fingerprint on purpose
#: (``section.field``, or a whole ``section``). Every other field is fingerprinted; a test enumerates
#: them all so a new field is either fingerprinted or listed here deliberately.
NOT_DECISIVE = frozenset({
    "alias",                   # the alias is the run's subject, not a setting of what it learns
    "qdrant", "paths", "lock", "serve", "observe",   # where state lives, leases, schedule, logs and metrics
    "model.device", "model.encode_batch_size",        # where and how many at a time, not what
    "read.scroll_batch",                              # page size of a read
    "labels.collection",                              # where feedback lives (its content is fingerprinted)
    "query.threads",                                  # CPU threads of the trainer
    "full.processes", "full.mini_batch_size", "full.cached_mnrl",  # how training is spread, not what it learns
    "promote",                                        # how a promotion is carried out, after the decision
    "watch",                                          # judges the live model before the cycle; its own cache
                                                      # key (ops/watch.py) covers these settings
    "teacher.api_key", "teacher.concurrency", "teacher.timeout_s", "teacher.max_retries",
})


def _flat_name(name: str, info: FieldInfo) -> str:
    return info.validation_alias if isinstance(info.validation_alias, str) else name


def _flat_table() -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    for section, model in SECTIONS.items():
        for name, info in model.model_fields.items():
            flat = _flat_name(name, info)
            if flat in table or flat in TOP_LEVEL:
                raise AssertionError(f"flat setting name {flat!r} is used twice")
            table[flat] = (section, name)
    return table


#: flat name -> (section, field): ``"min_delta" -> ("gate", "min_delta")``.
FLAT: dict[str, tuple[str, str]] = _flat_table()


def flat_name(section: str, field: str) -> str:
    """The flat (environment/CLI) name of ``section.field``."""
    return _flat_name(field, SECTIONS[section].model_fields[field])


def env_name(flat: str) -> str:
    """The documented environment variable of a flat setting."""
    return "VECTUNE_" + flat.upper()


def route(values: dict[str, Any]) -> dict[str, Any]:
    """Flat keys (``min_delta``, ``teacher_model``...) moved into their sections; other keys kept.

    Args:
        values: settings keyed by flat names, section names or top-level names (mixed is fine).

    Returns:
        The same settings keyed by top-level and section names. A flat key overrides the
        same field given inside a section dict.
    """
    out: dict[str, Any] = {}
    flat: dict[str, Any] = {}
    teacher_fields: dict[str, Any] = {}
    for key, value in values.items():
        if key in FLAT and not (key in SECTIONS and isinstance(value, (dict, BaseModel))):
            # a flat name that is also a section's name (``watch``): a dict or model is the section itself
            flat[key] = value
        elif key.startswith("teacher_") and key not in ("teacher_config",):
            teacher_fields[key[len("teacher_"):]] = value
        elif key == "offline_method":
            teacher_fields["method"] = value
        else:
            out[key] = value
    if isinstance(out.get("teacher"), str):
        out["teacher"] = {"kind": out["teacher"]}
    for key, value in flat.items():
        section, field = FLAT[key]
        current = out.get(section)
        if current is None:
            current = {}
        elif not isinstance(current, dict):
            current = current.model_dump(exclude_unset=True)
        out[section] = {**current, field: value}
    if teacher_fields:
        teacher = out.get("teacher")
        if teacher is None:
            teacher = {}
        elif not isinstance(teacher, dict):
            teacher = teacher.model_dump(exclude_unset=True) | {"kind": teacher.kind}
        out["teacher"] = {**teacher, **teacher_fields}
    return out


class _Environment(PydanticBaseSettingsSource):
    """Every setting from the environment and ``.env``: flat, nested and conventional names."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False  # unused: __call__ reads everything at once

    def __call__(self) -> dict[str, Any]:
        env: dict[str, str] = {}
        env_file = self.config.get("env_file")
        if isinstance(env_file, (str, Path)) and Path(env_file).is_file():
            from dotenv import dotenv_values

            env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        env.update(os.environ)
        values: dict[str, Any] = {}
        for name in TOP_LEVEL:
            if env.get(env_name(name)):
                values[name] = env[env_name(name)]
        flat: dict[str, Any] = {}
        for key, (section, field) in FLAT.items():
            for var in (env_name(key), *CONVENTIONAL_ENV.get(key, ())):
                value = env.get(var)
                if value is None or (value == "" and (section, field) != ("model", "query_prompt")):
                    continue
                flat[key] = value
                break
        nested: dict[str, dict[str, str]] = {}
        for var, value in env.items():
            if var.startswith("VECTUNE_") and "__" in var and value != "":
                section, _, field = var[len("VECTUNE_"):].lower().partition("__")
                if section in SECTIONS and field in SECTIONS[section].model_fields:
                    nested.setdefault(section, {})[field] = value
        values = _deep_merge({**values, **nested}, route(flat))
        teacher = _teacher_env(env)
        if teacher is not None:
            values["teacher"] = teacher
        return values


def _teacher_env(env: dict[str, str]) -> dict | None:
    """The teacher's settings from the environment: ``VECTUNE_TEACHER_CONFIG`` (JSON), else the flat names."""
    if env.get("VECTUNE_TEACHER_CONFIG"):
        return json.loads(env["VECTUNE_TEACHER_CONFIG"])
    kind = env.get("VECTUNE_TEACHER") or None
    fields = {"_env": {field: env[var] for field, var in OPENAI_TEACHER_ENV.items() if env.get(var)}}
    if env.get("VECTUNE_OFFLINE_METHOD"):
        fields["_env"]["method"] = env["VECTUNE_OFFLINE_METHOD"]
    return {"kind": kind, **fields} if kind or fields["_env"] else None


def _teacher(value: Any) -> Any:
    """The teacher section from what the sources gave: the kind picks the model; only its fields are kept."""
    if not isinstance(value, dict):
        return OfflineTeacher(kind=value) if value == "offline" else (
            OpenAITeacher() if value == "openai" else value)
    value = dict(value)
    from_env = value.pop("_env", {})
    kind = value.get("kind") or "offline"
    if kind not in ("offline", "openai"):
        raise ValueError(f"unknown teacher {kind!r}: choose 'offline' or 'openai'")
    model = OpenAITeacher if kind == "openai" else OfflineTeacher
    allowed = set(model.model_fields)
    merged = {k: v for k, v in {**from_env, **value}.items() if k in allowed and v is not None}
    merged["kind"] = kind
    return merged


class Settings(BaseSettings):
    """Runtime settings for every vectune command: top-level choices and one section per stage or concern.

    Attributes:
        alias: the alias a command works on (``VECTUNE_ALIAS``).
        mode: what learns: ``query`` (the query side, against the stored vectors), ``full`` (both
            towers, a full re-embed) or ``auto`` (the query-side candidates, plus full on a GPU).
        seed: the seed of every sample, split and training.
        teacher: the query generator (:class:`OfflineTeacher` or :class:`OpenAITeacher`).
    """

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="forbid",
                                      populate_by_name=True, validate_assignment=True)

    alias: str | None = None
    mode: Literal["auto", "query", "full"] = "auto"
    seed: int = 42
    teacher: TeacherConfig = Field(default_factory=OfflineTeacher)

    qdrant: QdrantConfig = Field(default_factory=QdrantConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    collection: CollectionConfig = Field(default_factory=CollectionConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    read: ReadConfig = Field(default_factory=ReadConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    negatives: NegativesConfig = Field(default_factory=NegativesConfig)
    query: QueryConfig = Field(default_factory=QueryConfig)
    full: FullConfig = Field(default_factory=FullConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    promote: PromoteConfig = Field(default_factory=PromoteConfig)
    lock: LockConfig = Field(default_factory=LockConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    observe: ObserveConfig = Field(default_factory=ObserveConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, _Environment(settings_cls))

    @model_validator(mode="before")
    @classmethod
    def _route_flat(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = route(data)
        if "teacher" in data:
            data["teacher"] = _teacher(data["teacher"])
        return data

    # --- derived --------------------------------------------------------------
    @property
    def candidate_kinds(self) -> list[str]:
        """The query-side candidates this run trains (see ``query.candidates``)."""
        if self.query.candidates is not None:
            return [k for k in ("linear", "query") if k in self.query.candidates]
        return ["query"] if self.mode == "query" else ["linear", "query"]

    def for_collection(self, meta: dict) -> Settings:
        """These settings as they apply to one collection (:meth:`CollectionConfig.for_meta`: the effective text field).

        Args:
            meta: the collection's lineage record (or a checkpoint holding ``text_field``).

        Returns:
            Settings with the effective ``collection.text_field`` (``self`` when nothing changes).
        """
        collection = self.collection.for_meta(meta)
        return self if collection is self.collection else self.model_copy(update={"collection": collection})

    def replace(self, **flat: Any) -> Settings:
        """A copy with some settings changed, given by flat or section names (validated)."""
        data = self.model_dump(exclude_unset=True, round_trip=True)
        data = _deep_merge(data, route(flat))
        if "teacher" in data and "teacher" in flat:
            data["teacher"] = _teacher(data["teacher"])
        return type(self).model_validate(data)

    @property
    def work_dir(self) -> Path:
        """Run state: reports, caches, history."""
        return Path(self.paths.work_dir or self.paths.home / "work")

    @property
    def model_dir(self) -> Path:
        """The model store."""
        return Path(self.paths.model_dir or self.paths.home / "models")

    @property
    def qdrant_path(self) -> Path:
        """Embedded Qdrant's folder (used when no server URL is set)."""
        return Path(self.qdrant.path or self.paths.home / "qdrant")

    def run_dir(self, alias: str) -> Path:
        """Directory holding resumable stage outputs for one alias."""
        return self.work_dir / "runs" / alias

    def secrets(self) -> list[str]:
        """Secret values that must never be printed, for log redaction."""
        out = []
        for s in (self.qdrant.api_key, getattr(self.teacher, "api_key", None)):
            if s is not None and s.get_secret_value():
                out.append(s.get_secret_value())
        if self.observe.pushgateway_url:
            from urllib.parse import urlsplit

            password = urlsplit(self.observe.pushgateway_url).password
            if password:
                out.append(password)
        return out

    def decisive(self) -> dict[str, Any]:
        """Every setting that can change what a cycle decides (the no-op fingerprint), as plain JSON values."""
        dump = self.model_dump(mode="json")
        out: dict[str, Any] = {}
        for key, value in dump.items():
            if key in NOT_DECISIVE:
                continue
            if isinstance(value, dict):
                out[key] = {f: v for f, v in value.items() if f"{key}.{f}" not in NOT_DECISIVE}
            else:
                out[key] = value
        return out


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment and ``.env``, then apply the non-None overrides.

    Args:
        **overrides: values from CLI options, by flat name; ``None`` means "not given".

    Returns:
        The validated settings.
    """
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


__all__ = ["BUNDLED_MODEL", "FLAT", "NOT_DECISIVE", "OPENAI_TEACHER_ENV", "SECTIONS", "TEXT_FIELD_PRESETS",
           "OfflineTeacher", "OpenAITeacher", "SecretStr", "Settings", "env_name", "flat_name", "load_settings",
           "route"]
