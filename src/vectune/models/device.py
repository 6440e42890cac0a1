"""Where torch runs: the one place that picks a device and a precision (torch imported lazily)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def cuda() -> bool:
    """True when a CUDA device is available."""
    import torch

    return torch.cuda.is_available()


def device(preferred: str | None = None) -> str:
    """The torch device to use: ``preferred`` when given, else CUDA when present, else the CPU."""
    if preferred:
        return preferred
    return "cuda" if cuda() else "cpu"


def bf16() -> bool:
    """True when the CUDA device supports bfloat16 (mixed-precision training)."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def fp32_kwargs() -> dict:
    """``model_kwargs`` that load weights as float32 whatever they are stored in (training needs it)."""
    import torch
    import transformers

    key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    return {key: torch.float32}


@contextmanager
def torch_threads(want: int = 0) -> Iterator[int]:
    """Set torch's CPU threads for a training, then restore them; yields the count used.

    Args:
        want: threads to use; 0 = auto: one when the machine's 1-minute load average is at or above
            its core count (on a shared CPU, extra threads mostly spin), else torch's default.
    """
    import torch

    before = torch.get_num_threads()
    if want <= 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        try:
            busy = os.getloadavg()[0] >= cores
        except OSError:
            busy = False
        want = 1 if busy and cores > 1 else before
    torch.set_num_threads(want)
    try:
        yield want
    finally:
        torch.set_num_threads(before)
