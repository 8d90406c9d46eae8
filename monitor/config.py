"""TOML configuration -> typed, validated settings; secrets come only from the environment.

Every problem is reported as one :class:`ConfigError` line naming the file, the key and the fix.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.logs import register_secret

ENV_CONFIG = "TOUCHPOINT_CONFIG"
ENV_DB = "TOUCHPOINT_DB"
DEFAULT_CONFIG_NAME = "touchpoint.toml"

STREAMS = ("posts", "mentions", "keywords")
PUBLIC_ENV_VALUES = frozenset({"username"})


@dataclass(frozen=True)
class PlatformDefaults:
    """What a platform needs in the config, and the defaults it starts from."""

    api_base: str
    secrets: Mapping[str, str]  # secret name -> default environment variable name
    page_size: int
    max_page_size: int
    min_page_size: int
    # secrets a platform can do without (it then offers less, e.g. no Reddit inbox)
    optional_secrets: Mapping[str, str] = field(default_factory=dict)
    # platform-specific keys and their defaults; a value's type is the key's type
    options: Mapping[str, str | list[str]] = field(default_factory=dict)


PLATFORM_DEFAULTS: dict[str, PlatformDefaults] = {
    "x": PlatformDefaults(
        api_base="https://api.twitter.com",
        secrets={"bearer_token": "X_BEARER_TOKEN"},
        page_size=100,
        max_page_size=100,
        min_page_size=10,
    ),
    "reddit": PlatformDefaults(
        api_base="https://oauth.reddit.com",
        secrets={"client_id": "REDDIT_CLIENT_ID", "client_secret": "REDDIT_CLIENT_SECRET"},
        optional_secrets={"username": "REDDIT_USERNAME", "password": "REDDIT_PASSWORD"},
        page_size=100,
        max_page_size=100,
        min_page_size=1,
        options={
            "auth_base": "https://www.reddit.com",
            "user_agent": "touchpoint-monitor/0.1 (self-hosted brand monitor)",
            "subreddits": ["all"],
        },
    ),
    "mastodon": PlatformDefaults(
        api_base="https://mastodon.social",
        secrets={"access_token": "MASTODON_ACCESS_TOKEN"},
        page_size=40,
        max_page_size=40,
        min_page_size=1,
    ),
    "bluesky": PlatformDefaults(
        api_base="https://bsky.social",
        secrets={"app_password": "BLUESKY_APP_PASSWORD"},
        page_size=100,
        max_page_size=100,
        min_page_size=1,
    ),
}


class ConfigError(Exception):
    """A configuration problem, rendered as one line: file, key, problem and fix."""

    def __init__(self, source: str, key: str, problem: str, fix: str) -> None:
        self.source, self.key, self.problem, self.fix = source, key, problem, fix
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(f"{where}{problem}. Fix: {fix}")


@dataclass(frozen=True)
class CollectSettings:
    """How streams are polled, and how patient requests are."""

    interval_seconds: int = 300
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 20.0
    max_pages: int = 50
    max_attempts: int = 3
    max_rate_limit_wait_seconds: float = 10.0


@dataclass(frozen=True)
class DaemonSettings:
    """How ``touchpoint run`` schedules its jobs and how long it lets each one take."""

    max_jitter_seconds: float = 30.0  # random delay added to each run (at most 10% of interval)
    job_deadline_seconds: float = 600.0  # a stream's run stops after the page in flight
    alerts_interval_seconds: int = 60  # classify what is new, evaluate and deliver alerts
    shutdown_grace_seconds: float = 8.0  # SIGTERM: wait this long for jobs in flight


@dataclass(frozen=True)
class PlatformSettings:
    """One platform's API endpoint, page size, interval and the names of its secret variables."""

    name: str
    api_base: str
    secret_env: Mapping[str, str]
    page_size: int
    interval_seconds: int
    optional_secret_env: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)


SELF_PROMOTION_PRESETS = {"80-20": 0.2, "4-1-1": 1 / 6, "thirds": 1 / 3}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class AlertPolicy:
    """When the alert rules fire; ``[alerts]`` sets it, a brand's ``alerts`` table overrides it."""

    warn_after_minutes: int = 60
    breach_after_minutes: int = 1440
    business_hours: str = ""  # "09:00-17:00" in the brand's time zone; "" = around the clock
    business_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    ignore_older_than_days: int = 14
    self_promotion_max_share: float = 0.2
    self_promotion_window_days: int = 14
    self_promotion_last_posts: int = 0  # 0: judge the window in days instead
    self_promotion_min_posts: int = 10
    health_failures: int = 3
    stale_after_intervals: int = 6
    repeat_hours: float = 4.0
    channels: tuple[str, ...] = ()  # () = every configured channel


@dataclass(frozen=True)
class ChannelSettings:
    """One alert channel: its type, plain options and the names of its secret variables."""

    name: str
    type: str
    options: Mapping[str, Any]
    secret_env: Mapping[str, str]


@dataclass(frozen=True)
class DigestSettings:
    """The daily digest by email: ``[digest]``; off (no recipients) when the section is absent."""

    recipients: tuple[str, ...] = ()
    send_time: str = "08:00"  # HH:MM in each brand's time zone: yesterday's digest goes out after
    channel: str = ""  # the [alerts.channels.NAME] of type email whose SMTP settings are used
    sender: str = ""  # the From address; "" = the channel's sender

    @property
    def enabled(self) -> bool:
        """Whether digests are emailed (``touchpoint digest`` prints or writes them anyway)."""
        return bool(self.recipients and self.channel)


@dataclass(frozen=True)
class BrandSettings:
    """A brand: its accounts per platform and the keywords to listen for."""

    name: str
    accounts: Mapping[str, str]
    keywords: tuple[str, ...] = ()
    timezone: str = "UTC"
    alerts: AlertPolicy = AlertPolicy()


@dataclass(frozen=True)
class Settings:
    """The whole validated configuration."""

    source: Path
    db_path: Path
    collect: CollectSettings
    platforms: Mapping[str, PlatformSettings]
    brands: tuple[BrandSettings, ...]
    channels: Mapping[str, ChannelSettings] = field(default_factory=dict)
    model_path: Path | None = None  # a retrained classifier; None = the shipped model
    digest: DigestSettings = DigestSettings()
    daemon: DaemonSettings = DaemonSettings()

    def brand(self, name: str) -> BrandSettings:
        """Return the brand called ``name``, or raise a ConfigError listing the known ones."""
        for brand in self.brands:
            if brand.name == name:
                return brand
        known = ", ".join(b.name for b in self.brands)
        raise ConfigError(
            str(self.source), "brands", f"no brand named {name!r}", f"use one of: {known}"
        )

    def optional_secret(self, platform: str, name: str) -> str | None:
        """Read an optional platform secret; None when its variable is unset or empty."""
        env = self.platforms[platform].optional_secret_env[name]
        value = os.environ.get(env, "").strip()
        # a login name is public (often the brand's own handle): masking it would hide the brand
        if value and name not in PUBLIC_ENV_VALUES:
            register_secret(value)
        return value or None

    def secret(self, platform: str, name: str) -> str:
        """Read a platform secret from the environment variable the config names."""
        env = self.platforms[platform].secret_env[name]
        value = os.environ.get(env, "")
        if not value.strip():
            raise ConfigError(
                str(self.source),
                f"platforms.{platform}.{name}_env",
                f"environment variable {env} is not set",
                f"export {env}=<your {platform} {name.replace('_', ' ')}> before you run it",
            )
        register_secret(value.strip())
        return value.strip()

    def channel_secret(self, channel: str, name: str) -> str | None:
        """Read a channel's secret from the variable the config names (None when not named)."""
        settings = self.channels[channel]
        env = settings.secret_env.get(name)
        if env is None:
            return None
        value = os.environ.get(env, "").strip()
        if not value:
            raise ConfigError(
                str(self.source),
                f"alerts.channels.{channel}.{name}_env",
                f"environment variable {env} is not set",
                f"export {env}=... before you run it",
            )
        if name not in PUBLIC_ENV_VALUES:
            register_secret(value)
        return value

    def platforms_in_use(self) -> list[str]:
        """Return the platforms at least one brand has an account on, in a stable order."""
        used = {p for brand in self.brands for p in brand.accounts}
        return [p for p in PLATFORM_DEFAULTS if p in used]

    def check_secrets(self) -> None:
        """Raise ConfigError for the first secret a platform in use is missing."""
        for platform in self.platforms_in_use():
            for name in self.platforms[platform].secret_env:
                self.secret(platform, name)


def template_text() -> str:
    """Return the starter configuration that ``touchpoint init`` writes."""
    return (files("monitor") / "config_template.toml").read_text(encoding="utf-8")


def default_config_path() -> Path:
    """Return the config path: $TOUCHPOINT_CONFIG, else ./touchpoint.toml."""
    return Path(os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG_NAME)


def load_settings(path: Path) -> Settings:
    """Read and validate the TOML file at ``path``."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            source, "", "no such file", "run `touchpoint init` to write one, or pass --config"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            source, "", f"cannot read it ({exc})", "check the path and its permissions"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            source, "", f"not valid TOML ({exc})", "correct the syntax there"
        ) from None
    return parse_settings(data, path)


def parse_settings(data: Mapping[str, Any], path: Path) -> Settings:
    """Validate already-parsed TOML data; ``path`` names the file in errors and anchors paths."""
    v = _Validator(str(path))
    v.known_keys(
        data,
        "",
        {"store", "collect", "platforms", "brands", "alerts", "classifier", "daemon", "digest"},
    )
    collect = _parse_collect(v, v.table(data, "collect"))
    platforms = _parse_platforms(v, v.table(data, "platforms"), collect)
    alerts = v.table(data, "alerts")
    rule_keys = {k: value for k, value in alerts.items() if k != "channels"}  # channels: tables
    policy = _parse_policy(v, rule_keys, "alerts", AlertPolicy(), extra=set())
    channels = _parse_channels(v, v.table(alerts, "channels", prefix="alerts"))
    brands = _parse_brands(v, data, policy)
    for brand in brands:
        for name in brand.alerts.channels:
            if name not in channels:
                raise v.error(
                    f"brands[{brand.name}].alerts.channels",
                    f"no channel named {name!r}",
                    f"define [alerts.channels.{name}] or use one of: "
                    f"{', '.join(channels) or '(none defined)'}",
                )
    return Settings(
        source=path,
        db_path=_parse_db_path(v, v.table(data, "store"), path),
        collect=collect,
        platforms=platforms,
        brands=brands,
        channels=channels,
        model_path=_parse_model_path(v, v.table(data, "classifier"), path),
        daemon=_parse_daemon(v, v.table(data, "daemon")),
        digest=_parse_digest(v, data, channels),
    )


def _parse_model_path(v: _Validator, table: Mapping[str, Any], path: Path) -> Path | None:
    v.known_keys(table, "classifier", {"model_path"})
    raw = table.get("model_path", "")
    if raw == "":
        return None
    model = Path(v.string(table, "classifier", "model_path")).expanduser()
    return model if model.is_absolute() else path.parent / model


_POLICY_KEYS = {
    "warn_after_minutes": (1, 100_000),
    "breach_after_minutes": (1, 1_000_000),
    "ignore_older_than_days": (1, 3650),
    "self_promotion_window_days": (1, 365),
    "self_promotion_last_posts": (0, 10_000),
    "self_promotion_min_posts": (1, 10_000),
    "health_failures": (1, 1000),
    "stale_after_intervals": (1, 1000),
}


def _parse_policy(
    v: _Validator, table: Mapping[str, Any], key: str, base: AlertPolicy, *, extra: set[str]
) -> AlertPolicy:
    allowed = {
        *_POLICY_KEYS,
        "business_hours",
        "business_days",
        "self_promotion",
        "repeat_hours",
        *extra,
    }
    v.known_keys(table, key, allowed)
    values: dict[str, Any] = {
        name: v.integer(table, key, name, getattr(base, name), low, high)
        for name, (low, high) in _POLICY_KEYS.items()
    }
    values["repeat_hours"] = v.number(table, key, "repeat_hours", base.repeat_hours, 0.05, 720)
    values["self_promotion_max_share"] = _self_promotion(v, table, key, base)
    values["business_hours"] = _business_hours(v, table, key, base.business_hours)
    days = v.string_list(table, key, "business_days") if "business_days" in table else None
    if days is not None and (not days or any(d.lower() not in WEEKDAYS for d in days)):
        raise v.error(
            f"{key}.business_days",
            f"must be days among {', '.join(WEEKDAYS)}",
            'write business_days = ["mon", "tue", "wed", "thu", "fri"]',
        )
    values["business_days"] = tuple(d.lower() for d in days) if days else base.business_days
    if "channels" in table:
        values["channels"] = tuple(v.string_list(table, key, "channels"))
    policy = AlertPolicy(**{**base.__dict__, **values})
    if policy.breach_after_minutes < policy.warn_after_minutes:
        raise v.error(
            f"{key}.breach_after_minutes",
            "is shorter than warn_after_minutes",
            "make the breach later than the warning",
        )
    return policy


def _self_promotion(v: _Validator, table: Mapping[str, Any], key: str, base: AlertPolicy) -> float:
    value = table.get("self_promotion", base.self_promotion_max_share)
    if isinstance(value, str) and value in SELF_PROMOTION_PRESETS:
        return SELF_PROMOTION_PRESETS[value]
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1:
        return float(value)
    raise v.error(
        f"{key}.self_promotion",
        f"{value!r} is neither a share nor a preset",
        'write a share such as 0.2, or one of "80-20", "4-1-1", "thirds"',
    )


def _business_hours(v: _Validator, table: Mapping[str, Any], key: str, default: str) -> str:
    value = table.get("business_hours", default)
    if value == "":
        return ""
    match = isinstance(value, str) and re.fullmatch(r"(\d\d):(\d\d)-(\d\d):(\d\d)", value)
    if not match or not (
        int(match[1]) < 24
        and int(match[3]) <= 24
        and int(match[2]) < 60
        and int(match[4]) < 60
        and match[1] + match[2] < match[3] + match[4]
    ):
        raise v.error(
            f"{key}.business_hours",
            f"{value!r} is not a time range",
            'write business_hours = "09:00-17:00", or "" for around the clock',
        )
    return str(value)


CHANNEL_KEYS: dict[str, tuple[set[str], set[str]]] = {
    # type: (plain option keys, secret names read from *_env keys)
    "email": (
        {"host", "port", "security", "sender", "recipients", "timeout_seconds"},
        {"username", "password"},
    ),
    "slack": ({"timeout_seconds", "allow_private_addresses"}, {"webhook_url"}),
    "webhook": ({"url", "timeout_seconds", "allow_private_addresses"}, {"secret"}),
    "log": (set(), set()),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "email": ("host", "sender", "recipients"),
    "slack": ("webhook_url_env",),
    "webhook": ("url",),
    "log": (),
}


def _parse_channels(v: _Validator, table: Mapping[str, Any]) -> dict[str, ChannelSettings]:
    channels = {}
    for name in table:
        key = f"alerts.channels.{name}"
        section = v.table(table, name, prefix="alerts.channels")
        kind = section.get("type")
        if kind not in CHANNEL_KEYS:
            raise v.error(
                f"{key}.type",
                f"{kind!r} is not a channel type",
                f"use one of: {', '.join(CHANNEL_KEYS)}",
            )
        plain, secrets = CHANNEL_KEYS[kind]
        v.known_keys(section, key, {"type", *plain, *(f"{s}_env" for s in secrets)})
        for required in _REQUIRED[kind]:
            if required not in section:
                raise v.error(
                    f"{key}.{required}",
                    "is missing",
                    f"add {required} = ... (see config.example.toml)",
                )
        channels[name] = ChannelSettings(
            name=name,
            type=kind,
            options=_channel_options(v, section, key, plain),
            secret_env={
                s: v.env_name(section, key, f"{s}_env", default="X")
                for s in secrets
                if f"{s}_env" in section
            },
        )
    return channels


def _channel_options(
    v: _Validator, section: Mapping[str, Any], key: str, plain: set[str]
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in plain & set(section):
        value = section[name]
        if name == "recipients":
            options[name] = tuple(v.string_list(section, key, name))
        elif name == "port":
            options[name] = v.integer(section, key, name, 587, 1, 65535)
        elif name == "timeout_seconds":
            options[name] = v.number(section, key, name, 10, 0.1, 300)
        elif name == "allow_private_addresses":
            if not isinstance(value, bool):
                raise v.error(f"{key}.{name}", "must be true or false", f"write {name} = false")
            options[name] = value
        elif name == "security":
            if value not in ("starttls", "ssl", "none"):
                raise v.error(
                    f"{key}.security",
                    f"{value!r} is not a security mode",
                    'use "starttls", "ssl" or "none"',
                )
            options[name] = value
        else:
            options[name] = v.string(section, key, name)
    return options


_ADDRESS = re.compile(r"[^@\s\x00-\x1f\x7f<>,;\"]+@[A-Za-z0-9.-]+")


def _parse_digest(
    v: _Validator, data: Mapping[str, Any], channels: Mapping[str, ChannelSettings]
) -> DigestSettings:
    if "digest" not in data:
        return DigestSettings()
    table = v.table(data, "digest")
    v.known_keys(table, "digest", set(DigestSettings.__dataclass_fields__))
    send_time = v.string(table, "digest", "send_time", default="08:00")
    match = re.fullmatch(r"(\d\d):(\d\d)", send_time)
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise v.error(
            "digest.send_time",
            f"{send_time!r} is not a time of day",
            'write send_time = "08:00" (HH:MM in the brand\'s time zone)',
        )
    channel = _digest_channel(v, table, channels)
    recipients = tuple(v.string_list(table, "digest", "recipients"))
    sender = table.get("sender", "")
    examples = {"recipients": '["social@example.com"]', "sender": '"touchpoint@example.com"'}
    for key, address in [("recipients", r) for r in recipients] + [("sender", sender)]:
        if address and not (isinstance(address, str) and _ADDRESS.fullmatch(address)):
            raise v.error(
                f"digest.{key}",
                f"{address!r} is not an email address",
                f"write a plain address, e.g. {key} = {examples[key]}",
            )
    return DigestSettings(
        recipients=recipients or tuple(channels[channel].options.get("recipients", ())),
        send_time=send_time,
        channel=channel,
        sender=sender,
    )


def _digest_channel(
    v: _Validator, table: Mapping[str, Any], channels: Mapping[str, ChannelSettings]
) -> str:
    emails = [name for name, c in channels.items() if c.type == "email"]
    if "channel" in table:
        name = v.string(table, "digest", "channel")
        if name not in emails:
            raise v.error(
                "digest.channel",
                f"no email channel named {name!r}",
                f"use one of: {', '.join(emails)}"
                if emails
                else f'define [alerts.channels.{name}] with type = "email"',
            )
        return name
    if len(emails) != 1:
        problem = "several email channels" if emails else "no email channel to send the digest by"
        raise v.error(
            "digest.channel",
            problem,
            f"name one: channel = {json.dumps(emails[0])} (one of {', '.join(emails)})"
            if emails
            else 'define an [alerts.channels.NAME] with type = "email" (see config.example.toml)',
        )
    return emails[0]


def _parse_db_path(v: _Validator, store: Mapping[str, Any], path: Path) -> Path:
    v.known_keys(store, "store", {"path"})
    override = os.environ.get(ENV_DB)
    if override:
        return Path(override)
    raw = v.string(store, "store", "path", default="touchpoint.db")
    db_path = Path(raw).expanduser()
    return db_path if db_path.is_absolute() else path.parent / db_path


def _parse_daemon(v: _Validator, table: Mapping[str, Any]) -> DaemonSettings:
    d = DaemonSettings()
    v.known_keys(table, "daemon", set(DaemonSettings.__dataclass_fields__))
    return DaemonSettings(
        max_jitter_seconds=v.number(
            table, "daemon", "max_jitter_seconds", d.max_jitter_seconds, 0, 3600
        ),
        job_deadline_seconds=v.number(
            table, "daemon", "job_deadline_seconds", d.job_deadline_seconds, 1, 86400
        ),
        alerts_interval_seconds=v.integer(
            table, "daemon", "alerts_interval_seconds", d.alerts_interval_seconds, 1, 86400
        ),
        shutdown_grace_seconds=v.number(
            table, "daemon", "shutdown_grace_seconds", d.shutdown_grace_seconds, 0, 60
        ),
    )


def _parse_collect(v: _Validator, table: Mapping[str, Any]) -> CollectSettings:
    d = CollectSettings()
    v.known_keys(table, "collect", set(CollectSettings.__dataclass_fields__))
    return CollectSettings(
        interval_seconds=v.integer(
            table, "collect", "interval_seconds", d.interval_seconds, 1, 86400
        ),
        connect_timeout_seconds=v.number(
            table, "collect", "connect_timeout_seconds", d.connect_timeout_seconds, 0.1, 120
        ),
        read_timeout_seconds=v.number(
            table, "collect", "read_timeout_seconds", d.read_timeout_seconds, 0.1, 300
        ),
        max_pages=v.integer(table, "collect", "max_pages", d.max_pages, 1, 10000),
        max_attempts=v.integer(table, "collect", "max_attempts", d.max_attempts, 1, 10),
        max_rate_limit_wait_seconds=v.number(
            table, "collect", "max_rate_limit_wait_seconds", d.max_rate_limit_wait_seconds, 0, 900
        ),
    )


def _parse_platforms(
    v: _Validator, table: Mapping[str, Any], collect: CollectSettings
) -> dict[str, PlatformSettings]:
    v.known_keys(table, "platforms", set(PLATFORM_DEFAULTS))
    result = {}
    for name, defaults in PLATFORM_DEFAULTS.items():
        key = f"platforms.{name}"
        section = v.table(table, name, prefix="platforms")
        secret_keys = {f"{s}_env" for s in (*defaults.secrets, *defaults.optional_secrets)}
        allowed = {"api_base", "page_size", "interval_seconds", *secret_keys, *defaults.options}
        v.known_keys(section, key, allowed)
        api_base = v.string(section, key, "api_base", default=defaults.api_base).rstrip("/")
        if not re.match(r"^https?://[^\s/]+", api_base):
            raise v.error(
                f"{key}.api_base",
                f"{api_base!r} is not an http(s) URL",
                f'use e.g. api_base = "{defaults.api_base}"',
            )
        result[name] = PlatformSettings(
            name=name,
            api_base=api_base,
            secret_env=_env_names(v, section, key, defaults.secrets),
            page_size=v.integer(
                section,
                key,
                "page_size",
                defaults.page_size,
                defaults.min_page_size,
                defaults.max_page_size,
            ),
            interval_seconds=v.integer(
                section, key, "interval_seconds", collect.interval_seconds, 1, 86400
            ),
            optional_secret_env=_env_names(v, section, key, defaults.optional_secrets),
            options={
                option: v.option(section, key, option, default)
                for option, default in defaults.options.items()
            },
        )
    return result


def _env_names(
    v: _Validator, section: Mapping[str, Any], key: str, defaults: Mapping[str, str]
) -> dict[str, str]:
    return {s: v.env_name(section, key, f"{s}_env", default=env) for s, env in defaults.items()}


def _parse_brands(
    v: _Validator, data: Mapping[str, Any], policy: AlertPolicy
) -> tuple[BrandSettings, ...]:
    raw = data.get("brands")
    if not isinstance(raw, list) or not raw:
        raise v.error(
            "brands",
            "no brand is configured",
            'add a [[brands]] table with name = "yourbrand" and an [brands.accounts] table',
        )
    brands: list[BrandSettings] = []
    for i, entry in enumerate(raw):
        key = f"brands[{i}]"
        if not isinstance(entry, dict):
            raise v.error(key, "must be a table", "write it as a [[brands]] section")
        brands.append(_parse_brand(v, entry, key, policy))
    names = [b.name for b in brands]
    for name in names:
        if names.count(name) > 1:
            raise v.error(
                "brands", f"the brand name {name!r} is used twice", "give each brand its own name"
            )
    return tuple(brands)


def _parse_brand(
    v: _Validator, entry: Mapping[str, Any], key: str, policy: AlertPolicy
) -> BrandSettings:
    v.known_keys(entry, key, {"name", "accounts", "keywords", "timezone", "alerts"})
    name = v.string(entry, key, "name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise v.error(
            f"{key}.name",
            f"{name!r} is not a valid brand name",
            "use letters, digits, '.', '_' or '-' (at most 64)",
        )
    accounts_table = v.table(entry, "accounts", prefix=key)
    if not accounts_table:
        raise v.error(
            f"{key}.accounts",
            "no account is configured",
            'add e.g. accounts = { x = "yourhandle" }',
        )
    v.known_keys(accounts_table, f"{key}.accounts", set(PLATFORM_DEFAULTS))
    accounts = {}
    for platform in accounts_table:
        handle = v.string(accounts_table, f"{key}.accounts", platform).lstrip("@")
        if not handle or any(c.isspace() for c in handle):
            raise v.error(
                f"{key}.accounts.{platform}",
                f"{handle!r} is not a handle",
                'write the account name without spaces, e.g. x = "acme"',
            )
        accounts[platform] = handle
    keywords = v.string_list(entry, key, "keywords")
    timezone = v.string(entry, key, "timezone", default="UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise v.error(
            f"{key}.timezone",
            f"unknown time zone {timezone!r}",
            'use an IANA name such as "Europe/Berlin" or "UTC"',
        ) from None
    alerts = _parse_policy(
        v, v.table(entry, "alerts", prefix=key), f"{key}.alerts", policy, extra={"channels"}
    )
    return BrandSettings(
        name=name, accounts=accounts, keywords=tuple(keywords), timezone=timezone, alerts=alerts
    )


class _Validator:
    """Small typed readers that raise ConfigError naming the file and the dotted key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(self.source, key, problem, fix)

    def known_keys(self, table: Mapping[str, Any], key: str, allowed: set[str]) -> None:
        for name in table:
            if name not in allowed:
                dotted = f"{key}.{name}" if key else name
                raise self.error(
                    dotted, "unknown key", f"remove it or use one of: {', '.join(sorted(allowed))}"
                )

    def table(self, data: Mapping[str, Any], name: str, *, prefix: str = "") -> Mapping[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            dotted = f"{prefix}.{name}" if prefix else name
            raise self.error(
                dotted,
                f"must be a table, not {type(value).__name__}",
                f"write it as a [{dotted}] section",
            )
        return value

    def string(
        self, table: Mapping[str, Any], key: str, name: str, *, default: str | None = None
    ) -> str:
        value = table.get(name, default)
        if value is None:
            raise self.error(f"{key}.{name}", "is missing", f'add {name} = "..."')
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"{key}.{name}", "must be a non-empty string", f'write {name} = "..."')
        return value.strip()

    def env_name(self, table: Mapping[str, Any], key: str, name: str, *, default: str) -> str:
        value = self.string(table, key, name, default=default)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise self.error(
                f"{key}.{name}",
                "must be the NAME of an environment variable, not the secret itself",
                f'write {name} = "{default}" and export {default} in the environment',
            )
        return value

    def option(
        self, table: Mapping[str, Any], key: str, name: str, default: str | list[str]
    ) -> str | tuple[str, ...]:
        if not isinstance(default, list):
            return self.string(table, key, name, default=default)
        values = self.string_list(table, key, name) if name in table else default
        if not values:
            raise self.error(
                f"{key}.{name}", "must not be empty", f"write {name} = {json.dumps(default)}"
            )
        return tuple(values)

    def string_list(self, table: Mapping[str, Any], key: str, name: str) -> list[str]:
        value = table.get(name, [])
        ok = isinstance(value, list) and all(isinstance(s, str) and s.strip() for s in value)
        if not ok:
            raise self.error(
                f"{key}.{name}",
                "must be a list of non-empty strings",
                f'write {name} = ["word", "#hashtag"]',
            )
        return [s.strip() for s in value]

    def integer(
        self, table: Mapping[str, Any], key: str, name: str, default: int, low: int, high: int
    ) -> int:
        value = table.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(
                f"{key}.{name}",
                f"must be a whole number from {low} to {high}, not {value!r}",
                f"write {name} = {default}",
            )
        return value

    def number(
        self, table: Mapping[str, Any], key: str, name: str, default: float, low: float, high: float
    ) -> float:
        value = table.get(name, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise self.error(
                f"{key}.{name}",
                f"must be a number from {low:g} to {high:g}, not {value!r}",
                f"write {name} = {default:g}",
            )
        return float(value)
