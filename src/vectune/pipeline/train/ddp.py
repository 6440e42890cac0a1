"""One DDP rank of a multi-process training, launched by :func:`vectune.pipeline.train.full.train` through torchrun.

``python -m torch.distributed.run --standalone --nproc_per_node N -m vectune.pipeline.train.ddp JOB_DIR``

``JOB_DIR`` holds ``job.json`` (the full-training settings, seed, query prompt, paths), ``examples.jsonl`` and the
start model. Every rank trains (sentence-transformers' trainer wraps the model in DDP and
the loss gathers in-batch negatives across ranks); rank 0 saves the result and its stats.
"""

from __future__ import annotations

import json
import os
import sys

from vectune.config.sections import FullConfig
from vectune.pipeline.pairs.negatives import Example
from vectune.pipeline.train.full import train_local


def main(job_dir: str) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    with open(os.path.join(job_dir, "job.json"), encoding="utf-8") as f:
        job = json.load(f)
    cfg = FullConfig(**{**job["full"], "processes": 1})
    with open(os.path.join(job_dir, "examples.jsonl"), encoding="utf-8") as f:
        examples = [Example(**json.loads(line)) for line in f if line.strip()]
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(job["start"], device=device, trust_remote_code=False,
                                model_kwargs={"use_safetensors": True})
    stats = train_local(model, job["query_prompt"], examples, cfg, job["seed"])
    if int(os.environ.get("RANK", "0")) == 0:
        model.save(job["out"], safe_serialization=True)
        with open(os.path.join(job["out"], "train_stats.json"), "w", encoding="utf-8") as f:
            json.dump(stats.to_dict(), f)


if __name__ == "__main__":
    main(sys.argv[1])
