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
class PlatformSettings:
    """One platform's API endpoint, page size, interval and the names of its secret variables."""

    name: str
    api_base: str
    secret_env: Mapping[str, str]
    page_size: int
    interval_seconds: int
    optional_secret_env: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class BrandSettings:
    """A brand: its accounts per platform and the keywords to listen for."""

    name: str
    accounts: Mapping[str, str]
    keywords: tuple[str, ...] = ()
    timezone: str = "UTC"


@dataclass(frozen=True)
class Settings:
    """The whole validated configuration."""

    source: Path
    db_path: Path
    collect: CollectSettings
    platforms: Mapping[str, PlatformSettings]
    brands: tuple[BrandSettings, ...]

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
    v.known_keys(data, "", {"store", "collect", "platforms", "brands"})
    collect = _parse_collect(v, v.table(data, "collect"))
    platforms = _parse_platforms(v, v.table(data, "platforms"), collect)
    brands = _parse_brands(v, data)
    return Settings(
        source=path,
        db_path=_parse_db_path(v, v.table(data, "store"), path),
        collect=collect,
        platforms=platforms,
        brands=brands,
    )


def _parse_db_path(v: _Validator, store: Mapping[str, Any], path: Path) -> Path:
    v.known_keys(store, "store", {"path"})
    override = os.environ.get(ENV_DB)
    if override:
        return Path(override)
    raw = v.string(store, "store", "path", default="touchpoint.db")
    db_path = Path(raw).expanduser()
    return db_path if db_path.is_absolute() else path.parent / db_path


def _parse_collect(v: _Validator, table: Mapping[str, Any]) -> CollectSettings:
    d = CollectSettings()
    v.known_keys(table, "collect", set(CollectSettings.__dataclass_fields__))
    return CollectSettings(
        interval_seconds=v.integer(
            table, "collect", "interval_seconds", d.interval_seconds, 10, 86400
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
                section, key, "interval_seconds", collect.interval_seconds, 10, 86400
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


def _parse_brands(v: _Validator, data: Mapping[str, Any]) -> tuple[BrandSettings, ...]:
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
        brands.append(_parse_brand(v, entry, key))
    names = [b.name for b in brands]
    for name in names:
        if names.count(name) > 1:
            raise v.error(
                "brands", f"the brand name {name!r} is used twice", "give each brand its own name"
            )
    return tuple(brands)


def _parse_brand(v: _Validator, entry: Mapping[str, Any], key: str) -> BrandSettings:
    v.known_keys(entry, key, {"name", "accounts", "keywords", "timezone"})
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
    return BrandSettings(name=name, accounts=accounts, keywords=tuple(keywords), timezone=timezone)


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
