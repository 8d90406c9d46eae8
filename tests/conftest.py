"""Shared fixtures: an isolated environment, a config writer and a migrated store."""

from __future__ import annotations

import logging
import os
import sqlite3
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from sqlite_utils import Database

from monitor import clock, store
from monitor.config import platforms
from tests.alerts.servers import Sink, free_port

TEST_NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
"""Where every test's clock starts (the sandboxes' traffic of the contract tests ends there)."""
TOKEN_ENV = "TOUCHPOINT_TEST_X_TOKEN"
TOKEN = "SECRET-BEARER-1234567890"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the user's TOUCHPOINT_* settings or proxies; logging is restored after."""
    platform_env = [
        env
        for d in (spec.defaults for spec in platforms().values())
        for env in (*d.secrets.values(), *d.optional_secrets.values())
    ]
    proxies = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")
    for name in ("TOUCHPOINT_CONFIG", "TOUCHPOINT_DB", *proxies, *platform_env):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = [
        logging.getLogger(n)
        for n in ("tweepy", "urllib3", "requests_oauthlib", "oauthlib", "httpx", "httpcore")
    ]
    levels = [q.level for q in quiet]
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for logger, saved in zip(quiet, levels, strict=True):
        logger.setLevel(saved)


class TestClock(clock.Shifted):
    """touchpoint's clock in a test: set and advanced by the test, and handed on to the
    processes it starts (``$TOUCHPOINT_CLOCK_OFFSET``), so they run on the same day."""

    __test__ = False  # not a test class

    def __init__(self, start: datetime) -> None:
        super().__init__()
        self.set(start)

    @property
    def offset(self) -> timedelta:
        return self._offset

    @offset.setter
    def offset(self, value: timedelta) -> None:
        self._offset = value
        os.environ[clock.OFFSET_ENV] = repr(value.total_seconds())


@pytest.fixture(autouse=True)
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClock]:
    """Every test runs on touchpoint's clock started at TEST_NOW, never on the real date."""
    monkeypatch.setenv(clock.OFFSET_ENV, "0")  # restored after the test
    test_clock = TestClock(TEST_NOW)
    with clock.use(test_clock):
        yield test_clock


def config_text(
    api_base: str, *, extra: str = "", keywords: str = '["acme"]', collect: str = ""
) -> str:
    """A config with brand acme on the X sandbox at ``api_base``."""
    return (
        f'[store]\npath = "touchpoint.db"\n\n[collect]\n{collect}\n'
        f'[platforms.x]\napi_base = "{api_base}"\nbearer_token_env = "{TOKEN_ENV}"\n{extra}\n'
        f'[[brands]]\nname = "acme"\nkeywords = {keywords}\n\n[brands.accounts]\nx = "acme"\n'
    )


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config for the X sandbox at ``api_base`` and return its path."""

    def write(api_base: str, **kwargs: str) -> Path:
        path = tmp_path / "touchpoint.toml"
        path.write_text(config_text(api_base, **kwargs), encoding="utf-8")
        return path

    return write


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated store in a temporary file."""
    database = store.open_db(tmp_path / "store.db")
    yield database
    database.conn.close()


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1: what it accepted, and its port."""
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield sink, controller.port
    controller.stop()


@dataclass(frozen=True)
class LocalCA:
    """A test CA (trustme) and a server certificate it signed for 127.0.0.1."""

    server: ssl.SSLContext  # server-side context holding that certificate (for serve_tls)
    bundle: Path  # the CA's certificate, PEM: what a client is told to trust


@pytest.fixture(scope="session")
def local_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    bundle = tmp_path_factory.mktemp("ca") / "test-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return LocalCA(server, bundle)


def read_store(db_path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Rows of ``sql`` from the store another process is writing (read-only; [] while the file
    or its tables do not exist yet)."""
    if not db_path.exists():
        return []
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql, params))
    except sqlite3.OperationalError:  # not migrated yet
        return []
    finally:
        conn.close()
