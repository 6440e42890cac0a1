#!/usr/bin/env bash
# One prepared run of both benchmarks on a lent GPU machine (no network there).
# Expects, in .gpu/ (git-ignored, carried): whl/ (qdrant-client, pydantic*, datasets, dill, multiprocess wheels
# for cp312), minilm-fp16/ (the bundled all-MiniLM-L6-v2 stored as fp16 safetensors to fit the 64 MiB transfer;
# vectune loads it as float32), scifact/ (a copy of ../shared/data/scifact).
# Results come back under $OUT: bench/results/*-gpu-*.json and RESULTS.md.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export BENCH_TAG=${BENCH_TAG:-gpu}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -n "${SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/whl/*.whl || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/src
export VECTUNE_BASE_MODEL=$PWD/.gpu/minilm-fp16
collect() { cp bench/results/*"$BENCH_TAG"*.json "$OUT"/ 2>/dev/null; cp bench/RESULTS.md "$OUT"/ 2>/dev/null;
            cp /tmp/quality.log /tmp/speed.log "$OUT"/ 2>/dev/null; true; }
trap collect EXIT
python3 - <<'PY' || exit 1
import torch, sentence_transformers, transformers, qdrant_client, datasets, pydantic, pydantic_settings
import vectune.cli, vectune.train
print("gpu:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none", "| torch", torch.__version__, "| st", sentence_transformers.__version__,
      "| transformers", transformers.__version__, "| datasets", datasets.__version__, "| qdrant-client", qdrant_client.__version__ if hasattr(qdrant_client, "__version__") else "?")
PY
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout ${QUALITY_S:-420} python3 bench/quality.py --data .gpu/scifact --protocol ${PROTOCOLS:-all} 2>&1 | tee /tmp/quality.log | grep -E "^\[|vectune (index|run)|Error|error" 
timeout ${SPEED_S:-150} python3 bench/speed.py --points 3000 --pairs 1000 --data .gpu/scifact --only a,b,d \
  --cycle-docs 3000 --train-chunks 1000 2>&1 | tee /tmp/speed.log | tail -25
