"""Find, read and parse the config file into :class:`Settings`.

``parse_settings`` checks the top-level keys and parses every section; the alert ones (``[alerts]``,
its channels, ``[digest]``) are parsed in :mod:`.alerts`.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.config.alerts import RULE_KEYS, parse_channels, parse_digest, parse_policy
from monitor.config.platforms import platforms
from monitor.config.settings import (
    DEFAULT_CONFIG_NAME,
    ENV_CONFIG,
    ENV_DB,
    RUNS_KEEP_DAYS,
    AlertPolicy,
    BrandSettings,
    CollectSettings,
    ConfigError,
    DaemonSettings,
    PlatformSettings,
    Settings,
)
from monitor.config.validate import _Validator
from monitor.models import STREAMS, Stream


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
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors write one) is dropped
    except FileNotFoundError:
        fix = "run `touchpoint init` to write one, or pass --config"
        if path != default_config_path():  # a path given: a typo, or a file yet to write
            fix = f"check the path, or run `touchpoint init {shlex.quote(source)}` to write one"
        raise ConfigError(source, "", "no such file", fix) from None
    except UnicodeDecodeError as exc:
        where = f"byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r}"
        raise ConfigError(
            source, "", f"not UTF-8 text ({where})", "save it as UTF-8 in your editor"
        ) from None
    except OSError as exc:
        raise ConfigError(
            source,
            "",
            f"cannot read it ({exc.strerror or exc})",
            "check the path and its permissions",
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
    policy = parse_policy(v, rule_keys, "alerts", AlertPolicy(), extra=set())
    channels = parse_channels(v, v.table(alerts, "channels", prefix="alerts"))
    brands = _parse_brands(v, data, policy)
    daemon = _parse_daemon(v, v.table(data, "daemon"))
    named = [(f"brands[{b.name}].alerts.channels", b.alerts.channels) for b in brands]
    for key, names in [*named, ("daemon.watchdog_channels", daemon.watchdog_channels)]:
        for name in names:
            if name not in channels:
                raise v.error(
                    key,
                    f"no channel named {name!r}",
                    f"define [alerts.channels.{name}] or use one of: "
                    f"{', '.join(channels) or '(none defined)'}",
                )
    return Settings(
        source=path,
        db_path=_parse_db_path(v, v.table(data, "store"), path),
        runs_keep_days=v.integer(
            v.table(data, "store"), "store", "runs_keep_days", RUNS_KEEP_DAYS, 7, 36500
        ),
        collect=collect,
        platforms=platforms,
        brands=brands,
        channels=channels,
        model_path=_parse_model_path(v, v.table(data, "classifier"), path),
        accurate_classifier=v.boolean(v.table(data, "classifier"), "classifier", "accurate", False),
        daemon=daemon,
        digest=parse_digest(v, data, channels, brands),
    )


def _parse_model_path(v: _Validator, table: Mapping[str, Any], path: Path) -> Path | None:
    v.known_keys(table, "classifier", {"model_path", "accurate"})
    raw = table.get("model_path", "")
    if raw == "":
        return None
    model = Path(v.string(table, "classifier", "model_path")).expanduser()
    return model if model.is_absolute() else path.parent / model


def _parse_db_path(v: _Validator, store: Mapping[str, Any], path: Path) -> Path:
    v.known_keys(store, "store", {"path", "runs_keep_days"})
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
        wal_alert_megabytes=v.number(
            table, "daemon", "wal_alert_megabytes", d.wal_alert_megabytes, 1, 1_000_000
        ),
        watchdog_after_seconds=v.number(
            table, "daemon", "watchdog_after_seconds", d.watchdog_after_seconds, 10, 86400
        ),
        watchdog_channels=tuple(
            v.string_list(table, "daemon", "watchdog_channels", example='"slack"')
        ),
        heartbeat_url_env=(
            v.env_name(table, "daemon", "heartbeat_url_env", default="TOUCHPOINT_HEARTBEAT_URL")
            if table.get("heartbeat_url_env", "") != ""
            else ""
        ),
        heartbeat_seconds=v.number(
            table, "daemon", "heartbeat_seconds", d.heartbeat_seconds, 10, 86400
        ),
        heartbeat_allow_private_addresses=v.boolean(
            table, "daemon", "heartbeat_allow_private_addresses", False
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
    registered = platforms()
    v.known_keys(table, "platforms", set(registered))
    result = {}
    for name, spec in registered.items():
        defaults = spec.defaults
        key = f"platforms.{name}"
        section = v.table(table, name, prefix="platforms")
        secret_keys = {f"{s}_env" for s in (*defaults.secrets, *defaults.optional_secrets)}
        allowed = {"api_base", "page_size", "interval_seconds", "streams", *secret_keys}
        allowed |= set(defaults.options)
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
            streams=_parse_streams(v, section, key),
        )
    return result


def _parse_streams(v: _Validator, section: Mapping[str, Any], key: str) -> tuple[Stream, ...]:
    """The streams a platform collects (all by default), in their usual order; "posts" must be
    among them: a channel is judged by the brand's own posts."""
    if "streams" not in section:
        return STREAMS
    every = ", ".join(f'"{s}"' for s in STREAMS)
    names = v.string_list(section, key, "streams", example=every)
    for name in names:
        if name not in STREAMS:
            raise v.error(f"{key}.streams", f"unknown stream {name!r}", f"use some of: {every}")
    if "posts" not in names:
        raise v.error(
            f"{key}.streams",
            '"posts" is left out, and a channel is judged by the brand\'s own posts',
            f'keep "posts" (e.g. streams = ["posts", "keywords"]), or remove the brands\' '
            f"accounts on {key.removeprefix('platforms.')}",
        )
    return tuple(s for s in STREAMS if s in names)


def _env_names(
    v: _Validator, section: Mapping[str, Any], key: str, defaults: Mapping[str, str]
) -> dict[str, str]:
    return {s: v.env_name(section, key, f"{s}_env", default=env) for s, env in defaults.items()}


BRAND_KEYS = frozenset(
    {"name", "accounts", "keywords", "timezone", "alerts", "digest_recipients", "answered_by"}
)
_BRAND_KEY = (
    "a key of [[brands]]",
    "move it up, above the brand's [brands.accounts] and [brands.alerts] lines",
)
# keys that belong to another table, found below a brand's [brands.accounts] / [brands.alerts]:
# what each is, and the fix
_MISPLACED_IN_ACCOUNTS = {
    **dict.fromkeys(BRAND_KEYS, _BRAND_KEY),
    **dict.fromkeys(
        {*RULE_KEYS, "channels"},
        ("an alert key", "move it under a [brands.alerts] header, or into [alerts]"),
    ),
}
_ACCOUNT = ("an account", "move it under the brand's [brands.accounts]")


def _misplaced_in_alerts() -> dict[str, tuple[str, str]]:
    """Keys found below a brand's [brands.alerts] that belong elsewhere: the brand's keys and
    the registered platforms' names (read from the registry, so not at import)."""
    return {**dict.fromkeys(BRAND_KEYS, _BRAND_KEY), **dict.fromkeys(platforms(), _ACCOUNT)}


def _parse_brands(
    v: _Validator, data: Mapping[str, Any], policy: AlertPolicy
) -> tuple[BrandSettings, ...]:
    raw = data.get("brands")
    if isinstance(raw, dict):
        raise v.error(
            "brands",
            "is a single [brands] table, but each brand is an entry of the [[brands]] list",
            "write the brand's header with two brackets: [[brands]]",
        )
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
    for brand in brands:
        for other in brand.answered_by:
            if other == brand.name or other not in names:
                raise v.error(
                    f"brands[{brand.name}].answered_by",
                    f"{other!r} is not another configured brand",
                    "name the [[brands]] entries whose replies answer this brand's mentions "
                    f"(configured: {', '.join(names)})",
                )
    return tuple(brands)


def _parse_brand(
    v: _Validator, entry: Mapping[str, Any], key: str, policy: AlertPolicy
) -> BrandSettings:
    # digest_recipients is read with [digest], in .alerts.parse_digest
    v.known_keys(entry, key, BRAND_KEYS)
    name = v.string(entry, key, "name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise v.error(
            f"{key}.name",
            f"{name!r} is not a valid brand name",
            "use letters, digits, '.', '_' or '-' (at most 64)",
        )
    accounts_table = v.table(entry, "accounts", prefix=key)
    _misplaced(v, accounts_table, f"{key}.accounts", "brands.accounts", _MISPLACED_IN_ACCOUNTS)
    if not accounts_table:
        raise v.error(
            f"{key}.accounts",
            "no account is configured",
            'add e.g. accounts = { x = "yourhandle" }',
        )
    v.known_keys(accounts_table, f"{key}.accounts", set(platforms()))
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
    alerts_table = v.table(entry, "alerts", prefix=key)
    _misplaced(v, alerts_table, f"{key}.alerts", "brands.alerts", _misplaced_in_alerts())
    alerts = parse_policy(v, alerts_table, f"{key}.alerts", policy, extra={"channels"})
    return BrandSettings(
        name=name,
        accounts=accounts,
        keywords=tuple(keywords),
        timezone=timezone,
        alerts=alerts,
        answered_by=_answered_by(v, entry, key),
    )


def _misplaced(
    v: _Validator,
    table: Mapping[str, Any],
    key: str,
    header: str,
    elsewhere: Mapping[str, tuple[str, str]],
) -> None:
    """Name a key that belongs to another table. TOML puts every key below a ``[table]`` header in
    that table, so a key added at the end of the file lands in its last table, which in the
    template is the brand's ``[brands.accounts]``."""
    for name in table:
        if name in elsewhere:
            what, fix = elsewhere[name]
            raise v.error(
                f"{key}.{name}",
                f"is {what}, but it is below the [{header}] header, so it belongs to that table",
                fix,
            )


def _answered_by(v: _Validator, entry: Mapping[str, Any], key: str) -> tuple[str, ...]:
    names = v.string_list(entry, key, "answered_by", example='"acme-support"')
    return tuple(dict.fromkeys(names))
