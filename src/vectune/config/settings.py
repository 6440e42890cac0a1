"""All of vectune's configuration, in one place.

Every setting reads a ``VECTUNE_*`` environment variable (or a ``.env`` file); the
Qdrant and OpenAI connection settings also read their conventional names
(``QDRANT_URL``, ``QDRANT_API_KEY``, ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``).
CLI options override the environment.

The teacher (query generator) is a discriminated union selected by
``VECTUNE_TEACHER`` (``offline`` or ``openai``), in the style of pgai's
vectorizer config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)

#: Payload field presets for common frameworks.
TEXT_FIELD_PRESETS: dict[str, str] = {
    "langchain": "page_content",
    "llamaindex": "_node_content",
    "haystack": "content",
    "default": "text",
}

BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"


def _env_secret(name: str) -> SecretStr | None:
    """A secret from the environment (the conventional name), or None."""
    import os

    value = os.environ.get(name)
    return SecretStr(value) if value else None


class OfflineTeacher(BaseModel):
    """Pseudo-queries made from the chunk itself, with no network."""

    kind: Literal["offline"] = "offline"
    method: Literal["mix", "title", "keyphrase", "cloze"] = "mix"


class OpenAITeacher(BaseModel):
    """Synthetic queries from any OpenAI-compatible chat endpoint."""

    kind: Literal["openai"] = "openai"
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: SecretStr | None = Field(default_factory=lambda: _env_secret("OPENAI_API_KEY"))
    concurrency: int = Field(default=8, ge=1, le=256)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=20)
    prompt_file: Path | None = None
    domain_hint: str | None = None
    json_mode: bool = True
    max_chunks: int | None = Field(default=None, ge=0)
    max_tokens_total: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    usd_per_1k_prompt_tokens: float = 0.0
    usd_per_1k_completion_tokens: float = 0.0


TeacherConfig = Annotated[OfflineTeacher | OpenAITeacher, Field(discriminator="kind")]


class Settings(BaseSettings):
    """Runtime settings for every vectune command."""

    model_config = SettingsConfigDict(
        env_prefix="VECTUNE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        env_nested_delimiter="__",  # e.g. VECTUNE_TEACHER_CONFIG__MODEL; the flat names below stay documented
    )

    # --- where things live -------------------------------------------------
    qdrant_url: str | None = Field(
        default=None, validation_alias=AliasChoices("VECTUNE_QDRANT_URL", "QDRANT_URL", "qdrant_url")
    )
    qdrant_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("VECTUNE_QDRANT_API_KEY", "QDRANT_API_KEY", "qdrant_api_key"),
    )
    qdrant_path: Path | None = None
    qdrant_timeout_s: int = 60
    home: Path = Field(
        default=Path(".vectune"),
        description="Root for state when work_dir/model_dir/qdrant_path are not set.",
    )
    work_dir: Path | None = None
    model_dir: Path | None = None

    # --- the collection ----------------------------------------------------
    alias: str | None = None
    text_field: str = "text"
    vector_name: str | None = Field(
        default=None, description="Named dense vector to tune; None = the unnamed default or the only one."
    )
    id_field: str = "doc_id"

    # --- models -------------------------------------------------------------
    base_model: str = BUNDLED_MODEL
    query_prompt: str | None = Field(default=None, description="Prefix for queries (BGE needs one).")
    max_seq_length: int = Field(default=256, ge=16, le=8192)
    device: str | None = None
    encode_batch_size: int = Field(default=64, ge=1)

    # --- read ---------------------------------------------------------------
    min_chars: int = Field(default=40, ge=0)
    max_chars: int = Field(default=8000, ge=1)
    max_train_chunks: int = Field(default=2000, ge=1)
    min_train_chunks: int = Field(default=20, ge=2)
    scroll_batch: int = Field(default=256, ge=1)

    # --- pairs ---------------------------------------------------------------
    # The teacher kind is read from VECTUNE_TEACHER by load_settings(); a full JSON
    # config may be given as VECTUNE_TEACHER_CONFIG.
    teacher: TeacherConfig = Field(
        default_factory=OfflineTeacher, validation_alias=AliasChoices("VECTUNE_TEACHER_CONFIG")
    )
    queries_per_chunk: int = Field(default=3, ge=1, le=20)
    max_train_pairs: int = Field(default=1500, ge=2, description="Training budget: pairs sampled at most "
                                 "(~14 min at ~1.8 pairs/s on 2 CPU cores; seconds on a GPU).")
    eval_fraction: float = Field(default=0.2, gt=0, lt=1)
    max_eval_queries: int = Field(default=500, ge=1)
    seed: int = 42
    train_set: Path | None = None
    eval_set: Path | None = None

    # --- the app's feedback (vectune.qdrant.feedback) ---------------------------------
    feedback: bool = Field(default=True, description="Without --train-set/--eval-set, learn from the feedback "
                           "logged for the alias: the newest share is the golden set, the older rest trains.")
    feedback_collection: str = "vectune_feedback"
    feedback_golden_fraction: float = Field(default=0.3, ge=0, lt=1)
    feedback_min_golden: int = Field(default=20, ge=1)
    feedback_min_train: int = Field(default=20, ge=1)
    few_shot: int = Field(default=5, ge=0, description="Real training queries shown to an LLM teacher as examples.")
    pairs_sample: int = Field(default=100, ge=0, description="Training pairs sampled into each run's record "
                              "for people to read (vectune pairs).")

    # --- hard negatives -----------------------------------------------------
    hard_negatives: int = Field(default=1, ge=0, le=10)
    negatives_skip_top: int = Field(default=0, ge=0)
    negatives_depth: int = Field(default=30, ge=1)
    relative_margin: float = Field(default=0.05, ge=0, lt=1)

    # --- what learns -----------------------------------------------------------
    mode: Literal["auto", "query", "full"] = Field(
        default="auto", description="query: only the query side learns, against the stored passage vectors "
        "(nothing re-encoded; promotion copies the vectors); full: both towers and a full re-embed; auto: the "
        "query-side candidates (linear map, query encoder), plus full on a GPU or with auto_full.")
    auto_full: bool = Field(default=False, description="In auto mode, also train the full candidate without a GPU.")
    query_candidates: list[Literal["linear", "query"]] | None = Field(
        default=None, description="Query-side candidates to train, cheapest first (default: the query encoder in "
        "mode query; the linear map and the query encoder in mode auto).")

    # --- query-side training (mode query/auto) --------------------------------
    query_epochs: float = Field(default=8.0, gt=0, description="Most epochs of the query encoder; the best epoch "
                                "on a slice of the training queries is kept.")
    query_max_steps: int = Field(default=-1, description="-1 = as many as the epochs need.")
    query_time_budget_s: float = Field(default=900.0, ge=0, description="Stop query-side training after this "
                                       "long (0 = no limit).")
    query_learning_rate: float = Field(default=2e-5, gt=0)
    query_batch_size: int = Field(default=32, ge=2)
    query_corpus_max: int = Field(default=300_000, ge=10, description="Most stored vectors held in memory as "
                                  "the query side's negatives.")
    query_val_fraction: float = Field(default=0.2, ge=0, lt=1, description="Share of the training queries that "
                                      "picks the best checkpoint (never the golden set).")
    query_refit: bool = Field(default=True, description="Retrain on all training queries for the chosen epochs.")
    linear_epochs: int = Field(default=60, ge=0)
    linear_learning_rate: float = Field(default=1e-3, gt=0)
    linear_identity_weight: float = Field(default=1.0, ge=0, description="Pull of the linear map toward identity.")

    # --- training (full mode) -------------------------------------------------
    epochs: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=16, ge=2)
    learning_rate: float = Field(default=2e-5, gt=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    max_steps: int = Field(default=-1, description="-1 = as many as epochs need.")
    cached_mnrl: bool = Field(default=False, description="CachedMNRL: big batches in small memory.")
    train_processes: int = Field(default=1, ge=1, description="DDP processes (one per GPU) for training, via torchrun.")
    mini_batch_size: int = Field(default=16, ge=1)

    # --- evaluation and gate --------------------------------------------------
    eval_corpus_cap: int = Field(default=20000, ge=10)
    gate_metric: Literal["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"] = Field(
        default="ndcg@10", description="The metric that decides (nDCG@10 detects real gains with 3-5x fewer golden "
        "queries than recall@5: bench/RESULTS.md, gate power).")
    gate_test: Literal["bootstrap", "permutation", "wilcoxon"] = Field(
        default="permutation", description="Paired test that the gain is not noise: a one-sided randomization "
        "(sign-flip) test at (1 - confidence)/2, exact and on the mean; or the bootstrap CI's lower bound, or Wilcoxon.")
    min_delta: float = Field(default=0.005, ge=-1, description="Negative values accept regressions: tests only.")
    bootstrap: bool = True
    bootstrap_samples: int = Field(default=1000, ge=100)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    allow_synthetic_gate: bool = False
    roundtrip_filter: bool = Field(default=True, description="Keep teacher queries whose chunk the live model ranks in top k.")
    roundtrip_top_k: int = Field(default=20, ge=1)

    # --- promotion -----------------------------------------------------------
    upsert_batch: int = Field(default=128, ge=1)
    verify_sample: int = Field(default=5, ge=0)
    keep_versions: int = Field(default=3, ge=1)
    keep_candidate: bool = Field(default=False, description="Save a rejected candidate in the model store too "
                                 "(to inspect it or score it on data the gate never saw).")

    engine: Literal["local", "ray"] = Field(default="local", description="Re-embedding engine (ray: pip install vectune[ray]).")
    ray_partitions: int | None = Field(default=None, ge=1, description="Partitions of the Ray re-embedding (default: auto).")

    # --- operation -----------------------------------------------------------
    schedule: str = Field(default="0 3 * * *", description="Cron expression for `vectune serve`.")
    schedule_tz: str | None = Field(default=None, description="Time zone of the schedule (default UTC).")
    run_at_start: bool = False
    metrics_dir: Path | None = Field(default=None, description="Write a Prometheus textfile here after each run.")
    pushgateway_url: str | None = None
    lock_ttl_s: int = Field(default=900, ge=10, description="Alias lease length; renewed at each stage and by a heartbeat.")
    lock_clock_skew_s: int = Field(default=30, ge=0, description="How far clocks of operator hosts may differ; a lease "
                                   "counts as expired only this long after its expiry.")
    log_format: Literal["auto", "text", "json"] = "auto"
    log_level: str = "INFO"

    @field_validator("text_field")
    @classmethod
    def _preset(cls, v: str) -> str:
        return TEXT_FIELD_PRESETS.get(v, v)

    @property
    def candidate_kinds(self) -> list[str]:
        """The query-side candidates this run trains (see ``query_candidates``)."""
        if self.query_candidates is not None:
            return [k for k in ("linear", "query") if k in self.query_candidates]
        return ["query"] if self.mode == "query" else ["linear", "query"]

    def for_collection(self, meta: dict) -> "Settings":
        """These settings as they apply to one collection: the one rule for the effective text field.

        A text field set explicitly (option, environment, ``.env``) wins; otherwise the one the
        collection's lineage records (what ``index``/``adopt``/a promotion used); otherwise the default.

        Args:
            meta: the collection's lineage record (or a checkpoint holding ``text_field``).

        Returns:
            Settings with the effective ``text_field`` (``self`` when nothing changes).
        """
        recorded = (meta or {}).get("text_field")
        if "text_field" in self.model_fields_set or not recorded or recorded == self.text_field:
            return self
        return self.model_copy(update={"text_field": recorded})

    # --- derived paths --------------------------------------------------------
    @property
    def resolved_work_dir(self) -> Path:
        return Path(self.work_dir or self.home / "work")

    @property
    def resolved_model_dir(self) -> Path:
        return Path(self.model_dir or self.home / "models")

    @property
    def resolved_qdrant_path(self) -> Path:
        return Path(self.qdrant_path or self.home / "qdrant")

    def run_dir(self, alias: str) -> Path:
        """Directory holding resumable stage outputs for one alias."""
        return self.resolved_work_dir / "runs" / alias

    def secrets(self) -> list[str]:
        """Secret values that must never be printed, for log redaction."""
        out = []
        for s in (self.qdrant_api_key, getattr(self.teacher, "api_key", None)):
            if s is not None and s.get_secret_value():
                out.append(s.get_secret_value())
        if self.pushgateway_url:
            from urllib.parse import urlsplit

            password = urlsplit(self.pushgateway_url).password
            if password:
                out.append(password)
        return out


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


def load_settings(**overrides) -> Settings:
    """Build settings from env/.env, then apply non-None CLI overrides.

    Args:
        **overrides: values from CLI options; ``None`` means "not given".

    Returns:
        The validated settings.
    """
    import os

    clean = {k: v for k, v in overrides.items() if v is not None}
    teacher_kind = clean.pop("teacher", None) or os.environ.get("VECTUNE_TEACHER")
    teacher_fields = {k[len("teacher_"):]: clean.pop(k) for k in list(clean) if k.startswith("teacher_")}
    if teacher_kind or teacher_fields:
        clean["teacher"] = _teacher_from_env(teacher_kind or "offline", teacher_fields)
    return Settings(**clean)


def _teacher_from_env(kind: str, fields: dict) -> OfflineTeacher | OpenAITeacher:
    import os

    if kind == "offline":
        method = fields.get("method") or os.environ.get("VECTUNE_OFFLINE_METHOD")
        return OfflineTeacher(**({"method": method} if method else {}))
    if kind == "openai":
        env = {field: os.environ.get(var) for field, var in OPENAI_TEACHER_ENV.items()}
        env = {k: v for k, v in env.items() if v not in (None, "")}
        env.update({k: v for k, v in fields.items() if v is not None})
        return OpenAITeacher(**env)
    raise ValueError(f"unknown teacher {kind!r}: choose 'offline' or 'openai'")
