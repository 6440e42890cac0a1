"""Embedding models: the encoder wrapper, the model store, and where torch runs."""

from vectune.models.encoder import Encoder, default_query_prompt, load_encoder
from vectune.models.store import ModelStore, Verification, new_model_tag, safe_tag

__all__ = ["Encoder", "ModelStore", "Verification", "default_query_prompt", "load_encoder", "new_model_tag",
           "safe_tag"]
