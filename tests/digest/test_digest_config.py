"""The ``[digest]`` section: validated like the rest, every error names the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import ConfigError, load_settings

BRAND = '[[brands]]\nname = "acme"\naccounts = { x = "acme" }\n'
MAIL = (
    '[alerts.channels.mail]\ntype = "email"\nhost = "smtp.example.com"\n'
    'sender = "alerts@example.com"\nrecipients = ["team@example.com"]\n'
)
SLACK = '[alerts.channels.chat]\ntype = "slack"\nwebhook_url_env = "SLACK_URL"\n'


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "touchpoint.toml"
    path.write_text(text + "\n" + BRAND, encoding="utf-8")
    return load_settings(path)


def test_digest_config_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, MAIL + "[digest]\n")
    digest = settings.digest  # type: ignore[attr-defined]
    # the only email channel, its recipients, 08:00 local
    assert (digest.channel, digest.recipients, digest.send_time) == (
        "mail",
        ("team@example.com",),
        "08:00",
    )
    assert digest.enabled and digest.sender == ""
    off = load(tmp_path, MAIL).digest  # type: ignore[attr-defined]
    assert not off.enabled


def test_digest_config_everything_set(tmp_path: Path) -> None:
    text = (
        MAIL
        + MAIL.replace(".mail]", ".other]")
        + '[digest]\nchannel = "other"\nrecipients = ["a@example.com", "b@example.com"]\n'
        'send_time = "07:30"\nsender = "digest@example.com"\n'
    )
    digest = load(tmp_path, text).digest  # type: ignore[attr-defined]
    assert digest.channel == "other"
    assert digest.recipients == ("a@example.com", "b@example.com")
    assert (digest.send_time, digest.sender) == ("07:30", "digest@example.com")


@pytest.mark.parametrize(
    ("text", "key", "problem", "fix"),
    [
        (MAIL + "[digest]\nhour = 8\n", "digest.hour", "unknown key", "send_time"),
        (MAIL + '[digest]\nsend_time = "8am"\n', "digest.send_time", "not a time", '"08:00"'),
        (MAIL + '[digest]\nsend_time = "24:00"\n', "digest.send_time", "not a time", "HH:MM"),
        (
            MAIL + '[digest]\nrecipients = ["social team"]\n',
            "digest.recipients",
            "not an email address",
            "social@example.com",
        ),
        (MAIL + "[digest]\nrecipients = 3\n", "digest.recipients", "list", "recipients = ["),
        (
            MAIL + '[digest]\nsender = "me"\n',
            "digest.sender",
            "not an email address",
            "touchpoint@example.com",
        ),
        ("[digest]\n", "digest.channel", "no email channel", 'type = "email"'),
        (
            MAIL + MAIL.replace(".mail]", ".other]") + "[digest]\n",
            "digest.channel",
            "several email channels",
            'channel = "mail"',
        ),
        (
            MAIL + SLACK + '[digest]\nchannel = "chat"\n',
            "digest.channel",
            "no email channel named 'chat'",
            "use one of: mail",
        ),
        ("digest = 1\n" + MAIL, "digest", "must be a table", "[digest]"),
    ],
    ids=[
        "unknown-key",
        "bad-time",
        "hour-24",
        "bad-recipient",
        "recipients-not-a-list",
        "bad-sender",
        "no-email-channel",
        "several-email-channels",
        "not-an-email-channel",
        "not-a-table",
    ],
)
def test_digest_config_errors_name_the_key_and_the_fix(
    tmp_path: Path, text: str, key: str, problem: str, fix: str
) -> None:
    refused(tmp_path, text, key, problem, fix)


def refused(tmp_path: Path, text: str, key: str, problem: str, fix: str) -> None:
    """Loading ``text`` fails with one line naming ``key``, the problem and the fix."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.key == key
    assert problem in caught.value.problem
    assert fix in caught.value.fix
    assert "\n" not in str(caught.value)


def _uncomment(text: str, first: str) -> str:
    """Uncomment the ``# `` lines from the one starting with ``first`` to a bare ``#`` or blank."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = start
    while end < len(lines) and lines[end].startswith("# "):
        lines[end] = lines[end][2:]
        end += 1
    return "\n".join(lines) + "\n"


def test_digest_config_example_block_is_valid(tmp_path: Path) -> None:
    example = (Path(__file__).resolve().parents[2] / "config.example.toml").read_text("utf-8")
    text = _uncomment(_uncomment(example, "# [alerts.channels.team-mail]"), "# [digest]")
    path = tmp_path / "touchpoint.toml"
    path.write_text(text, encoding="utf-8")
    digest = load_settings(path).digest
    assert digest.enabled and digest.channel == "team-mail"
    assert digest.recipients == ("social@example.com",)
    assert (digest.send_time, digest.sender) == ("08:00", "digest@example.com")


BETA = '[[brands]]\nname = "beta"\naccounts = { x = "beta" }\n'


def test_digest_config_brand_recipients_replace_the_global_list(tmp_path: Path) -> None:
    # beta is brands[0] (load() appends acme after it)
    text = MAIL + "[digest]\n" + BETA + 'digest_recipients = ["beta-social@example.com"]\n'
    digest = load(tmp_path, text).digest  # type: ignore[attr-defined]
    assert digest.enabled and digest.recipients == ("team@example.com",)
    assert digest.brand_recipients == {"beta": ("beta-social@example.com",)}
    assert digest.recipients_for("beta") == ("beta-social@example.com",)
    assert digest.recipients_for("acme") == ("team@example.com",)  # unset: the global list


def test_digest_config_an_address_listed_twice_is_one_recipient(tmp_path: Path) -> None:
    # the sent-once bookkeeping and the Message-ID go by the address in any case
    twice = '["a@example.com", " B@example.com", "A@Example.com", "b@example.com"]'
    text = MAIL + f"[digest]\nrecipients = {twice}\n" + BETA + f"digest_recipients = {twice}\n"
    digest = load(tmp_path, text).digest  # type: ignore[attr-defined]
    assert digest.recipients == ("a@example.com", "B@example.com")
    assert digest.recipients_for("beta") == ("a@example.com", "B@example.com")


def test_digest_config_brand_recipients_empty_list_means_nobody(tmp_path: Path) -> None:
    text = MAIL + "[digest]\n" + BETA + "digest_recipients = []\n"
    digest = load(tmp_path, text).digest  # type: ignore[attr-defined]
    assert digest.recipients_for("beta") == ()
    assert digest.recipients_for("acme") == ("team@example.com",)
    assert digest.enabled


def test_digest_config_empty_recipients_mean_nobody_but_the_brands_own(tmp_path: Path) -> None:
    # [] is nobody, as for a brand's own list; only a missing key takes the channel's recipients
    text = MAIL + "[digest]\nrecipients = []\n" + BETA + 'digest_recipients = ["b@example.com"]\n'
    digest = load(tmp_path, text).digest  # type: ignore[attr-defined]
    assert digest.recipients_for("acme") == () and digest.recipients_for("beta") == (
        "b@example.com",
    )
    assert digest.enabled
    nobody = load(tmp_path, MAIL + "[digest]\nrecipients = []\n").digest  # type: ignore[attr-defined]
    assert nobody.recipients == () and not nobody.enabled


def test_digest_config_brand_recipients_alone_turn_the_email_on(tmp_path: Path) -> None:
    # no [digest] section: the brand's own list turns it on, through the only email channel;
    # the brands without one have no global list to fall back on
    text = MAIL + BETA + 'digest_recipients = ["beta-social@example.com"]\n'
    digest = load(tmp_path, text).digest  # type: ignore[attr-defined]
    assert digest.enabled and digest.channel == "mail"
    assert (digest.recipients, digest.send_time, digest.sender) == ((), "08:00", "")
    assert digest.recipients_for("beta") == ("beta-social@example.com",)
    assert digest.recipients_for("acme") == ()
    # an empty list alone turns nothing on
    empty = MAIL + BETA + "digest_recipients = []\n"
    off = load(tmp_path, empty).digest  # type: ignore[attr-defined]
    assert not off.enabled and off.channel == ""


@pytest.mark.parametrize(
    ("text", "key", "problem", "fix"),
    [
        (
            MAIL + "[digest]\n" + BETA + 'digest_recipients = ["beta social"]\n',
            "brands[0].digest_recipients",
            "'beta social' is not an email address",
            'digest_recipients = ["social@example.com"]',
        ),
        (
            MAIL + BETA + 'digest_recipients = ["ok@example.com", "<x@example.com>"]\n',
            "brands[0].digest_recipients",
            "not an email address",
            "write a plain address",
        ),
        (
            MAIL + "[digest]\n" + BETA + 'digest_recipients = "beta@example.com"\n',
            "brands[0].digest_recipients",
            "must be a list of email addresses",
            'digest_recipients = ["social@example.com"]',
        ),
        (
            BETA + 'digest_recipients = ["beta@example.com"]\n',
            "brands[0].digest_recipients",
            "no email channel to send the digest by",
            'type = "email"',
        ),
        (
            MAIL + MAIL.replace(".mail]", ".other]") + BETA + 'digest_recipients = ["b@x.org"]\n',
            "brands[0].digest_recipients",
            "several email channels",
            'name one in [digest]: channel = "mail"',
        ),
    ],
    ids=["bad-address", "bad-address-no-digest-section", "not-a-list", "no-channel", "several"],
)
def test_digest_config_brand_recipients_errors_name_the_key_and_the_fix(
    tmp_path: Path, text: str, key: str, problem: str, fix: str
) -> None:
    refused(tmp_path, text, key, problem, fix)


def test_digest_config_example_brand_recipients_line_is_valid(tmp_path: Path) -> None:
    example = (Path(__file__).resolve().parents[2] / "config.example.toml").read_text("utf-8")
    text = _uncomment(_uncomment(example, "# [alerts.channels.team-mail]"), "# [digest]")
    text = _uncomment(text, "# digest_recipients = ")
    path = tmp_path / "touchpoint.toml"
    path.write_text(text, encoding="utf-8")
    digest = load_settings(path).digest
    assert digest.recipients_for("acme") == ("acme-social@example.com",)
    assert digest.recipients == ("social@example.com",)
