"""Tests for logging setup, JSON lines, secret redaction and progress."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from vectune.config.settings import OpenAITeacher, Settings
from vectune.observe import logs
from vectune.observe import progress as progress_mod
from vectune.observe.logs import RedactingFilter, Redactor, setup_logging
from vectune.observe.progress import progress

QKEY = "qdrant-secret-key-123456"
OKEY = "sk-proj-ABCDEFGHIJKLMNOP1234567890"


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def make_settings(**kw: object) -> Settings:
    """Settings from the arguments only: no .env file, INFO unless given."""
    return Settings(_env_file=None, **{"log_level": "INFO", **kw})


@pytest.fixture
def settings() -> Settings:
    return make_settings(qdrant_api_key=QKEY, teacher=OpenAITeacher(api_key=OKEY), log_format="auto")


@pytest.fixture(autouse=True)
def _restore_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("VECTUNE_LOG_FORMAT", "VECTUNE_LOG_LEVEL", "QDRANT_API_KEY", "VECTUNE_QDRANT_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
        for f in [f for f in h.filters if isinstance(f, RedactingFilter)]:
            h.removeFilter(f)
    root.setLevel(level)
    logs._state.update(json=False, handler=None)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_when_not_a_tty(settings: Settings) -> None:
    out = io.StringIO()
    setup_logging(settings, stream=out)
    log = logging.getLogger("vectune.test")
    log.info("hello %s", "world", extra={"alias": "docs", "n": 3})
    log.warning("second")
    recs = _lines(out)
    assert len(recs) == 2
    first = recs[0]
    assert first["msg"] == "hello world"
    assert first["level"] == "INFO"
    assert first["logger"] == "vectune.test"
    assert first["alias"] == "docs" and first["n"] == 3
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert recs[1]["level"] == "WARNING"


def test_text_on_a_tty(settings: Settings) -> None:
    out = FakeTTY()
    setup_logging(settings, stream=out)
    logging.getLogger("vectune.test").info("hello", extra={"alias": "docs"})
    text = out.getvalue()
    assert "INFO" in text and "vectune.test: hello" in text and "alias=docs" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_json_forced_on_a_tty(settings: Settings) -> None:
    out = FakeTTY()
    setup_logging(settings, stream=out, fmt="json")
    logging.getLogger("vectune.test").info("x")
    assert _lines(out)[0]["msg"] == "x"


def test_text_forced_when_not_a_tty() -> None:
    out = io.StringIO()
    setup_logging(make_settings(log_format="text"), stream=out)
    logging.getLogger("vectune.test").info("plain")
    assert "vectune.test: plain" in out.getvalue()


def test_level_from_settings() -> None:
    out = io.StringIO()
    setup_logging(make_settings(log_level="warning"), stream=out)
    log = logging.getLogger("vectune.test")
    log.info("hidden")
    log.warning("shown")
    assert [r["msg"] for r in _lines(out)] == ["shown"]


def test_setup_is_idempotent(settings: Settings) -> None:
    out = io.StringIO()
    setup_logging(settings, stream=out)
    setup_logging(settings, stream=out)
    logging.getLogger("vectune.test").info("once")
    assert len(_lines(out)) == 1


def test_secrets_redacted_in_message_args_and_extra(settings: Settings) -> None:
    out = io.StringIO()
    setup_logging(settings, stream=out)
    log = logging.getLogger("vectune.test")
    log.info("connecting with key %s", QKEY)
    log.info(f"openai key {OKEY} in an f-string")
    log.info("extra", extra={"headers": {"api-key": QKEY}, "keys": [OKEY]})
    text = out.getvalue()
    assert QKEY not in text and OKEY not in text
    recs = _lines(out)
    assert recs[0]["msg"] == "connecting with key ***"
    assert "***" in recs[1]["msg"]
    assert recs[2]["headers"] == {"api-key": "***"}


def test_secrets_redacted_in_exception_traceback(settings: Settings) -> None:
    out = io.StringIO()
    setup_logging(settings, stream=out)
    log = logging.getLogger("vectune.test")
    try:
        raise RuntimeError(f"401 Unauthorized for key {QKEY} and {OKEY}")
    except RuntimeError:
        log.exception("request failed")
    text = out.getvalue()
    assert QKEY not in text and OKEY not in text
    rec = _lines(out)[0]
    assert "Traceback" in rec["exc"] and "RuntimeError" in rec["exc"] and "***" in rec["exc"]


def test_secrets_redacted_in_text_traceback(settings: Settings) -> None:
    out = FakeTTY()
    setup_logging(settings, stream=out)
    try:
        raise ValueError(QKEY)
    except ValueError:
        logging.getLogger("vectune.test").error("bad", exc_info=True)
    assert QKEY not in out.getvalue()
    assert "ValueError: ***" in out.getvalue()


def test_secret_in_a_library_logger(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()
    setup_logging(settings, stream=out)
    logging.getLogger("qdrant_client.http").error("refused: %r", {"api-key": QKEY})
    assert QKEY not in out.getvalue()
    assert len(_lines(out)) == 1
    # a handler installed before ours (here pytest's) is redacted too
    assert QKEY not in caplog.text


def test_warnings_are_logged_and_redacted(settings: Settings) -> None:
    import warnings

    out = io.StringIO()
    setup_logging(settings, stream=out)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(False)  # pytest swapped showwarning; capture afresh
        logging.captureWarnings(True)
        try:
            warnings.warn(f"insecure connection with {QKEY}", UserWarning, stacklevel=1)
        finally:
            logging.captureWarnings(False)
    recs = _lines(out)
    assert recs and recs[0]["logger"] == "py.warnings"
    assert QKEY not in out.getvalue() and "***" in recs[0]["msg"]


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("key sk-abcdefghijklmnop1234 rest", "sk-abcdefghijklmnop1234"),
        ("api-key: hunter2hunter2", "hunter2hunter2"),
        ("api_key=zzzzzzzzzz&x=1", "zzzzzzzzzz"),
        ('{"apiKey": "abcd1234efgh"}', "abcd1234efgh"),
        ("x-api-key: ZXCVBNMASDF", "ZXCVBNMASDF"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("password=correcthorse", "correcthorse"),
    ],
)
def test_pattern_redaction(text: str, leak: str) -> None:
    red = Redactor()(text)
    assert leak not in red
    assert "***" in red


@pytest.mark.parametrize(
    "text",
    ["max_tokens=512", "recall@5 improved 0.61 -> 0.66", "tokens: 1200", "task-queue done", "skip-ahead"],
)
def test_pattern_leaves_ordinary_text(text: str) -> None:
    assert Redactor()(text) == text


def test_short_secrets_not_redacted_by_value() -> None:
    assert Redactor(["ab"])("a lab") == "a lab"
    assert Redactor(["abcd"])("xabcdx") == "x***x"


def test_longest_secret_first() -> None:
    assert Redactor(["secretvalue", "secretvalue-long"])("t=secretvalue-long") == "t=***"


def test_filter_on_foreign_handler_bad_format_string() -> None:
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "oops %d %d", (QKEY,), None)
    assert RedactingFilter([QKEY]).filter(rec)
    assert QKEY not in rec.getMessage()


def test_add_secrets_after_setup() -> None:
    out = io.StringIO()
    setup_logging(make_settings(), stream=out)
    logs.add_secrets("late-secret-999")
    logging.getLogger("vectune.test").info("late-secret-999")
    assert "late-secret-999" not in out.getvalue()


def test_progress_logs_when_not_a_tty(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter(float(i) for i in range(1000))
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: next(ticks))
    with caplog.at_level(logging.INFO, logger="vectune.observe.progress"):
        items = list(progress(range(10), desc="encoding", every_s=3.0, stream=io.StringIO()))
    assert items == list(range(10))
    msgs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("encoding: ") and "/10" in m for m in msgs)
    assert msgs[-1].startswith("encoding: done, 10 items")
    assert caplog.records[-1].total == 10


def test_progress_unknown_total(caplog: pytest.LogCaptureFixture) -> None:
    def gen() -> Iterator[int]:
        yield from range(5)

    with caplog.at_level(logging.INFO, logger="vectune.observe.progress"):
        assert list(progress(gen(), desc="scroll", every_s=0.0, stream=io.StringIO())) == list(range(5))
    assert "scroll: 1 items" in caplog.records[0].getMessage()


def test_progress_bar_on_a_tty() -> None:
    out = FakeTTY()
    assert list(progress(range(3), desc="train", stream=out)) == [0, 1, 2]
    assert "train" in out.getvalue() and "3/3" in out.getvalue()


def test_progress_no_bar_when_json_logs_on_tty(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    out = FakeTTY()
    setup_logging(settings, stream=out, fmt="json")
    assert list(progress(range(3), desc="train", stream=out)) == [0, 1, 2]
    assert "3/3" not in out.getvalue()  # no bar drawn into JSON logs
    assert any(json.loads(line)["msg"].startswith("train: done") for line in out.getvalue().splitlines())
