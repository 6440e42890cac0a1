"""The read stage's pure parts: text extraction, filtering, sampling and the train/eval split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vectune.config.settings import Settings
from vectune.core.chunks import Chunk, ReadStats, extract_text, filter_chunks, get_field, sample, split, text_hash


@pytest.mark.parametrize("preset,payload", [
    ("default", {"text": "plain text"}),
    ("langchain", {"page_content": "plain text", "metadata": {"source": "x"}}),
    ("haystack", {"content": "plain text"}),
    ("llamaindex", {"_node_content": json.dumps({"id_": "n1", "text": "plain text"})}),
])
def test_presets_resolve_to_their_field(preset, payload):
    field = Settings(text_field=preset).collection.text_field
    assert extract_text(payload, field) == ("plain text", None)


def test_preset_names_map_to_payload_fields():
    assert Settings(text_field="langchain").collection.text_field == "page_content"
    assert Settings(text_field="llamaindex").collection.text_field == "_node_content"
    assert Settings(text_field="body").collection.text_field == "body"


def test_dotted_paths():
    payload = {"meta": {"doc": {"text": "  deep  "}}, "text": "top"}
    assert get_field(payload, "meta.doc.text") == "  deep  "
    assert extract_text(payload, "meta.doc.text") == ("deep", None)
    assert extract_text(payload, "meta.nope.text") == (None, "missing_field")
    assert extract_text({"meta": "not a dict"}, "meta.text") == (None, "missing_field")


@pytest.mark.parametrize("payload,field,reason", [
    (None, "text", "no_payload"),
    ("a string", "text", "no_payload"),
    ({}, "text", "missing_field"),
    ({"text": None}, "text", "missing_field"),
    ({"text": 42}, "text", "not_a_string"),
    ({"text": ["a"]}, "text", "not_a_string"),
    ({"text": "   \n"}, "text", "empty"),
    ({"_node_content": "{not json"}, "_node_content", "bad_node_content"),
    ({"_node_content": "[1, 2]"}, "_node_content", "bad_node_content"),
    ({"_node_content": json.dumps({"id_": "n"})}, "_node_content", "not_a_string"),
])
def test_extract_text_reasons(payload, field, reason):
    assert extract_text(payload, field) == (None, reason)


def test_lone_surrogates_are_replaced_not_raised():
    text, reason = extract_text({"text": "bad \ud800 char"}, "text")
    assert reason is None
    assert text == "bad ? char"
    text.encode("utf-8")


def test_filter_chunks_counts_every_skip_and_keeps_unique_texts():
    vec = np.ones(3, dtype=np.float32)
    points = [
        (1, {"text": "a usable passage"}, vec),
        (2, {"text": "tiny"}, None),
        (3, {"text": "x" * 50}, None),
        (4, {"text": " a usable passage "}, None),  # same text once stripped
        (5, {"other": "no text"}, None),
        (6, None, None),
        (7, {"text": 3}, None),
        (8, {"text": ""}, None),
        ("u-9", {"text": "another usable one"}, None),
    ]
    stats = ReadStats()
    chunks = list(filter_chunks(points, "text", min_chars=5, max_chars=40, stats=stats))
    assert [(c.key, c.point_id, c.text) for c in chunks] == [("1", 1, "a usable passage"),
                                                            ("u-9", "u-9", "another usable one")]
    assert chunks[0].vector is vec and chunks[1].vector is None
    assert chunks[0].payload == {"text": "a usable passage"}
    assert stats.to_dict() == {"points": 9, "usable": 2, "skipped": {
        "too_short": 1, "too_long": 1, "duplicate": 1, "missing_field": 1, "no_payload": 1, "not_a_string": 1,
        "empty": 1}}


def test_text_hash_is_stable_and_short():
    assert text_hash("abc") == text_hash("abc") != text_hash("abd")
    assert len(text_hash("abc")) == 24
    assert Chunk("k", 1, "abc").text_hash == text_hash("abc")


def _chunks(n: int) -> list[Chunk]:
    return [Chunk(key=str(i), point_id=i, text=f"passage {i}") for i in range(n)]


def test_sample_is_seeded_ordered_and_bounded():
    cs = _chunks(50)
    a, b, c = sample(cs, 10, seed=1), sample(cs, 10, seed=1), sample(cs, 10, seed=2)
    assert [x.key for x in a] == [x.key for x in b]
    assert [x.key for x in a] != [x.key for x in c]
    assert len(a) == 10 and len({x.key for x in a}) == 10
    assert [x.point_id for x in a] == sorted(x.point_id for x in a)  # corpus order kept
    assert sample(cs[:5], 10, seed=1) == cs[:5]


def test_split_is_by_chunk_disjoint_and_seeded():
    cs = _chunks(40)
    train, held = split(cs, 0.25, seed=3)
    assert len(held) == 10 and len(train) == 30
    assert {c.key for c in train}.isdisjoint({c.key for c in held})
    assert {c.key for c in train} | {c.key for c in held} == {c.key for c in cs}
    again = split(list(reversed(cs)), 0.25, seed=3)  # input order does not change which chunks are held out
    assert {c.key for c in again[1]} == {c.key for c in held}
    assert {c.key for c in split(cs, 0.25, seed=4)[1]} != {c.key for c in held}


def test_split_holds_out_at_least_one_chunk():
    train, held = split(_chunks(3), 0.01, seed=0)
    assert len(held) == 1 and len(train) == 2
