"""Where torch runs: the one place that picks a device and a precision (torch imported lazily)."""

from __future__ import annotations


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
