"""``touchpoint digest`` and the digest page ``touchpoint demo`` writes."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from monitor import clock, store
from monitor.cli import cli
from monitor.config import load_settings
from monitor.sandbox import fleet
from tests.alerts.servers import Sink, free_port
from tests.digest import fixture
from tests.digest.test_digest_send import OPS, TEAM, digest_config


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The fixture brand's store and a config without a [digest] section."""
    path = tmp_path / "touchpoint.toml"
    fixture.settings(path)
    db = store.open_db(tmp_path / "touchpoint.db")
    fixture.fill(db)
    db.conn.close()
    return path


def test_digest_cli_prints_the_text_version(config: Path) -> None:
    result = run("--config", str(config), "digest", "--brand", "acme", "--date", "2026-11-20")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("touchpoint digest: acme, 2026-11-20 (Europe/Berlin)")
    assert "mentions         9 (+7)" in result.output
    assert "[E" in result.output  # the chart, in letters


def test_digest_cli_default_day_is_yesterday_in_the_brand_zone(config: Path) -> None:
    result = run("--config", str(config), "digest")
    assert result.exit_code == 0, result.output
    now = clock.now().astimezone(ZoneInfo(fixture.TIMEZONE))
    yesterday = (now.date() - timedelta(days=1)).isoformat()
    assert result.output.startswith(f"touchpoint digest: acme, {yesterday} ")


def test_digest_cli_out_writes_html_and_text(config: Path, tmp_path: Path) -> None:
    page = tmp_path / "out" / "acme.html"
    result = run("--config", str(config), "digest", "--date", "2026-11-20", "--out", str(page))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {page} and {page.with_suffix('.txt')}"
    assert 'id="mix-chart"' in page.read_text(encoding="utf-8")
    assert "PER CHANNEL" in page.with_suffix(".txt").read_text(encoding="utf-8")
    for written in (page, page.with_suffix(".txt")):  # customers' words: the owner's only
        assert written.stat().st_mode & 0o777 == 0o600, written


def test_digest_cli_out_refuses_the_database_and_writes_nothing(
    config: Path, tmp_path: Path
) -> None:
    """`digest --out touchpoint.db` used to turn the database into an HTML page."""
    db_path = tmp_path / "touchpoint.db"
    before = db_path.read_bytes()
    (tmp_path / "link.db").symlink_to(db_path)
    for name in ("touchpoint.db", "link.db"):
        out = tmp_path / name
        result = run("--config", str(config), "digest", "--date", "2026-11-20", "--out", str(out))
        assert result.exit_code == 1, result.output
        assert "that is the database" in result.output and "Fix:" in result.output
        assert "Traceback" not in result.output
    assert db_path.read_bytes() == before
    assert not (tmp_path / "link.txt").exists() and not (tmp_path / "touchpoint.txt").exists()
    page = tmp_path / "touchpoint.html"  # beside the database, under another name: written
    result = run("--config", str(config), "digest", "--date", "2026-11-20", "--out", str(page))
    assert result.exit_code == 0 and page.exists(), result.output


def test_digest_cli_send_twice_sends_once(
    config: Path, tmp_path: Path, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    fixture.settings(config, digest_config(port))
    first = run("--config", str(config), "digest", "--date", "2026-11-20", "--send")
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [
        f"acme 2026-11-20: sent to {TEAM}",
        f"acme 2026-11-20: sent to {OPS}",
    ]
    again = run("--config", str(config), "digest", "--date", "2026-11-20", "--send")
    assert again.exit_code == 0, again.output
    assert "already sent to" in again.output and "sent to" not in again.output.replace(
        "already sent to", ""
    )
    assert len(sink.received) == 2


@pytest.mark.parametrize("days_ahead", [0, 400])
def test_digest_cli_send_refuses_a_day_that_has_not_ended(
    config: Path, tmp_path: Path, smtp: tuple[Sink, int], days_ahead: int
) -> None:
    """Sent early, a day would go out incomplete and be recorded as sent, and the daemon, which
    goes on from the last day sent, would send nothing until then."""
    sink, port = smtp
    fixture.settings(config, digest_config(port))
    today = clock.now().astimezone(ZoneInfo(fixture.TIMEZONE)).date()
    day = (today + timedelta(days=days_ahead)).isoformat()
    result = run("--config", str(config), "digest", "--date", day, "--send")
    assert result.exit_code == 1
    assert f"acme: {day} has not ended yet in {fixture.TIMEZONE}" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert sink.received == []
    db = store.open_db(tmp_path / "touchpoint.db")
    assert db["digest_sends"].count == 0
    db.conn.close()
    shown = run("--config", str(config), "digest", "--date", day)  # looking is still fine
    assert shown.exit_code == 0 and f"acme, {day}" in shown.output


def test_digest_cli_send_failure_is_one_line_and_exit_1(config: Path) -> None:
    fixture.settings(config, digest_config(free_port()))
    result = run("--config", str(config), "digest", "--date", "2026-11-20", "--send")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 2 and all(
        e.startswith("error: acme 2026-11-20: not sent") for e in errors
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--send"], 1, "add a [digest] section"),
        (["--send", "--out", "d.html"], 2, "--send or --out"),
        (["--out", "d.txt"], 2, "names the HTML file"),
        (["--brand", "nope"], 1, "no brand named 'nope'"),
        (["--date", "20/11/2026"], 2, "Invalid value for '--date'"),
    ],
    ids=["send-unconfigured", "send-and-out", "out-txt", "unknown-brand", "bad-date"],
)
def test_digest_cli_errors_say_what_to_do(
    config: Path, args: list[str], code: int, message: str
) -> None:
    result = run("--config", str(config), "digest", *args)
    assert result.exit_code == code
    assert message in result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_digest_demo_prints_the_digest_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in fleet.environment().items():  # the demo sets them; undone after the test
        monkeypatch.setenv(name, value)
    result = run("demo", "--dir", str(tmp_path / "demo"), "--days", "0.2")
    assert result.exit_code == 0, result.output
    match = re.search(r"^digest:   (.+)$", result.output, re.M)
    assert match, result.output
    page = Path(match[1])
    assert page == tmp_path / "demo" / "digest.html" and page.exists()
    html = page.read_text(encoding="utf-8")
    assert 'id="mix-chart"' in html and 'id="unanswered"' in html
    assert "mentions received" in html
    assert page.with_suffix(".txt").exists()
    assert "COLLECTION INCOMPLETE" not in page.with_suffix(".txt").read_text(encoding="utf-8")


def test_digest_cli_after_refused_credentials_says_nothing_was_collected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every platform refuses the credentials: the digest must not read as a quiet day with every
    mention answered and every channel silent. (A Bluesky login refused once may be a passing
    fault: it counts as refused credentials when the refusal repeats, so collect runs thrice.)"""
    for name, value in fleet.environment().items():
        monkeypatch.setenv(name, f"wrong{value}")
    end = clock.now()
    config = tmp_path / "touchpoint.toml"
    with fleet.running(seed=7, start=end - timedelta(hours=6), end=end) as servers:
        config.write_text(
            fleet.config_text({p: s.url for p, s in servers.items()}), encoding="utf-8"
        )
        collects = [run("--config", str(config), "collect") for _ in range(3)]
    assert [c.exit_code for c in collects] == [1, 1, 1], collects[-1].output
    zone = load_settings(config).brands[0].timezone
    today = clock.now().astimezone(ZoneInfo(zone)).date().isoformat()
    result = run("--config", str(config), "digest", "--date", today)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "COLLECTION INCOMPLETE" in text
    for platform in fleet.PLATFORMS:
        assert (
            f"  {platform}: posts and mentions never collected: the platform refused the "
            "credentials" in text
        ), text
    assert "every mention of the day was answered" not in text
    assert "silent" not in text
    assert "None among the mentions collected" in text
