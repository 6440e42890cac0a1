"""Run reports: a JSON record (stable schema), a Markdown summary and an HTML page.

Every ``vectune run`` writes ``<work_dir>/reports/<alias>/<run_id>.json``, ``.md``
(sentences and tables, for terminals and pull requests), ``.html`` (the report page with
its inline SVG charts, :mod:`vectune.observe.pages`) and rewrites the alias's ``history.html``.
It prints the evaluation table and decision.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vectune.core.jsonl import write_atomic
from vectune.core.scores import METRICS
from vectune.observe import pages

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
        status: ``promoted``, ``kept``, ``noop``, ``dry-run``, ``failed``, ``locked``, ``interrupted`` (SIGTERM)
            or ``rolled-back`` (the watch rolled the live model back; exit code 7).
        reason: why, in one sentence.
        settings: every setting that can change a decision, as this run used them
            (:meth:`vectune.config.settings.Settings.decisive`).
        watch: what the watch found before the cycle (:class:`vectune.ops.watch.WatchResult`).
        models_verified: the live and rollback target's models checked against their manifests' hashes.
        retention: versions kept and deleted after the run, each kept version's points and footprint,
            and the next promotion's space estimate (:mod:`vectune.ops.retention`, :mod:`vectune.ops.space`).
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
    models_verified: list | None = None
    retention: dict | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    report_files: dict | None = None
    settings: dict | None = None
    watch: dict | None = None
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
        "rolled-back": f"ROLLED BACK by the watch: alias '{report['alias']}' -> {report.get('new_collection')}",
    }.get(str(status), str(status))
    out = [head]
    watch = report.get("watch") or {}
    if watch and status != "rolled-back":
        out.append(f"watch: {watch.get('verdict')} - {watch.get('reason')}")
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


def _md_cell(v) -> str:
    return ("" if v is None else str(v)).replace("|", "\\|").replace("\n", " ")


def _md_flat(d, prefix: str = "") -> list[tuple[str, object]]:
    """A nested dict as ``(dotted key, scalar)`` pairs (lists of scalars joined, other lists counted)."""
    out = []
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _md_flat(v, key + ".")
        elif isinstance(v, (list, tuple)):
            if all(not isinstance(x, (dict, list)) for x in v):
                out.append((key, ", ".join(map(str, v))))
            elif all(isinstance(x, dict) for x in v):
                out.append((key, "; ".join("(" + ", ".join(f"{a} {_md_value(b)}" for a, b in _md_flat(x)) + ")"
                                           for x in v)))
            else:
                out.append((key, f"{len(v)} items"))
        else:
            out.append((key, v))
    return out


def _md_value(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e9:
            return f"{int(v):,}"
        return f"{v:,.1f}" if abs(v) >= 100 else (f"{v:.2f}" if abs(v) >= 10 else f"{v:.4f}")
    if isinstance(v, int):
        return f"{v:,}"
    return _md_cell(v)


def _md_facts(d) -> str:
    return " · ".join(f"{k} {_md_value(v)}" for k, v in _md_flat(d) if v not in (None, ""))  # keys as in the JSON


def _md_snip(text, chars: int = 140) -> str:
    t = _md_cell(text)
    return t if len(t) <= chars else t[: chars - 1].rstrip() + "…"


def markdown(report: dict) -> str:
    """The report as Markdown for terminals and pull requests: sentences and tables, no JSON."""
    r = report
    gate, evaluation, counts = r.get("gate") or {}, r.get("evaluation") or {}, r.get("counts") or {}
    word = pages.STATUS_WORDS.get(str(r.get("status")), str(r.get("status")))
    md = [f"# vectune run {r.get('run_id')}: {word.lower()}", "",
          f"**{word}.** {pages.headline(r)}." + (f" {r['reason']}" if r.get("reason") else ""), ""]
    facts = [f"- alias `{r.get('alias')}`; live collection before the run: `{r.get('live_collection')}` "
             f"(model `{r.get('live_model')}`)"]
    if r.get("new_collection"):
        facts.append(f"- new collection: `{r['new_collection']}` (model `{r.get('candidate_model')}`)")
    elif r.get("candidate_model"):
        facts.append(f"- candidate: `{r['candidate_model']}`" + (f", saved at `{r['candidate_saved']}`"
                                                               if r.get("candidate_saved") else " (not kept)"))
    if r.get("mode"):
        facts.append(f"- mode: {r['mode']}" + (f"; chosen candidate: {(r.get('choice') or {}).get('chosen')}"
                                              if (r.get("choice") or {}).get("chosen") else ""))
    facts.append(f"- started {r.get('started_at')}, took {r.get('duration_s')} s")
    if r.get("crossfit"):
        cf = r["crossfit"]
        facts.append(f"- evidence: **cross-fitted**, K={cf.get('folds')} folds ({cf.get('by')}), {cf.get('queries')} "
                     f"labeled queries (fold sizes {cf.get('sizes')})")
    if r.get("labels"):
        facts.append(f"- labels used: {_md_facts(r['labels'])}")
    md += facts + [""]
    for note in pages._notes(r):
        md += [f"> {note}", ""]
    if evaluation:
        md += ["## Did the candidate beat the live model?", ""]
        if gate.get("metric"):
            n = ((evaluation.get(gate.get("evidence")) or {}).get("live") or {}).get("queries")
            over = n if n is not None else "the"
            s = (f"The gate decided on **{gate['metric']}** over {over} {gate.get('evidence')} "
                 f"queries: {gate.get('live')} → {gate.get('candidate')}, delta **{gate.get('delta', 0):+.4f}**")
            if gate.get("ci_low") is not None:
                s += f", 95% CI [{gate['ci_low']:+.4f}, {gate['ci_high']:+.4f}]"
            if gate.get("p_value") is not None:
                s += f", one-sided {gate.get('test')} p = {gate['p_value']:.4f}"
            if gate.get("min_delta") is not None:
                s += f"; it needs at least {gate['min_delta']:+.4f}"
            md += [s + ".", ""]
        md += ["| evidence | metric | live | candidate | delta | 95% CI |", "|---|---|---:|---:|---:|---:|"]
        for row in pages._delta_rows(evaluation, gate):
            name = f"**{row['metric']} (gate)**" if row["highlight"] else row["metric"]
            ci = f"[{row['lo']:+.4f}, {row['hi']:+.4f}]" if row["lo"] is not None else ""
            md.append(f"| {row['evidence']} | {name} | {row['live']:.4f} | {row['candidate']:.4f} | "
                      f"{row['value']:+.4f} | {ci} |")
        md.append("")
    cands = r.get("candidates") or {}
    if cands:
        choice = r.get("choice") or {}
        md += ["## Candidates", "", "| candidate | cost class | delta | 95% CI | p | gate |",
               "|---|---|---:|---:|---:|---|"]
        for kind in choice.get("order") or list(cands):
            c = cands.get(kind) or {}
            g = c.get("gate") or {}
            cost = c.get("cost_class") or c.get("cost") or pages.KIND_COST.get(kind, "")
            ci = f"[{g['ci_low']:+.4f}, {g['ci_high']:+.4f}]" if g.get("ci_low") is not None else ""
            p = f"{g['p_value']:.4f}" if g.get("p_value") is not None else ""
            chosen = ", **chosen**" if kind == choice.get("chosen") else ""
            verdict = ("passes" if g.get("promote") else "fails") + chosen
            delta = f"{g['delta']:+.4f}" if g.get("delta") is not None else ""
            md.append(f"| {kind} | {_md_cell(cost)} | {delta} | {ci} | {p} | {verdict} |")
        md.append("")
    trains = ({k: (c or {}).get("train") for k, c in cands.items()} if cands
              else {pages._kind_of(r): counts.get("train")})
    lines = []
    for kind, st in trains.items():
        if not st:
            continue
        curve, new = st.get("val_curve") or [], st.get("val_curve_new_docs") or []
        s = f"- **{kind}**: " + _md_facts({k: st[k] for k in pages.TRAIN_KEYS if k in st})
        if curve:
            s += (f". Validation {st.get('val_metric', '')} per epoch: "
                  + " → ".join(f"{v:.4f}" for _, v in curve))
        if new:
            s += "; on held-out queries about new documents: " + " → ".join(f"{v:.4f}" for _, v in new)
        lines.append(s)
    if lines:
        md += ["## Training", ""] + lines + [""]
    ev = gate.get("evidence") or r.get("evidence")
    if ev:
        md += ["## Evidence", "", f"Deciding evidence: {pages.EVIDENCE_WORDS.get(ev, ev)}.", ""]
        for name, pair in evaluation.items():
            live = (pair or {}).get("live") or {}
            md.append(f"- {name}: {live.get('queries')} queries against a corpus of {live.get('corpus')}")
        for key in pages.EVIDENCE_COUNT_KEYS:
            if counts.get(key):
                value = _md_facts(counts[key]) if isinstance(counts[key], dict) else counts[key]
                md.append(f"- {key.replace('_', ' ')}: {value}")
        md.append("")
    rej = counts.get("rejected")
    sample = r.get("pairs_sample") or []
    if rej or sample:
        md += ["## Training pairs", ""]
        if rej:
            kept = rej.get("kept_rejections") or {}
            left = sum(v for k, v in rej.items() if k != "kept_rejections" and isinstance(v, int))
            md += [f"{left} training items were left out because a reviewer rejected them "
                   f"({_md_facts({k: v for k, v in rej.items() if k != 'kept_rejections'})}); "
                   f"{kept.get('pairs', 0)} pairs and {kept.get('queries', 0)} whole queries are vetoed in all.", ""]
        if sample:
            md += [f"A sample ({min(len(sample), 10)} of {len(sample)} shown; "
                   f"`vectune review --alias {r.get('alias')}` "
                   "to read and reject them in a browser):", "",
                   "| query | positive | hard negative | source |", "|---|---|---|---|"]
            for p in sample[:10]:
                md.append(f"| {_md_snip(p.get('query'))} | {_md_snip(p.get('positive_snippet'))} | "
                          f"{_md_snip(p.get('negative_snippet'))} | {_md_cell(p.get('source'))} |")
            md.append("")
    md += _retention_md(r.get("retention"))
    if r.get("timings"):
        md += ["## Time per stage", "", "| stage | seconds |", "|---|---:|"]
        md += [f"| {k} | {v} |" for k, v in r["timings"].items()]
        md.append("")
    rest = {k: v for k, v in counts.items() if k not in pages.SHOWN_COUNTS}
    for key in ("watch",):
        if r.get(key) is not None:
            rest[key] = r[key]
    if rest:
        md += ["## Other counts", ""]
        md += [f"- **{k}**: {_md_facts(v) if isinstance(v, dict) else _md_value(v)}" for k, v in rest.items()]
        md.append("")
    return "\n".join(md) + "\n"


def _retention_md(ret: dict | None) -> list[str]:
    """The versions kept after the run, what retention deleted, and the next promotion's space estimate."""
    if not ret:
        return []
    md = ["## Versions kept", "", f"Retention `{ret.get('policy')}`, keep_versions {ret.get('keep_versions')}; "
          f"deleted: {', '.join(f'`{c}`' for c in ret.get('deleted') or []) or 'none'}; models deleted: "
          f"{', '.join(f'`{m}`' for m in ret.get('models_deleted') or []) or 'none'}.", ""]
    rows = ret.get("versions") or []
    if rows:
        md += ["| collection | points | disk bytes | memory bytes | |", "|---|---:|---:|---:|---|"]
        for v in rows:
            role = "live" if v.get("live") else ("rollback target" if v.get("rollback_target") else "")
            md.append(f"| `{v.get('collection')}` | {_md_value(v.get('points'))} | {_md_value(v.get('disk_bytes'))} | "
                      f"{_md_value(v.get('ram_bytes'))} | {role} |")
        md.append("")
    nxt = ret.get("next_promotion") or {}
    if nxt:
        head = nxt.get("headroom_bytes")
        md += [f"The next promotion needs about {_md_value(nxt.get('needs_bytes'))} bytes "
               f"({_md_cell(nxt.get('how'))}); "
               + (f"headroom {_md_value(head)} bytes ({nxt.get('headroom_from')})." if head is not None
                  else "headroom not checked (set VECTUNE_SPACE_HEADROOM_GB)."), ""]
        if nxt.get("warning"):
            md += [f"> **Warning**: {_md_cell(nxt['warning'])}", ""]
    if ret.get("error"):
        md += [f"> **Retention failed**: {_md_cell(ret['error'])}", ""]
    return md


def write(report: RunReport | dict, reports_dir: Path, events: list[dict] | None = None) -> dict[str, Path]:
    """Write JSON, Markdown and the HTML page for a run (and ``latest.json``), then the alias's history page.

    Args:
        report: the run report.
        reports_dir: the alias's reports folder.
        events: the alias's history events so far (:class:`vectune.observe.history.History`), for the history page.

    Returns:
        The files' paths by kind (``json``, ``md``, ``html``, ``history``).
    """
    reports_dir.mkdir(parents=True, exist_ok=True)
    report = _as_dict(report)
    stem = reports_dir / str(report["run_id"])
    report = {"schema": SCHEMA_VERSION, **report}
    text = json.dumps(report, indent=2, default=str)
    paths = {"json": stem.with_suffix(".json")}
    write_atomic(paths["json"], text)
    paths["md"] = stem.with_suffix(".md")
    paths["md"].write_text(markdown(report), encoding="utf-8")
    write_atomic(reports_dir / "latest.json", text)
    try:  # the pages are for people: neither a full disk nor a rendering bug may fail the run
        paths["html"] = pages.write_report_page(report, reports_dir, events or ())
        paths["history"] = pages.write_history_page(reports_dir, str(report.get("alias")), events or (), [report])
    except Exception:  # noqa: BLE001
        logger.exception("could not write the HTML pages of run %s", report.get("run_id"))
    return paths


def latest(reports_dir: Path) -> RunReport | None:
    """The last run's report in ``reports_dir``, or None."""
    path = reports_dir / "latest.json"
    try:
        return RunReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
