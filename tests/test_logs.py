from __future__ import annotations

import contextlib
import io
import logging

import pytest

from monitor.logs import clean, log_failure, register_secret, setup_logging


def test_logs_secret_and_authorization_header_are_masked() -> None:
    register_secret("SECRET-REGISTERED-42")
    stream = io.StringIO()
    setup_logging(logging.DEBUG, stream=stream)
    log = logging.getLogger("tweepy.client")
    log.debug("Headers: {'Authorization': 'Bearer SECRET-REGISTERED-42'}")
    log.debug("Headers: {'Authorization': 'Bearer unregistered-token-value'}")
    log.info("token is %s", "SECRET-REGISTERED-42")
    out = stream.getvalue()
    assert "SECRET-REGISTERED-42" not in out
    assert "unregistered-token-value" not in out
    assert out.count("[redacted]") == 3


def test_logs_post_text_cannot_forge_a_line_or_send_escapes() -> None:
    stream = io.StringIO()
    setup_logging(logging.INFO, stream=stream)
    hostile = "hi\n2026-01-01 ERROR forged\x1b[31mred\u2028\x9b2J\u202eevil"
    logging.getLogger("monitor.x").info("text: %s", hostile)
    out = stream.getvalue()
    assert out.count("\n") == 1
    assert not {"\x1b", "\u2028", "\x9b", "\u202e"} & set(out)
    assert "hi\\n2026-01-01 ERROR forged\\x1b[31mred\\u2028\\x9b2J\\u202eevil" in out


def test_logs_clean_keeps_plain_text() -> None:
    assert clean("plain words, café ☕") == "plain words, café ☕"


def test_logs_exception_text_is_redacted() -> None:
    register_secret("SECRET-IN-TRACEBACK-9")
    stream = io.StringIO()
    setup_logging(logging.INFO, stream=stream)
    try:
        raise RuntimeError("failed with SECRET-IN-TRACEBACK-9")
    except RuntimeError:
        logging.getLogger("monitor").exception("boom")
    assert "SECRET-IN-TRACEBACK-9" not in stream.getvalue()
    assert "RuntimeError" in stream.getvalue()


def test_logs_lines_lost_to_a_full_disk_are_remembered_until_one_is_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Reliability plan #35: a log on a full disk (or a closed pipe) loses its lines; touchpoint
    goes on, remembers since when and why (the daemon's service alert says it), and prints no
    traceback to the failing stream."""
    log = logging.getLogger("monitor.test")
    full = open("/dev/full", "w")  # noqa: PTH123, SIM115 - a device, closed below
    setup_logging(logging.INFO, stream=full)
    log.info("first line lost")
    first = log_failure()
    log.warning("second line lost")
    second = log_failure()
    with contextlib.suppress(OSError):  # the lines still buffered fail again
        full.close()
    assert first is not None and second is not None
    assert "No space left on device" in first.error and first.count == 1
    assert (second.since, second.count) == (first.since, 2)
    assert capsys.readouterr().err == ""  # not "--- Logging error ---" and a traceback

    stream = io.StringIO()
    setup_logging(logging.INFO, stream=stream)  # space again
    log.info("written")
    assert log_failure() is None and "written" in stream.getvalue()
