"""A brand's own ``digest_recipients``, against a real SMTP server (aiosmtpd on 127.0.0.1): each
brand's digest reaches only its own recipients (or the ``[digest]`` ones when it has none), once
per brand, day and recipient."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlite_utils import Database

from monitor import store
from monitor.cli import cli
from monitor.config import Settings, parse_settings
from monitor.digest import deliver_due
from monitor.models import Post
from tests.alerts.servers import Sink
from tests.digest import fixture
from tests.digest.test_digest_send import OPS, TEAM, digest_config, received

BETA = "beta"
MANAGER = "beta-social@beta.example"  # beta's social manager: beta's digest, and only that


def beta_brand(recipients: str | None = f'["{MANAGER}"]') -> str:
    """A second brand on X, in the fixture's time zone; ``recipients``: its digest_recipients."""
    own = f"digest_recipients = {recipients}\n" if recipients is not None else ""
    return (
        f'\n[[brands]]\nname = "{BETA}"\ntimezone = "{fixture.TIMEZONE}"\n{own}'
        f'accounts = {{ x = "{BETA}" }}\n'
    )


def fill_beta(db: Database) -> None:
    """One post of beta's and one unanswered mention of it, on the fixture's day."""

    def post(native_id: str, kind: str, at: str, author: str) -> Post:
        return Post(
            platform="x",
            native_id=native_id,
            brand=BETA,
            author_id=author,
            author_handle=author,
            is_brand=author == BETA,
            kind=kind,  # type: ignore[arg-type]
            text=f"text of {native_id}",
            url=f"https://x.example/{native_id}",
            created_at=f"{at}:00Z",
            conversation_id=f"x:{native_id}" if kind == "mention" else None,
        )

    store.upsert_posts(
        db,
        [
            post("beta-p1", "post", "2026-11-20T09:00", BETA),
            post("beta-m1", "mention", "2026-11-20T10:00", "zoe"),
        ],
    )
    fixture.collected(db, BETA, ["x"], fixture.COLLECTED_AT)


def two_brands(db: Database, path: Path, extra: str, brands: str) -> Settings:
    """The fixture's acme and beta in ``db``, and the settings of acme plus ``brands``."""
    fixture.fill(db)
    fill_beta(db)
    return load(path, extra, brands)


def load(path: Path, extra: str, brands: str) -> Settings:
    """Write the fixture's config (acme) plus ``extra`` sections and ``brands`` and load it."""
    path.write_text(fixture.config_text(extra) + brands, encoding="utf-8")
    return parse_settings(tomllib.loads(path.read_text(encoding="utf-8")), path)


def by_recipient(sink: Sink, *, brand_only: bool = False) -> dict[str, list[str]]:
    """The subjects each recipient received (``brand_only``: up to the brand's name), each mail
    checked to have that one recipient."""
    found: dict[str, list[str]] = {}
    for rcpt, mail in received(sink):
        assert len(rcpt) == 1 and mail["To"] == rcpt[0]  # one transaction per recipient
        found.setdefault(rcpt[0], []).append(" ".join(str(mail["Subject"]).split()))
    if brand_only:
        found = {r: [s.split(" digest for ")[0] for s in subjects] for r, subjects in found.items()}
    return {r: sorted(subjects) for r, subjects in found.items()}


ACME_SUBJECT = "[touchpoint] acme digest for 2026-11-20, 2 unanswered"
BETA_SUBJECT = "[touchpoint] beta digest for 2026-11-20, 1 unanswered, only 1 channel alive"


def test_digest_brand_recipients_get_only_their_brand_and_the_rest_the_global_list(
    db: Database, tmp_path: Path, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    settings = two_brands(db, tmp_path / "touchpoint.toml", digest_config(port), beta_brand())
    assert settings.digest.enabled
    assert deliver_due(db, settings, fixture.AS_OF) == 3
    # acme has no list of its own: the [digest] recipients; beta's goes to its manager alone
    assert by_recipient(sink) == {
        TEAM: [ACME_SUBJECT],
        OPS: [ACME_SUBJECT],
        MANAGER: [BETA_SUBJECT],
    }
    # the same day again, now and later: nothing goes twice
    assert deliver_due(db, settings, fixture.AS_OF) == 0
    assert deliver_due(db, settings, fixture.AS_OF + timedelta(hours=5)) == 0
    assert len(sink.received) == 3
    day = fixture.DAY.isoformat()
    acme = store.get_digest_sends(db, "acme", day)
    beta = store.get_digest_sends(db, BETA, day)
    assert {r: s.state for r, s in acme.items()} == {TEAM: "sent", OPS: "sent"}
    assert {r: s.state for r, s in beta.items()} == {MANAGER: "sent"}
    # the next day: each brand's next digest to its own recipients, once
    assert deliver_due(db, settings, fixture.AS_OF + timedelta(days=1)) == 3
    assert deliver_due(db, settings, fixture.AS_OF + timedelta(days=1, hours=1)) == 0
    assert by_recipient(sink, brand_only=True) == {
        TEAM: ["[touchpoint] acme"] * 2,
        OPS: ["[touchpoint] acme"] * 2,
        MANAGER: ["[touchpoint] beta"] * 2,
    }


def test_digest_brand_recipients_without_a_digest_section_leave_the_others_out(
    db: Database, tmp_path: Path, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    # only the email channel, no [digest] section: beta's own list turns the email on for beta
    channel = digest_config(port).split("[digest]")[0]
    settings = two_brands(db, tmp_path / "touchpoint.toml", channel, beta_brand())
    assert settings.digest.enabled and settings.digest.recipients == ()
    assert deliver_due(db, settings, fixture.AS_OF) == 1
    assert deliver_due(db, settings, fixture.AS_OF + timedelta(hours=1)) == 0
    assert by_recipient(sink) == {MANAGER: [BETA_SUBJECT]}
    # acme, with no recipients at all, has no send recorded (nothing to catch up on later)
    assert store.get_digest_sends(db, "acme", fixture.DAY.isoformat()) == {}
    assert store.last_digest_day(db, "acme") is None


def test_digest_brand_recipients_empty_list_sends_that_brand_nothing(
    db: Database, tmp_path: Path, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    settings = two_brands(db, tmp_path / "touchpoint.toml", digest_config(port), beta_brand("[]"))
    assert deliver_due(db, settings, fixture.AS_OF) == 2
    assert by_recipient(sink) == {TEAM: [ACME_SUBJECT], OPS: [ACME_SUBJECT]}


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def cli_config(tmp_path: Path, extra: str, brands: str) -> Path:
    """The config file and its store (touchpoint.db beside it), filled with both brands."""
    path = tmp_path / "touchpoint.toml"
    path.write_text(fixture.config_text(extra) + brands, encoding="utf-8")
    db = store.open_db(tmp_path / "touchpoint.db")
    fixture.fill(db)
    fill_beta(db)
    db.conn.close()
    return path


def test_digest_cli_send_twice_sends_each_brand_to_its_own_once(
    tmp_path: Path, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    config = cli_config(tmp_path, digest_config(port), beta_brand())
    args = ("--config", str(config), "digest", "--date", "2026-11-20", "--send")
    for done in ("sent to", "already sent to"):  # the second --send sends nothing
        result = run(*args)
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == [
            f"acme 2026-11-20: {done} {TEAM}",
            f"acme 2026-11-20: {done} {OPS}",
            f"beta 2026-11-20: {done} {MANAGER}",
        ]
    # built as of now, not AS_OF: only the brands of the subjects are compared
    assert by_recipient(sink, brand_only=True) == {
        TEAM: ["[touchpoint] acme"],
        OPS: ["[touchpoint] acme"],
        MANAGER: ["[touchpoint] beta"],
    }


def test_digest_cli_send_skips_a_brand_with_no_recipients(
    tmp_path: Path, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    channel = digest_config(port).split("[digest]")[0]
    config = cli_config(tmp_path, channel, beta_brand())
    result = run("--config", str(config), "digest", "--date", "2026-11-20", "--send")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "acme 2026-11-20: not sent: the brand has no digest recipients",
        f"beta 2026-11-20: sent to {MANAGER}",
    ]
    assert by_recipient(sink, brand_only=True) == {MANAGER: ["[touchpoint] beta"]}


def test_digest_brand_recipients_bad_address_is_one_line_naming_the_key(
    tmp_path: Path, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    brands = beta_brand(f'["{MANAGER}", "beta social team"]')
    config = cli_config(tmp_path, digest_config(port), brands)
    for command in (["digest", "--send"], ["check-config"]):
        result = run("--config", str(config), *command)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert result.stderr == (
            f"Error: {config}: brands[1].digest_recipients: 'beta social team' is not an email "
            'address. Fix: write a plain address, e.g. digest_recipients = ["social@example.com"]\n'
        )
    assert sink.received == []


def test_digest_cli_send_goes_on_to_the_next_brand_after_a_refusal(
    tmp_path: Path, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    sink.data_replies = ["554 5.7.1 refused"]  # acme's first recipient, permanently
    config = cli_config(tmp_path, digest_config(port), beta_brand())
    result = run("--config", str(config), "digest", "--date", "2026-11-20", "--send")
    assert result.exit_code == 1
    assert f"error: acme 2026-11-20: not sent to {TEAM}" in result.stderr
    assert result.stdout.splitlines() == [
        f"acme 2026-11-20: sent to {OPS}",
        f"beta 2026-11-20: sent to {MANAGER}",  # the failure did not stop the next brand
    ]
    assert by_recipient(sink, brand_only=True) == {
        OPS: ["[touchpoint] acme"],
        MANAGER: ["[touchpoint] beta"],
    }


def test_digest_check_config_says_who_gets_which_brand(
    tmp_path: Path, smtp: tuple[Sink, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port = smtp
    config = cli_config(tmp_path, digest_config(port), beta_brand())
    for platform in parse_settings(tomllib.loads(config.read_text()), config).platforms.values():
        for variable in platform.secret_env.values():  # the secrets check-config looks for
            monkeypatch.setenv(variable, "s3cret-value")
    result = run("--config", str(config), "check-config")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1] == (
        f"digest: daily at 08:00 local time through 'mail': acme -> {TEAM}, {OPS}; "
        f"beta -> {MANAGER}"
    )
    nobody = cli_config(tmp_path, digest_config(port), beta_brand("[]"))
    assert "beta -> nobody" in run("--config", str(nobody), "check-config").stdout
