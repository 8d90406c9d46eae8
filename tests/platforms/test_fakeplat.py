"""Adding a platform is one package: fakeplat, installed the way a third party's distribution is
(an entry point in the ``touchpoint.platforms`` group), is configured, collected, shown by
``touchpoint status`` and counted in the digest, with no change to touchpoint."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from monitor.cli import cli
from monitor.config import BUILTINS, platforms
from tests.conftest import read_store
from tests.platforms.registry import FAKEPLAT, fresh_registry, install

__all__ = ["fresh_registry"]  # the fixture, used by name

DAY = datetime(2026, 11, 19, tzinfo=UTC)  # the day before TEST_NOW: the digest's "yesterday"
TOKEN_ENV = "TOUCHPOINT_TEST_FAKEPLAT_TOKEN"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def config(api_base: str) -> str:
    return (
        '[store]\npath = "touchpoint.db"\n\n'
        f'[platforms.fakeplat]\napi_base = "{api_base}"\ntoken_env = "{TOKEN_ENV}"\n'
        "page_size = 1\n\n"
        '[[brands]]\nname = "acme"\nkeywords = ["acme"]\n\n[brands.accounts]\nfakeplat = "acme"\n'
    )


@pytest.mark.usefixtures("fresh_registry")
def test_a_platform_installed_as_a_distribution_is_collected_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path / "site", monkeypatch, "fakeplat", "fakeplat = fakeplat:PLATFORM")
    monkeypatch.syspath_prepend(str(FAKEPLAT))
    assert list(platforms()) == [*BUILTINS, "fakeplat"]
    assert "fakeplat.collector" not in sys.modules  # the spec is light: no client imported yet
    from fakeplat.sandbox import FakeSandbox  # noqa: PLC0415 - on sys.path only now

    monkeypatch.setenv(TOKEN_ENV, "fake-token")
    with FakeSandbox(handle="acme", token="fake-token", day=DAY) as sandbox:
        (tmp_path / "touchpoint.toml").write_text(config(sandbox.url), encoding="utf-8")
        checked = run("check-config")
        assert checked.exit_code == 0, checked.output
        first = run("collect")
        assert first.exit_code == 0, first.output
        again = run("collect")
        assert again.exit_code == 0, again.output
    db = tmp_path / "touchpoint.db"
    stored = read_store(db, "SELECT kind, COUNT(*) FROM post_brands GROUP BY kind ORDER BY kind")
    assert stored == [("keyword", 2), ("mention", 2), ("post", 2)], stored
    runs = read_store(db, "SELECT outcome, COUNT(*) FROM runs WHERE platform = 'fakeplat'")
    assert runs == [("ok", 6)], runs

    status = run("status")
    assert status.exit_code == 0, status.output
    for stream in ("keywords 'acme'", "mentions", "posts"):
        line = next(
            x for x in status.stdout.splitlines() if x.startswith(f"acme/fakeplat/{stream}")
        )
        assert line.split()[-2:] == ["ok", "-"], line  # healthy, no error

    digest = run("digest", "--brand", "acme", "--date", DAY.date().isoformat())
    assert digest.exit_code == 0, digest.output
    assert "PER CHANNEL\n  channel   posts replies" in digest.output
    assert "\n  fakeplat      2       0 " in digest.output, digest.output
    assert "1. fakeplat · fan1 · 2026-11-19 04:00" in digest.output, digest.output
