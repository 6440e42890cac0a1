"""Fine-tune stage: MultipleNegativesRankingLoss from the live model.

In-batch negatives plus the mined hard negatives, batches without duplicate texts
(a duplicate inside a batch would be a false in-batch negative), the query prompt
on the anchor column where the model needs one. CachedMNRL (GradCache) lets a
large batch fit in small memory. Uses CUDA when present.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from typing import Sequence

from vectune.errors import BadInput
from vectune.models import Encoder
from vectune.negatives import Example
from vectune.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class TrainStats:
    examples: int
    steps: int
    seconds: float
    loss: float | None
    examples_per_s: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def train(encoder: Encoder, examples: Sequence[Example], settings: Settings) -> TrainStats:
    """Fine-tune ``encoder.model`` in place on ``examples``.

    Args:
        encoder: the model to start from (the live model); modified in place.
        examples: anchors, positives and (the same number of) hard negatives.
        settings: epochs, batch size, learning rate, seed, CachedMNRL switch.

    Returns:
        Training statistics.

    Raises:
        BadInput: not enough examples to make one batch.
    """
    from datasets import Dataset

    from vectune.logs import interactive
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer import losses
        from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    except ImportError:  # 3.x - 5.x
        from sentence_transformers import losses
        from sentence_transformers.training_args import BatchSamplers

    if len(examples) < 2:
        raise BadInput(f"only {len(examples)} training pairs: need at least 2 to train")
    n_neg = min(len(e.negatives) for e in examples)
    cols: dict[str, list[str]] = {"anchor": [e.anchor for e in examples], "positive": [e.positive for e in examples]}
    for i in range(n_neg):
        cols[f"negative_{i + 1}" if n_neg > 1 else "negative"] = [e.negatives[i] for e in examples]
    dataset = Dataset.from_dict(cols).shuffle(seed=settings.seed)

    model = encoder.model
    batch = min(settings.batch_size, len(examples))
    if settings.cached_mnrl:
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=settings.mini_batch_size)
    else:
        loss = losses.MultipleNegativesRankingLoss(model)

    with tempfile.TemporaryDirectory(prefix="vectune-train-") as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            num_train_epochs=settings.epochs,
            max_steps=settings.max_steps,
            per_device_train_batch_size=batch,
            learning_rate=settings.learning_rate,
            **_warmup(settings.warmup_ratio),
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            prompts={"anchor": encoder.query_prompt} if encoder.query_prompt else None,
            save_strategy="no",
            report_to="none",
            logging_steps=max(1, len(examples) // batch // 5),
            seed=settings.seed,
            data_seed=settings.seed,
            disable_tqdm=not interactive(),  # a progress bar on a terminal; loss goes to the report
            dataloader_drop_last=False,
            dataloader_pin_memory=_cuda(),
            bf16=_cuda() and _bf16(),
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # loss goes to our report and logs, not stdout
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
    )
    logger.info("trained on %d examples in %.1fs (%d steps, loss %s)", stats.examples, secs, stats.steps, stats.loss)
    return stats


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
