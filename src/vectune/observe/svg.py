"""Tiny inline-SVG charts for the HTML pages: a forest plot, line charts and horizontal bars.

Each function returns one ``<svg>`` element as a string, sized by its ``viewBox`` so it
scales with the page. No JavaScript, no fonts to fetch, no external files: a page that
embeds them opens from a volume or a CI artifact as it is. Labels are HTML-escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape

#: Colours shared with the pages' CSS.
GREEN, GREY, AMBER, RED, BLUE, INK, MUTED, GRID = (
    "#1a7f37", "#6e7781", "#b7791f", "#c0392b", "#2563eb", "#1f2328", "#57606a", "#d8dee4")
PALETTE = ("#2563eb", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#ea580c")
FONT = "font-family='-apple-system,BlinkMacSystemFont,Segoe UI,Helvetica,Arial,sans-serif'"


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    out, v = [], first
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    if out[0] > lo:
        out.insert(0, round(out[0] - step, 10))
    if out[-1] < hi:
        out.append(round(out[-1] + step, 10))
    return out


def _fmt(v: float, signed: bool = False, digits: int = 3) -> str:
    s = f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    return s.replace("-", "\u2212")


def _tick_text(v: float, step: float, signed: bool) -> str:
    """A tick label with as many decimals as the step needs (2.5-steps get one more)."""
    if v == 0:
        return "0"
    if step <= 0:
        return _fmt(v, signed, 3)
    mag = math.floor(math.log10(step))
    digits = max(0, -mag) + (1 if round(step / 10 ** mag, 6) == 2.5 else 0)
    return _fmt(v, signed, min(digits, 5))


def _svg(width: int, height: int, body: Iterable[str], label: str, css_class: str) -> str:
    return (f"<svg class='{css_class}' viewBox='0 0 {width} {height}' width='100%' role='img' "
            f"aria-label='{escape(label, quote=True)}' xmlns='http://www.w3.org/2000/svg' {FONT}>"
            f"<title>{escape(label)}</title>" + "".join(body) + "</svg>")


# --------------------------------------------------------------------------- forest plot
def forest(rows: Sequence[dict], *, min_delta: float | None = None, title: str = "deltas",
           width: int = 760, row_height: int = 30) -> str:
    """A forest plot: one row per estimate, a dot at the delta and whiskers for its interval.

    Args:
        rows: ``{"label", "value", "lo"?, "hi"?, "highlight"?, "note"?, "group"?}``; ``lo``/``hi`` may be None
            (no interval known: the dot alone). A ``group`` different from the previous row's starts a
            labelled block. A highlighted row is drawn bold and blue on a tinted band (the gate metric).
        min_delta: the gate's minimum delta, drawn as a dashed line.
        title: accessible name of the chart.
        width: viewBox width.
        row_height: pixels per row.

    Returns:
        The ``<svg>`` element.
    """
    label_w, value_w, pad = 170, 200, 14
    plot_l, plot_r = label_w, width - value_w
    groups = sum(1 for i, r in enumerate(rows) if r.get("group") and (i == 0 or r.get("group") != rows[i - 1].get("group")))
    top = 24 if min_delta is not None else 10
    height = top + row_height * (len(rows) + groups) + 34
    vals = [0.0] + ([min_delta] if min_delta is not None else [])
    for r in rows:
        vals += [v for v in (r.get("value"), r.get("lo"), r.get("hi")) if v is not None]
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 0.01
    lo, hi = lo - span * 0.08, hi + span * 0.08
    tk = ticks(lo, hi, 6)
    lo, hi = min(lo, tk[0]), max(hi, tk[-1])

    def x(v: float) -> float:
        return plot_l + (v - lo) / (hi - lo) * (plot_r - plot_l)

    body = []
    y = top
    prev_group = None
    placed = []
    for r in rows:
        if r.get("group") and r.get("group") != prev_group:
            body.append(f"<text x='4' y='{y + row_height * 0.68:.1f}' font-size='12' font-weight='600' "
                        f"fill='{MUTED}' letter-spacing='.04em'>{escape(str(r['group']).upper())}</text>")
            y += row_height
        prev_group = r.get("group")
        placed.append((r, y))
        y += row_height
    bottom = y
    for r, ry in placed:
        if r.get("highlight"):
            body.append(f"<rect x='0' y='{ry + 2}' width='{width}' height='{row_height - 4}' rx='4' fill='#eef4ff'/>")
    step = tk[1] - tk[0] if len(tk) > 1 else 1
    for t in tk:
        body.append(f"<line x1='{x(t):.1f}' x2='{x(t):.1f}' y1='{top}' y2='{bottom}' stroke='{GRID}' stroke-width='1'/>")
        body.append(f"<text x='{x(t):.1f}' y='{bottom + 16}' font-size='11' fill='{MUTED}' text-anchor='middle'>"
                    f"{_tick_text(t, step, True)}</text>")
    body.append(f"<line x1='{x(0):.1f}' x2='{x(0):.1f}' y1='{top - 4}' y2='{bottom}' stroke='{INK}' stroke-width='1.5'/>")
    body.append(f"<text x='{x(0):.1f}' y='{bottom + 30}' font-size='11' fill='{INK}' text-anchor='middle'>"
                f"no change</text>")
    if min_delta is not None:
        body.append(f"<line x1='{x(min_delta):.1f}' x2='{x(min_delta):.1f}' y1='{top - 4}' y2='{bottom}' "
                    f"stroke='{AMBER}' stroke-width='1.5' stroke-dasharray='5 4'/>")
        anchor = "start" if min_delta >= 0 else "end"
        dx = 4 if min_delta >= 0 else -4
        body.append(f"<text x='{x(min_delta) + dx:.1f}' y='{top - 8}' font-size='11' fill='{AMBER}' "
                    f"text-anchor='{anchor}'>min delta {_fmt(min_delta, True, 3)}</text>")
    for r, ry in placed:
        cy = ry + row_height / 2
        hl = bool(r.get("highlight"))
        color = BLUE if hl else INK
        weight = "700" if hl else "400"
        body.append(f"<text x='{pad}' y='{cy + 4:.1f}' font-size='13' font-weight='{weight}' fill='{color}'>"
                    f"{escape(str(r.get('label', '')))}</text>")
        v = r.get("value")
        if v is None:
            continue
        if r.get("lo") is not None and r.get("hi") is not None:
            x1, x2 = x(r["lo"]), x(r["hi"])
            body.append(f"<line x1='{x1:.1f}' x2='{x2:.1f}' y1='{cy:.1f}' y2='{cy:.1f}' stroke='{color}' "
                        f"stroke-width='{2.5 if hl else 1.8}'/>")
            for xx in (x1, x2):
                body.append(f"<line x1='{xx:.1f}' x2='{xx:.1f}' y1='{cy - 6:.1f}' y2='{cy + 6:.1f}' stroke='{color}' "
                            f"stroke-width='{2.5 if hl else 1.8}'/>")
        fill = color if (v or 0) > 0 else "#ffffff"
        shape = (f"<rect x='{x(v) - 6:.1f}' y='{cy - 6:.1f}' width='12' height='12' fill='{fill}' stroke='{color}' "
                 f"stroke-width='2' transform='rotate(45 {x(v):.1f} {cy:.1f})'/>" if hl else
                 f"<circle cx='{x(v):.1f}' cy='{cy:.1f}' r='5' fill='{fill}' stroke='{color}' stroke-width='2'/>")
        body.append(shape)
        text = _fmt(v, True, 4)
        if r.get("lo") is not None and r.get("hi") is not None:
            text += f"  [{_fmt(r['lo'], True, 4)}, {_fmt(r['hi'], True, 4)}]"
        body.append(f"<text x='{plot_r + 12}' y='{cy + 4:.1f}' font-size='12' font-weight='{weight}' fill='{color}' "
                    f"font-family='ui-monospace,SFMono-Regular,Menlo,Consolas,monospace'>{escape(text)}</text>")
        if r.get("note"):
            body.append(f"<title>{escape(str(r['note']))}</title>")
    return _svg(width, height + 6, body, title, "chart forest")


# --------------------------------------------------------------------------- line chart
def lines(series: Sequence[dict], *, title: str = "chart", x_label: str = "", y_label: str = "",
          hlines: Sequence[dict] = (), vlines: Sequence[dict] = (), x_ticks: Sequence[tuple[float, str]] | None = None,
          width: int = 760, height: int = 280) -> str:
    """A line (or dot) chart of several series on shared axes, with a legend.

    Args:
        series: ``{"name", "points": [(x, y)], "color"?, "dash"?, "dots"?: bool, "line"?: bool,
            "point_colors"?: [color per point], "point_titles"?: [tooltip per point]}``.
        title: accessible name.
        x_label: axis label under the plot.
        y_label: axis label at the left.
        hlines: reference lines ``{"y", "label", "color"?}`` (e.g. the live model's value).
        vlines: markers ``{"x", "label", "color"?}`` (e.g. the chosen epoch, a rollback).
        x_ticks: explicit ``(x, label)`` ticks (e.g. dates); default: round numbers.
        width: viewBox width.
        height: viewBox height.

    Returns:
        The ``<svg>`` element (a "no data" note when no series has a point).
    """
    pts = [p for s in series for p in s.get("points", []) if p[1] is not None]
    if not pts:
        return _svg(width, 60, [f"<text x='10' y='35' font-size='13' fill='{MUTED}'>no data to plot</text>"],
                    title, "chart lines")
    left, right, top, bottom = 64, 20, 16, 66
    xs = [p[0] for p in pts] + [v["x"] for v in vlines]
    ys = [p[1] for p in pts] + [h["y"] for h in hlines if h.get("y") is not None]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.12 or 0.01
    ytk = ticks(y_lo - pad, y_hi + pad, 5)
    y_lo, y_hi = ytk[0], ytk[-1]
    pw, ph = width - left - right, height - top - bottom

    def X(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * pw

    def Y(v: float) -> float:
        return top + (1 - (v - y_lo) / (y_hi - y_lo)) * ph

    body = []
    ystep = ytk[1] - ytk[0] if len(ytk) > 1 else 1
    for t in ytk:
        body.append(f"<line x1='{left}' x2='{left + pw}' y1='{Y(t):.1f}' y2='{Y(t):.1f}' stroke='{GRID}'/>")
        body.append(f"<text x='{left - 8}' y='{Y(t) + 4:.1f}' font-size='11' fill='{MUTED}' text-anchor='end'>"
                    f"{_tick_text(t, ystep, False)}</text>")
    if x_ticks is None:
        xtk = [t for t in ticks(x_lo, x_hi, 6) if x_lo - 1e-9 <= t <= x_hi + 1e-9]
        xstep = xtk[1] - xtk[0] if len(xtk) > 1 else 1
        x_ticks = [(t, _tick_text(t, xstep, False)) for t in xtk]
    for t, lab in x_ticks:
        body.append(f"<line x1='{X(t):.1f}' x2='{X(t):.1f}' y1='{top + ph}' y2='{top + ph + 4}' stroke='{MUTED}'/>")
        body.append(f"<text x='{X(t):.1f}' y='{top + ph + 17}' font-size='11' fill='{MUTED}' text-anchor='middle'>"
                    f"{escape(lab)}</text>")
    body.append(f"<line x1='{left}' x2='{left + pw}' y1='{top + ph}' y2='{top + ph}' stroke='{MUTED}'/>")
    if x_label:
        body.append(f"<text x='{left + pw / 2:.1f}' y='{top + ph + 34}' font-size='12' fill='{MUTED}' "
                    f"text-anchor='middle'>{escape(x_label)}</text>")
    if y_label:
        body.append(f"<text x='14' y='{top + ph / 2:.1f}' font-size='12' fill='{MUTED}' text-anchor='middle' "
                    f"transform='rotate(-90 14 {top + ph / 2:.1f})'>{escape(y_label)}</text>")
    for h in hlines:
        if h.get("y") is None:
            continue
        c = h.get("color", GREY)
        body.append(f"<line x1='{left}' x2='{left + pw}' y1='{Y(h['y']):.1f}' y2='{Y(h['y']):.1f}' stroke='{c}' "
                    f"stroke-width='1.5' stroke-dasharray='6 4'/>")
        body.append(f"<text x='{left + pw - 4}' y='{Y(h['y']) - 5:.1f}' font-size='11' fill='{c}' text-anchor='end'>"
                    f"{escape(str(h.get('label', '')))}</text>")
    placed: list[tuple[float, float, int]] = []  # label spans already drawn, to stagger close ones
    for v in vlines:
        c = v.get("color", AMBER)
        body.append(f"<line x1='{X(v['x']):.1f}' x2='{X(v['x']):.1f}' y1='{top}' y2='{top + ph}' stroke='{c}' "
                    f"stroke-width='1.5' stroke-dasharray='3 3'/>")
        label = str(v.get("label", ""))
        if not label:
            continue
        near_right = X(v["x"]) > left + pw - 90
        x0 = X(v["x"]) + (-4 if near_right else 4)
        span = (x0 - 6.5 * len(label), x0) if near_right else (x0, x0 + 6.5 * len(label))
        row = 0
        while any(a < span[1] and span[0] < b and r == row for a, b, r in placed):
            row += 1
        placed.append((span[0], span[1], row))
        body.append(f"<text x='{x0:.1f}' y='{top + 11 + 13 * row}' font-size='11' fill='{c}' "
                    f"text-anchor='{'end' if near_right else 'start'}'>{escape(label)}</text>")
    legend = []
    for i, s in enumerate(series):
        c = s.get("color") or PALETTE[i % len(PALETTE)]
        p = [q for q in s.get("points", []) if q[1] is not None]
        if not p:
            continue
        dash = f" stroke-dasharray='{s['dash']}'" if s.get("dash") else ""
        if s.get("line", True) and len(p) > 1:
            d = " ".join(f"{'M' if j == 0 else 'L'}{X(a):.1f},{Y(b):.1f}" for j, (a, b) in enumerate(p))
            body.append(f"<path d='{d}' fill='none' stroke='{c}' stroke-width='2.2' stroke-linejoin='round'{dash}/>")
        if s.get("dots", True):
            colors = s.get("point_colors") or []
            titles = s.get("point_titles") or []
            for j, (a, b) in enumerate(p):
                pc = colors[j] if j < len(colors) and colors[j] else c
                tip = f"<title>{escape(str(titles[j]))}</title>" if j < len(titles) and titles[j] else ""
                fill, stroke, sw = (("#ffffff", c, 2) if pc == "hollow" else (pc, "#ffffff", 1))
                body.append(f"<circle cx='{X(a):.1f}' cy='{Y(b):.1f}' r='{s.get('r', 3.5)}' fill='{fill}' "
                            f"stroke='{stroke}' stroke-width='{sw}'>{tip}</circle>")
        legend.append((s.get("name", ""), c, s.get("dash"), s.get("line", True)))
    lx = left
    ly = height - 12
    for name, c, dash, is_line in legend:
        d = f" stroke-dasharray='{dash}'" if dash else ""
        if is_line:
            body.append(f"<line x1='{lx}' x2='{lx + 22}' y1='{ly - 4}' y2='{ly - 4}' stroke='{c}' stroke-width='2.2'{d}/>")
        else:
            body.append(f"<circle cx='{lx + 11}' cy='{ly - 4}' r='4' fill='{c}'/>")
        body.append(f"<text x='{lx + 28}' y='{ly}' font-size='12' fill='{INK}'>{escape(str(name))}</text>")
        lx += 40 + 7 * len(str(name))
    return _svg(width, height, body, title, "chart lines")


# --------------------------------------------------------------------------- horizontal bars
def bars(rows: Sequence[tuple[str, float]], *, title: str = "bars", unit: str = "s", width: int = 760,
         row_height: int = 24) -> str:
    """Horizontal bars, one per ``(label, value)``, with the value printed after each bar."""
    rows = [(str(k), float(v)) for k, v in rows if isinstance(v, (int, float))]
    if not rows:
        return _svg(width, 40, [f"<text x='10' y='25' font-size='13' fill='{MUTED}'>no data</text>"], title, "chart bars")
    label_w, value_w = 150, 90
    top = max(v for _, v in rows) or 1.0
    height = row_height * len(rows) + 8
    body = []
    for i, (k, v) in enumerate(rows):
        y = 4 + i * row_height
        w = max(1.5, v / top * (width - label_w - value_w))
        body.append(f"<text x='{label_w - 10}' y='{y + row_height * 0.66:.1f}' font-size='12' fill='{INK}' "
                    f"text-anchor='end'>{escape(k)}</text>")
        body.append(f"<rect x='{label_w}' y='{y + 4}' width='{w:.1f}' height='{row_height - 8}' rx='3' fill='{BLUE}' "
                    f"fill-opacity='.75'/>")
        body.append(f"<text x='{label_w + w + 6:.1f}' y='{y + row_height * 0.66:.1f}' font-size='12' fill='{MUTED}'>"
                    f"{v:,.1f} {escape(unit)}</text>")
    return _svg(width, height, body, title, "chart bars")
