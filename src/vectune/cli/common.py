"""What every ``vectune`` command shares: connection options, settings loading, error handling, output."""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

import click

from vectune.api import Alias
from vectune.config.settings import Settings, load_settings
from vectune.errors import VectuneError
from vectune.observe.logs import setup_logging

logger = logging.getLogger("vectune")


def setup_cli_logging(settings: Settings, verbose: int) -> None:
    setup_logging(settings, level="DEBUG" if verbose else None)


def connection_options(f):
    """Options every command shares: where Qdrant and vectune's state live."""
    opts = [
        click.option("--qdrant-url", default=None, help="Qdrant server URL [QDRANT_URL]; unset = embedded mode."),
        click.option("--qdrant-path", type=click.Path(path_type=Path), default=None,
                     help="Embedded Qdrant folder [VECTUNE_QDRANT_PATH]."),
        click.option("--home", type=click.Path(path_type=Path), default=None,
                     help="Root of all state when the paths below are unset [VECTUNE_HOME, default .vectune]."),
        click.option("--work-dir", type=click.Path(path_type=Path), default=None,
                     help="Run state: caches, reports, history [VECTUNE_WORK_DIR]."),
        click.option("--model-dir", type=click.Path(path_type=Path), default=None,
                     help="Model store [VECTUNE_MODEL_DIR]."),
        click.option("--text-field", default=None,
                     help="Payload field with the text [VECTUNE_TEXT_FIELD]; presets: langchain, llamaindex, "
                          "haystack."),
        click.option("--vector-name", default=None, help="Named dense vector to tune [VECTUNE_VECTOR_NAME]."),
        click.option("--log-format", type=click.Choice(["auto", "text", "json"]), default=None,
                     help="[VECTUNE_LOG_FORMAT]"),
        click.option("-v", "--verbose", count=True, help="More logging."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def handle_errors(f):
    """Turn vectune errors into one clear message and a distinct exit code."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except VectuneError as e:
            click.echo(f"error: {redact(str(e))}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def redact(text: str) -> str:
    try:
        for secret in Settings().secrets():
            text = text.replace(secret, "***")
    except Exception:  # noqa: BLE001 - redaction must never fail the error path
        pass
    return text


#: On/off flags whose "off" only means "not given": they must not override VECTUNE_* from the environment.
OPT_IN_FLAGS = ("allow_synthetic_gate", "keep_candidate")


def settings_from(kwargs: dict) -> Settings:
    verbose = kwargs.pop("verbose", 0)
    for flag in OPT_IN_FLAGS:
        if not kwargs.get(flag):
            kwargs.pop(flag, None)
    s = load_settings(**kwargs)
    setup_cli_logging(s, verbose)
    return s


def require_alias(alias: str | None, s: Settings) -> str:
    """The alias from the option or VECTUNE_ALIAS; a usage error without one."""
    alias = alias or s.alias
    if not alias:
        raise click.UsageError("--alias is required (or VECTUNE_ALIAS)")
    return alias


def emit(data: dict, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def alias_from(alias: str | None, kwargs: dict) -> Alias:
    """The :class:`~vectune.api.Alias` a command works on: settings from its options, the name from ``--alias``
    or ``VECTUNE_ALIAS``."""
    s = settings_from(kwargs)
    return Alias(require_alias(alias, s), s)
