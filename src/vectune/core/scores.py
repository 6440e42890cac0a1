"""The retrieval metrics vectune reports, in report order (computed by :mod:`vectune.pipeline.evaluate`)."""

from __future__ import annotations

#: recall@1/5/10, MRR@10 and graded nDCG@10.
METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")
