"""Logging that never shows a secret and never lets post text forge a log line, and that
remembers when its lines are lost (:func:`log_failure`).

Only the CLI calls :func:`setup_logging`; every module just uses ``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TextIO

import orjson

from monitor import clock

LogFormat = Literal["text", "json"]

_secrets: set[str] = set()
_lock = threading.Lock()
_AUTH_HEADER = re.compile(
    r"(?i)((?:authorization|x-api-key)['\"]?\s*[:=]\s*['\"]?)(?:bearer\s+)?[^'\"\s,}]+"
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=%-]{8,}")
# C0 but tab and newline (handled first), DEL, C1 (a terminal takes \x9b as ESC [), the line and
# paragraph separators, and the bidi overrides and isolates that reorder what a terminal shows.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
REDACTED = "[redacted]"


def register_secret(value: str) -> None:
    """Remember a secret value so that it is masked wherever it would be logged or stored."""
    if len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Mask registered secrets and anything that looks like an Authorization header value."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)


def neutralize(text: str) -> str:
    """Escape control characters (newlines, ANSI escapes, bidi overrides): one line, shown as is."""
    return visible(text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " "))


def visible(text: str) -> str:
    """``text`` safe for a terminal: every control character but newline and tab escaped."""
    return CONTROL.sub(lambda m: escape_char(m.group()), text)


def escape_char(char: str) -> str:
    """``char`` as a visible escape: ``\\x1b`` for a code up to U+00FF, else ``\\u202e``."""
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def clean(text: str) -> str:
    """Redact secrets and neutralize control characters: safe for a log line or the store."""
    return neutralize(redact(text))


class SafeFilter(logging.Filter):
    """Rewrite each record's message through :func:`clean` before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string in a library must not kill logging
            message = f"{record.msg!r} {record.args!r}"
        record.msg = clean(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a run's fields if it has them."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        run = getattr(record, "run", None)
        if isinstance(run, dict):
            payload["run"] = {k: clean(v) if isinstance(v, str) else v for k, v in run.items()}
        if record.exc_text:
            payload["exception"] = record.exc_text
        return orjson.dumps(payload, default=str).decode()


@dataclass(frozen=True)
class LogFailure:
    """The log's writes have failed since ``since`` (``count`` lines lost); ``error`` is the
    last one's reason."""

    since: datetime
    error: str
    count: int


_failure: LogFailure | None = None


def log_failure() -> LogFailure | None:
    """Whether the last line written to the log was lost, and since when lines are lost: the
    daemon raises it as a service alert, since no log line can say it."""
    with _lock:
        return _failure


class _WatchedStreamHandler(logging.StreamHandler[TextIO]):
    """A stream handler that remembers when its writes fail (a full disk, a closed pipe)
    instead of printing a traceback to the same failing stream; a line written again clears it."""

    def emit(self, record: logging.LogRecord) -> None:
        self._failed = False
        super().emit(record)
        if not self._failed:
            _note_write(None)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # a record that cannot be formatted: logging's way
            super().handleError(record)
            return
        self._failed = True
        _note_write(clean(str(error) or type(error).__name__))


def _note_write(error: str | None) -> None:
    global _failure
    with _lock:
        if error is None:
            _failure = None
        elif _failure is None:
            _failure = LogFailure(clock.now(), error, 1)
        else:
            _failure = LogFailure(_failure.since, error, _failure.count + 1)


def setup_logging(
    level: int = logging.WARNING, *, stream: TextIO | None = None, fmt: LogFormat = "text"
) -> None:
    """Send log records to stderr through the safe filter (as text lines or JSON lines);
    third-party loggers stay quiet."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_touchpoint", False):
            root.removeHandler(handler)
    handler = _WatchedStreamHandler(stream or sys.stderr)
    handler._touchpoint = True  # type: ignore[attr-defined]
    handler.addFilter(SafeFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    # tweepy logs request headers, bearer token included, at DEBUG: the filter masks it, and
    # unless the user asked for DEBUG these libraries are held at WARNING.
    quiet = (
        "tweepy",
        "urllib3",
        "requests_oauthlib",
        "oauthlib",
        "httpx",
        "httpcore",
        "apscheduler",
    )
    for name in quiet:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)
