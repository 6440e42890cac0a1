"""HTML pages a person reads: one report page per run and one history page per alias.

Both are single self-contained files written next to the JSON reports
(``<work_dir>/reports/<alias>/<run_id>.html`` and ``history.html``): inline CSS, inline
SVG charts (:mod:`vectune.observe.svg`), no script, no font or image to fetch, so they
open from a volume, a CI artifact or an e-mail attachment with no network.

They read plain dicts only — a run report as :meth:`vectune.report.RunReport.to_dict`
writes it, history events as :func:`vectune.lineage.read_history` returns them — and
render what is there: a field that is missing is left out, and report sections they
do not know (a ``watch``, ``counts.retention``, cross-fitting details...) are shown
generically as tables rather than dropped.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from vectune.core.jsonl import write_atomic
from vectune.observe import svg

logger = logging.getLogger(__name__)

HISTORY_FILE = "history.html"
#: Metrics in display order (a report may carry others: they follow).
METRIC_ORDER = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")
#: How each candidate kind costs, when the report does not say.
KIND_COST = {
    "linear": "cheap: a linear map on query embeddings; passages untouched",
    "query": "medium: the query encoder retrained; passages untouched",
    "full": "costly: both towers retrained; every passage re-embedded",
}
EVIDENCE_WORDS = {
    "golden": "golden: real queries with known answers (a golden set or the newest logged feedback), never trained on",
    "crossfit": "cross-fitted: every logged query judged by a model that never trained on it (K folds)",
    "cross-fitted": "cross-fitted: every logged query judged by a model that never trained on it (K folds)",
    "synthetic": "synthetic: held-out queries the offline teacher wrote; weak evidence",
    "teacher": "teacher: held-out queries an LLM teacher wrote",
}
GATE_BADGE = " <span class='badge info'>gate</span>"
DECIDES_BADGE = " <span class='badge info'>decides</span>"
STATUS_WORDS = {"promoted": "Promoted", "kept": "Kept live", "noop": "Nothing to do", "dry-run": "Dry run",
                "failed": "Failed", "locked": "Skipped: alias locked", "rolled-back": "Rolled back by the watch"}

CSS = """
:root{--ink:#1f2328;--muted:#57606a;--line:#d8dee4;--bg:#f6f8fa;--card:#fff;--green:#1a7f37;--green-bg:#dafbe1;
--grey:#57606a;--grey-bg:#eaeef2;--amber:#9a6700;--amber-bg:#fff8c5;--red:#c0392b;--blue:#2563eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",
Helvetica,Arial,sans-serif;-webkit-font-smoothing:antialiased}
header.top{background:#24292f;color:#fff;padding:14px 0}
header.top .wrap{display:flex;align-items:baseline;gap:18px;flex-wrap:wrap}
header.top .brand{font-weight:700;font-size:17px;letter-spacing:.02em}
header.top .crumb{color:#d0d7de;font-size:14px}
header.top a{color:#9ecbff;text-decoration:none;margin-left:auto;font-size:14px}
.wrap{max-width:1060px;margin:0 auto;padding:0 24px}
main.wrap{padding-top:22px;padding-bottom:48px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:0 0 12px}
h3{font-size:15px;margin:16px 0 8px}
section.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:20px 22px;margin:18px 0}
.banner{border-radius:10px;padding:18px 22px;margin:0 0 18px;border:1px solid;border-left-width:8px}
.banner.good{background:var(--green-bg);border-color:#4ac26b;border-left-color:var(--green)}
.banner.neutral{background:var(--grey-bg);border-color:#afb8c1;border-left-color:var(--grey)}
.banner.warn{background:var(--amber-bg);border-color:#d4a72c;border-left-color:var(--amber)}
.banner .verdict{font-size:13px;font-weight:700;letter-spacing:.08em;text-transform:uppercase}
.banner.good .verdict{color:var(--green)}.banner.neutral .verdict{color:var(--grey)}
.banner.warn .verdict{color:var(--amber)}
.banner h1{margin:4px 0 6px}
.banner p{margin:4px 0}
.banner .facts{font-size:14px;color:var(--muted)}
.notice{border-radius:8px;padding:10px 14px;margin:10px 0;background:var(--amber-bg);border:1px solid #d4a72c}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(190px,1fr));gap:12px;margin:0 0 6px}
.stat{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.stat .k{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.06em}
.stat .v{font-size:17px;font-weight:600;margin-top:2px;overflow-wrap:anywhere}
.stat .s{font-size:13px;color:var(--muted);overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:7px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);font-weight:600;background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.hl td{background:#eef4ff;font-weight:600}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.muted{color:var(--muted)}
.small{font-size:13px}
.badge{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:600;white-space:nowrap;
border:1px solid transparent}
.badge.good{background:var(--green-bg);color:var(--green);border-color:#4ac26b}
.badge.neutral{background:var(--grey-bg);color:var(--grey);border-color:#afb8c1}
.badge.warn{background:var(--amber-bg);color:var(--amber);border-color:#d4a72c}
.badge.bad{background:#ffebe9;color:var(--red);border-color:#ff8182}
.badge.info{background:#ddf4ff;color:#0969da;border-color:#54aeff}
.pos{color:var(--green)}.neg{color:var(--red)}
svg.chart{display:block;max-width:100%;height:auto;margin:6px 0 4px}
details{margin:8px 0}
details summary{cursor:pointer;font-weight:600}
details table{margin-top:6px}
td.snip{max-width:320px;font-size:13px;color:#32383f}
td.q{max-width:260px;font-weight:500}
.chips{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0}
.chip{display:inline-flex;gap:6px;align-items:baseline;background:#f6f8fa;border:1px solid var(--line);border-radius:6px;
padding:3px 9px;font-size:13px;font-variant-numeric:tabular-nums}
.chip .k{color:var(--muted);font-size:12px}
.kv{width:auto;min-width:50%}
.kv th{text-transform:none;letter-spacing:0;font-size:13px;background:none}
footer{color:var(--muted);font-size:13px;margin-top:26px}
a{color:#0969da}
"""


# --------------------------------------------------------------------------- small helpers
def _e(v: Any) -> str:
    return escape("" if v is None else str(v))


def _num(v: Any, digits: int = 4, signed: bool = False) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _e(v)
    if isinstance(v, int) and not signed:
        return f"{v:,}"
    if not math.isfinite(v):
        return str(v)
    s = f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    return s.replace("-", "\u2212")


def _ci(lo: Any, hi: Any, digits: int = 4) -> str:
    if not isinstance(lo, (int, float)) or not isinstance(hi, (int, float)):
        return ""
    return f"[{_num(lo, digits, True)}, {_num(hi, digits, True)}]"


def _metrics(*dicts: Mapping) -> list[str]:
    keys = [k for d in dicts for k, v in (d or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("queries", "corpus")]
    known = [m for m in METRIC_ORDER if m in keys]
    return known + sorted({k for k in keys if k not in METRIC_ORDER})


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return ""
    s = float(seconds)
    if s < 90:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    if m < 90:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def _when(iso: Any) -> str:
    """``2026-11-27 13:10 UTC`` from an ISO time (the text itself when unparsable)."""
    if not iso:
        return ""
    try:
        t = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return str(iso)
    off = t.utcoffset()
    zone = " UTC" if off is not None and off.total_seconds() == 0 else (t.strftime(" %z") if off is not None else "")
    return t.strftime("%Y-%m-%d %H:%M") + zone


def _ts(iso: Any) -> float | None:
    try:
        t = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return t.timestamp()


def _page(title: str, crumb: str, body: str, link: tuple[str, str] | None = None) -> str:
    nav = f"<a href='{escape(link[0], quote=True)}'>{_e(link[1])}</a>" if link else ""
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:; form-action 'none'\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"<header class='top'><div class='wrap'><span class='brand'>vectune</span>"
            f"<span class='crumb'>{crumb}</span>{nav}</div></header>"
            f"<main class='wrap'>{body}</main></body></html>")


def _card(title: str, inner: str, ident: str = "") -> str:
    idattr = f" id='{ident}'" if ident else ""
    return f"<section class='card'{idattr}><h2>{_e(title)}</h2>{inner}</section>"


def _stat(k: str, v: Any, sub: Any = None) -> str:
    return (f"<div class='stat'><div class='k'>{_e(k)}</div><div class='v'>{v}</div>"
            + (f"<div class='s'>{sub}</div>" if sub else "") + "</div>")


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e9:
            return f"{int(value):,}"
        a = abs(value)
        return _num(value, 1 if a >= 100 else (2 if a >= 10 else 4))
    if isinstance(value, int):
        return f"{value:,}"
    return _e(value) if value is not None else "<span class='muted'>–</span>"


def chips(d: Mapping) -> str:
    """A flat dict as a row of ``key value`` chips."""
    return "<div class='chips'>" + "".join(f"<span class='chip'><span class='k'>{_e(str(k).replace('_', ' '))}</span>"
                                            f"{_scalar(v)}</span>" for k, v in d.items()) + "</div>"


def generic(value: Any, depth: int = 0) -> str:
    """Any JSON value as readable HTML: scalars as text, flat dicts as chips, nested dicts as key/value tables,
    lists of dicts as tables."""
    if _is_scalar(value):
        return _scalar(value)
    if depth > 4:
        return f"<code>{_e(json.dumps(value, default=str)[:300])}</code>"
    if isinstance(value, Mapping):
        if not value:
            return "<span class='muted'>none</span>"
        if all(_is_scalar(v) for v in value.values()) and len(value) <= 16:
            return chips(value)
        if len(value) == 1:
            (k, v), = value.items()
            return f"<div class='small muted'>{_e(k)}</div>{generic(v, depth + 1)}"
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{generic(v, depth + 1)}</td></tr>" for k, v in value.items())
        return f"<table class='kv'>{rows}</table>"
    if isinstance(value, (list, tuple)):
        if not value:
            return "<span class='muted'>none</span>"
        if all(_is_scalar(v) for v in value):
            return ", ".join(generic(v, depth + 1) for v in value[:50]) + (" …" if len(value) > 50 else "")
        if all(isinstance(v, Mapping) for v in value):
            cols: list[str] = []
            for v in value:
                cols += [k for k in v if k not in cols]
            head = "".join(f"<th>{_e(c)}</th>" for c in cols)
            body = "".join("<tr>" + "".join(f"<td>{generic(v.get(c), depth + 1)}</td>" for c in cols) + "</tr>"
                           for v in value[:200])
            return f"<table><tr>{head}</tr>{body}</table>"
        return "<br>".join(generic(v, depth + 1) for v in value[:50])
    return _e(value)


# --------------------------------------------------------------------------- the decision
def tone(report: Mapping) -> str:
    """``good`` (promoted), ``warn`` (failed, locked, rolled back) or ``neutral`` (kept, no-op, dry run)."""
    if _rolled_back(report):
        return "warn"
    status = report.get("status")
    if status == "promoted":
        return "good"
    if status in ("failed", "locked"):
        return "warn"
    return "neutral"


def _rolled_back(report: Mapping) -> Mapping | None:
    """The rollback that undid this run's promotion (a ``watch`` section or a later event), if any."""
    watch = report.get("watch")
    if isinstance(watch, Mapping) and (watch.get("rolled_back") or watch.get("rollback")
                                       or watch.get("action") == "rollback" or watch.get("status") == "rolled-back"):
        return {"by": "the watch", **watch}
    rb = report.get("_rolled_back")
    return rb if isinstance(rb, Mapping) else None


def headline(report: Mapping) -> str:
    """The decision in words, one sentence (plain text)."""
    r = report
    alias = r.get("alias")
    status = r.get("status")
    if status == "promoted":
        rb = _rolled_back(r)
        if rb:
            return (f"Alias '{alias}' was promoted to {r.get('new_collection') or 'a new collection'}, then rolled "
                    f"back to {rb.get('to') or 'an earlier version'}")
        return f"Alias '{alias}' now serves {r.get('new_collection') or 'the new collection'}"
    if status == "kept":
        return f"Alias '{alias}' stays on {r.get('live_collection') or 'its live collection'}"
    if status == "noop":
        return f"Nothing changed in '{alias}' since the last decided run"
    if status == "dry-run":
        would = "promote" if (r.get("gate") or {}).get("promote") else "keep the live model"
        return f"Dry run: the gate would {would}; alias '{alias}' untouched"
    if status == "failed":
        err = f" ({r['error_type']})" if r.get("error_type") else ""
        return f"The run failed{err}; alias '{alias}' untouched"
    if status == "locked":
        return f"Another operator holds alias '{alias}'; this run did nothing"
    if status == "rolled-back":
        return (f"The watch rolled alias '{alias}' back from {r.get('live_collection')} to {r.get('new_collection')}: "
                "fresh feedback showed the live model worse")
    return f"Run on alias '{alias}': {status}"


def _gate_facts(gate: Mapping, evaluation: Mapping) -> str:
    if not gate or gate.get("metric") is None:
        return ""
    ev = gate.get("evidence")
    n = ((evaluation or {}).get(ev) or {}).get("live", {}).get("queries") if ev else None
    bits = [f"<b>{_e(gate.get('metric'))}</b> {_num(gate.get('live'))} → {_num(gate.get('candidate'))} "
            f"(<b>{_num(gate.get('delta'), 4, True)}</b>)"]
    if gate.get("ci_low") is not None:
        bits.append(f"95% CI {_ci(gate.get('ci_low'), gate.get('ci_high'))}")
    if gate.get("p_value") is not None:
        bits.append(f"{_e(gate.get('test'))} p = {_num(gate.get('p_value'), 4)}")
    bits.append(f"on {_num(n) + ' ' if n is not None else ''}{_e(ev)} queries")
    if gate.get("min_delta") is not None:
        bits.append(f"min delta {_num(gate.get('min_delta'), 3, True)}")
    return " · ".join(bits)


def _notes(report: Mapping) -> list[str]:
    out = []
    for src in (report, report.get("gate") or {}, report.get("counts") or {}):
        for key in ("notes", "note", "warnings"):
            v = src.get(key) if isinstance(src, Mapping) else None
            if isinstance(v, str) and v:
                out.append(v)
            elif isinstance(v, (list, tuple)):
                out += [x if isinstance(x, str) else json.dumps(x, default=str) for x in v]
    return out


def _banner(report: Mapping) -> str:
    t = tone(report)
    status = report.get("status")
    rb = _rolled_back(report)
    verdict = STATUS_WORDS.get(status, str(status).capitalize())
    if rb:
        verdict += " · then rolled back"
    parts = [f"<div class='banner {t}' id='decision'><div class='verdict'>{_e(verdict)}</div>",
             f"<h1>{_e(headline(report))}</h1>"]
    if report.get("reason"):
        parts.append(f"<p>{_e(report['reason'])}</p>")
    facts = _gate_facts(report.get("gate") or {}, report.get("evaluation") or {})
    if facts:
        parts.append(f"<p class='facts'>{facts}</p>")
    if rb:
        when = _when(rb.get("time")) if rb.get("time") else ""
        parts.append(f"<p><b>Rolled back</b> {_e(rb.get('by') or 'by hand')}{' on ' + _e(when) if when else ''}: "
                     f"{_e(rb.get('from') or report.get('new_collection') or '')} → {_e(rb.get('to') or '')}"
                     f"{'. ' + _e(rb.get('reason')) if rb.get('reason') else ''}</p>")
    parts.append("</div>")
    for n in _notes(report):
        parts.append(f"<div class='notice'>{_e(n)}</div>")
    return "".join(parts)


def _summary_grid(r: Mapping) -> str:
    ev = r.get("evidence")
    evaluation = r.get("evaluation") or {}
    gate = r.get("gate") or {}
    deciding = gate.get("evidence") or ev
    live_q = ((evaluation.get(deciding) or {}).get("live") or {})
    cells = []
    if ev or deciding:
        sub = []
        if live_q.get("queries") is not None:
            sub.append(f"{_num(live_q['queries'])} queries")
        if live_q.get("corpus") is not None:
            sub.append(f"corpus {_num(live_q['corpus'])}")
        cells.append(_stat("evidence", _e(deciding or ev), " · ".join(sub)))
    if r.get("mode"):
        choice = r.get("choice") or {}
        sub = (f"chosen: {_e(choice['chosen'])}" if choice.get("chosen") else
               "no candidate passed" if choice.get("order") else None)
        cells.append(_stat("mode", _e(r["mode"]), sub))
    if r.get("live_collection"):
        cells.append(_stat("live before", f"<span class='small'>{_e(r['live_collection'])}</span>",
                           f"model {_e(r.get('live_model'))}" if r.get("live_model") else None))
    if r.get("new_collection"):
        cells.append(_stat("promoted to" if _rolled_back(r) else "live now", f"<span class='small'>{_e(r['new_collection'])}</span>",
                           f"model {_e(r.get('candidate_model'))}" if r.get("candidate_model") else None))
    elif r.get("candidate_model"):
        cells.append(_stat("candidate", f"<span class='small'>{_e(r['candidate_model'])}</span>",
                           f"saved: {_e(r.get('candidate_saved'))}" if r.get("candidate_saved") else None))
    if r.get("duration_s") is not None:
        cells.append(_stat("duration", _e(_duration(r["duration_s"])), _e(_when(r.get("started_at")))))
    return f"<div class='grid'>{''.join(cells)}</div>" if cells else ""


# --------------------------------------------------------------------------- deltas
def _delta_rows(evaluation: Mapping, gate: Mapping) -> list[dict]:
    """One forest-plot row per (evidence, metric): the deciding evidence first."""
    order = sorted(evaluation, key=lambda ev: (ev != gate.get("evidence"), ev))
    rows = []
    for ev in order:
        pair = evaluation.get(ev) or {}
        live, cand = pair.get("live") or {}, pair.get("candidate") or {}
        cis = pair.get("delta_ci") or {}
        n = live.get("queries")
        for m in _metrics(live):
            if not isinstance(cand.get(m), (int, float)):
                continue
            is_gate = m == gate.get("metric") and ev == gate.get("evidence")
            lo = hi = None
            if is_gate and gate.get("ci_low") is not None:
                lo, hi = gate.get("ci_low"), gate.get("ci_high")
            elif isinstance(cis.get(m), (list, tuple)) and len(cis[m]) == 2:
                lo, hi = cis[m]
            delta = gate.get("delta") if is_gate and gate.get("delta") is not None else cand[m] - live[m]
            rows.append({"group": f"{ev} queries" + (f" (n={n})" if n is not None else ""), "evidence": ev,
                         "label": m + ("  ← gate" if is_gate else ""), "metric": m, "value": delta, "lo": lo, "hi": hi,
                         "highlight": is_gate, "live": live[m], "candidate": cand[m]})
    return rows


def _deltas_section(r: Mapping) -> str:
    evaluation, gate = r.get("evaluation") or {}, r.get("gate") or {}
    rows = _delta_rows(evaluation, gate)
    if not rows:
        return ""
    chart = svg.forest(rows, min_delta=gate.get("min_delta"), title="candidate minus live, per metric, with 95% CI")
    trs = []
    for row in rows:
        d = row["value"]
        cls = "pos" if d > 0 else ("neg" if d < 0 else "")
        trs.append(f"<tr class='{'hl' if row['highlight'] else ''}'><td>{_e(row['evidence'])}</td>"
                   f"<td>{_e(row['metric'])}{GATE_BADGE if row['highlight'] else ''}</td>"
                   f"<td class='num'>{_num(row['live'])}</td><td class='num'>{_num(row['candidate'])}</td>"
                   f"<td class='num {cls}'>{_num(d, 4, True)}</td><td class='num'>{_ci(row['lo'], row['hi'])}</td></tr>")
    explain = ("Each row is the candidate's mean minus the live model's on the same queries and corpus. Whiskers are "
               "95% paired-bootstrap intervals (resampled queries); a row whose whiskers stay right of the black line "
               "is a gain that is unlikely to be noise. The gate decides on the highlighted row only")
    if gate.get("min_delta") is not None:
        explain += f", and needs its delta at or above the dashed line ({_num(gate['min_delta'], 3, True)})"
    table = ("<table><tr><th>evidence</th><th>metric</th><th class='num'>live</th><th class='num'>candidate</th>"
             "<th class='num'>delta</th><th class='num'>95% CI</th></tr>" + "".join(trs) + "</table>")
    return _card("Did the candidate beat the live model?",
                 f"<p class='small muted'>{explain}.</p>{chart}{table}", "deltas")


# --------------------------------------------------------------------------- candidates
def _candidates_section(r: Mapping) -> str:
    cands = r.get("candidates") or {}
    choice = r.get("choice") or {}
    gate = r.get("gate") or {}
    if not cands and not gate:
        return ""
    if not cands:  # one candidate: the report's own gate, named by its mode or its model tag (auto on one kind)
        cands = {_kind_of(r): {"model": r.get("candidate_model"), "gate": gate,
                                       "cost_class": r.get("cost_class")}}
    order = list(choice.get("order") or []) + [k for k in cands if k not in (choice.get("order") or [])]
    chosen = choice.get("chosen")
    if chosen is None and len(cands) == 1 and r.get("status") == "promoted":
        chosen = order[0]
    trs, frows = [], []
    for kind in order:
        c = cands.get(kind) or {}
        g = c.get("gate") or {}
        cost = c.get("cost_class") or c.get("cost") or KIND_COST.get(kind, "")
        if isinstance(cost, Mapping):
            cost = ", ".join(f"{k} {v}" for k, v in cost.items())
        passed = g.get("promote")
        badge = ("<span class='badge good'>passes</span>" if passed else
                 "<span class='badge neutral'>fails</span>" if passed is False else "")
        pick = "<span class='badge info'>chosen</span>" if kind == chosen else ""
        trs.append(f"<tr class='{'hl' if kind == chosen else ''}'><td><b>{_e(kind)}</b> {pick}</td>"
                   f"<td class='small'>{_e(cost)}</td><td class='small mono'>{_e(c.get('model'))}</td>"
                   f"<td class='num'>{_num(g.get('delta'), 4, True) if g.get('delta') is not None else ''}</td>"
                   f"<td class='num'>{_ci(g.get('ci_low'), g.get('ci_high'))}</td>"
                   f"<td class='num'>{_num(g.get('p_value'), 4) if g.get('p_value') is not None else ''}</td>"
                   f"<td>{badge}</td></tr>")
        if g.get("delta") is not None:
            frows.append({"label": kind, "value": g["delta"], "lo": g.get("ci_low"), "hi": g.get("ci_high"),
                          "highlight": kind == chosen})
    metric = gate.get("metric") or next((((cands.get(k) or {}).get("gate") or {}).get("metric") for k in order), "")
    out = (f"<p class='small muted'>Every candidate trained this run, cheapest first, each judged by the gate on "
           f"{_e(metric)} ({_e(gate.get('evidence'))} queries). The cheapest passing candidate wins unless a costlier "
           f"one beats it significantly.</p>")
    if len(frows) > 1:
        out += svg.forest(frows, min_delta=gate.get("min_delta"), title="gate delta per candidate")
    out += ("<table><tr><th>candidate</th><th>cost class</th><th>model</th><th class='num'>delta</th>"
            "<th class='num'>95% CI</th><th class='num'>p</th><th>gate</th></tr>" + "".join(trs) + "</table>")
    comps = choice.get("comparisons") or []
    if comps:
        lines = []
        for c in comps:
            if not isinstance(c, Mapping):
                lines.append(f"<li>{_e(c)}</li>")
                continue
            verdict = "beats it, so it was taken" if c.get("costlier_wins") else "does not beat it significantly"
            lines.append(f"<li><b>{_e(c.get('costlier'))}</b> vs <b>{_e(c.get('cheaper'))}</b>: "
                         f"{_e(c.get('metric'))} {_num(c.get('delta'), 4, True)} {_ci(c.get('ci_low'), c.get('ci_high'))}"
                         f"{' p = ' + _num(c.get('p_value'), 4) if c.get('p_value') is not None else ''} — {verdict}</li>")
        out += f"<h3>Costlier against cheaper</h3><ul class='small'>{''.join(lines)}</ul>"
    return _card("Candidates", out, "candidates")


# --------------------------------------------------------------------------- training
TRAIN_KEYS = ("examples", "train_queries", "val_queries", "val_new_docs", "steps", "epochs", "epochs_run", "stopped_by",
              "chosen_epoch", "seconds", "loss", "examples_per_s", "val_live", "val_best", "beats_live", "processes")


def _train_block(name: str, st: Mapping) -> str:
    out = ""
    curve = st.get("val_curve") or []
    new = st.get("val_curve_new_docs") or []
    if curve:
        metric = st.get("val_metric") or "validation metric"
        series = [{"name": f"validation ({_num(st.get('val_queries'))} queries)", "points": [tuple(p) for p in curve],
                   "color": svg.BLUE}]
        if new:
            series.append({"name": f"queries about new documents ({_num(st.get('val_new_docs'))})",
                           "points": [tuple(p) for p in new], "color": "#7c3aed", "dash": "6 3"})
        hl = [{"y": st.get("val_live"), "label": f"live model {_num(st.get('val_live'))}"}] \
            if isinstance(st.get("val_live"), (int, float)) else []
        vl = [{"x": st["chosen_epoch"], "label": f"kept: epoch {_scalar(st['chosen_epoch'])}", "color": svg.GREEN}] \
            if isinstance(st.get("chosen_epoch"), (int, float)) else []
        out += svg.lines(series, title=f"{name}: {metric} per epoch", x_label="epoch", y_label=metric,
                         hlines=hl, vlines=vl, height=250)
    facts = {k: st[k] for k in TRAIN_KEYS if k in st and _is_scalar(st[k])}
    extra = {k: v for k, v in st.items() if k not in facts and k not in ("val_curve", "val_curve_new_docs", "kind")
             and _is_scalar(v) and v is not None}
    if facts or extra:
        out += chips({**facts, **extra})
    loss = st.get("epoch_loss")
    if isinstance(loss, list) and len(loss) > 1 and all(isinstance(x, (int, float)) for x in loss):
        out += svg.lines([{"name": "training loss", "points": list(enumerate(loss, 1)), "color": svg.GREY}],
                         title=f"{name}: loss per epoch", x_label="epoch", y_label="loss", height=200)
    return out


def _training_section(r: Mapping) -> str:
    cands = r.get("candidates") or {}
    blocks = []
    if cands:
        for kind, c in cands.items():
            st = (c or {}).get("train") or {}
            if st:
                blocks.append(f"<h3>{_e(kind)}</h3>" + _train_block(kind, st))
    elif (r.get("counts") or {}).get("train"):
        blocks.append(_train_block(r.get("candidate_model") or "candidate", r["counts"]["train"]))
    if not blocks:
        return ""
    intro = ("<p class='small muted'>The query-side trainer holds out a slice of its training queries and scores each "
             "epoch on it; the epoch that scores best is kept. The dashed purple line is the same metric on the held-out "
             "queries whose answers no training query points at: whether the gain carries to documents it never saw. "
             "The grey dashed line is the live model on the slice.</p>")
    return _card("Training", intro + "".join(blocks), "training")


# --------------------------------------------------------------------------- evidence, pairs, timings, the rest
EVIDENCE_COUNT_KEYS = ("eval_set", "eval_corpus", "feedback", "crossfit", "cross_fit", "folds", "eval_sample",
                       "sampled_corpus", "feedback_pairs")


def _evidence_section(r: Mapping) -> str:
    ev = (r.get("gate") or {}).get("evidence") or r.get("evidence")
    evaluation = r.get("evaluation") or {}
    counts = r.get("counts") or {}
    if not ev and not evaluation:
        return ""
    out = []
    if ev:
        out.append(f"<p><b>Deciding evidence:</b> {_e(EVIDENCE_WORDS.get(ev, ev))}.</p>")
    if evaluation:
        trs = "".join(f"<tr><td>{_e(name)}{DECIDES_BADGE if name == ev else ''}</td>"
                      f"<td class='num'>{_num(((p or {}).get('live') or {}).get('queries'))}</td>"
                      f"<td class='num'>{_num(((p or {}).get('live') or {}).get('corpus'))}</td>"
                      f"<td class='small'>{_e(EVIDENCE_WORDS.get(name, ''))}</td></tr>"
                      for name, p in evaluation.items())
        out.append("<table><tr><th>query set</th><th class='num'>queries</th><th class='num'>corpus</th>"
                   f"<th>what it is</th></tr>{trs}</table>")
    for key in EVIDENCE_COUNT_KEYS:
        if key in counts and counts[key] not in (None, {}, []):
            out.append(f"<h3>{_e(key.replace('_', ' '))}</h3>{generic(counts[key])}")
    for key in ("crossfit", "cross_fit", "evidence_detail"):
        if r.get(key):
            out.append(f"<h3>{_e(key.replace('_', ' '))}</h3>{generic(r[key])}")
    return _card("Evidence", "".join(out), "evidence")


def _pairs_section(r: Mapping) -> str:
    rows = r.get("pairs_sample") or []
    rej = (r.get("counts") or {}).get("rejected") or {}
    if not rows and not rej:
        return ""
    out = []
    if rej:
        kept = rej.get("kept_rejections") or {}
        left = sum(v for k, v in rej.items() if k != "kept_rejections" and isinstance(v, int))
        out.append(f"<p><b>{_num(left)}</b> training items left out this run because a reviewer rejected them "
                   f"({_e(', '.join(f'{k} {v}' for k, v in rej.items() if k != 'kept_rejections'))}); "
                   f"{_num(kept.get('pairs', 0))} pairs and {_num(kept.get('queries', 0))} whole queries are vetoed "
                   f"in all.</p>")
    if rows:
        alias = r.get("alias")
        out.append(f"<p class='small muted'>A seeded sample of this run's training pairs: the query, a snippet of the "
                   f"passage that answers it, and the hard negative it was trained against. Read them; reject bad ones "
                   f"with <code>vectune review --alias {_e(alias)}</code> (in the browser) or "
                   f"<code>vectune pairs reject</code>.</p>")
        trs = "".join(f"<tr><td class='num muted'>{i}</td><td class='q'>{_e(p.get('query'))}</td>"
                      f"<td class='snip'>{_e(p.get('positive_snippet'))}</td>"
                      f"<td class='snip'>{_e(p.get('negative_snippet')) or '<span class=muted>–</span>'}</td>"
                      f"<td><span class='badge neutral'>{_e(p.get('source'))}</span></td></tr>"
                      for i, p in enumerate(rows, 1) if isinstance(p, Mapping))
        out.append("<table><tr><th class='num'>#</th><th>query</th><th>positive</th><th>hard negative</th>"
                   f"<th>source</th></tr>{trs}</table>")
    return _card(f"Training pairs ({len(rows)} shown)" if rows else "Training pairs", "".join(out), "pairs")


def _timings_section(r: Mapping) -> str:
    t = {k: v for k, v in (r.get("timings") or {}).items() if isinstance(v, (int, float))}
    if not t:
        return ""
    total = r.get("duration_s")
    chart = svg.bars(list(t.items()), title="seconds per stage")
    note = f"<p class='small muted'>Whole run: {_e(_duration(total))}.</p>" if total is not None else ""
    return _card("Time per stage", chart + note, "timings")


SHOWN_COUNTS = set(EVIDENCE_COUNT_KEYS) | {"train", "rejected"}


def _more_section(r: Mapping) -> str:
    counts = r.get("counts") or {}
    blocks = []
    for key in ("watch", "retention"):
        val = r.get(key) if r.get(key) is not None else counts.get(key)
        if val not in (None, {}, []):
            inner = retention_view(val) if key == "retention" else generic(val)
            blocks.append(_card({"watch": "Watch after promotion", "retention": "Collections kept"}[key], inner, key))
    rest = [(k, v) for k, v in counts.items() if k not in SHOWN_COUNTS and k not in ("watch", "retention")]
    known = {"schema", "run_id", "alias", "started_at", "dry_run", "timings", "counts", "status", "reason",
             "error_type", "live_collection", "live_model", "dense_vector", "mode", "teacher", "evidence",
             "evaluation", "gate", "candidates", "choice", "pairs_sample", "candidate_model", "candidate_saved",
             "new_collection", "finished_at", "duration_s", "report_files", "watch", "retention", "notes", "note",
             "warnings", "crossfit", "cross_fit", "evidence_detail", "_rolled_back"}
    others = [(k, v) for k, v in r.items() if k not in known and v is not None]
    items = "".join(f"<details><summary>{_e(k)}</summary>{generic(v)}</details>" for k, v in rest + others)
    facts = {k: r.get(k) for k in ("dense_vector", "teacher", "dry_run", "finished_at", "recovered") if r.get(k)}
    if facts:
        items = generic(facts) + items
    if items:
        blocks.append(_card("Everything else this run counted", items, "counts"))
    return "".join(blocks)


def report_page(report: Mapping, *, history_href: str | None = HISTORY_FILE,
                files: Mapping[str, str] | None = None, events: Sequence[Mapping] = ()) -> str:
    """The run's report page.

    Args:
        report: the run report as a dict (:meth:`vectune.report.RunReport.to_dict` or its JSON).
        history_href: link to the alias's history page (None: no link).
        files: the run's other files, ``{"json": name, "md": name, ...}``, linked in the footer.
        events: the alias's history events so far: a later rollback of this run's promotion is shown.

    Returns:
        The whole HTML document.
    """
    r = dict(report)
    rb = _rollback_of(r, events)
    if rb and not r.get("_rolled_back"):
        r["_rolled_back"] = rb
    body = [_banner(r), _summary_grid(r), _deltas_section(r), _candidates_section(r), _training_section(r),
            _evidence_section(r), _pairs_section(r), _timings_section(r), _more_section(r)]
    links = " · ".join(f"<a href='{escape(str(v), quote=True)}'>{_e(k.upper())}</a>" for k, v in (files or {}).items())
    body.append(f"<footer>Run <code>{_e(r.get('run_id'))}</code> on alias <b>{_e(r.get('alias'))}</b>, started "
                f"{_e(_when(r.get('started_at')))}. {('Files: ' + links) if links else ''}</footer>")
    crumb = f"run report · {_e(r.get('alias'))} · {_e(r.get('run_id'))}"
    link = (history_href, f"History of {r.get('alias')} →") if history_href else None
    return _page(f"vectune {STATUS_WORDS.get(r.get('status'), r.get('status'))}: {r.get('alias')} {r.get('run_id')}",
                 crumb, "".join(body), link)


def _rollback_of(r: Mapping, events: Sequence[Mapping]) -> dict | None:
    new = r.get("new_collection")
    if r.get("status") != "promoted" or not new:
        return None
    for ev in events:
        if ev.get("event") == "rollback" and ev.get("from") == new:
            by = ev.get("by") or ev.get("trigger")
            return {"time": ev.get("time"), "from": ev.get("from"), "to": ev.get("to"),
                    "by": f"by {by}" if by else "by hand", "reason": ev.get("reason")}
    return None


# --------------------------------------------------------------------------- history
EVENT_TONE = {"promotion": "good", "rejection": "neutral", "rollback": "warn", "failure": "bad", "crash": "bad",
              "adopt": "info", "noop": "neutral", "dry-run": "info", "locked": "warn", "watch": "info"}
RUN_EVENT = {"promoted": "promotion", "kept": "rejection", "failed": "failure", "noop": "noop", "dry-run": "dry-run",
             "locked": "locked"}
EVENT_LABEL = {"promotion": "promoted", "rejection": "kept live", "failure": "failed", "noop": "no change",
               "dry-run": "dry run", "rollback": "rollback", "crash": "crash", "adopt": "adopted", "locked": "locked"}


def timeline(runs: Iterable[Mapping], events: Iterable[Mapping]) -> list[dict]:
    """Runs and history events merged into one list, oldest first.

    A run's own event (same ``run_id``: its promotion, rejection or failure) is folded into
    the run; other events (rollbacks, crashes, adoptions, a watch...) stand on their own.

    Returns:
        ``{"time", "event", "run": report dict or None, "detail": event dict or None}`` entries.
    """
    out, by_run = [], {}
    for r in runs:
        e = {"time": r.get("started_at") or r.get("finished_at"), "event": RUN_EVENT.get(r.get("status"), r.get("status")),
             "run": r, "detail": None}
        by_run[r.get("run_id")] = e
        out.append(e)
    for ev in events:
        rid = ev.get("run_id")
        if rid and rid in by_run and ev.get("event") in ("promotion", "rejection", "failure"):
            by_run[rid]["detail"] = ev
            continue
        out.append({"time": ev.get("time"), "event": ev.get("event"), "run": None, "detail": ev})
    out.sort(key=lambda e: (_ts(e["time"]) or 0.0))
    return out


def _event_text(e: Mapping) -> str:
    r, ev = e.get("run") or {}, e.get("detail") or {}
    kind = e.get("event")
    if kind == "rollback":
        by = ev.get("by") or ev.get("trigger")
        synced = ev.get("synced") or {}
        s = (f"Rolled back {'by ' + _e(by) if by else 'by hand'}: {_e(ev.get('from'))} → <b>{_e(ev.get('to'))}</b>")
        if isinstance(synced, Mapping) and synced:
            s += f" (synced {_num(synced.get('upserted', 0))} upserted, {_num(synced.get('deleted', 0))} deleted)"
        if ev.get("resumed"):
            s += f". {_e(ev['resumed'])}"
        if ev.get("reason"):
            s += f". {_e(ev['reason'])}"
        return s
    if kind == "adopt":
        return f"Adopted {_e(ev.get('collection'))} (model {_e(ev.get('model'))})"
    if r:
        if kind == "promotion":
            return f"Promoted <b>{_e(r.get('new_collection'))}</b> over {_e(r.get('live_collection'))}"
        return _e(r.get("reason") or headline(r))
    if kind == "promotion":
        return f"Promoted <b>{_e(ev.get('new_collection'))}</b> over {_e(ev.get('live_collection'))}. {_e(ev.get('reason'))}"
    if ev.get("reason"):
        return _e(ev["reason"])
    rest = {k: v for k, v in ev.items() if k not in ("time", "alias", "event")}
    return generic(rest) if rest else ""


def _gate_of(e: Mapping) -> Mapping:
    return (e.get("run") or {}).get("gate") or (e.get("detail") or {}).get("gate") or {}


def _kind_of(r: Mapping) -> str:
    """A single-candidate run's candidate kind: its mode, or its model tag's suffix."""
    if r.get("mode") in KIND_COST:
        return r["mode"]
    tag = str(r.get("candidate_model") or "")
    return next((k for k in KIND_COST if tag.endswith("-" + k)), "candidate")


def _done(e: Mapping) -> float | None:
    """When an entry took effect: a run's end (its swap), else the event's time."""
    r = e.get("run") or {}
    return _ts(r.get("finished_at")) or _ts((e.get("detail") or {}).get("time")) or _ts(e.get("time"))


def _live_steps(entries: list[dict], metric: str, evidence: str) -> list[tuple[float, float]]:
    """The live model's metric as a step line: measured at each run, switched at promotions and rollbacks.

    A collection's value is the last one measured for it (as live, or as the promoted candidate); a
    rollback switches to the value of the collection it returns to, when one was measured.
    """
    value: dict[str, float] = {}
    pts: list[tuple[float, float]] = []
    current = None
    for e in entries:
        r, ev, g = e.get("run") or {}, e.get("detail") or {}, _gate_of(e)
        t = _ts(e["time"])
        if t is None:
            continue
        if g.get("metric") == metric and g.get("evidence") == evidence and g.get("live") is not None:
            live = r.get("live_collection") or ev.get("live_collection")
            value[live] = g["live"]
            current = g["live"]
            pts.append((t, current))
            if e["event"] == "promotion" and g.get("candidate") is not None:
                value[r.get("new_collection") or ev.get("new_collection")] = g["candidate"]
                t2 = _done(e) or t
                pts += [(t2, current), (t2, g["candidate"])]
                current = g["candidate"]
        elif e["event"] == "rollback" and current is not None:
            back = value.get(ev.get("to"))
            pts.append((t, current))
            if back is not None:
                pts.append((t, back))
                current = back
    return pts


def _trend(entries: list[dict]) -> tuple[str, str]:
    """The trend chart of the live model's and the candidates' gate metric, and its caption."""
    gated = [e for e in entries if _gate_of(e).get("metric") is not None and _ts(e["time"]) is not None]
    if not gated:
        return "", ""
    evs = [_gate_of(e).get("evidence") for e in gated]
    evidence = "golden" if "golden" in evs else max(set(evs), key=evs.count)
    metrics = [_gate_of(e).get("metric") for e in gated if _gate_of(e).get("evidence") == evidence]
    metric = max(set(metrics), key=metrics.count)
    gated = [e for e in gated if _gate_of(e).get("evidence") == evidence and _gate_of(e).get("metric") == metric]
    xs = [_ts(e["time"]) for e in gated]
    live_pts = _live_steps(entries, metric, evidence)
    kinds: dict[str, list] = {}
    for x, e in zip(xs, gated):
        r = e.get("run") or {}
        cands = r.get("candidates") or {}
        if cands:
            for k, c in cands.items():
                g = (c or {}).get("gate") or {}
                if g.get("metric") == metric and g.get("candidate") is not None:
                    st = r.get("status") if k == (r.get("choice") or {}).get("chosen") else "not chosen"
                    kinds.setdefault(k, []).append((x, g["candidate"], st, r.get("run_id")))
        else:
            kinds.setdefault(_kind_of(r), []).append((x, _gate_of(e).get("candidate"),
                                                      r.get("status") or e.get("event"), r.get("run_id")))
    series = [{"name": f"live model ({metric})", "points": live_pts, "color": svg.INK, "dots": False}]
    for i, (k, pts) in enumerate(kinds.items()):
        series.append({"name": f"candidate: {k}", "points": [(x, y) for x, y, _, _ in pts],
                       "color": svg.PALETTE[i % len(svg.PALETTE)], "line": False, "r": 5,
                       "point_colors": [None if st in ("promoted", "promotion") else "hollow" for _, _, st, _ in pts],
                       "point_titles": [f"{rid}: {k} {y:.4f} ({st})" for x, y, st, rid in pts]})
    vlines = []
    all_x = xs[:]
    for e in entries:
        x = _ts(e["time"])
        if x is None or not (xs[0] <= x <= xs[-1] or e["event"] == "rollback"):
            continue
        if e["event"] == "rollback":
            vlines.append({"x": x, "label": "rollback", "color": svg.AMBER})
            all_x.append(x)
        elif e["event"] == "promotion":
            vlines.append({"x": _done(e) or x, "label": "promoted", "color": svg.GREEN})
    if len(vlines) > 12:
        for v in vlines:
            v["label"] = ""
    lo, hi = min(all_x), max(all_x)
    span = hi - lo
    fmt = "%H:%M" if span < 86400 * 1.5 else ("%b %d" if span < 86400 * 300 else "%Y-%m")
    n = 6
    x_ticks = [(lo + span * i / (n - 1), datetime.fromtimestamp(lo + span * i / (n - 1)).strftime(fmt))
               for i in range(n)] if span > 0 else [(lo, datetime.fromtimestamp(lo).strftime("%Y-%m-%d %H:%M"))]
    chart = svg.lines(series, title=f"{metric} on {evidence} queries over time", y_label=metric, vlines=vlines,
                      x_ticks=x_ticks, height=300)
    caption = (f"{metric} on the {evidence} queries of each run: the black line is the live model (measured by each "
               f"run, switched at promotions and rollbacks), the dots each candidate a run trained (filled: promoted; "
               f"hollow: not). Green lines mark promotions, amber ones rollbacks.")
    return chart, caption


def _collections(entries: list[dict], runs: Sequence[Mapping]) -> str:
    """Collections kept (a ``retention`` section of the newest report that has one), else those the alias used."""
    for r in reversed(list(runs)):
        ret = r.get("retention") if r.get("retention") is not None else (r.get("counts") or {}).get("retention")
        if ret not in (None, {}, []):
            return (f"<p class='small muted'>As of run <code>{_e(r.get('run_id'))}</code>.</p>" + retention_view(ret))
    seen: dict[str, dict] = {}
    for e in entries:
        r, ev = e.get("run") or {}, e.get("detail") or {}
        if e["event"] == "promotion":
            name = r.get("new_collection") or ev.get("new_collection")
            reindex = r.get("counts", {}).get("reindex") if r else None
            pts = _points(reindex)
            seen.setdefault(name, {"first live": _when(r.get("finished_at") or e["time"]), "points": pts,
                                   "how": "promoted"})
            prev = r.get("live_collection") or ev.get("live_collection")
            if prev:
                read = (r.get("counts") or {}).get("read") or {}
                seen.setdefault(prev, {"first live": "before", "points": read.get("points"), "how": "earlier live"})
        elif e["event"] == "rollback":
            seen.setdefault(ev.get("to"), {"first live": _when(e["time"]), "points": None, "how": "rollback target"})
            seen[ev.get("to")]["last rollback"] = _when(e["time"])
    if not seen:
        return ""
    trs = "".join(f"<tr><td class='mono'>{_e(k)}</td><td>{_e(v['how'])}</td><td>{_e(v['first live'])}</td>"
                  f"<td class='num'>{_num(v['points']) if v['points'] is not None else ''}</td></tr>"
                  for k, v in seen.items() if k)
    return ("<p class='small muted'>Collections this alias has served, from its history (a run that records retention "
            "shows what is kept).</p><table><tr><th>collection</th><th>how</th><th>first live</th>"
            f"<th class='num'>points</th></tr>{trs}</table>")


POLICY_WORDS = {
    "on": "after every promotion and rollback, versions beyond the newest {k} are deleted with the models no kept "
          "version uses",
    "collections": "after every promotion and rollback, versions beyond the newest {k} are deleted; their models are "
                   "kept",
    "off": "nothing is deleted by itself (vectune prune keeps the newest {k} when run)",
}
RETENTION_KEYS = {"policy", "retention", "keep_versions", "kept", "deleted", "models_deleted", "versions",
                  "next_promotion", "error"}


def _size(v: Any) -> str:
    """Bytes as a person reads them (MB below a GB, else GB)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "–"
    return f"{v / 1e9:,.1f} GB" if v >= 1e9 else f"{v / 1e6:,.1f} MB"


def retention_view(ret: Any) -> str:
    """A run's ``retention`` section as a person reads it: the policy in words, the versions kept (with which one is
    live and which the rollback target, their points and size), what was deleted, and the next promotion's space.

    Keys it does not know are shown after it, as they are (so nothing a newer vectune adds is hidden).
    """
    if not isinstance(ret, Mapping):
        return generic(ret)
    policy = ret.get("policy", ret.get("retention"))
    k = ret.get("keep_versions")
    parts = []
    if policy in POLICY_WORDS:
        parts.append(f"<p><b>Retention {_e(policy)}</b>: {_e(POLICY_WORDS[policy].format(k=k if k else 'N'))}; the "
                     f"live collection and its rollback target are always kept.</p>")
    if ret.get("error"):
        parts.append(f"<p><span class='badge warn'>error</span> {_e(ret['error'])}</p>")
    versions = [v for v in ret.get("versions") or [] if isinstance(v, Mapping)]
    if versions:
        trs = []
        for v in versions:
            role = " ".join(b for b, on in (("<span class='badge good'>live</span>", v.get("live")),
                                              ("<span class='badge info'>rollback target</span>",
                                               v.get("rollback_target"))) if on)
            trs.append(f"<tr class='{'hl' if v.get('live') else ''}'><td class='mono'>{_e(v.get('collection'))}</td>"
                       f"<td>{role}</td><td class='num'>{_num(v.get('points'))}</td>"
                       f"<td class='num'>{_size(v.get('disk_bytes'))}</td><td class='num'>{_size(v.get('ram_bytes'))}"
                       f"</td><td class='small muted'>{_e(v.get('footprint_source'))}</td></tr>")
        parts.append("<table><tr><th>collection kept</th><th></th><th class='num'>points</th><th class='num'>on disk"
                     "</th><th class='num'>in memory</th><th>measured from</th></tr>" + "".join(trs) + "</table>")
    elif ret.get("kept"):
        kept = ret["kept"]
        parts.append(f"<p>Kept: {', '.join(f'<code>{_e(c)}</code>' for c in kept)}.</p>"
                     if isinstance(kept, list) and all(isinstance(c, str) for c in kept) else generic(kept))
    if "deleted" in ret or "models_deleted" in ret:
        gone = [f"<code>{_e(c)}</code>" for c in ret.get("deleted") or []]
        models = [f"<code>{_e(m)}</code>" for m in ret.get("models_deleted") or []]
        parts.append(f"<p>Deleted by this run: {', '.join(gone) if gone else 'no collection'}; "
                     f"{'models ' + ', '.join(models) if models else 'no model'}.</p>")
    nxt = ret.get("next_promotion")
    if isinstance(nxt, Mapping):
        warn = nxt.get("warning")
        head = (f"; headroom {_size(nxt.get('headroom_bytes'))} ({_e(nxt.get('headroom_from'))})"
                if nxt.get("headroom_bytes") is not None else
                f"; no headroom known ({_e(nxt.get('headroom_from'))})" if nxt.get("headroom_from") else "")
        parts.append(f"<p>The next promotion needs about <b>{_size(nxt.get('needs_bytes'))}</b>: {_e(nxt.get('how'))} "
                     f"({_size(nxt.get('collection_bytes'))} + {_size(nxt.get('model_bytes'))}){head}."
                     + (f" <span class='badge warn'>warning</span> {_e(warn)}" if warn else "") + "</p>")
        rest_next = {k2: v2 for k2, v2 in nxt.items() if k2 not in {"needs_bytes", "collection_bytes", "model_bytes",
                                                                    "how", "headroom_bytes", "headroom_from",
                                                                    "warning"}}
        if rest_next:
            parts.append(generic(rest_next))
    rest = {k2: v2 for k2, v2 in ret.items() if k2 not in RETENTION_KEYS}
    if rest:
        parts.append(generic(rest))
    return "".join(parts) or generic(ret)


def _points(reindex: Any) -> int | None:
    if not isinstance(reindex, Mapping):
        return None
    for key in ("points", "copied", "upserted", "written"):
        if isinstance(reindex.get(key), int):
            return reindex[key]
    for v in reindex.values():
        if isinstance(v, Mapping):
            p = _points(v)
            if p is not None:
                return p
    return None


def history_page(alias: str, runs: Sequence[Mapping], events: Sequence[Mapping], *,
                 report_href: Mapping[str, str] | None = None) -> str:
    """The alias's history page: trend chart, collections, and every run and event.

    Args:
        alias: the alias.
        runs: run reports as dicts (any order).
        events: history events (:func:`vectune.lineage.read_history`).
        report_href: run id → link to its report page (runs without one are not linked).

    Returns:
        The whole HTML document.
    """
    entries = timeline(runs, events)
    report_href = report_href or {}
    counts: dict[str, int] = {}
    for e in entries:
        counts[e["event"]] = counts.get(e["event"], 0) + 1
    live = None
    for e in entries:
        r, ev = e.get("run") or {}, e.get("detail") or {}
        if e["event"] == "promotion":
            live = r.get("new_collection") or ev.get("new_collection") or live
        elif e["event"] == "rollback":
            live = ev.get("to") or live
        elif r.get("live_collection") and live is None:
            live = r.get("live_collection")
        elif e["event"] == "adopt":
            live = ev.get("collection") or live
    last = entries[-1] if entries else None
    decisive = [e for e in entries if e["event"] in ("promotion", "rejection", "rollback", "failure", "crash")]
    t = {"promotion": "good", "rollback": "warn", "failure": "warn", "crash": "warn"}.get(
        decisive[-1]["event"] if decisive else "", "neutral")
    nruns = sum(1 for e in entries if e.get("run"))
    summary = ", ".join(f"{v} {EVENT_LABEL.get(k, k)}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    head = (f"<div class='banner {t}' id='decision'><div class='verdict'>History of alias '{_e(alias)}'</div>"
            f"<h1>{'Live now: ' + _e(live) if live else 'No run yet'}</h1>"
            f"<p>{nruns} runs and {len(entries) - nruns} other events{': ' + _e(summary) if summary else ''}.</p>"
            + (f"<p class='facts'>Last: {_e(EVENT_LABEL.get(last['event'], last['event']))} on {_e(_when(last['time']))}"
               f"</p>" if last else "") + "</div>")
    body = [head]
    chart, caption = _trend(entries)
    if chart:
        body.append(_card("Quality over time", f"<p class='small muted'>{_e(caption)}</p>{chart}", "trend"))
    cols = _collections(entries, runs)
    if cols:
        body.append(_card("Collections", cols, "collections"))
    trs = []
    for e in reversed(entries):
        r = e.get("run") or {}
        g = _gate_of(e)
        rid = r.get("run_id") or (e.get("detail") or {}).get("run_id")
        link = (f"<a href='{escape(report_href[rid], quote=True)}'>{_e(rid)}</a>" if rid in report_href
                else _e(rid or ""))
        metric = ""
        if g.get("metric") is not None and g.get("live") is not None:
            d = g.get("delta")
            cls = "pos" if isinstance(d, (int, float)) and d > 0 else ("neg" if isinstance(d, (int, float)) and d < 0 else "")
            metric = (f"{_e(g.get('metric'))} {_num(g.get('live'))} → {_num(g.get('candidate'))} "
                      f"<span class='{cls}'>({_num(d, 4, True)})</span>")
        ev_tone = EVENT_TONE.get(e["event"], "neutral")
        trs.append(f"<tr><td class='num small'>{_e(_when(e['time']))}</td>"
                   f"<td><span class='badge {ev_tone}'>{_e(EVENT_LABEL.get(e['event'], e['event']))}</span></td>"
                   f"<td class='small mono'>{link}</td><td class='small'>{_event_text(e)}</td>"
                   f"<td class='small num'>{metric}</td></tr>")
    table = ("<table><tr><th class='num'>time</th><th>what</th><th>run</th><th>details</th>"
             f"<th class='num'>gate metric</th></tr>{''.join(trs)}</table>") if trs else "<p>Nothing yet.</p>"
    body.append(_card("Every run and event, newest first", table, "timeline"))
    body.append("<footer>Written by vectune after every run; <code>vectune report --alias "
                f"{_e(alias)}</code> rewrites it and prints its path.</footer>")
    return _page(f"vectune history: {alias}", f"history · {_e(alias)}", "".join(body))


# --------------------------------------------------------------------------- files
def read_reports(reports_dir: Path, limit: int = 1000) -> list[dict]:
    """The run reports (JSON) in ``reports_dir``, oldest first (the newest ``limit``)."""
    out = []
    files = sorted(p for p in Path(reports_dir).glob("*.json") if p.name != "latest.json")
    for p in files[-limit:]:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("run_id"):
            out.append(data)
    return out


def write_report_page(report: Mapping, reports_dir: Path, events: Sequence[Mapping] = ()) -> Path:
    """Write ``<run_id>.html`` next to the run's JSON; returns its path."""
    stem = str(report["run_id"])
    files = {k: f"{stem}.{k}" for k in ("json", "md", "png") if (Path(reports_dir) / f"{stem}.{k}").exists()}
    path = Path(reports_dir) / f"{stem}.html"
    write_atomic(path, report_page(report, files=files, events=events))
    return path


def write_history_page(reports_dir: Path, alias: str, events: Sequence[Mapping],
                       extra_runs: Sequence[Mapping] = ()) -> Path:
    """Write ``history.html`` in the alias's reports folder from its reports and events; returns its path."""
    runs = read_reports(reports_dir)
    ids = {r.get("run_id") for r in runs}
    runs += [dict(r) for r in extra_runs if r.get("run_id") not in ids]
    href = {r["run_id"]: f"{r['run_id']}.html" for r in runs
            if (Path(reports_dir) / f"{r['run_id']}.html").exists()}
    path = Path(reports_dir) / HISTORY_FILE
    write_atomic(path, history_page(alias, runs, events, report_href=href))
    return path
