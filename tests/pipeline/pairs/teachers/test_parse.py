"""Parsing a teacher's reply into questions (vectune.pipeline.pairs.teachers.parse)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from vectune.pipeline.pairs.teachers.parse import parse_questions


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "reply, expected",
    [
        ('Sure, here: ["What is X about?", "How does Y work?"] Hope it helps!',
         ["What is X about?", "How does Y work?"]),
        ('{"result": ["What is X about?"]}', ["What is X about?"]),
        ('[{"question": "What is X about?"}]', ["What is X about?"]),
        ("```\n1. What is X about?\n2. How does Y work?\n```", ["What is X about?", "How does Y work?"]),
        ("- what is X about\n* explain how Y works", ["what is X about", "explain how Y works"]),
        ("Questions:\nWhat is X about?\nHow does Y work?", ["What is X about?", "How does Y work?"]),
    ],
)
def test_parse_shapes(reply, expected):
    kept, rejected, _ = parse_questions(reply, "Unrelated chunk text about other matters entirely.", 5)
    assert kept == expected and not rejected


def test_copy_detection_is_not_overeager():
    chunk = "The boiling point of water at sea level is 100 degrees Celsius, lower at altitude."
    kept, rejected, _ = parse_questions(
        json.dumps(
            [
                "What is the boiling point of water at sea level?",
                "The boiling point of water at sea level is 100 degrees Celsius?",
            ]
        ),
        chunk,
        3,
    )
    assert kept == ["What is the boiling point of water at sea level?"]
    assert rejected == Counter({"copy_of_chunk": 1})
