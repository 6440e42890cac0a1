"""Query-side candidates (vectune.pipeline.train.query): the learner, its selection, its budget and its packaging.

Real parts only: the bundled MiniLM, real (tiny) passages and their real encodings as the
"stored vectors". The linear-map tests run on synthetic vectors (no model) and take well under
a second; the encoder tests train a handful of steps; the end-to-end one is marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from vectune.config.sections import QueryConfig
from vectune.errors import BadInput
from vectune.pipeline.train.query import (
    apply_linear,
    build_asymmetric_model,
    document_route,
    is_asymmetric,
    query_route,
    train_linear_map,
    train_query_encoder,
)
from vectune.pipeline.train.query.loss import slice_ndcg10 as _ndcg10
from vectune.pipeline.train.query.loss import softmax_loss as _loss


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def live():
    """The bundled MiniLM as a SentenceTransformer (short truncation: the test passages are short)."""
    from sentence_transformers import SentenceTransformer

    from vectune.config.settings import BUNDLED_MODEL, Settings
    from vectune.models.store import ModelStore

    model = SentenceTransformer(ModelStore.from_settings(Settings()).path(BUNDLED_MODEL), device="cpu",
                                trust_remote_code=False,
                                model_kwargs={"use_safetensors": True})
    model.max_seq_length = 96
    return model


@pytest.fixture(scope="module")
def pairs(corpus_records):
    """30 synthetic (query, passage) pairs from real passages: the query is a span of its passage's words."""
    passages = [r["text"] for r in corpus_records]
    queries, positives = [], []
    for i, text in enumerate(passages[:30]):
        words = text.split()
        queries.append(" ".join(words[10:18]) if len(words) > 20 else " ".join(words[:8]))
        positives.append([f"p{i}"])
    return {"queries": queries, "positives": positives, "passages": passages,
            "keys": [f"p{i}" for i in range(len(passages))]}


@pytest.fixture(scope="module")
def stored(live, pairs):
    """The passages' live encodings: what the collection stores."""
    return live.encode(pairs["passages"], convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)


def _synthetic(n_queries=60, n_corpus=200, d=16, seed=0, noise=0.9):
    """Queries that are a fixed linear distortion of their positive's vector plus noise: a map can undo it."""
    rng = np.random.default_rng(seed)
    corpus = rng.normal(size=(n_corpus, d)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    distort = np.eye(d, dtype=np.float32) + 0.9 * rng.normal(size=(d, d)).astype(np.float32) / np.sqrt(d)
    pos = rng.integers(0, n_corpus, size=n_queries)
    q = corpus[pos] @ distort.T + noise * rng.normal(size=(n_queries, d)).astype(np.float32) / np.sqrt(d)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    keys = [f"k{i}" for i in range(n_corpus)]
    return q.astype(np.float32), [[keys[p]] for p in pos], corpus, keys


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- loss and metric
def test_multi_positive_losses_match_their_definitions():
    import torch

    rng = np.random.default_rng(1)
    corpus = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(7, 5)), dtype=torch.float32), dim=-1)
    q = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(2, 5)), dtype=torch.float32), dim=-1)
    rows = [np.array([0, 3]), np.array([5])]
    gains = [np.array([1.0, 3.0], np.float32), np.array([1.0], np.float32)]
    s = (20 * q @ corpus.T).double().numpy()

    def lse(x):
        return np.log(np.exp(x - x.max()).sum()) + x.max()
    # "each": every positive against the non-positives only, weighted by its grade
    neg0 = np.delete(s[0], [0, 3])
    each0 = 0.25 * (lse(np.r_[s[0, 0], neg0]) - s[0, 0]) + 0.75 * (lse(np.r_[s[0, 3], neg0]) - s[0, 3])
    each1 = lse(s[1]) - s[1, 5]
    got = float(_loss(q, corpus, rows, gains, 20.0, "each"))
    assert got == pytest.approx((each0 + each1) / 2, rel=1e-5)
    # "any": -log of the softmax mass on all positives
    any0 = lse(s[0]) - lse(s[0, [0, 3]])
    got_any = float(_loss(q, corpus, rows, gains, 20.0, "any"))
    assert got_any == pytest.approx((any0 + each1) / 2, rel=1e-5)
    # the two positives of query 0 do not compete in "each": it is below plain mean CE over the full softmax
    plain0 = 0.25 * (lse(s[0]) - s[0, 0]) + 0.75 * (lse(s[0]) - s[0, 3])
    assert each0 < plain0


def test_ndcg_uses_grades_as_gains():
    import torch

    corpus = torch.eye(4)
    q = torch.tensor([[1.0, 0.9, 0.0, 0.0]])  # ranks row 0, then row 1
    best = _ndcg10(q, corpus, [np.array([0, 1])], [np.array([2.0, 1.0], np.float32)])
    swapped = _ndcg10(q, corpus, [np.array([0, 1])], [np.array([1.0, 2.0], np.float32)])
    assert best[0] == pytest.approx(1.0)
    assert swapped[0] < 1.0


# ----------------------------------------------------------------------------- linear map
def test_linear_map_at_init_is_the_identity(live, pairs, stored):
    q = live.encode(pairs["queries"], convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    w, stats = train_linear_map(q, pairs["positives"], stored, pairs["keys"], cfg=QueryConfig(linear_epochs=0))
    assert np.array_equal(w, np.eye(q.shape[1], dtype=np.float32))
    assert stats.chosen_epoch == 0 and stats.steps == 0
    asym = build_asymmetric_model(live, linear=w)
    got = asym.encode_query(pairs["queries"], convert_to_numpy=True, show_progress_bar=False)
    np.testing.assert_allclose(got, q, atol=1e-5)


def test_linear_map_learns_and_is_pulled_toward_identity():
    q, pos, corpus, keys = _synthetic()
    cfg = QueryConfig(linear_epochs=40, linear_learning_rate=1e-2, identity_weight=0.0, val_fraction=0.25, refit=False,
                          batch_size=16)
    w_free, stats = train_linear_map(q, pos, corpus, keys, cfg=cfg)
    assert stats.epoch_loss[-1] < stats.epoch_loss[0]  # the loss decreases
    assert stats.val_best > stats.val_live  # and the slice says it helped
    assert stats.chosen_epoch > 0
    cfg.identity_weight = 10.0
    w_pulled, _ = train_linear_map(q, pos, corpus, keys, cfg=cfg)
    eye = np.eye(q.shape[1])
    assert np.linalg.norm(w_pulled - eye) < 0.5 * np.linalg.norm(w_free - eye)


def test_linear_map_selection_uses_only_the_training_slice():
    q, pos, corpus, keys = _synthetic(n_queries=80)
    golden = set(range(60, 80))  # held back by the caller: never passed in
    cfg = QueryConfig(linear_epochs=25, linear_learning_rate=1e-2, identity_weight=0.0, val_fraction=0.25, refit=False)
    w, stats = train_linear_map(q[:60], pos[:60], corpus, keys, cfg=cfg)
    assert set(stats.val_indices).isdisjoint(stats.train_indices)
    assert sorted(stats.val_indices + stats.train_indices) == list(range(60))
    assert stats.val_queries == 15 and not golden & set(stats.val_indices)
    # the kept map is the best of the curve, and the slice's score of it is what was recorded
    assert stats.val_best == pytest.approx(max(v for e, v in stats.val_curve if e > 0))
    assert stats.beats_live == (stats.val_best > stats.val_live)
    # the slice's queries whose positives no training query shares are reported on their own
    seen = {k for i in stats.train_indices for k in pos[i]}
    assert stats.val_new_docs == sum(not seen & set(pos[i]) for i in stats.val_indices) > 0
    assert [e for e, _ in stats.val_curve_new_docs] == [e for e, _ in stats.val_curve]
    import torch

    row = {k: i for i, k in enumerate(keys)}
    cand = torch.from_numpy(apply_linear(w, q[stats.val_indices]))
    again = _ndcg10(cand, torch.from_numpy(corpus), [np.array([row[k] for k in pos[i]]) for i in stats.val_indices],
                    [np.ones(len(pos[i]), np.float32) for i in stats.val_indices]).mean()
    assert again == pytest.approx(stats.val_best, abs=1e-6)


def test_linear_map_with_refit_trains_on_every_query_for_the_chosen_epochs():
    q, pos, corpus, keys = _synthetic()
    cfg = QueryConfig(linear_epochs=15, linear_learning_rate=1e-2, identity_weight=0.0, val_fraction=0.25, refit=True)
    w, stats = train_linear_map(q, pos, corpus, keys, cfg=cfg)
    assert stats.refit and stats.refit_epochs == stats.chosen_epoch > 0
    per_epoch_sel = -(-len(stats.train_indices) // cfg.batch_size)
    per_epoch_all = -(-len(q) // cfg.batch_size)
    assert stats.steps == per_epoch_sel * stats.epochs_run + per_epoch_all * stats.chosen_epoch


def test_multiple_and_graded_positives_are_accepted():
    q, pos, corpus, keys = _synthetic(n_queries=40)
    multi = [p + [keys[(int(p[0][1:]) + 1) % len(keys)]] for p in pos]  # two positives each
    graded = [{keys[0]: 0.0, p[0]: 2.0, keys[(int(p[0][1:]) + 1) % len(keys)]: 1.0} for p in pos]
    for mode in ("each", "any"):
        cfg = QueryConfig(linear_epochs=3, val_fraction=0.2, multi_positive=mode)
        _, s1 = train_linear_map(q, multi, corpus, keys, cfg=cfg)
        _, s2 = train_linear_map(q, graded, corpus, keys, cfg=cfg)
        assert s1.examples == s2.examples > 0  # grade 0 is not a positive: 2 positives per query both times
        assert all(np.isfinite(s1.epoch_loss)) and all(np.isfinite(s2.epoch_loss))


def test_max_steps_stops_training():
    q, pos, corpus, keys = _synthetic()
    cfg = QueryConfig(linear_epochs=50, max_steps=3, identity_weight=1.0, batch_size=8, refit=False)
    _, stats = train_linear_map(q, pos, corpus, keys, cfg=cfg)
    assert stats.steps == 3 and stats.stopped_by == "max_steps"


def test_corpus_over_the_memory_cap_trains_against_a_pool():
    q, pos, corpus, keys = _synthetic(n_queries=30, n_corpus=500)
    cfg = QueryConfig(linear_epochs=3, corpus_max=120, pool_negatives=2)
    w, stats = train_linear_map(q, pos, corpus, keys, negatives=[[keys[0]]] * 30, cfg=cfg)
    assert stats.pooled and stats.corpus_in_memory == 120
    assert w.shape == (16, 16)
    with pytest.raises(BadInput, match="query_corpus_max"):
        train_linear_map(q, pos, corpus, keys, cfg=QueryConfig(corpus_max=20, pool_negatives=5))


def test_bad_input_is_refused(live):
    q, pos, corpus, keys = _synthetic(n_queries=10)
    with pytest.raises(BadInput, match="positive lists"):
        train_linear_map(q, pos[:5], corpus, keys)
    with pytest.raises(BadInput, match="keys"):
        train_linear_map(q, pos, corpus, keys[:-1])
    with pytest.raises(BadInput, match="need at least 2"):
        train_linear_map(q, [["nope"]] * 10, corpus, keys)
    with pytest.raises(BadInput, match="dimension"):
        train_linear_map(q[:, :8], pos, corpus, keys)
    with pytest.raises(ValidationError, match="multi_positive"):
        QueryConfig(multi_positive="all")
    with pytest.raises(BadInput, match="exactly one"):
        build_asymmetric_model(live)
    with pytest.raises(BadInput, match=r"\(384, 384\)"):
        build_asymmetric_model(live, linear=np.eye(16))


# ----------------------------------------------------------------------------- packaging
@pytest.mark.slow
def test_linear_candidate_saves_as_one_model_and_routes_differently(live, pairs, stored, tmp_path):
    from sentence_transformers import SentenceTransformer

    rng = np.random.default_rng(0)
    w = (np.eye(384) + 0.05 * rng.normal(size=(384, 384))).astype(np.float32)
    asym = build_asymmetric_model(live, linear=w)
    asym.save(str(tmp_path / "m"), safe_serialization=True)
    weights = list((tmp_path / "m").rglob("model.safetensors"))
    assert len(weights) == 2  # the shared transformer once, plus the Dense
    assert not list((tmp_path / "m").rglob("*.bin"))
    back = SentenceTransformer(str(tmp_path / "m"), trust_remote_code=False, model_kwargs={"use_safetensors": True})
    back.max_seq_length = live.max_seq_length
    docs = back.encode_document(pairs["passages"], convert_to_numpy=True, show_progress_bar=False)
    np.testing.assert_allclose(docs, stored, atol=1e-5)
    plain = back.encode(pairs["passages"][:3], convert_to_numpy=True, show_progress_bar=False)
    np.testing.assert_allclose(plain, stored[:3], atol=1e-5)  # the default route is the document route
    live_q = live.encode(pairs["queries"], convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    got = back.encode_query(pairs["queries"], convert_to_numpy=True, show_progress_bar=False)
    np.testing.assert_allclose(got, apply_linear(w, live_q), atol=1e-5)
    assert np.abs(got - live_q).max() > 1e-2
    assert is_asymmetric(back) and not is_asymmetric(live)
    by_task = back.encode(pairs["queries"][:3], task="query", convert_to_numpy=True, show_progress_bar=False)
    np.testing.assert_allclose(by_task, got[:3], atol=1e-6)  # what an Encoder should call for queries


def test_a_query_candidate_on_an_asymmetric_live_model_keeps_its_document_route(live, pairs, stored):
    rng = np.random.default_rng(1)
    w1 = (np.eye(384) + 0.05 * rng.normal(size=(384, 384))).astype(np.float32)
    w2 = (np.eye(384) + 0.05 * rng.normal(size=(384, 384))).astype(np.float32)
    first = build_asymmetric_model(live, linear=w1)
    second = build_asymmetric_model(first, linear=w2)
    assert len(document_route(second)) == len(list(live.children()))
    assert len(query_route(second)) == len(list(live.children())) + 4
    docs = second.encode_document(pairs["passages"][:5], convert_to_numpy=True, show_progress_bar=False)
    np.testing.assert_allclose(docs, stored[:5], atol=1e-5)
    live_q = live.encode(pairs["queries"][:5], convert_to_numpy=True, normalize_embeddings=True,
                         show_progress_bar=False)
    got = second.encode_query(pairs["queries"][:5], convert_to_numpy=True, show_progress_bar=False)
    np.testing.assert_allclose(got, apply_linear(w2, apply_linear(w1, live_q)), atol=1e-5)


# ----------------------------------------------------------------------------- query encoder
@pytest.mark.slow
def test_encoder_training_never_encodes_a_passage_and_leaves_the_document_route(live, pairs, stored, monkeypatch,
                                                                                tmp_path):
    from sentence_transformers import SentenceTransformer

    from vectune.models.encoder import Encoder

    before = _state(live)
    calls = {"document": 0, "passages": 0, "encode": 0}
    orig_encode = SentenceTransformer.encode

    def counting_encode(self, *a, **k):
        calls["encode"] += 1
        if k.get("task") == "document":
            calls["document"] += 1
        return orig_encode(self, *a, **k)

    def no_documents(self, *a, **k):
        calls["document"] += 1
        raise AssertionError("the query-side learner encoded passages")

    def no_passages(self, *a, **k):
        calls["passages"] += 1
        raise AssertionError("the query-side learner encoded passages")

    monkeypatch.setattr(SentenceTransformer, "encode", counting_encode)
    monkeypatch.setattr(SentenceTransformer, "encode_document", no_documents)
    monkeypatch.setattr(Encoder, "encode_passages", no_passages)
    cfg = QueryConfig(max_steps=2, batch_size=8, val_fraction=0.0, refit=False, learning_rate=1e-4)
    tuned, stats = train_query_encoder(live, pairs["queries"], pairs["positives"], stored, pairs["keys"], cfg=cfg)
    q = live.encode(pairs["queries"], convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    train_linear_map(q, pairs["positives"], stored, pairs["keys"], cfg=QueryConfig(linear_epochs=2))
    assert calls["document"] == 0 and calls["passages"] == 0
    assert calls["encode"] == 1  # only this test's own query encoding above
    monkeypatch.undo()

    assert stats.steps == 2 and stats.stopped_by == "max_steps"
    after = _state(live)
    assert all(torch_equal(before[k], after[k]) for k in before)  # the live model was not touched
    asym = build_asymmetric_model(live, tuned_query_model=tuned)
    asym.save(str(tmp_path / "m"), safe_serialization=True)
    back = SentenceTransformer(str(tmp_path / "m"), trust_remote_code=False, model_kwargs={"use_safetensors": True})
    back.max_seq_length = live.max_seq_length
    docs = back.encode_document(pairs["passages"], convert_to_numpy=True, show_progress_bar=False)
    np.testing.assert_allclose(docs, stored, atol=1e-5)
    tuned_q = tuned.encode(pairs["queries"], convert_to_numpy=True, normalize_embeddings=True,
                           show_progress_bar=False)
    got = back.encode_query(pairs["queries"], convert_to_numpy=True, show_progress_bar=False)
    np.testing.assert_allclose(got, tuned_q, atol=1e-5)
    assert np.abs(got - q).max() > 1e-4  # the query route did change


def test_encoder_time_budget_stops_training(live, pairs, stored):
    cfg = QueryConfig(epochs=50, time_budget_s=0.01, batch_size=8, refit=True)
    _, stats = train_query_encoder(live, pairs["queries"], pairs["positives"], stored, pairs["keys"], cfg=cfg)
    assert stats.stopped_by == "time" and stats.steps == 1
    assert stats.epochs_run < 1 and not stats.refit


def test_encoder_on_an_asymmetric_live_model_tunes_its_query_route(live, pairs, stored):
    rng = np.random.default_rng(2)
    w1 = (np.eye(384) + 0.05 * rng.normal(size=(384, 384))).astype(np.float32)
    first = build_asymmetric_model(live, linear=w1)  # live after a linear-map promotion
    cfg = QueryConfig(max_steps=1, batch_size=8, val_fraction=0.0, refit=False)
    tuned, stats = train_query_encoder(first, pairs["queries"], pairs["positives"], stored, pairs["keys"], cfg=cfg)
    assert stats.steps == 1 and not is_asymmetric(tuned)
    assert len(list(tuned.children())) == len(query_route(first))  # transformer, pooling, normalize, dense, normalize
    second = build_asymmetric_model(first, tuned_query_model=tuned)
    docs = second.encode_document(pairs["passages"][:5], convert_to_numpy=True, show_progress_bar=False)
    np.testing.assert_allclose(docs, stored[:5], atol=1e-5)
    got = second.encode_query(pairs["queries"][:5], convert_to_numpy=True, show_progress_bar=False)
    want = tuned.encode(pairs["queries"][:5], convert_to_numpy=True, show_progress_bar=False)
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.slow
def test_encoder_end_to_end_on_30_pairs(live, pairs, stored):
    cfg = QueryConfig(epochs=4, batch_size=8, learning_rate=1e-4, val_fraction=0.2, refit=False)
    tuned, stats = train_query_encoder(live, pairs["queries"], pairs["positives"], stored, pairs["keys"], cfg=cfg,
                                       seed=3)
    assert stats.epochs_run == 4 and len(stats.epoch_loss) == 4
    assert stats.epoch_loss[-1] < stats.epoch_loss[0]  # the loss decreases
    assert [e for e, _ in stats.val_curve] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert stats.val_best == pytest.approx(max(v for e, v in stats.val_curve if e > 0))
    assert stats.examples == 4 * stats.train_queries and stats.examples_per_s > 0
    # the kept checkpoint is the best epoch on the slice: rescoring it gives the recorded value
    import torch

    texts = [pairs["queries"][i] for i in stats.val_indices]
    row = {k: i for i, k in enumerate(pairs["keys"])}
    vecs = torch.from_numpy(tuned.encode(texts, convert_to_numpy=True, normalize_embeddings=True,
                                         show_progress_bar=False))
    again = _ndcg10(vecs, torch.from_numpy(stored), [np.array([row[pairs["positives"][i][0]]])
                                                     for i in stats.val_indices],
                    [np.ones(1, np.float32)] * len(texts)).mean()
    assert again == pytest.approx(stats.val_best, abs=1e-4)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))
