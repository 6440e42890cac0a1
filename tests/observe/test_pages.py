"""observe/pages.py and observe/svg.py: the report and history pages from plain dicts, self-contained."""

from __future__ import annotations

import json
import re

import pytest

from vectune.observe import pages, svg
from vectune.observe.report import RunReport, markdown, write

GATE = {"promote": True, "reason": "better", "metric": "ndcg@10", "evidence": "golden", "live": 0.70, "candidate": 0.73,
        "delta": 0.03, "ci_low": 0.011, "ci_high": 0.049, "min_delta": 0.005, "test": "permutation", "p_value": 0.004}
EVAL = {"golden": {"live": {"queries": 40, "corpus": 200, "recall@5": 0.6, "ndcg@10": 0.70},
                   "candidate": {"queries": 40, "corpus": 200, "recall@5": 0.65, "ndcg@10": 0.73},
                   "delta_ci": {"recall@5": [-0.01, 0.11], "ndcg@10": [0.01, 0.05]}},
        "synthetic": {"live": {"queries": 90, "corpus": 200, "ndcg@10": 0.5},
                      "candidate": {"queries": 90, "corpus": 200, "ndcg@10": 0.49}}}
TRAIN = {"kind": "query", "val_queries": 12, "val_new_docs": 4, "val_metric": "ndcg@10", "val_live": 0.6,
         "chosen_epoch": 2.0, "val_curve": [[0.0, 0.6], [1.0, 0.63], [2.0, 0.65]],
         "val_curve_new_docs": [[0.0, 0.5], [1.0, 0.52], [2.0, 0.51]]}


def _promoted(**kw) -> dict:
    r = {"run_id": "20260101T030000Z-aaaaaa", "alias": "docs", "started_at": "2026-01-01T03:00:00+00:00",
         "status": "promoted", "reason": "ndcg@10 improved by +0.0300 on golden queries",
         "live_collection": "docs--m", "new_collection": "docs--m-ft-1-query", "candidate_model": "m-ft-1-query",
         "mode": "query", "evidence": "golden", "evaluation": EVAL, "gate": GATE, "duration_s": 75.5,
         "timings": {"read": 1.0, "train": 40.0, "evaluate": 9.5},
         "counts": {"train": TRAIN, "eval_set": {"usable": 40},
                    "rejected": {"train": 2, "eval": 0, "labeled_queries": 1,
                                 "kept_rejections": {"pairs": 2, "queries": 1}}},
         "pairs_sample": [{"query": "what is <script>alert(1)</script>?", "positive_snippet": "A passage & more",
                           "negative_snippet": "Another one", "source": "feedback", "pair_id": "0123456789abcdef"}]}
    r.update(kw)
    return r


def _no_network(html: str) -> None:
    """Nothing to fetch: no script, no external URL in any attribute, no @import."""
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href|action)\s*=\s*['"]?\s*(https?:)?//""", html, re.I)
    assert "@import" not in html and "url(" not in html


def test_promoted_page_says_the_decision_and_draws_the_gate():
    html = pages.report_page(_promoted())
    _no_network(html)
    assert "class='banner good'" in html and "Alias &#x27;docs&#x27; now serves docs--m-ft-1-query" in html
    assert "class='chart forest'" in html and "min delta +0.005" in html  # the forest plot with its threshold
    assert "ndcg@10  ← gate" in html and "+0.0300  [+0.0110, +0.0490]" in html  # the gate row and its CI
    assert "[−0.0100, +0.1100]" in html  # a non-gate metric's CI from evaluation.delta_ci
    assert "queries about new documents (4)" in html and "kept: epoch 2" in html  # the training curves
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "3</b> training items left out" in html  # counts.rejected
    assert "href='history.html'" in html


@pytest.mark.parametrize("status, tone", [("kept", "neutral"), ("noop", "neutral"), ("dry-run", "neutral"),
                                          ("failed", "warn"), ("locked", "warn")])
def test_banner_tone_per_outcome(status, tone):
    html = pages.report_page({"run_id": "r1", "alias": "docs", "status": status, "reason": "why"})
    assert f"class='banner {tone}'" in html and ">why<" in html


def test_missing_and_unknown_fields_are_tolerated_and_shown():
    assert "<html" in pages.report_page({})
    html = pages.report_page(_promoted(watch={"checked": 3, "rolled_back": True, "to": "docs--m",
                                              "reason": "golden ndcg@10 fell"},
                                       counts={"retention": {"kept": [{"collection": "docs--m", "points": 1234}]},
                                               "brand_new": {"x": 1}},
                                       sampled_corpus_note="decided on a sample", candidates=None))
    assert "class='banner warn'" in html and "then rolled back" in html  # the watch undid it
    assert "Collections kept" in html and "1,234" in html  # counts.retention, rendered generically
    assert "brand_new" in html and "sampled_corpus_note" in html and "decided on a sample" in html


def test_candidates_with_cost_classes_and_comparisons():
    cands = {"linear": {"model": "m-lin", "cost_class": "cheap", "train": TRAIN, "gate": {**GATE, "delta": 0.01,
                                                                                          "promote": False}},
             "query": {"model": "m-q", "train": TRAIN, "gate": GATE}}
    choice = {"chosen": "query", "order": ["linear", "query"], "comparisons": []}
    html = pages.report_page(_promoted(candidates=cands, choice=choice))
    assert ">cheap<" in html and "query encoder retrained" in html  # given class, else the kind's
    assert "badge info'>chosen" in html and "badge neutral'>fails" in html and "badge good'>passes" in html
    assert html.count("class='chart forest'") == 2


def test_a_single_candidate_is_named_by_its_model_tag_when_the_mode_is_auto():
    html = pages.report_page(_promoted(mode="auto", candidates=None, candidate_model="docs-ft-20260101-linear"))
    assert "<b>linear</b>" in html and "a linear map on query embeddings" in html  # not an unnamed 'candidate'
    html = pages.report_page(_promoted(mode="auto", candidates=None, candidate_model="some-model"))
    assert "<b>candidate</b>" in html  # a tag that names no kind stays generic


RETENTION = {"policy": "on", "keep_versions": 3, "kept": ["docs--m-ft-2-linear", "docs--m-ft-1-linear", "docs--m"],
             "deleted": ["docs--m-ft-0-linear"], "models_deleted": [],
             "versions": [{"collection": "docs--m-ft-2-linear", "points": 2000, "disk_bytes": 11_796_480,
                           "ram_bytes": None, "footprint_source": "embedded storage folder", "live": True,
                           "rollback_target": False},
                          {"collection": "docs--m", "points": 2000, "disk_bytes": 11_853_824, "ram_bytes": None,
                           "footprint_source": "embedded storage folder", "live": False, "rollback_target": True}],
             "next_promotion": {"needs_bytes": 104_034_112, "collection_bytes": 11_796_480, "model_bytes": 92_237_632,
                                "how": "a copy of 'docs--m-ft-2-linear' + one model", "headroom_bytes": 46_112_886_784,
                                "headroom_from": "free space on embedded Qdrant's disk", "warning": None},
             "shard_note": "a key this page does not know"}


def test_retention_reads_as_sentences_and_a_table_of_versions():
    html = pages.retention_view(RETENTION)
    assert "Retention on" in html and "newest 3" in html and "rollback target are always kept" in html
    assert "badge good'>live<" in html and "badge info'>rollback target<" in html  # the roles, not true/false cells
    assert "11.8 MB" in html and "2,000" in html and "11796480" not in html and "11,796,480" not in html
    assert "Deleted by this run: <code>docs--m-ft-0-linear</code>; no model." in html
    assert "needs about <b>104.0 MB</b>" in html and "headroom 46.1 GB" in html and "warning" not in html
    assert "shard note" in html and "a key this page does not know" in html  # unknown keys are still shown
    warned = pages.retention_view({**RETENTION, "next_promotion": {**RETENTION["next_promotion"],
                                                                   "warning": "needs more than the headroom"}})
    assert "badge warn'>warning</span> needs more than the headroom" in warned
    html = pages.history_page("docs", [_promoted(counts={"retention": RETENTION})], [])
    assert "Retention on" in html and "badge good'>live<" in html  # the history page's Collections card uses it


def test_rollback_event_marks_the_promotion_page():
    ev = [{"time": "2026-01-02T00:00:00+00:00", "event": "rollback", "from": "docs--m-ft-1-query", "to": "docs--m"}]
    html = pages.report_page(_promoted(), events=ev)
    assert "class='banner warn'" in html and "rolled back to docs--m" in html


def test_history_merges_runs_and_events_and_draws_the_trend():
    runs = [_promoted(), _promoted(run_id="20260102T030000Z-bbbbbb", started_at="2026-01-02T03:00:00+00:00",
                                   status="kept", reason="within noise", new_collection=None,
                                   gate={**GATE, "promote": False, "live": 0.73, "candidate": 0.731, "delta": 0.001})]
    events = [{"time": "2026-01-01T03:05:00+00:00", "event": "promotion", "run_id": runs[0]["run_id"], "gate": GATE},
              {"time": "2026-01-03T09:00:00+00:00", "event": "rollback", "from": "docs--m-ft-1-query", "to": "docs--m",
               "synced": {"upserted": 3, "deleted": 1}, "by": "watch"},
              {"time": "2026-01-04T00:00:00+00:00", "event": "something_new", "detail": 7}]
    entries = pages.timeline(runs, events)
    assert [e["event"] for e in entries] == ["promotion", "rejection", "rollback", "something_new"]
    assert entries[0]["detail"]["run_id"] == runs[0]["run_id"]  # the run's own event is folded into it
    html = pages.history_page("docs", runs, events, report_href={runs[0]["run_id"]: "x.html"})
    _no_network(html)
    assert "Live now: docs--m" in html and "class='banner warn'" in html  # the last event was a rollback
    assert "class='chart lines'" in html and "ndcg@10 on golden queries over time" in html
    assert "Rolled back by watch" in html and "synced 3 upserted, 1 deleted" in html
    assert "something_new" in html and "href='x.html'" in html


def test_write_makes_html_pages_next_to_the_json(tmp_path):
    rep = RunReport.from_dict(_promoted())
    paths = write(rep, tmp_path, events=[])
    assert paths["html"] == tmp_path / f"{rep.run_id}.html" and paths["history"] == tmp_path / "history.html"
    page = paths["html"].read_text()
    assert f"href='{rep.run_id}.json'" in page and f"href='{rep.run_id}.md'" in page
    assert f"href='{rep.run_id}.html'" in paths["history"].read_text()
    md = paths["md"].read_text()
    assert "```" not in md and "**Promoted.**" in md and "| golden | **ndcg@10 (gate)** |" in md


def test_markdown_is_text_not_json():
    md = markdown(_promoted(counts={"read": {"points": 40, "usable": 39}, "retention": {"kept": [{"c": "a"}]}}))
    assert "```" not in md and "{" not in md
    assert "- **read**: points 40 · usable 39" in md


def test_svg_helpers():
    assert svg.ticks(0, 1, 5) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    f = svg.forest([{"label": "a<b", "value": 0.1, "lo": -0.1, "hi": 0.3, "highlight": True}], min_delta=0.05)
    assert f.startswith("<svg") and "a&lt;b" in f and "stroke-dasharray='5 4'" in f
    assert "no data" in svg.lines([{"name": "x", "points": []}])
    assert "3.0 s" in svg.bars([("read", 3.0), ("bad", "x")])


def test_read_reports_skips_latest_and_broken(tmp_path):
    (tmp_path / "latest.json").write_text(json.dumps({"run_id": "z"}))
    (tmp_path / "a.json").write_text(json.dumps({"run_id": "a"}))
    (tmp_path / "b.json").write_text("{torn")
    assert [r["run_id"] for r in pages.read_reports(tmp_path)] == ["a"]
