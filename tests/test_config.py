from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import ConfigError, load_settings, template_text

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_example_is_the_init_template_and_loads() -> None:
    example = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    assert example == template_text()
    settings = load_settings(ROOT / "config.example.toml")
    assert [b.name for b in settings.brands] == ["acme"]
    assert settings.brands[0].accounts == {"x": "acme"}
    assert settings.platforms["x"].secret_env == {"bearer_token": "X_BEARER_TOKEN"}
    assert settings.db_path == ROOT / "touchpoint.db"


def test_config_every_documented_key_is_in_the_example() -> None:
    from monitor.config import CollectSettings, platforms

    example = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    for key in CollectSettings.__dataclass_fields__:
        assert f"\n{key} = " in example
    for name, defaults in ((n, p.defaults) for n, p in platforms().items()):
        section = example.split(f"[platforms.{name}]")[1].split("\n[")[0]
        keys = ["api_base", "page_size", *defaults.options]
        keys += [f"{s}_env" for s in (*defaults.secrets, *defaults.optional_secrets)]
        for key in keys:
            assert f"\n{key} = " in section, (name, key)
    for key in ("keywords", "timezone", "name", "path"):
        assert f"\n{key} = " in example


B = '[[brands]]\nname="a"\naccounts={x="a"}\n'
BAD = [
    ("brands = 3", "brands", "no brand is configured"),
    (
        '[collect]\ninterval_seconds = "5m"\n[[brands]]\nname="a"\naccounts={x="a"}',
        "collect.interval_seconds",
        "whole number",
    ),
    (
        '[collect]\nintervall = 5\n[[brands]]\nname="a"\naccounts={x="a"}',
        "collect.intervall",
        "unknown key",
    ),
    (
        '[store]\nruns_keep_days = 1\n[[brands]]\nname="a"\naccounts={x="a"}',
        "store.runs_keep_days",
        "7 to 36500",
    ),
    (
        '[platforms.reddit]\nstreams = ["posts", "inbox"]\n[[brands]]\nname="a"\naccounts={x="a"}',
        "platforms.reddit.streams",
        "unknown stream 'inbox'",
    ),
    (
        '[platforms.x]\nstreams = ["mentions"]\n[[brands]]\nname="a"\naccounts={x="a"}',
        "platforms.x.streams",
        '"posts" is left out',
    ),
    (
        '[platforms.x]\nbearer_token_env = "AAAA-secret value"\n[[brands]]\nname="a"\n'
        'accounts={x="a"}',
        "platforms.x.bearer_token_env",
        "NAME of an environment variable",
    ),
    (
        '[platforms.x]\nbearer_token_env = "NotARealToken0123456789xyzQW"\n'
        '[[brands]]\nname="a"\naccounts={x="a"}',
        "platforms.x.bearer_token_env",
        "NAME of an environment variable",
    ),
    (
        f'[platforms.mastodon]\naccess_token_env = "{"T_" * 40}"\n[[brands]]\nname="a"\n'
        'accounts={mastodon="a@m.example"}',
        "platforms.mastodon.access_token_env",
        "NAME of an environment variable",
    ),
    (
        '[platforms.x]\napi_base = "ftp://x"\n[[brands]]\nname="a"\naccounts={x="a"}',
        "platforms.x.api_base",
        "not an http(s) URL",
    ),
    ('[[brands]]\nname="a"\naccounts={myspace="a"}', "brands[0].accounts.myspace", "unknown key"),
    ('[brands]\nname="a"\naccounts={x="a"}', "brands", "[[brands]] list"),
    (
        '[[brands]]\nname="a"\n[brands.accounts]\nx="a"\nwarn_after_minutes=5',
        "brands[0].accounts.warn_after_minutes",
        "is an alert key, but it is below the [brands.accounts] header",
    ),
    (
        '[[brands]]\nname="a"\n[brands.accounts]\nx="a"\n[brands.alerts]\nreddit="a"',
        "brands[0].alerts.reddit",
        "is an account, but it is below the [brands.alerts] header",
    ),
    ('[[brands]]\nname="a"\n', "brands[0].accounts", "no account"),
    ('[[brands]]\nname="a b"\naccounts={x="a"}', "brands[0].name", "not a valid brand name"),
    (
        '[[brands]]\nname="a"\ntimezone="Mars/Base"\naccounts={x="a"}',
        "brands[0].timezone",
        "unknown time zone",
    ),
    ('[[brands]]\nname="a"\nkeywords="acme"\naccounts={x="a"}', "brands[0].keywords", "list"),
    (
        '[[brands]]\nname="a"\naccounts={x="a"}\n[[brands]]\nname="a"\naccounts={x="b"}',
        "brands",
        "used twice",
    ),
    ("[[brands]\nname=", "", "not valid TOML"),
    ('[alerts]\nself_promotion = "half"\n' + B, "alerts.self_promotion", "neither a share"),
    (
        '[alerts.channels.m]\ntype = "email"\nhost = "h"\nsender = "s@h.example"\n'
        'recipients = "x@h.example"\n' + B,
        "alerts.channels.m.recipients",
        "list of email addresses",
    ),
    ('[alerts]\nbusiness_hours = "9-5"\n' + B, "alerts.business_hours", "not a time range"),
    ('[alerts]\nbusiness_hours = "09:00-09:00"\n' + B, "alerts.business_hours", "same time"),
    (
        "[alerts]\nwarn_after_minutes = 90\nbreach_after_minutes = 30\n" + B,
        "alerts.breach_after_minutes",
        "shorter",
    ),
    (
        "[alerts]\nself_promotion_last_posts = 6\n" + B,
        "alerts.self_promotion_last_posts",
        "fewer than self_promotion_min_posts (10)",
    ),
    (
        B + "[brands.alerts]\nself_promotion_last_posts = 4\n",
        "brands[0].alerts.self_promotion_last_posts",
        "set self_promotion_min_posts to at most 4",
    ),
    ('[alerts.channels.x]\ntype = "pager"\n' + B, "alerts.channels.x.type", "not a channel type"),
    ("[alerts.channels.x]\ntype = []\n" + B, "alerts.channels.x.type", "not a channel type"),
    (
        '[alerts.channels.m]\ntype = "email"\nhost = "h"\n' + B,
        "alerts.channels.m.sender",
        "is missing",
    ),
    (
        '[alerts.channels.s]\ntype = "slack"\nwebhook_url = "https://hooks.slack.com/x"\n' + B,
        "alerts.channels.s.webhook_url",
        "unknown key",
    ),
    ('[alerts.channels.h]\ntype = "webhook"\n' + B, "alerts.channels.h.url", "url_env = ..."),
    (
        '[alerts.channels.h]\ntype = "webhook"\nurl = "https://h.example/a"\nurl_env = "HOOK"\n'
        + B,
        "alerts.channels.h.url_env",
        "is set as well as url",
    ),
    (
        '[alerts.channels.h]\ntype = "webhook"\nurl = "https://bot:pa55@h.example/a"\n' + B,
        "alerts.channels.h.url",
        "user name or password",
    ),
    (
        '[alerts.channels.h]\ntype = "webhook"\nurl = "hooks.example.com/a"\n' + B,
        "alerts.channels.h.url",
        "starting with https://",
    ),
    (
        '[alerts.channels.h]\ntype = "webhook"\nurl = "https://h.example/a#x"\n' + B,
        "alerts.channels.h.url",
        "from # on",
    ),
    (B + '[brands.alerts]\nchannels = ["nope"]\n', "brands[a].alerts.channels", "no channel named"),
    (B + 'answered_by = ["acme-care"]\n', "brands[a].answered_by", "not another configured"),
    (B + 'answered_by = ["a"]\n', "brands[a].answered_by", "not another configured"),
    (B + "answered_by = [1]\n", "brands[0].answered_by", 'answered_by = ["acme-support"]'),
    ('[classifier]\naccurate = "yes"\n' + B, "classifier.accurate", "true or false"),
    ('[daemon]\nwatchdog_channels = ["ops"]\n' + B, "daemon.watchdog_channels", "no channel named"),
    ("[daemon]\nwatchdog_after_seconds = 5\n" + B, "daemon.watchdog_after_seconds", "10"),
]


def test_config_names_a_brand_key_added_below_the_templates_last_table(tmp_path: Path) -> None:
    """The template ends with [brands.accounts]: a brand key added at the end lands in it."""
    path = write(tmp_path, template_text() + 'timezone = "Europe/Berlin"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert ": brands[0].accounts.timezone: is a key of [[brands]]" in message
    assert "Fix: move it up, above the brand's [brands.accounts]" in message


@pytest.mark.parametrize(("text", "key", "problem"), BAD, ids=[b[1] or "syntax" for b in BAD])
def test_config_error_names_file_key_and_fix(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert f": {key}: " in message or not key
    assert problem in message
    assert "Fix: " in message
    assert "\n" not in message


def test_config_takes_business_hours_that_run_overnight(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[alerts]\nbusiness_hours = "22:00-06:00"\n' + B))
    assert settings.brands[0].alerts.business_hours == "22:00-06:00"


def test_config_missing_file_says_run_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as default:
        load_settings(Path("touchpoint.toml"))
    assert str(default.value).endswith("Fix: run `touchpoint init` to write one, or pass --config")
    given = tmp_path / "my configs" / "nope.toml"  # passed with --config: a typo, or to write
    with pytest.raises(ConfigError) as info:
        load_settings(given)
    assert str(info.value).endswith(
        f"Fix: check the path, or run `touchpoint init '{given}'` to write one"
    )


def test_config_tells_an_empty_secret_variable_from_an_unset_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(write(tmp_path, B))
    monkeypatch.delenv("X_BEARER_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="X_BEARER_TOKEN is not set"):
        settings.secret("x", "bearer_token")
    monkeypatch.setenv("X_BEARER_TOKEN", "  ")
    with pytest.raises(ConfigError, match="X_BEARER_TOKEN is empty"):
        settings.secret("x", "bearer_token")


def test_config_secret_comes_from_the_named_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        '[platforms.x]\nbearer_token_env = "MY_TOKEN"\n[[brands]]\nname="a"\naccounts={x="a"}',
    )
    settings = load_settings(path)
    monkeypatch.delenv("MY_TOKEN", raising=False)
    with pytest.raises(ConfigError) as info:
        settings.check_secrets()
    assert "platforms.x.bearer_token_env" in str(info.value)
    assert "export MY_TOKEN=" in str(info.value)
    monkeypatch.setenv("MY_TOKEN", "tok-123")
    assert settings.secret("x", "bearer_token") == "tok-123"


def test_config_db_path_relative_to_file_and_env_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[store]\npath="data/t.db"\n[[brands]]\nname="a"\naccounts={x="@a"}')
    settings = load_settings(path)
    assert settings.db_path == tmp_path / "data" / "t.db"
    assert settings.brands[0].accounts["x"] == "a"
    monkeypatch.setenv("TOUCHPOINT_DB", str(tmp_path / "other.db"))
    assert load_settings(path).db_path == tmp_path / "other.db"


def test_config_alerts_presets_channels_and_brand_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[alerts]
self_promotion = "4-1-1"
business_hours = "09:00-17:30"
[alerts.channels.slack]
type = "slack"
webhook_url_env = "SLACK_URL"
[alerts.channels.mail]
type = "email"
host = "smtp.example.com"
sender = "t@example.com"
recipients = ["a@example.com"]
[[brands]]
name = "a"
accounts = {x = "a"}
[brands.alerts]
self_promotion = "thirds"
channels = ["slack"]
[[brands]]
name = "b"
accounts = {x = "b"}
[daemon]
watchdog_channels = ["mail"]
""",
    )
    settings = load_settings(path)
    assert settings.daemon.watchdog_channels == ("mail",)
    a, b = settings.brands
    assert a.alerts.self_promotion_max_share == pytest.approx(1 / 3)
    assert a.alerts.channels == ("slack",) and a.alerts.business_hours == "09:00-17:30"
    assert b.alerts.self_promotion_max_share == pytest.approx(1 / 6) and b.alerts.channels == ()
    assert settings.channels["slack"].secret_env == {"webhook_url": "SLACK_URL"}
    assert settings.channels["mail"].options["recipients"] == ("a@example.com",)


def test_config_never_repeats_a_token_pasted_as_a_variable_name(tmp_path: Path) -> None:
    token = "PastedTokenNotReal0123456789abcdefXYZ"
    path = write(tmp_path, f'[platforms.x]\nbearer_token_env = "{token}"\n' + B)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "not the secret itself" in str(info.value) and token not in str(info.value)
