"""The offline teacher: what each method makes, without a model."""

from __future__ import annotations

from vectune.core.chunks import Chunk
from vectune.pipeline.pairs.teachers.offline import OfflineGenerator, sentences

TEXT = ("Aspirin lowers MI risk. In a randomised trial of 2000 patients, daily aspirin reduced myocardial infarction "
        "by a fifth. Bleeding events rose slightly in the treated arm. The effect held across age groups.")


def chunk(text=TEXT, **payload):
    return Chunk("k1", 1, text, {"text": text, **payload})


def test_title_query_trains_on_the_body_when_the_passage_starts_with_it():
    q = OfflineGenerator("title").generate([chunk(title="Aspirin lowers MI risk")], 1).queries[0]
    assert q.text == "Aspirin lowers MI risk" and q.source == "offline:title"
    assert q.positive.startswith("In a randomised trial") and "Aspirin lowers" not in q.positive


def test_cloze_takes_one_sentence_out_of_the_positive():
    q = OfflineGenerator("cloze", seed=1).generate([chunk()], 1).queries[0]
    assert q.text in sentences(TEXT)
    assert q.text not in q.positive and len(q.positive) > 0


def test_keyphrase_uses_distinctive_terms_not_stopwords():
    other = Chunk("k2", 2, "Statins lower cholesterol in adults with high risk of heart disease.", {})
    res = OfflineGenerator("keyphrase").generate([chunk(), other], 2)
    qs = [q.text for q in res.queries if q.chunk_id == "k1"]
    assert qs and all(w not in {"the", "of", "in", "by"} for q in qs for w in q.split())
    assert len(set(qs)) == len(qs)


def test_mix_respects_n_and_counts_chunks_without_queries():
    res = OfflineGenerator("mix").generate([chunk(title="Aspirin lowers MI risk"), Chunk("k3", 3, "tiny", {})], 3)
    per = [q for q in res.queries if q.chunk_id == "k1"]
    assert len(per) == 3 and {q.source for q in per} == {"offline:title", "offline:keyphrase", "offline:cloze"}
    assert res.stats.rejected["no_query_possible"] == 1
    assert res.stats.kept == len(res.queries)


def test_deterministic_for_a_seed():
    a = OfflineGenerator("mix", seed=3).generate([chunk()], 3).queries
    b = OfflineGenerator("mix", seed=3).generate([chunk()], 3).queries
    assert [q.text for q in a] == [q.text for q in b]
