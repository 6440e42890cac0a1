"""Full training (mode ``full``, or ``auto`` on a GPU): both towers, MultipleNegativesRankingLoss.

In-batch negatives plus the mined hard negatives, batches without duplicate texts (a duplicate
inside a batch would be a false in-batch negative), the query prompt on the anchor column where
the model needs one. CachedMNRL (GradCache) lets a large batch fit in small memory. CUDA when
present; several GPUs through torchrun (:mod:`vectune.pipeline.train.ddp`).
Settings: :class:`vectune.config.sections.FullConfig`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence

from vectune.config.sections import FullConfig
from vectune.core import faults
from vectune.errors import BadInput, VectuneError
from vectune.models.device import bf16, cuda
from vectune.models.encoder import Encoder
from vectune.models.store import ModelStore, new_model_tag
from vectune.observe.progress import interactive
from vectune.pipeline.pairs.negatives import Example
from vectune.pipeline.train.candidate import Candidate, TrainStats
from vectune.qdrant.lineage import passage_model

logger = logging.getLogger(__name__)


def fine_tune(meta: dict, live_enc: Encoder, examples: Sequence[Example], cfg: FullConfig, models: ModelStore,
              seed: int = 42) -> Candidate:
    """The fine-tune stage: start from the live model, train on ``examples``.

    Args:
        meta: the live collection's lineage record (its ``model_ref`` is the starting point).
        live_enc: the live model (its query prompt carries over).
        examples: training examples with hard negatives.
        cfg: the full-training settings.
        models: the model store (the live passage model loads from it).
        seed: the training seed.

    Returns:
        The candidate, with a fresh model tag.
    """
    start = passage_model(meta)  # after query-side promotions: the passage model, not the routed one
    cand = models.load(start, query_prompt=live_enc.query_prompt)
    stats = train(cand, examples, cfg, seed)
    return Candidate(cand, new_model_tag(meta["model_ref"]), stats, "full")


def train(encoder: Encoder, examples: Sequence[Example], cfg: FullConfig, seed: int = 42) -> TrainStats:
    """Fine-tune ``encoder.model`` in place on ``examples``.

    With ``train_processes > 1`` the training (only the training: the rest of the cycle
    stays one process) runs under ``torchrun`` as that many DDP processes, one per GPU;
    in-batch negatives are gathered across devices, so the effective batch is
    ``batch_size × processes``. See :mod:`vectune.pipeline.train.ddp`.

    Args:
        encoder: the model to start from (the live model); modified in place.
        examples: anchors, positives and (the same number of) hard negatives.
        cfg: epochs, batch size, learning rate, CachedMNRL switch, processes.
        seed: the training seed.

    Returns:
        Training statistics.

    Raises:
        BadInput: not enough examples to make one batch.
    """
    if len(examples) < 2:
        raise BadInput(f"only {len(examples)} training pairs: need at least 2 to train")
    if cfg.processes > 1:
        return _train_distributed(encoder, examples, cfg, seed)
    return train_local(encoder.model, encoder.query_prompt, examples, cfg, seed)


def train_local(model, query_prompt: str, examples: Sequence[Example], cfg: FullConfig, seed: int = 42) -> TrainStats:
    """Train in this process (one device, or one DDP rank when launched by torchrun)."""
    from datasets import Dataset  # heavy: deferred with the trainer
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
    dataset = Dataset.from_dict(cols).shuffle(seed=seed)

    batch = min(cfg.batch_size, len(examples))
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # a rank launched by torchrun
    with tempfile.TemporaryDirectory(prefix="vectune-train-") as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            num_train_epochs=cfg.epochs,
            max_steps=cfg.max_steps,
            per_device_train_batch_size=batch,
            learning_rate=cfg.learning_rate,
            **_warmup(cfg.warmup_ratio),
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            prompts={"anchor": query_prompt} if query_prompt else None,
            save_strategy="no",
            report_to="none",
            logging_steps=max(1, len(examples) // batch // 5),
            seed=seed,
            data_seed=seed,
            disable_tqdm=not interactive(),  # a progress bar on a terminal; loss goes to the report
            # all_gather needs equal batches on every rank: drop the ragged last one under DDP
            dataloader_drop_last=distributed,
            dataloader_pin_memory=cuda(),
            bf16=bf16(),
            ddp_backend="gloo" if distributed and not cuda() else None,
        )
        # Creating the arguments set up torch.distributed under torchrun: gather in-batch negatives
        # from every rank, or DDP would shrink each rank's negatives to its own slice of the batch.
        import torch.distributed as dist

        gather = dist.is_available() and dist.is_initialized()
        if cfg.cached_mnrl:
            loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=cfg.mini_batch_size,
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
        examples_per_s=round(len(examples) * max(cfg.epochs, 0) / secs, 2) if secs > 0 else 0.0,
        processes=int(dist.get_world_size()) if gather else 1,
    )
    logger.info("trained on %d examples in %.1fs (%d steps, loss %s)", stats.examples, secs, stats.steps, stats.loss)
    return stats


def _fault_callback():
    """A trainer callback that reaches the ``train_step`` failpoint after every optimizer step."""
    from transformers import TrainerCallback  # heavy: only with the trainer

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


def _train_distributed(encoder: Encoder, examples: Sequence[Example], cfg: FullConfig, seed: int) -> TrainStats:
    """Run :mod:`vectune.pipeline.train.ddp` under torchrun and load the trained weights back into ``encoder``."""
    import dataclasses
    import json
    import subprocess
    import sys

    from sentence_transformers import SentenceTransformer  # heavy: deferred

    with tempfile.TemporaryDirectory(prefix="vectune-ddp-") as tmp:
        start, out = os.path.join(tmp, "start"), os.path.join(tmp, "out")
        encoder.model.save(start, safe_serialization=True)
        with open(os.path.join(tmp, "examples.jsonl"), "w", encoding="utf-8") as f:
            for e in examples:
                f.write(json.dumps(dataclasses.asdict(e)) + "\n")
        with open(os.path.join(tmp, "job.json"), "w", encoding="utf-8") as f:
            json.dump({"full": cfg.model_dump(mode="json"), "seed": seed, "query_prompt": encoder.query_prompt,
                       "start": start, "out": out}, f)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={cfg.processes}", "-m", "vectune.pipeline.train.ddp", tmp]
        logger.info("training on %d processes: %s", cfg.processes, " ".join(cmd))
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
