"""An embedding model as vectune uses it: a sentence-transformers model plus its query prompt.

Models load from safetensors with remote code disabled (:func:`load_encoder`); where a model
reference points is the model store's business (:class:`vectune.models.store.ModelStore`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vectune.config.sections import ModelConfig
from vectune.errors import BadInput
from vectune.models.device import device, fp32_kwargs

logger = logging.getLogger(__name__)

#: Query prompts for model families that need one.
KNOWN_QUERY_PROMPTS = {
    "bge-": "Represent this sentence for searching relevant passages: ",
    "e5-": "query: ",
}


def default_query_prompt(ref: str) -> str | None:
    """The query prompt a model family needs (BGE, E5), or None."""
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
        batch_size: encoding batch size.
    """

    model: Any
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


def load_encoder(path: str, ref: str, cfg: ModelConfig, query_prompt: str | None = None,
                 max_seq_length: int | None = None) -> Encoder:
    """Load a model from a path (or hub id) as an :class:`Encoder`.

    Args:
        path: what SentenceTransformer loads (a folder, or a hub id).
        ref: the reference it is known by (for the encoder and the family's default prompt).
        cfg: device, default sequence length, query prompt and batch size.
        query_prompt: overrides the stored/configured/known prompt when given.
        max_seq_length: truncation length (default ``cfg.max_seq_length``); the live model uses the one
            recorded in lineage so its encodings match the stored vectors.

    Returns:
        The encoder.

    Raises:
        BadInput: the model does not load.
    """
    from sentence_transformers import SentenceTransformer  # heavy: imported only to load a model
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    stored_prompt = None
    manifest = Path(path) / "manifest.json"
    if manifest.exists():
        stored_prompt = json.loads(manifest.read_text()).get("query_prompt")
    try:
        model = SentenceTransformer(path, device=device(cfg.device), trust_remote_code=False,
                                    model_kwargs={"use_safetensors": True, **fp32_kwargs()})
    except Exception as e:  # noqa: BLE001 - any load failure is a bad model reference
        first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise BadInput(f"model {ref!r} does not load: {first}") from None
    want = max_seq_length or cfg.max_seq_length
    model.max_seq_length = min(want, getattr(model, "max_seq_length", None) or want)
    if query_prompt is not None:
        prompt = query_prompt
    elif cfg.query_prompt is not None:
        prompt = cfg.query_prompt
    elif stored_prompt is not None:
        prompt = stored_prompt
    else:
        prompt = default_query_prompt(ref) or ""
    return Encoder(model=model, ref=ref, query_prompt=prompt, batch_size=cfg.encode_batch_size)
