"""TOML configuration -> typed, validated settings; secrets come only from the environment.

Every problem is reported as one :class:`ConfigError` line naming the file, the key and the fix.

Callers import from this package (``from monitor.config import Settings``), never a module of it,
and the modules split it by subject:

- :mod:`.settings`: the frozen dataclasses (``Settings`` with its secret accessors,
  ``CollectSettings``, ``DaemonSettings``, ``PlatformSettings``, ``AlertPolicy``,
  ``ChannelSettings``, ``DigestSettings``, ``BrandSettings``), ``PLATFORM_DEFAULTS``, the
  constants and ``ConfigError``;
- :mod:`.validate`: ``_Validator``, the typed readers of TOML values that raise ConfigError;
- :mod:`.parse`: ``load_settings``, ``parse_settings``, ``default_config_path``,
  ``template_text`` and the sections' parsers (store, classifier, collect, daemon, platforms,
  brands);
- :mod:`.alerts`: the ``[alerts]`` policy (and a brand's override of it), the alert channels and
  ``[digest]``.

Imports among them point one way: parse -> alerts -> validate -> settings.
"""

from __future__ import annotations

from monitor.config.alerts import CHANNEL_KEYS
from monitor.config.parse import (
    default_config_path,
    load_settings,
    parse_settings,
    template_text,
)
from monitor.config.settings import (
    DEFAULT_CONFIG_NAME,
    ENV_CONFIG,
    ENV_DB,
    PLATFORM_DEFAULTS,
    PUBLIC_ENV_VALUES,
    SELF_PROMOTION_PRESETS,
    WEEKDAYS,
    AlertPolicy,
    BrandSettings,
    ChannelSettings,
    CollectSettings,
    ConfigError,
    DaemonSettings,
    DigestSettings,
    PlatformDefaults,
    PlatformSettings,
    Settings,
)
from monitor.models import STREAMS

__all__ = [
    "CHANNEL_KEYS",
    "DEFAULT_CONFIG_NAME",
    "ENV_CONFIG",
    "ENV_DB",
    "PLATFORM_DEFAULTS",
    "PUBLIC_ENV_VALUES",
    "SELF_PROMOTION_PRESETS",
    "STREAMS",
    "WEEKDAYS",
    "AlertPolicy",
    "BrandSettings",
    "ChannelSettings",
    "CollectSettings",
    "ConfigError",
    "DaemonSettings",
    "DigestSettings",
    "PlatformDefaults",
    "PlatformSettings",
    "Settings",
    "default_config_path",
    "load_settings",
    "parse_settings",
    "template_text",
]
