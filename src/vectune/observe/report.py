"""Run reports: a JSON record (stable schema) and a Markdown summary with a chart.

Every ``vectune run`` writes ``<work_dir>/reports/<alias>/<run_id>.json`` and
``.md`` (plus ``.png`` with recall@k of live vs candidate when matplotlib is
installed), and prints the evaluation table and decision.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vectune.core.jsonl import write_atomic
from vectune.core.scores import METRICS

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass
class RunReport:
    """Everything one run did, for the JSON/Markdown report, metrics, status and history.

    The stages return typed results; the cycle copies what the report shows into
    these fields. ``to_dict`` gives the stable JSON schema (fields left at None are
    omitted, as before).

    Attributes:
        run_id: unique id of the run (time + random suffix).
        alias: the alias.
        started_at: ISO time the run started.
        dry_run: stop after evaluation.
        timings: seconds per stage.
        counts: per-stage counts.
        status: ``promoted``, ``kept``, ``noop``, ``dry-run``, ``failed``, ``locked`` or ``interrupted`` (SIGTERM).
        reason: why, in one sentence.
        settings: every setting that can change a decision, as this run used them
            (:meth:`vectune.config.settings.Settings.decisive`).
        crossfit: the cross-fit behind ``cross-fitted`` evidence: folds, budget, each candidate's fold models,
            chosen epochs, final fit and its check (:meth:`vectune.pipeline.crossfit.CrossFit.report`).
        labels: which labels the decision used (:func:`vectune.pipeline.pairs.provenance.summary`): source,
            counts, the newest label's time; a promotion keeps the whole record with its model.
    """

    run_id: str
    alias: str
    started_at: str
    dry_run: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    status: str | None = None
    reason: str | None = None
    error_type: str | None = None
    live_collection: str | None = None
    live_model: str | None = None
    dense_vector: str | None = None
    mode: str | None = None
    teacher: str | None = None
    evidence: str | None = None
    evaluation: dict | None = None
    gate: dict | None = None
    candidates: dict | None = None
    choice: dict | None = None
    pairs_sample: list | None = None
    candidate_model: str | None = None
    candidate_saved: str | None = None
    new_collection: str | None = None
    recovered: dict | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    report_files: dict | None = None
    settings: dict | None = None
    crossfit: dict | None = None
    labels: dict | None = None

    def end(self, status: str, reason: str) -> None:
        """Record the outcome."""
        self.status, self.reason = status, reason

    def to_dict(self) -> dict:
        """The report as JSON-ready data (None fields omitted)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = dict(v) if f.name == "timings" else v
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RunReport:
        """A report read back from its JSON (unknown keys ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _as_dict(report) -> dict:
    return report.to_dict() if isinstance(report, RunReport) else dict(report)


def table(evals: dict, decision: dict | None = None) -> str:
    """The live-vs-candidate table as fixed-width text.

    Args:
        evals: ``{"golden"|"synthetic": {"live": {...}, "candidate": {...}}}``.
        decision: the gate decision dict, for the CI column.
    """
    lines = []
    for evidence, pair in evals.items():
        live, cand = pair.get("live") or {}, pair.get("candidate") or {}
        lines.append(f"{evidence} queries: {live.get('queries', 0)}  corpus: {live.get('corpus', 0)}")
        lines.append(f"  {'metric':<10} {'live':>8} {'candidate':>10} {'delta':>8}")
        for m in METRICS:
            if m not in live:
                continue
            c = cand.get(m)
            d = f"{c - live[m]:+8.4f}" if c is not None else f"{'-':>8}"
            cs = f"{c:10.4f}" if c is not None else f"{'-':>10}"
            gate = decision and decision.get("metric") == m and decision.get("evidence") == evidence
            mark = "  <- gate" if gate else ""
            lines.append(f"  {m:<10} {live[m]:8.4f} {cs} {d}{mark}")
    if decision and decision.get("ci_low") is not None:
        lines.append(f"  {decision['metric']} delta {decision['delta']:+.4f}, "
                     f"95% CI [{decision['ci_low']:+.4f}, {decision['ci_high']:+.4f}]")
    return "\n".join(lines)


def summary(report: RunReport | dict) -> str:
    """A few lines for the terminal: outcome, reason, table."""
    report = _as_dict(report)
    status = report.get("status")
    head = {
        "promoted": f"PROMOTED: alias '{report['alias']}' -> {report.get('new_collection')}",
        "kept": f"KEPT LIVE: alias '{report['alias']}' stays on {report.get('live_collection')}",
        "noop": f"NOTHING TO DO: alias '{report['alias']}' ({report.get('live_collection')})",
        "dry-run": f"DRY RUN: alias '{report['alias']}' untouched ({report.get('live_collection')})",
        "failed": f"FAILED: alias '{report['alias']}'",
        "interrupted": f"INTERRUPTED: alias '{report['alias']}'",
    }.get(str(status), str(status))
    out = [head]
    gate = report.get("gate") or {}
    if report.get("reason"):
        out.append(f"reason: {report['reason']}")
    cf = report.get("crossfit")
    if cf:
        out.append(f"evidence: cross-fitted, K={cf.get('folds')} folds ({cf.get('by')}), {cf.get('queries')} labeled "
                   "queries, each scored by models that never trained on it")
    if report.get("evaluation"):
        out.append(table(report["evaluation"], gate))
    return "\n".join(out)


def markdown(report: dict, chart: str | None = None) -> str:
    """The report as Markdown."""
    r = report
    md = [f"# vectune run {r.get('run_id')} — {r.get('status')}", ""]
    md += [f"- alias: `{r.get('alias')}`",
           f"- live collection: `{r.get('live_collection')}` (model `{r.get('live_model')}`)"]
    if r.get("new_collection"):
        md.append(f"- new collection: `{r['new_collection']}` (model `{r.get('candidate_model')}`)")
    md += [f"- started {r.get('started_at')}, took {r.get('duration_s')} s",
           f"- decision: **{r.get('status')}** — {r.get('reason')}", ""]
    if r.get("crossfit"):
        cf = r["crossfit"]
        md += [f"- evidence: **cross-fitted**, K={cf.get('folds')} folds ({cf.get('by')}), {cf.get('queries')} "
               f"labeled queries (fold sizes {cf.get('sizes')})", ""]
    if r.get("evaluation"):
        md += ["## Evaluation", "", "| evidence | metric | live | candidate | delta |", "|---|---|---|---|---|"]
        for ev, pair in r["evaluation"].items():
            live, cand = pair.get("live") or {}, pair.get("candidate") or {}
            for m in METRICS:
                if m in live:
                    c = cand.get(m)
                    md.append(f"| {ev} | {m} | {live[m]:.4f} | {'' if c is None else f'{c:.4f}'} | "
                              f"{'' if c is None else f'{c - live[m]:+.4f}'} |")
        md.append("")
        if chart:
            md += [f"![recall@k]({chart})", ""]
    if r.get("gate"):
        md += ["## Gate", "", "```", json.dumps(r["gate"], indent=2), "```", ""]
    md += ["## Counts", "", "```", json.dumps(r.get("counts", {}), indent=2), "```", ""]
    md += ["## Timings (s)", "", "| stage | seconds |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in (r.get("timings") or {}).items()]
    return "\n".join(md) + "\n"


def chart(report: dict, path: Path) -> Path | None:
    """PNG bar chart of recall@k (and MRR/nDCG) for live vs candidate; None without matplotlib."""
    evals = report.get("evaluation") or {}
    if not evals:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(evals), figsize=(5.5 * len(evals), 3.6), squeeze=False)
    for ax, (ev, pair) in zip(axes[0], evals.items()):
        live, cand = pair.get("live") or {}, pair.get("candidate") or {}
        ms = [m for m in METRICS if m in live]
        xs = range(len(ms))
        ax.bar([x - 0.2 for x in xs], [live[m] for m in ms], width=0.4, label="live")
        if cand:
            ax.bar([x + 0.2 for x in xs], [cand.get(m, 0) for m in ms], width=0.4, label="candidate")
        ax.set_xticks(list(xs), ms, rotation=20)
        ax.set_ylim(0, 1)
        ax.set_title(f"{ev} queries (n={live.get('queries', 0)})")
        ax.legend(loc="lower right")
    fig.suptitle(f"{report.get('alias')}: {report.get('status')}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(report: RunReport | dict, reports_dir: Path) -> dict[str, Path]:
    """Write JSON, Markdown and PNG for a run (and ``latest.json``); returns their paths."""

    reports_dir.mkdir(parents=True, exist_ok=True)
    report = _as_dict(report)
    stem = reports_dir / str(report["run_id"])
    report = {"schema": SCHEMA_VERSION, **report}
    text = json.dumps(report, indent=2, default=str)
    paths = {"json": stem.with_suffix(".json")}
    write_atomic(paths["json"], text)
    png = chart(report, stem.with_suffix(".png"))
    if png:
        paths["png"] = png
    paths["md"] = stem.with_suffix(".md")
    paths["md"].write_text(markdown(report, png.name if png else None), encoding="utf-8")
    write_atomic(reports_dir / "latest.json", text)
    return paths


def latest(reports_dir: Path) -> RunReport | None:
    """The last run's report in ``reports_dir``, or None."""
    path = reports_dir / "latest.json"
    try:
        return RunReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
