"""Query-side candidates: tune only the query side against the collection's stored passage vectors.

The collection already holds the costly half of a retrieval model's work: every passage's
vector. A query-side candidate leaves those vectors (and the model that wrote them) untouched
and learns only how queries are encoded, so nothing of the corpus is ever re-encoded — not
for training, not for evaluation, not for promotion. Two candidates:

* :func:`~.encoder.train_query_encoder` fine-tunes a copy of the query encoder (transformer + pooling)
  with a softmax cross-entropy of each query against the stored vectors (:mod:`.loss`; the whole corpus
  when it fits in ``QueryConfig.corpus_max``, else a pool: :mod:`.data`);
* :func:`~.linear.train_linear_map` learns a d×d map on the live query embeddings, started at and
  pulled toward the identity — seconds of training, cautious.

Both stop on a step/time budget and keep the best checkpoint by graded nDCG@10 on a held-out slice
of the *training* queries (never a golden set). :func:`~.router.build_asymmetric_model` packages a
candidate as one sentence-transformers model whose ``encode_query`` takes the tuned route and
whose ``encode_document`` is the original, frozen live model (a
``sentence_transformers.models.Router``), so it saves and loads with ``SentenceTransformer(path)``.
Settings: :class:`vectune.config.sections.QueryConfig`, the one place of their defaults.
"""

from vectune.pipeline.train.query.encoder import train_query_encoder
from vectune.pipeline.train.query.linear import apply_linear, train_linear_map
from vectune.pipeline.train.query.router import build_asymmetric_model, document_route, is_asymmetric, query_route
from vectune.pipeline.train.query.stats import Positives, QuerySideStats

__all__ = ["Positives", "QuerySideStats", "apply_linear", "build_asymmetric_model", "document_route",
           "is_asymmetric", "query_route", "train_linear_map", "train_query_encoder"]
