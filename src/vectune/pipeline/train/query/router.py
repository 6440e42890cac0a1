"""Sentence-transformers plumbing of the query side: routes of an asymmetric model, a trainable copy of
the query route, embedding with autograd, and packaging a candidate as one ``Router`` model whose
``encode_query`` is tuned and whose ``encode_document`` is the live passage model."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from vectune.errors import BadInput


def load_model(model_path_or_st_model: Any, device: str):
    from sentence_transformers import SentenceTransformer

    if isinstance(model_path_or_st_model, SentenceTransformer):
        return model_path_or_st_model
    try:
        return SentenceTransformer(str(model_path_or_st_model), device=device, trust_remote_code=False,
                                   model_kwargs={"use_safetensors": True})
    except Exception as e:  # noqa: BLE001 - any load failure is a bad model reference
        raise BadInput(f"model {model_path_or_st_model!r} does not load: {str(e).splitlines()[0][:300]}") from None


def _router(model) -> Any | None:
    from sentence_transformers.sentence_transformer.modules import Router

    first = model[0] if len(model) else None
    return first if isinstance(first, Router) else None


def is_asymmetric(model) -> bool:
    """True when ``model`` routes queries and documents differently (a ``Router`` first module).

    Such a model must be called with ``encode_query`` / ``encode_document`` (or ``encode(..., task=)``):
    its plain ``encode`` takes the default (document) route.

    Args:
        model: a SentenceTransformer.

    Returns:
        Whether it has a query/document router.
    """
    return _router(model) is not None


def query_route(model) -> list:
    """The modules a model encodes queries with (the query route of an asymmetric model, else all).

    Args:
        model: a SentenceTransformer.

    Returns:
        Its query modules, in order (the model's own objects, not copies).
    """
    return _route(model, "query")


def document_route(model) -> list:
    """The modules a model encodes passages (documents) with.

    Args:
        model: a SentenceTransformer.

    Returns:
        Its document modules, in order (the model's own objects, not copies).
    """
    return _route(model, "document")


def _route(model, task: str) -> list:
    router = _router(model)
    if router is None:
        return list(model.children())
    route = router._resolve_route(task=task)
    return list(router.sub_modules[route]) + list(model.children())[1:]


def trainable_query_model(live, device: str, freeze_embeddings: bool = False):
    """A trainable deep copy of ``live``'s query route as a plain SentenceTransformer."""
    import torch
    from sentence_transformers import SentenceTransformer

    mods = copy.deepcopy(query_route(live))
    model = SentenceTransformer(modules=mods, device=device, similarity_fn_name=live.similarity_fn_name)
    if freeze_embeddings:
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):
                module.weight.requires_grad_(False)
    return model


def embed(model, texts: list[str]):
    """Unit query vectors of ``texts`` (already prompted), with autograd when the model trains."""
    import torch

    prep = getattr(model, "preprocess", None) or model.tokenize
    feats = prep(texts)
    feats = {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in feats.items()}
    out = model(feats)["sentence_embedding"]
    return torch.nn.functional.normalize(out, dim=-1)


def embed_eval(model, texts: list[str], batch: int = 128):
    import torch

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [embed(model, texts[i:i + batch]) for i in range(0, len(texts), batch)]
    finally:
        model.train(was)
    return torch.cat(parts) if parts else None


def build_asymmetric_model(live_model: Any, tuned_query_model: Any | None = None,
                           linear: np.ndarray | None = None):
    """One SentenceTransformer whose query route is the candidate and whose document route is the live model.

    ``encode_document`` (and plain ``encode``: the default route is ``document``) runs the live
    model's own (document-route) modules, so passages encode exactly as the stored vectors were
    written; ``encode_query`` runs the tuned query encoder, or the live query route followed by a
    bias-free identity-activation ``Dense`` holding the linear map and a ``Normalize``. Modules
    shared by both routes (the linear case) are saved once.

    Args:
        live_model: the live SentenceTransformer (an asymmetric one is fine: its document route is kept).
        tuned_query_model: the model from :func:`train_query_encoder`.
        linear: the map from :func:`train_linear_map` (exclusive with ``tuned_query_model``).

    Returns:
        The asymmetric SentenceTransformer (shares module objects with its inputs; save it with
        ``model.save(path, safe_serialization=True)``).

    Raises:
        BadInput: neither or both candidates given, or a map of the wrong shape.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Router

    if (tuned_query_model is None) == (linear is None):
        raise BadInput("give exactly one of tuned_query_model and linear")
    doc = document_route(live_model)
    if linear is not None:
        w = torch.as_tensor(np.asarray(linear, dtype=np.float32))
        get_dim = getattr(live_model, "get_embedding_dimension", None) or live_model.get_sentence_embedding_dimension
        d = int(get_dim())
        if tuple(w.shape) != (d, d):
            raise BadInput(f"linear map of shape {tuple(w.shape)}: the model's embeddings are {d}-d, so it must be "
                           f"({d}, {d})")
        dense = Dense(d, d, bias=False, activation_function=None, init_weight=w)
        query = query_route(live_model) + [dense, Normalize()]
    else:
        query = list(tuned_query_model.children())
    router = Router.for_query_document(query_modules=query, document_modules=doc)
    model = SentenceTransformer(modules=[router], device=str(live_model.device),
                                similarity_fn_name=live_model.similarity_fn_name,
                                prompts=dict(getattr(live_model, "prompts", {}) or {}),
                                default_prompt_name=getattr(live_model, "default_prompt_name", None))
    return model
