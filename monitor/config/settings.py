"""The validated configuration: frozen dataclasses, the platform defaults type and ConfigError.

:class:`Settings` also reads the secrets: only from the environment variables the config names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.logs import register_secret
from monitor.models import STREAMS, Stream

ENV_CONFIG = "TOUCHPOINT_CONFIG"
ENV_DB = "TOUCHPOINT_DB"
DEFAULT_CONFIG_NAME = "touchpoint.toml"

RUNS_KEEP_DAYS = 90  # [store] runs_keep_days by default
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
    max_attempts: int = 4
    max_rate_limit_wait_seconds: float = 10.0


@dataclass(frozen=True)
class DaemonSettings:
    """How ``touchpoint run`` schedules its jobs and how long it lets each one take."""

    max_jitter_seconds: float = 30.0  # random delay added to each run (at most 10% of interval)
    job_deadline_seconds: float = 600.0  # a stream's run stops after the page in flight
    alerts_interval_seconds: int = 60  # classify what is new, evaluate and deliver alerts
    shutdown_grace_seconds: float = 8.0  # SIGTERM: wait this long for jobs in flight
    wal_alert_megabytes: float = 256.0  # alert when the store's -wal file grows past this
    # alerts due this long and not sent (or no alert pass finished): the watchdog tells these
    # channels directly, not through the outbox (() = every configured channel)
    watchdog_after_seconds: float = 900.0
    watchdog_channels: tuple[str, ...] = ()
    # a dead-man's switch: GET this URL (read from the variable named here; "" = off) every
    # heartbeat_seconds while alerts go out, so an uptime monitor elsewhere notices when they stop
    heartbeat_url_env: str = ""
    heartbeat_seconds: float = 300.0
    heartbeat_allow_private_addresses: bool = False


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
    streams: tuple[Stream, ...] = STREAMS  # the streams collected on it ("posts" always among them)


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
    group_interval_minutes: float = 5.0  # due alerts of a kind wait this long after the last
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
    """The daily digest by email: ``[digest]``, and the brands' own ``digest_recipients``; off
    (no recipients) when neither is there."""

    recipients: tuple[str, ...] = ()  # every brand's, unless it has its own in brand_recipients
    send_time: str = "08:00"  # HH:MM in each brand's time zone: yesterday's digest goes out after
    channel: str = ""  # the [alerts.channels.NAME] of type email whose SMTP settings are used
    sender: str = ""  # the From address; "" = the channel's sender
    # brand name -> its own ``digest_recipients`` (() = none); only the brands that set the key
    brand_recipients: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def recipients_for(self, brand: str) -> tuple[str, ...]:
        """Who gets ``brand``'s digest: its own ``digest_recipients``, else ``recipients``."""
        return self.brand_recipients.get(brand, self.recipients)

    @property
    def enabled(self) -> bool:
        """Whether digests are emailed (``touchpoint digest`` prints or writes them anyway): an
        email channel, and someone to send to (every brand's recipients or one brand's own)."""
        return bool(self.channel and (self.recipients or any(self.brand_recipients.values())))


@dataclass(frozen=True)
class BrandSettings:
    """A brand: its accounts per platform and the keywords to listen for."""

    name: str
    accounts: Mapping[str, str]
    keywords: tuple[str, ...] = ()
    timezone: str = "UTC"
    alerts: AlertPolicy = AlertPolicy()
    # other configured brands whose replies answer this brand's mentions (its support account)
    answered_by: tuple[str, ...] = ()


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
    accurate_classifier: bool = False  # add the mpnet part (the `accurate` extra; slower)
    digest: DigestSettings = DigestSettings()
    daemon: DaemonSettings = DaemonSettings()
    runs_keep_days: int = RUNS_KEEP_DAYS  # [store]: runs older than this are deleted

    @property
    def platform_streams(self) -> dict[str, tuple[str, ...]]:
        """Per platform, the streams ``[platforms.NAME] streams`` collects."""
        return {name: p.streams for name, p in self.platforms.items()}

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
                _missing(env),
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
                _missing(env),
                f"export {env}=... before you run it",
            )
        if name not in PUBLIC_ENV_VALUES:
            register_secret(value)
        return value

    def heartbeat_url(self) -> str | None:
        """The heartbeat's ping URL from the variable ``[daemon] heartbeat_url_env`` names (None
        when no variable is named)."""
        env = self.daemon.heartbeat_url_env
        if not env:
            return None
        value = os.environ.get(env, "").strip()
        if not value:
            raise ConfigError(
                str(self.source),
                "daemon.heartbeat_url_env",
                _missing(env),
                f"export {env}=<the ping URL your uptime monitor gave you> before you run it, "
                'or write heartbeat_url_env = "" to turn the heartbeat off',
            )
        register_secret(value)
        return value

    def platforms_in_use(self) -> list[str]:
        """Return the platforms at least one brand has an account on, in a stable order."""
        used = {p for brand in self.brands for p in brand.accounts}
        return [p for p in self.platforms if p in used]  # the registry's order

    def check_secrets(self) -> None:
        """Raise ConfigError for the first secret a platform in use is missing."""
        for platform in self.platforms_in_use():
            for name in self.platforms[platform].secret_env:
                self.secret(platform, name)


def _missing(env: str) -> str:
    """The problem with a secret's variable that holds nothing: unset, or set to blanks."""
    return f"environment variable {env} is {'empty' if env in os.environ else 'not set'}"
