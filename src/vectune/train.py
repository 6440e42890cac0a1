"""Fine-tune stage: the candidates.

Query side (modes ``query``/``auto``): only the query side learns, against the live
collection's stored passage vectors — a linear map on the query embeddings, or the
query encoder itself (:mod:`vectune.query_side`); the candidate is one asymmetric
model whose document route is the live passage model.

Full (mode ``full``, or ``auto`` on a GPU): MultipleNegativesRankingLoss from the live model.

In-batch negatives plus the mined hard negatives, batches without duplicate texts
(a duplicate inside a batch would be a false in-batch negative), the query prompt
on the anchor column where the model needs one. CachedMNRL (GradCache) lets a
large batch fit in small memory. Uses CUDA when present.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Sequence

from vectune import faults
from vectune.errors import BadInput
from vectune.models import Encoder
from vectune.negatives import Example
from vectune.settings import Settings
from vectune.stats import Stats

logger = logging.getLogger(__name__)


@dataclass
class TrainStats(Stats):
    """What a training run did."""

    ROUND = 5

    examples: int
    steps: int
    seconds: float
    loss: float | None
    examples_per_s: float
    processes: int = 1


#: Candidate kinds, cheapest first.
KINDS = ("linear", "query", "full")


@dataclass
class Candidate:
    """A tuned model waiting for the gate.

    Attributes:
        encoder: the tuned model. For ``linear`` and ``query`` it is asymmetric: its query route
            is new, its document route is the live passage model (passages are never re-encoded).
        tag: its model-store tag (and the new collection's suffix).
        stats: training statistics.
        kind: ``linear`` (a map on the query embeddings), ``query`` (the query encoder) or
            ``full`` (both towers; promotion re-embeds every point).
    """

    encoder: Encoder
    tag: str
    stats: Any
    kind: str = "full"

    @property
    def reencodes(self) -> bool:
        """True when promoting it re-encodes the passages."""
        return self.kind == "full"


def fine_tune(meta: dict, live_enc: Encoder, examples: Sequence[Example], settings: Settings) -> Candidate:
    """The fine-tune stage: start from the live model, train on ``examples``.

    Args:
        meta: the live collection's lineage record (its ``model_ref`` is the starting point).
        live_enc: the live model (its query prompt carries over).
        examples: training examples with hard negatives.
        settings: training settings.

    Returns:
        The candidate, with a fresh model tag.
    """
    from vectune.lineage import passage_model
    from vectune.models import load_encoder, new_model_tag

    start = passage_model(meta)  # after query-side promotions: the passage model, not the routed one
    cand = load_encoder(start, settings, query_prompt=live_enc.query_prompt)
    stats = train(cand, examples, settings)
    return Candidate(cand, new_model_tag(meta["model_ref"]), stats, "full")


def query_side_config(settings: Settings):
    """The query-side learner's configuration from the settings."""
    from vectune.query_side import QuerySideConfig

    return QuerySideConfig(epochs=settings.query_epochs, max_steps=settings.query_max_steps,
                           time_budget_s=settings.query_time_budget_s, lr=settings.query_learning_rate,
                           batch_size=settings.query_batch_size, max_corpus_vectors=settings.query_corpus_max,
                           val_fraction=settings.query_val_fraction, refit=settings.query_refit, seed=settings.seed,
                           linear_epochs=settings.linear_epochs, linear_lr=settings.linear_learning_rate,
                           identity_weight=settings.linear_identity_weight, device=settings.device or "")


def train_query_side(read, queries: Sequence, relevant: dict[str, set[str]], live_enc: Encoder,
                     settings: Settings, kinds: Sequence[str] = ("linear", "query")) -> list[Candidate]:
    """The query-side candidates: only the query side learns, against the live collection's stored vectors.

    Args:
        read: the read stage's result; its chunks' stored vectors are the passages (never re-encoded).
        queries: training queries (:class:`vectune.generate.base.Query`). When some are real labels
            (``train-set`` or ``feedback``), only those train: offline pseudo-queries do not help here.
        relevant: every relevant key of a labeled query (several positives per query are used).
        live_enc: the live model; the candidates start from its query side.
        settings: the query-side settings.
        kinds: which of ``linear`` and ``query`` to train.

    Returns:
        One candidate per kind, each an asymmetric model whose document route is the live passage model.

    Raises:
        BadInput: fewer than two queries have a positive among the stored vectors.
    """
    from vectune.models import new_model_tag
    from vectune.query_side import build_asymmetric_model, train_linear_map, train_query_encoder

    texts, positives = _query_training_set(queries, relevant)
    keys, vectors = _stored_corpus(read, positives, settings.query_corpus_max)
    cfg = query_side_config(settings)
    out = []
    for kind in kinds:
        if kind == "linear":
            qv = live_enc.encode_queries(texts)
            w, stats = train_linear_map(qv, positives, vectors, keys, cfg=cfg)
            model = build_asymmetric_model(live_enc.model, linear=w)
        elif kind == "query":
            tuned, stats = train_query_encoder(live_enc.model, texts, positives, vectors, keys, cfg=cfg,
                                               query_prompt=live_enc.query_prompt)
            model = build_asymmetric_model(live_enc.model, tuned_query_model=tuned)
        else:
            raise ValueError(f"not a query-side candidate: {kind!r}")
        tag = new_model_tag(read.meta["model_ref"], kind)
        enc = Encoder(model=model, ref=tag, query_prompt=live_enc.query_prompt, batch_size=live_enc.batch_size)
        logger.info("query-side candidate %s: %s", kind, stats.to_dict())
        out.append(Candidate(enc, tag, stats, kind))
    return out


def _query_training_set(queries: Sequence, relevant: dict[str, set[str]]) -> tuple[list[str], list[set[str]]]:
    """Distinct query texts with their positive keys; real labels only, when there are any."""
    real = [q for q in queries if q.source in ("train-set", "feedback")]
    by_text: dict[str, set[str]] = {}
    for q in real or queries:
        by_text.setdefault(q.text, set()).add(q.chunk_id)
        by_text[q.text] |= set(relevant.get(q.text, ()))
    texts = sorted(by_text)
    return texts, [by_text[t] for t in texts]


def _stored_corpus(read, positives: list[set[str]], cap: int):
    """Keys and stored (normalised) vectors the query side trains against: every positive, then the rest up to cap."""
    import numpy as np

    from vectune.vectors import normalize

    need = {k for p in positives for k in p if k in read.by_key}
    keys = sorted(need) + sorted(k for k in read.by_key if k not in need)
    keys = keys[:max(cap, len(need))]
    return keys, normalize(np.stack([read.by_key[k].vector for k in keys]))


def train(encoder: Encoder, examples: Sequence[Example], settings: Settings) -> TrainStats:
    """Fine-tune ``encoder.model`` in place on ``examples``.

    With ``train_processes > 1`` the training (only the training: the rest of the cycle
    stays one process) runs under ``torchrun`` as that many DDP processes, one per GPU;
    in-batch negatives are gathered across devices, so the effective batch is
    ``batch_size × processes``. See :mod:`vectune.train_ddp`.

    Args:
        encoder: the model to start from (the live model); modified in place.
        examples: anchors, positives and (the same number of) hard negatives.
        settings: epochs, batch size, learning rate, seed, CachedMNRL switch, processes.

    Returns:
        Training statistics.

    Raises:
        BadInput: not enough examples to make one batch.
    """
    if len(examples) < 2:
        raise BadInput(f"only {len(examples)} training pairs: need at least 2 to train")
    if settings.train_processes > 1:
        return _train_distributed(encoder, examples, settings)
    return train_local(encoder.model, encoder.query_prompt, examples, settings)


def train_local(model, query_prompt: str, examples: Sequence[Example], settings: Settings) -> TrainStats:
    """Train in this process (one device, or one DDP rank when launched by torchrun)."""
    from datasets import Dataset

    from vectune.logs import interactive
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer import losses
        from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    except ImportError:  # 3.x - 5.x
        from sentence_transformers import losses
        from sentence_transformers.training_args import BatchSamplers

    n_neg = min(len(e.negatives) for e in examples)
    cols: dict[str, list[str]] = {"anchor": [e.anchor for e in examples], "positive": [e.positive for e in examples]}
    for i in range(n_neg):
        cols[f"negative_{i + 1}" if n_neg > 1 else "negative"] = [e.negatives[i] for e in examples]
    dataset = Dataset.from_dict(cols).shuffle(seed=settings.seed)

    batch = min(settings.batch_size, len(examples))
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # a rank launched by torchrun
    with tempfile.TemporaryDirectory(prefix="vectune-train-") as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            num_train_epochs=settings.epochs,
            max_steps=settings.max_steps,
            per_device_train_batch_size=batch,
            learning_rate=settings.learning_rate,
            **_warmup(settings.warmup_ratio),
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            prompts={"anchor": query_prompt} if query_prompt else None,
            save_strategy="no",
            report_to="none",
            logging_steps=max(1, len(examples) // batch // 5),
            seed=settings.seed,
            data_seed=settings.seed,
            disable_tqdm=not interactive(),  # a progress bar on a terminal; loss goes to the report
            # all_gather needs equal batches on every rank: drop the ragged last one under DDP
            dataloader_drop_last=distributed,
            dataloader_pin_memory=_cuda(),
            bf16=_cuda() and _bf16(),
            ddp_backend="gloo" if distributed and not _cuda() else None,
        )
        # Creating the arguments set up torch.distributed under torchrun: gather in-batch negatives
        # from every rank, or DDP would shrink each rank's negatives to its own slice of the batch.
        import torch.distributed as dist

        gather = dist.is_available() and dist.is_initialized()
        if settings.cached_mnrl:
            loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=settings.mini_batch_size,
                                                             gather_across_devices=gather)
        else:
            loss = losses.MultipleNegativesRankingLoss(model, gather_across_devices=gather)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # loss goes to our report and logs, not stdout
        if faults.active("train_step"):  # tests only: a failpoint between two optimizer steps
            trainer.add_callback(_fault_callback())
        t0 = time.perf_counter()
        result = trainer.train()
        secs = time.perf_counter() - t0
    model.eval()
    stats = TrainStats(
        examples=len(examples),
        steps=int(result.global_step),
        seconds=round(secs, 2),
        loss=round(float(result.training_loss), 5) if result.training_loss is not None else None,
        examples_per_s=round(len(examples) * max(settings.epochs, 0) / secs, 2) if secs > 0 else 0.0,
        processes=int(dist.get_world_size()) if gather else 1,
    )
    logger.info("trained on %d examples in %.1fs (%d steps, loss %s)", stats.examples, secs, stats.steps, stats.loss)
    return stats


def _fault_callback():
    """A trainer callback that reaches the ``train_step`` failpoint after every optimizer step."""
    from transformers import TrainerCallback

    class _AtStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            faults.point("train_step", step=state.global_step)

    return _AtStep()


def _warmup(ratio: float) -> dict:
    """Transformers v5 takes a float ``warmup_steps`` as a ratio; v4 wants ``warmup_ratio``."""
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        return {"warmup_steps": ratio}
    return {"warmup_ratio": ratio}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _bf16() -> bool:
    import torch

    return bool(torch.cuda.is_bf16_supported())


def _train_distributed(encoder: Encoder, examples: Sequence[Example], settings: Settings) -> TrainStats:
    """Run :mod:`vectune.train_ddp` under torchrun and load the trained weights back into ``encoder``."""
    import dataclasses
    import json
    import subprocess
    import sys

    from sentence_transformers import SentenceTransformer

    from vectune.errors import VectuneError

    with tempfile.TemporaryDirectory(prefix="vectune-ddp-") as tmp:
        start, out = os.path.join(tmp, "start"), os.path.join(tmp, "out")
        encoder.model.save(start, safe_serialization=True)
        with open(os.path.join(tmp, "examples.jsonl"), "w", encoding="utf-8") as f:
            for e in examples:
                f.write(json.dumps(dataclasses.asdict(e)) + "\n")
        with open(os.path.join(tmp, "job.json"), "w", encoding="utf-8") as f:
            json.dump({"settings": settings.model_dump(mode="json", exclude={"teacher", "qdrant_api_key"}),
                       "query_prompt": encoder.query_prompt, "start": start, "out": out}, f)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={settings.train_processes}", "-m", "vectune.train_ddp", tmp]
        logger.info("training on %d processes: %s", settings.train_processes, " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            logger.error("torchrun output:\n%s", (proc.stdout + proc.stderr)[-6000:])
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise VectuneError(f"distributed training failed (exit {proc.returncode}): " + " | ".join(tail))
        with open(os.path.join(out, "train_stats.json"), encoding="utf-8") as f:
            stats = TrainStats(**json.load(f))
        trained = SentenceTransformer(out, device=str(encoder.model.device), trust_remote_code=False,
                                      model_kwargs={"use_safetensors": True})
        encoder.model.load_state_dict(trained.state_dict())
    encoder.model.eval()
    return stats
