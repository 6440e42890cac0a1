"""The field names a labeled query may use, in labeled sets (JSONL) and feedback rows alike."""

from __future__ import annotations

#: Keys that may hold the query text.
QUERY_KEYS = ("query", "text", "question")
#: Keys that may hold the relevant ids.
RELEVANT_KEYS = ("relevant", "relevant_ids", "doc_ids", "ids", "positive_ids")
