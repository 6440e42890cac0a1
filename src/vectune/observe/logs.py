"""Logging for people at a terminal and for machines reading container logs.

:func:`setup_logging` installs one handler on the root logger:

* on a TTY (and ``log_format`` ``auto`` or ``text``): ``12:00:01 INFO  vectune.pipeline.cycle: msg  key=value``;
* otherwise, or with ``log_format="json"``: one JSON object per line with ``ts``,
  ``level``, ``logger``, ``msg``, every field passed through ``extra=``, and
  ``exc`` for a traceback.

A :class:`RedactingFilter` on that handler replaces every secret from
``settings.secrets()`` — and anything shaped like an OpenAI key (``sk-...``), an
``api-key: ...``/``api_key=...`` pair or a ``Bearer`` token — with ``***`` in the
message, its arguments, ``extra`` fields and exception text, before any
formatter sees the record.

Progress bars and progress lines: :mod:`vectune.observe.progress`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from vectune.config.settings import Settings

logger = logging.getLogger(__name__)

REDACTED = "***"
#: Secrets shorter than this are not redacted by value (they would blank out
#: ordinary words); the pattern rules below still apply.
MIN_SECRET_LEN = 4

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STD_ATTRS = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # OpenAI-style keys: sk-..., sk-proj-..., sk-svcacct-...
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "sk-" + REDACTED),
    # Authorization: Bearer <token>
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{6,}"), r"\1" + REDACTED),
    # api-key: X, api_key=X, "apiKey": "X", x-api-key: X, password=X, secret: X, token=X
    (
        re.compile(
            r"""(?ix)
            \b((?:x-)?api[-_ ]?key|access[-_]?token|auth[-_]?token|password|passwd|secret|client[-_]?secret)
            (["']?\s*[:=]\s*["']?)
            (?!\*\*\*)([^\s"',;&}\]]+)
            """
        ),
        r"\1\2" + REDACTED,
    ),
]

_state: dict[str, Any] = {"json": False, "handler": None}


class Redactor:
    """Replaces known secret values and secret-looking strings with ``***``.

    Args:
        secrets: exact values to hide (e.g. ``settings.secrets()``).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LEN}
        # Longest first, so a secret containing another is hidden whole.
        self.secrets: list[str] = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """Redact one string.

        Args:
            text: any text.

        Returns:
            The text with secrets replaced.
        """
        if not text:
            return text
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
        return text

    def value(self, obj: Any) -> Any:
        """Redact strings inside a value (str, list, tuple, dict), keeping its shape.

        Args:
            obj: any value.

        Returns:
            The value with every string in it redacted.
        """
        if isinstance(obj, str):
            return self(obj)
        if isinstance(obj, dict):
            return {k: self.value(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.value(v) for v in obj)
        return obj


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets in a record before it is formatted.

    It renders the message with its arguments, redacts it, and stores the result
    as the message with no arguments (so ``%`` formatting can't reintroduce a
    secret); redacts ``extra`` fields; and pre-renders the traceback
    (``exc_text``) and ``stack_info`` redacted.

    Args:
        secrets: exact values to hide.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place.

        Args:
            record: the record being logged.

        Returns:
            Always True: records are changed, never dropped.
        """
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we can, redacted
            message = f"{record.msg} {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, val in list(vars(record).items()):
            if key not in _STD_ATTRS:
                setattr(record, key, self.redact.value(val))
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, extras, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as a JSON line.

        Args:
            record: the record.

        Returns:
            The JSON text (no newline).
        """
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, val in _extras(record).items():
            out.setdefault(key, val)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL logger: message  key=value ...`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as one readable line (plus a traceback if any).

        Args:
            record: the record.

        Returns:
            The text.
        """
        text = super().format(record)
        extras = _extras(record)
        if extras:
            head, sep, tail = text.partition("\n")
            kv = " ".join(f"{k}={v}" for k, v in extras.items())
            text = f"{head}  {kv}{sep}{tail}"
        return text


class _TqdmAwareHandler(logging.StreamHandler):
    """A stream handler that prints through ``tqdm.write`` so bars are not torn."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm ships with transformers
            super().emit(record)
            return
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:
            self.handleError(record)


def is_tty(stream: IO[str] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def setup_logging(
    settings: Any = None,
    *,
    stream: IO[str] | None = None,
    level: str | int | None = None,
    fmt: str | None = None,
    extra_secrets: Sequence[str] = (),
) -> logging.Handler:
    """Configure the root logger for vectune (idempotent: a second call replaces the first).

    Args:
        settings: a :class:`vectune.config.settings.Settings` (its ``observe`` section and
            ``secrets()``), or an :class:`~vectune.config.sections.ObserveConfig`; None: the environment's.
        stream: where logs go (default ``sys.stderr``).
        level: overrides ``settings.observe.log_level``.
        fmt: overrides ``settings.observe.log_format`` (``auto``, ``text`` or ``json``).
        extra_secrets: more values to redact.

    Returns:
        The installed handler.
    """
    stream = stream if stream is not None else sys.stderr
    if settings is None:
        settings = _env_settings()
    observe = getattr(settings, "observe", settings)  # Settings, or its ObserveConfig section
    fmt = (fmt or getattr(observe, "log_format", None) or "auto").lower()
    level = level or getattr(observe, "log_level", None) or "INFO"
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    tty = is_tty(stream)
    use_json = fmt == "json" or (fmt == "auto" and not tty)

    secrets: list[str] = list(extra_secrets)
    if settings is not None and hasattr(settings, "secrets"):
        secrets.extend(settings.secrets())

    handler: logging.Handler = _TqdmAwareHandler(stream) if tty and not use_json else logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.set_name("vectune")

    root = logging.getLogger()
    old = _state.get("handler")
    if old is not None and old in root.handlers:
        root.removeHandler(old)
    root.addHandler(handler)
    # Redact on every root handler, not just ours: one added earlier (by a library
    # or a test harness) would otherwise see the record before our filter runs.
    redactor = RedactingFilter(secrets)
    for h in root.handlers:
        for f in [f for f in h.filters if isinstance(f, RedactingFilter)]:
            h.removeFilter(f)
        h.addFilter(redactor)
    root.setLevel(level)
    # Libraries that log every HTTP request at INFO drown the useful lines.
    for noisy in ("httpx", "httpcore", "urllib3", "openai._base_client", "filelock"):
        logging.getLogger(noisy).setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    logging.captureWarnings(True)
    _state.update(json=use_json, handler=handler, tty=tty)
    return handler


def add_secrets(*secrets: str) -> None:
    """Redact more values from now on (e.g. a key read after setup).

    Args:
        *secrets: values to hide.
    """
    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, RedactingFilter):
                flt.redact = Redactor([*flt.redact.secrets, *secrets])


def _env_settings():
    """The environment's settings, or None when they do not validate (logging must still work)."""
    try:
        return Settings()
    except Exception:  # noqa: BLE001
        return None


def json_logs() -> bool:
    """True when :func:`setup_logging` chose JSON lines (no progress bars then)."""
    return bool(_state.get("json", False))
