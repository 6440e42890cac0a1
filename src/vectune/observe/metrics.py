"""Prometheus metrics for cron runs: a node-exporter textfile, or a Pushgateway push.

A cron job has no long-lived ``/metrics`` endpoint to scrape, so after each run
vectune writes its outcome as gauges to a ``.prom`` file that node_exporter's
textfile collector (``--collector.textfile.directory``) picks up, and/or pushes
the same text to a Prometheus Pushgateway. Both use only the standard library.

Gauges (all labelled ``alias``; the two quality gauges also ``metric``):

* ``vectune_last_run_timestamp_seconds`` — when the last run finished (Unix time)
* ``vectune_last_run_success`` — 1 unless the run failed or was interrupted (SIGTERM)
* ``vectune_last_run_duration_seconds`` — how long it took
* ``vectune_last_run_promoted`` — 1 if a new collection was promoted
* ``vectune_last_run_status`` — 1 for the run's status label, 0 for the others
* ``vectune_last_success_timestamp_seconds`` — last run that did not fail (carried
  over from the previous file when this run failed)
* ``vectune_recall_live`` / ``vectune_recall_candidate`` — the gate metric of the
  live and candidate models (``metric`` says which, e.g. ``recall@5``)

Retention and space (from the report's ``retention``, when the run held the alias):

* ``vectune_versions_kept`` — collections of the alias after the run
* ``vectune_versions_deleted`` — collections retention deleted in this run
* ``vectune_collection_points`` / ``vectune_collection_disk_bytes`` / ``vectune_collection_ram_bytes``
  — per kept collection (``collection`` label; the footprints only where Qdrant reports them)
* ``vectune_next_promotion_bytes`` — the estimated space the next promotion needs
* ``vectune_space_headroom_bytes`` — the headroom it is compared with (when there is one)
* ``vectune_space_warning`` — 1 when the next promotion would need more than the headroom

Suggested alerts: ``time() - vectune_last_success_timestamp_seconds > 2*86400``
and ``vectune_last_run_success == 0``.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import re
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vectune.core.jsonl import write_atomic

if TYPE_CHECKING:
    from vectune.observe.report import RunReport

logger = logging.getLogger(__name__)

STATUSES = ("promoted", "kept", "noop", "dry-run", "failed", "interrupted")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HELP: dict[str, str] = {
    "vectune_last_run_timestamp_seconds": "Unix time the last vectune run finished.",
    "vectune_last_run_success": "1 if the last vectune run neither failed nor was interrupted, else 0.",
    "vectune_last_run_duration_seconds": "Duration of the last vectune run in seconds.",
    "vectune_last_run_promoted": "1 if the last vectune run promoted a new collection, else 0.",
    "vectune_last_run_status": ("1 for the status of the last vectune run (promoted, kept, noop, dry-run, failed, "
                                "interrupted)."),
    "vectune_last_success_timestamp_seconds": "Unix time of the last vectune run that did not fail.",
    "vectune_recall_live": "Gate metric of the live model on the last run's eval set.",
    "vectune_recall_candidate": "Gate metric of the candidate model on the last run's eval set.",
    "vectune_versions_kept": "Collections of the alias kept after the last run.",
    "vectune_versions_deleted": "Collections of the alias retention deleted in the last run.",
    "vectune_collection_points": "Points of each kept collection of the alias.",
    "vectune_collection_disk_bytes": "Disk bytes of each kept collection, as Qdrant reports them.",
    "vectune_collection_ram_bytes": "Memory bytes of each kept collection, as Qdrant reports them.",
    "vectune_next_promotion_bytes": "Estimated space the next promotion of the alias needs.",
    "vectune_space_headroom_bytes": "Headroom the next promotion's estimate is compared with.",
    "vectune_space_warning": "1 when the next promotion would need more space than the headroom, else 0.",
}


def _epoch(value: Any) -> float | None:
    """Unix seconds from a float/int, a datetime or an ISO-8601 string; None if unusable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return dt.timestamp()
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            return _epoch(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return float(value) if isinstance(value, bool) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fmt_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def render(report: dict[str, Any], *, previous_success: float | None = None, now: float | None = None) -> str:
    """Render a run report as Prometheus text exposition format.

    Args:
        report: ``{"alias", "status", "started_at", "finished_at", "duration_s",
            "gate": {"metric", "live", "candidate", "promoted", ...}}``; any key may
            be missing.
        previous_success: last success time to carry over if this run failed.
        now: fallback finish time (default: the current time).

    Returns:
        The metrics text, ending with a newline.
    """
    report = report or {}
    gate = report.get("gate") or {}
    if not isinstance(gate, dict):
        gate = {}
    alias = str(report.get("alias") or "unknown")
    status = str(report.get("status") or ("promoted" if gate.get("promoted") else "failed")).lower()
    started = _epoch(report.get("started_at"))
    finished = _epoch(report.get("finished_at"))
    if finished is None:
        finished = now if now is not None else time.time()
    duration = _number(report.get("duration_s"))
    if duration is None and started is not None:
        duration = max(0.0, finished - started)
    success = status not in ("failed", "interrupted")
    promoted = status == "promoted"
    last_success = finished if success else previous_success

    base = {"alias": alias}
    samples: list[tuple[str, dict[str, str], float]] = [
        ("vectune_last_run_timestamp_seconds", base, finished),
        ("vectune_last_run_success", base, 1.0 if success else 0.0),
    ]
    if duration is not None:
        samples.append(("vectune_last_run_duration_seconds", base, duration))
    samples.append(("vectune_last_run_promoted", base, 1.0 if promoted else 0.0))
    known = STATUSES if status in STATUSES else (*STATUSES, status)
    for st in known:
        samples.append(("vectune_last_run_status", {**base, "status": st}, 1.0 if st == status else 0.0))
    if last_success is not None:
        samples.append(("vectune_last_success_timestamp_seconds", base, last_success))
    metric_name = str(gate.get("metric") or "unknown")
    for key, name in (("live", "vectune_recall_live"), ("candidate", "vectune_recall_candidate")):
        value = _number(gate.get(key))
        if value is not None:
            samples.append((name, {**base, "metric": metric_name}, value))

    samples += _retention_samples(report.get("retention"), base)

    lines: list[str] = []
    seen: set[str] = set()
    for name, labels, value in samples:
        if name not in seen:
            seen.add(name)
            lines.append(f"# HELP {name} {_HELP[name]}")
            lines.append(f"# TYPE {name} gauge")
        lines.append(f"{name}{_labels(labels)} {_fmt_value(value)}")
    return "\n".join(lines) + "\n"


def _retention_samples(ret: Any, base: dict[str, str]) -> list[tuple[str, dict[str, str], float]]:
    """The retention and space gauges of a report's ``retention`` (none when the run did not measure)."""
    if not isinstance(ret, dict) or "versions" not in ret:
        return []
    out: list[tuple[str, dict[str, str], float]] = []
    rows = [r for r in ret.get("versions") or [] if isinstance(r, dict)]
    out.append(("vectune_versions_kept", base, float(len(rows))))
    out.append(("vectune_versions_deleted", base, float(len(ret.get("deleted") or []))))
    for key, name in (("points", "vectune_collection_points"), ("disk_bytes", "vectune_collection_disk_bytes"),
                      ("ram_bytes", "vectune_collection_ram_bytes")):
        for r in rows:
            value = _number(r.get(key))
            if value is not None:
                out.append((name, {**base, "collection": str(r.get("collection"))}, value))
    nxt = ret.get("next_promotion") or {}
    if _number(nxt.get("needs_bytes")) is not None:
        out.append(("vectune_next_promotion_bytes", base, float(nxt["needs_bytes"])))
    if _number(nxt.get("headroom_bytes")) is not None:
        out.append(("vectune_space_headroom_bytes", base, float(nxt["headroom_bytes"])))
    out.append(("vectune_space_warning", base, 1.0 if nxt.get("warning") else 0.0))
    return out


def read_last_success(path: str | os.PathLike[str], alias: str) -> float | None:
    """Read ``vectune_last_success_timestamp_seconds`` for ``alias`` from an existing file.

    Args:
        path: a textfile written earlier.
        alias: the alias label to look for.

    Returns:
        The value, or None if the file or sample is missing.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return None
    want = f'alias="{_escape(alias)}"'
    for line in text.splitlines():
        if line.startswith("vectune_last_success_timestamp_seconds{") and want in line:
            try:
                return float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                return None
    return None


def textfile_path(directory: str | os.PathLike[str], alias: str) -> Path:
    """The conventional textfile for an alias: ``<dir>/vectune_<alias>.prom``.

    Args:
        directory: node_exporter's textfile directory.
        alias: the alias (characters unsafe in a file name become ``_``).

    Returns:
        The path.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", alias) or "unknown"
    return Path(directory) / f"vectune_{safe}.prom"


def write_textfile(path: str | os.PathLike[str], report_dict: dict[str, Any]) -> str:
    """Write a run's metrics atomically (temp file in the same directory, then rename).

    node_exporter only reads ``*.prom`` files, and the temp file is named
    ``.<name>.<random>.tmp``, so a half-written file is never collected.

    Args:
        path: target file, e.g. ``/var/lib/node_exporter/textfile/vectune_docs.prom``.
        report_dict: the run report (see :func:`render`).

    Returns:
        The text written.
    """
    target = Path(path)
    alias = str((report_dict or {}).get("alias") or "unknown")
    text = render(report_dict, previous_success=read_last_success(target, alias))
    write_atomic(target, text)  # node_exporter only reads *.prom: the temp file is .<name>.<random>.tmp
    logger.debug("wrote metrics to %s", target)
    return text


def _group_path(job: str, grouping: dict[str, str] | None) -> str:
    parts = ["metrics"]
    for key, value in [("job", job), *(grouping or {}).items()]:
        value = str(value)
        if not value or "/" in value:
            enc = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=") or "="
            parts += [f"{key}@base64", enc]
        else:
            parts += [key, urllib.parse.quote(value, safe="")]
    return "/".join(parts)


def push(
    url: str,
    job: str,
    text: str,
    *,
    grouping: dict[str, str] | None = None,
    timeout: float = 10.0,
    method: str = "PUT",
) -> int:
    """Push metrics text to a Prometheus Pushgateway.

    ``PUT`` replaces every metric of the group ``job`` (+ ``grouping``), which is
    what a run report wants. Basic auth may be given in the URL
    (``https://user:pass@host:9091``).

    Args:
        url: the Pushgateway base URL, e.g. ``http://pushgateway:9091``.
        job: the ``job`` grouping label, e.g. ``vectune``.
        text: metrics in text format (from :func:`render`).
        grouping: extra grouping labels, e.g. ``{"alias": "docs"}``.
        timeout: seconds.
        method: ``PUT`` (replace group) or ``POST`` (replace same-named metrics).

    Returns:
        The HTTP status code.

    Raises:
        urllib.error.URLError: if the gateway cannot be reached or answers an error.
    """
    parsed = urllib.parse.urlsplit(url)
    headers = {"Content-Type": CONTENT_TYPE}
    netloc = parsed.netloc
    if parsed.username is not None:
        cred = f"{urllib.parse.unquote(parsed.username)}:{urllib.parse.unquote(parsed.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        netloc = netloc.rsplit("@", 1)[1]
    base = urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path.rstrip("/"), "", ""))
    target = f"{base}/{_group_path(job, grouping)}"
    req = urllib.request.Request(target, data=text.encode("utf-8"), headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - URL comes from settings
        status = resp.status
    logger.debug("pushed metrics to %s (%s)", f"{base}/{_group_path(job, grouping)}", status)
    return status


def export(
    report_dict: RunReport | dict[str, Any],
    *,
    textfile_dir: str | os.PathLike[str] | None = None,
    pushgateway_url: str | None = None,
    job: str = "vectune",
) -> bool:
    """Write and/or push a run's metrics; never raises (metrics must not fail a run).

    Args:
        report_dict: the run report (a :class:`vectune.observe.report.RunReport` or its dict).
        textfile_dir: node_exporter textfile directory (None = skip).
        pushgateway_url: Pushgateway base URL (None = skip).
        job: Pushgateway job label.

    Returns:
        True if everything asked for succeeded.
    """
    if hasattr(report_dict, "to_dict"):  # a RunReport
        report_dict = report_dict.to_dict()
    ok = True
    alias = str((report_dict or {}).get("alias") or "unknown")
    text: str | None = None
    if textfile_dir:
        try:
            text = write_textfile(textfile_path(textfile_dir, alias), report_dict)
        except Exception as exc:  # noqa: BLE001
            ok = False
            logger.warning("could not write metrics textfile in %s: %s", textfile_dir, exc)
    if pushgateway_url:
        try:
            push(pushgateway_url, job, text or render(report_dict), grouping={"alias": alias})
        except Exception as exc:  # noqa: BLE001
            ok = False
            logger.warning("could not push metrics to the Pushgateway: %s", exc)
    return ok
