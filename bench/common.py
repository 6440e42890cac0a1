"""Helpers shared by the benchmark scripts: machine facts, the vectune CLI, RESULTS.md sections."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS_DIR = BENCH / "results"
RESULTS_MD = BENCH / "RESULTS.md"


def machine() -> dict:
    """Where the numbers came from: OS, CPU count, GPU (if torch sees one), library versions."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = bool(torch.cuda.is_available())
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001
        info.update(torch=None, cuda=False, gpu=None, device="cpu")
    for mod in ("vectune", "sentence_transformers", "qdrant_client", "transformers"):
        try:
            from importlib.metadata import version

            info[mod] = version(mod.replace("_", "-"))
        except Exception:  # noqa: BLE001
            info[mod] = None
    try:
        load = os.getloadavg()
        info["loadavg_at_start"] = [round(x, 2) for x in load]
    except OSError:
        pass
    return info


def machine_line(m: dict) -> str:
    dev = f"GPU {m['gpu']}" if m.get("gpu") else "CPU only"
    return (f"{m['platform']}, {m['nproc']} CPUs ({m.get('affinity_cpus')} usable), {dev}; "
            f"torch {m.get('torch')}, sentence-transformers {m.get('sentence_transformers')}, "
            f"qdrant-client {m.get('qdrant_client')}, vectune {m.get('vectune')}")


def vectune_argv() -> list[str]:
    """How to invoke the vectune CLI from this interpreter (the console script if present)."""
    exe = Path(sys.executable).parent / "vectune"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "vectune.cli"]


def child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("VECTUNE_LOG_FORMAT", "text")
    return env


def run_cli(args: list[str], log_file: Path | None = None, argv0: list[str] | None = None,
            timeout: float | None = None, env_extra: dict | None = None) -> tuple[int, str, str, float]:
    """Run ``vectune ARGS`` as a subprocess (``env_extra``: more environment); returns (rc, stdout, stderr, seconds)."""
    cmd = (argv0 or vectune_argv()) + [str(a) for a in args]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env={**child_env(), **(env_extra or {})}, timeout=timeout)
    secs = time.perf_counter() - t0
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text(f"$ {shlex.join(cmd)}\n# rc={p.returncode} in {secs:.1f}s\n--- stdout\n{p.stdout}\n"
                            f"--- stderr\n{p.stderr}")
    return p.returncode, p.stdout, p.stderr, secs


def parse_json_report(stdout: str) -> dict | None:
    """The JSON report `vectune run --json` prints (the last top-level JSON object on stdout)."""
    start = stdout.find("{")
    while start != -1:
        try:
            return json.loads(stdout[start:])
        except ValueError:
            start = stdout.find("\n{", start + 1)
            start = start + 1 if start != -1 else -1
    return None


def now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def command_line() -> str:
    """The exact command that ran this script (relative to the repo root when possible)."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(BENCH.parent)
    except ValueError:
        pass
    return shlex.join(["python", str(script), *sys.argv[1:]])


def update_section(key: str, body: str, title: str = "# vectune benchmark results") -> None:
    """Replace (or append) the section tagged ``key`` in bench/RESULTS.md."""
    begin, end = f"<!-- begin {key} -->", f"<!-- end {key} -->"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else (
        f"{title}\n\nWritten by `bench/quality.py` and `bench/speed.py` (see bench/README.md). "
        "Each section is replaced when its script runs again with the same dataset/protocol/mode.\n")
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pat.search(text):
        text = pat.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS_MD.write_text(text if text.endswith("\n") else text + "\n")


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
