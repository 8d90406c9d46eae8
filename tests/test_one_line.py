"""Every failure a user can cause is one line that names the fix: no traceback, nothing lost.

The mistakes of the black-box attack in issue 35 and the bad inputs of the fault plan
(docs: reliability, section 7), each run through the real command line against a real store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from monitor import store
from monitor.cli import cli
from tests.test_store import post

HOOK_ENV = "TOUCHPOINT_TEST_HOOK_URL"
CHANNEL = f'\n[alerts.channels.hook]\ntype = "webhook"\nurl_env = "{HOOK_ENV}"\n'

# (what is typed, a part of the one error line it must give)
MISTAKES = [
    (["digest", "--date", "2026-11-20", "--out", "touchpoint.db"], "that is the database"),
    (["export", "-o", "touchpoint.db"], "that is the database"),
    (["export", "-o", "link.db"], "that is the database"),
    (["init", "--force", "touchpoint.db"], "that is the database"),
    (["train", "-o", "touchpoint.db"], "that is the database"),
    (["digest", "--date", "9999-12-31"], "out of range"),
    (["digest", "--date", "0001-01-01"], "out of range"),
    (["digest", "--date", "2026-13-01"], "is not a day"),
    (["alerts", "show", "abc"], "is not an alert id"),
    (["alerts", "ack", "0"], "is not an alert id"),
    (["alerts", "test", "--channel", "hook"], "the URL in TOUCHPOINT_TEST_HOOK_URL"),
    (["run"], "the URL in TOUCHPOINT_TEST_HOOK_URL"),
    (["--db", "notes.db", "status"], "file is not a database"),
    (["export", "--brand", "'; DROP TABLE posts; --"], "no brand"),
    (["export", "--since", "yesterday-ish"], "is not a date or time"),
    (["backup", "/dev/full"], "already there"),
    (["--config", "broken.toml", "check-config"], "not valid TOML"),
    (["--config", "latin1.toml", "check-config"], "not UTF-8 text"),
]


@pytest.fixture
def site(
    tmp_path: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A config (brand acme on X, a webhook channel) and its database with one post in it."""
    config = write_config("http://127.0.0.1:9")
    config.write_text(config.read_text() + CHANNEL)
    monkeypatch.setenv(HOOK_ENV, "http://alerts.our-secret-host.test/T0KEN")  # not https
    db_path = tmp_path / "touchpoint.db"
    db = store.open_db(db_path)
    store.upsert_posts(db, [post("5")])
    db.conn.close()
    (tmp_path / "link.db").symlink_to(db_path)
    (tmp_path / "notes.db").write_text("not a database\n")
    (tmp_path / "broken.toml").write_text("[store\npath = 1\n")
    (tmp_path / "latin1.toml").write_bytes('[store]\npath = "caf\u00e9.db"\n'.encode("latin-1"))
    return db_path


def error_line(result: Result) -> str:
    """The one line a failed command wrote: no traceback, no second error."""
    assert result.exit_code in (1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    text = result.output  # both streams, as a terminal shows them
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, text
    assert "Fix:" in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize(("args", "said"), MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_a_mistake_is_one_line_with_its_fix_and_loses_nothing(
    site: Path, args: list[str], said: str
) -> None:
    before = site.read_bytes()
    assert said in error_line(CliRunner().invoke(cli, args))
    assert site.read_bytes() == before
    assert store.open_db(site).execute("SELECT count(*) FROM posts").fetchone()[0] == 1


def test_collect_with_an_unsafe_channel_url_says_so_in_one_line(site: Path) -> None:
    result = CliRunner().invoke(cli, ["collect"])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = result.output  # both streams, as a terminal shows them
    assert "Traceback" not in text
    (said,) = [line for line in text.splitlines() if line.startswith("error: alerts not")]
    assert "the URL in TOUCHPOINT_TEST_HOOK_URL" in said and "Fix:" in said
    # the URL is a secret: the error says where it is, never what it is
    assert "our-secret-host" not in text and "T0KEN" not in text


def test_a_config_saved_with_a_byte_order_mark_reads_as_without(site: Path) -> None:
    config = site.with_name("touchpoint.toml")
    config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())  # as Windows Notepad saves it
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    assert "Invalid statement" not in result.output
