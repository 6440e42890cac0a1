"""Prometheus metrics for cron runs: a node-exporter textfile, or a Pushgateway push.

A cron job has no ``/metrics`` endpoint to scrape, so after each run vectune writes its outcome, the gauges
of :data:`GAUGES` (all labelled ``alias``), to a ``.prom`` file for node_exporter's textfile collector and/or
pushes them to a Pushgateway, by ``prometheus_client``. A run that failed or was interrupted (SIGTERM) carries
the last success time over from the previous file. Suggested alerts: ``vectune_last_run_success == 0`` and
``time() - vectune_last_success_timestamp_seconds > 2*86400``. The watch's gauges (``vectune_watch_*``) are there
when the run's report has a ``watch`` section; alert on ``vectune_watch_rolled_back == 1``.

A run that held the alias also reports retention and space (its report's ``retention``): the collections kept
(``vectune_versions_kept``), those retention deleted, each kept collection's points and, where Qdrant reports
them, disk and memory bytes (label ``collection``), and the next promotion's estimate against the headroom
(``vectune_space_warning`` 1 when it is above: alert on it).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import urllib.parse
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest, push_to_gateway
from prometheus_client.exposition import basic_auth_handler
from prometheus_client.parser import text_string_to_metric_families
from pydantic import TypeAdapter, ValidationError

from vectune.core.jsonl import write_atomic

if TYPE_CHECKING:
    from vectune.observe.report import RunReport

logger = logging.getLogger(__name__)
_WHEN, _FLOAT = TypeAdapter(datetime), TypeAdapter(float)

STATUSES = ("promoted", "kept", "noop", "dry-run", "failed", "interrupted", "rolled-back")
#: The watch's verdicts (:data:`vectune.ops.watch.VERDICTS`; observe sits below ops, so they are listed here too).
WATCH_VERDICTS = ("off", "skipped", "too-few", "inconclusive", "confirmed", "worse", "error")
GAUGES = {  # name: (help, label besides alias)
    "vectune_last_run_timestamp_seconds": ("Unix time the last vectune run finished.", None),
    "vectune_last_run_success": ("1 if the last vectune run neither failed nor was interrupted, else 0.", None),
    "vectune_last_run_duration_seconds": ("Duration of the last vectune run in seconds.", None),
    "vectune_last_run_promoted": ("1 if the last vectune run promoted a new collection, else 0.", None),
    "vectune_last_run_status": ("1 for the status of the last vectune run (promoted, kept, noop, dry-run, failed, "
                                "interrupted, rolled-back).", "status"),
    "vectune_last_success_timestamp_seconds": ("Unix time of the last vectune run that did not fail.", None),
    "vectune_recall_live": ("Gate metric of the live model on the last run's eval set.", "metric"),
    "vectune_recall_candidate": ("Gate metric of the candidate model on the last run's eval set.", "metric"),
    "vectune_watch_verdict": ("1 for the watch's verdict on the live model in the last run (off, skipped, too-few, "
                              "inconclusive, confirmed, worse, error).", "verdict"),
    "vectune_watch_rolled_back": ("1 if the watch rolled the live model back in the last run, else 0.", None),
    "vectune_watch_fresh_queries": ("Fresh queries (after the promotion) the watch judged the live model on.", None),
    "vectune_watch_delta": ("Live minus rollback target on the gate metric, on the fresh queries.", "metric"),
    "vectune_versions_kept": ("Collections of the alias kept after the last run.", None),
    "vectune_versions_deleted": ("Collections of the alias retention deleted in the last run.", None),
    "vectune_collection_points": ("Points of each kept collection of the alias.", "collection"),
    "vectune_collection_disk_bytes": ("Disk bytes of each kept collection, as Qdrant reports them.", "collection"),
    "vectune_collection_ram_bytes": ("Memory bytes of each kept collection, as Qdrant reports them.", "collection"),
    "vectune_next_promotion_bytes": ("Estimated space the next promotion of the alias needs.", None),
    "vectune_space_headroom_bytes": ("Headroom the next promotion's estimate is compared with.", None),
    "vectune_space_warning": ("1 when the next promotion would need more space than the headroom, else 0.", None),
}


def _as(adapter: TypeAdapter, value: Any) -> Any:  # ``value`` as the adapter's type, or None
    try:
        return adapter.validate_python(value.strip() if isinstance(value, str) else value)
    except ValidationError:
        return None


def _epoch(value: Any) -> float | None:
    """Unix seconds from epoch seconds (a number or a numeric string), a datetime or an ISO-8601 string."""
    if (number := _as(_FLOAT, value)) is not None and not isinstance(value, bool):
        return number if math.isfinite(number) else None
    when = _as(_WHEN, value)
    return None if when is None else (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()  # naive: UTC


def registry(report: dict[str, Any], *, previous_success: float | None = None,
             now: float | None = None) -> CollectorRegistry:
    """The run's gauges in a fresh registry, from a report dict (``alias``, ``status``, ``started_at``,
    ``finished_at``, ``duration_s``, ``gate``: ``metric``, ``live``, ``candidate``...; any key may be missing);
    ``previous_success`` is carried over when this run failed, ``now`` stands in for a missing finish time."""
    report = report or {}
    gate: dict[str, Any] = g if isinstance(g := report.get("gate"), dict) else {}
    alias = str(report.get("alias") or "unknown")
    status = str(report.get("status") or ("promoted" if gate.get("promoted") else "failed")).lower()
    started, finished = _epoch(report.get("started_at")), _epoch(report.get("finished_at"))
    finished = finished if finished is not None else (now if now is not None else time.time())
    if (duration := _as(_FLOAT, report.get("duration_s"))) is None and started is not None:
        duration = max(0.0, finished - started)
    success, metric = status not in ("failed", "interrupted"), str(gate.get("metric") or "unknown")
    samples = [("vectune_last_run_timestamp_seconds", (), finished), ("vectune_last_run_success", (), success),
               ("vectune_last_run_duration_seconds", (), duration),
               ("vectune_last_run_promoted", (), status == "promoted"),
               *(("vectune_last_run_status", (st,), st == status) for st in dict.fromkeys((*STATUSES, status))),
               ("vectune_last_success_timestamp_seconds", (), finished if success else previous_success),
               *((f"vectune_recall_{key}", (metric,), _as(_FLOAT, gate.get(key))) for key in ("live", "candidate")),
               *_watch_samples(report.get("watch")),
               *_retention_samples(report.get("retention"))]
    reg, present = CollectorRegistry(), [sample for sample in samples if sample[2] is not None]
    gauges = {name: Gauge(name, what, ["alias", *([extra] if extra else [])], registry=reg)  # no empty families
              for name, (what, extra) in GAUGES.items() if any(sample[0] == name for sample in present)}
    for name, labels, value in present:
        gauges[name].labels(alias, *labels).set(value)
    return reg


def _watch_samples(watch: Any) -> list[tuple[str, tuple, Any]]:
    """The watch's gauges from the report's ``watch`` section (none without one)."""
    if not isinstance(watch, dict) or not watch.get("verdict"):
        return []
    verdict = str(watch["verdict"])
    scores: dict[str, Any] = s if isinstance(s := watch.get("scores"), dict) else {}
    return [*(("vectune_watch_verdict", (v,), v == verdict) for v in dict.fromkeys((*WATCH_VERDICTS, verdict))),
            ("vectune_watch_rolled_back", (), bool(watch.get("rolled_back"))),
            ("vectune_watch_fresh_queries", (), _as(_FLOAT, watch.get("queries") or 0)),
            ("vectune_watch_delta", (str(scores.get("metric") or "unknown"),), _as(_FLOAT, scores.get("delta")))]


def _retention_samples(ret: Any) -> list[tuple[str, tuple, Any]]:
    """The retention and space gauges of a report's ``retention`` (none when the run did not measure)."""
    if not isinstance(ret, dict) or "versions" not in ret:
        return []
    rows = [r for r in ret.get("versions") or [] if isinstance(r, dict)]
    nxt = ret.get("next_promotion") or {}
    return [("vectune_versions_kept", (), len(rows)), ("vectune_versions_deleted", (), len(ret.get("deleted") or [])),
            *((f"vectune_collection_{key}", (str(r.get("collection")),), _as(_FLOAT, r.get(key))) for r in rows
              for key in ("points", "disk_bytes", "ram_bytes")),
            ("vectune_next_promotion_bytes", (), _as(_FLOAT, nxt.get("needs_bytes"))),
            ("vectune_space_headroom_bytes", (), _as(_FLOAT, nxt.get("headroom_bytes"))),
            ("vectune_space_warning", (), bool(nxt.get("warning")))]


def render(report: dict[str, Any], *, previous_success: float | None = None, now: float | None = None) -> str:
    """The run's metrics in the Prometheus text format (see :func:`registry`), ending with a newline."""
    return generate_latest(registry(report, previous_success=previous_success, now=now)).decode("utf-8")


def read_last_success(path: str | os.PathLike[str], alias: str) -> float | None:
    """``vectune_last_success_timestamp_seconds`` of ``alias`` in a textfile written earlier, or None."""
    try:
        families = list(text_string_to_metric_families(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
    return next((s.value for f in families for s in f.samples
                 if s.name == "vectune_last_success_timestamp_seconds" and s.labels.get("alias") == alias), None)


def textfile_path(directory: str | os.PathLike[str], alias: str) -> Path:
    """The textfile of an alias, ``<dir>/vectune_<alias>.prom`` (characters unsafe in a file name become ``_``)."""
    return Path(directory) / f"vectune_{re.sub(r'[^A-Za-z0-9_.-]', '_', alias) or 'unknown'}.prom"


def write_textfile(path: str | os.PathLike[str], report_dict: dict[str, Any]) -> str:
    """Write a run's metrics atomically, carrying the last success over from the file; return the text.

    By :func:`~vectune.core.jsonl.write_atomic`, not ``prometheus_client.write_to_textfile``, which neither makes
    the directory, nor fsyncs before the rename, nor sets mode 0644 whatever the umask."""
    alias = str((report_dict or {}).get("alias") or "unknown")
    text = render(report_dict, previous_success=read_last_success(path, alias))
    write_atomic(Path(path), text)
    return text


def push(url: str, job: str, reg: CollectorRegistry, *, grouping: dict[str, str] | None = None,
         timeout: float = 10.0) -> None:
    """PUT ``reg`` to a Pushgateway, replacing the group ``job`` (+ ``grouping``, e.g. ``{"alias": "docs"}``).

    Basic auth may be given in the URL (``https://user:pass@host:9091``). Raises ``urllib.error.URLError``
    if the gateway cannot be reached or answers an error.
    """
    parts = urllib.parse.urlsplit(url)
    user = None if parts.username is None else urllib.parse.unquote(parts.username)
    handler = partial(basic_auth_handler, username=user, password=urllib.parse.unquote(parts.password or ""))
    base = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
    push_to_gateway(base, job, reg, grouping_key=grouping, timeout=timeout, handler=handler)


def export(report_dict: RunReport | dict[str, Any], *, textfile_dir: str | os.PathLike[str] | None = None,
           pushgateway_url: str | None = None, job: str = "vectune") -> bool:
    """Write the textfile in ``textfile_dir`` and/or push to ``pushgateway_url`` (job ``job``, grouped by alias).

    Never raises (metrics must not fail a run): returns True if everything asked for succeeded.
    """
    report = report_dict.to_dict() if hasattr(report_dict, "to_dict") else (report_dict or {})
    alias, ok = str(report.get("alias") or "unknown"), True
    target = textfile_path(textfile_dir, alias) if textfile_dir else None
    reg = registry(report, previous_success=read_last_success(target, alias) if target else None)
    if target:
        try:
            write_atomic(target, generate_latest(reg))  # as write_textfile does, with the registry pushed below
        except Exception as exc:  # noqa: BLE001
            ok = False
            logger.warning("could not write metrics textfile in %s: %s", textfile_dir, exc)
    if pushgateway_url:
        try:
            push(pushgateway_url, job, reg, grouping={"alias": alias})
        except Exception as exc:  # noqa: BLE001
            ok = False
            logger.warning("could not push metrics to the Pushgateway: %s", exc)
    return ok
