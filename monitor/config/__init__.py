"""TOML configuration -> typed, validated settings; secrets come only from the environment.

Every problem is reported as one :class:`ConfigError` line naming the file, the key and the fix.

Callers import from this package (``from monitor.config import Settings``), never a module of it,
and the modules split it by subject:

- :mod:`.settings`: the frozen dataclasses (``Settings`` with its secret accessors,
  ``CollectSettings``, ``DaemonSettings``, ``PlatformSettings``, ``AlertPolicy``,
  ``ChannelSettings``, ``DigestSettings``, ``BrandSettings``, ``PlatformDefaults``), the
  constants and ``ConfigError``;
- :mod:`.platforms`: the platform registry (``platforms()``, read from the entry points
  ``touchpoint.platforms``) and what a platform declares (``Platform``, ``SandboxSpec``);
- :mod:`.validate`: ``_Validator``, the typed readers of TOML values that raise ConfigError;
- :mod:`.parse`: ``load_settings``, ``parse_settings``, ``default_config_path``,
  ``template_text`` and the sections' parsers (store, classifier, collect, daemon, platforms,
  brands);
- :mod:`.alerts`: the ``[alerts]`` policy (and a brand's override of it), the alert channels and
  ``[digest]``.

Imports among them point one way: parse -> alerts | platforms -> validate | settings.
"""

from __future__ import annotations

from monitor.config.alerts import CHANNEL_KEYS
from monitor.config.parse import (
    default_config_path,
    load_settings,
    parse_settings,
    template_text,
)
from monitor.config.platforms import (
    BUILTINS,
    GROUP,
    Platform,
    PlatformError,
    SandboxSpec,
    platform,
    platforms,
)
from monitor.config.settings import (
    DEFAULT_CONFIG_NAME,
    ENV_CONFIG,
    ENV_DB,
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
    "BUILTINS",
    "CHANNEL_KEYS",
    "DEFAULT_CONFIG_NAME",
    "ENV_CONFIG",
    "ENV_DB",
    "GROUP",
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
    "Platform",
    "PlatformDefaults",
    "PlatformError",
    "PlatformSettings",
    "SandboxSpec",
    "Settings",
    "default_config_path",
    "load_settings",
    "parse_settings",
    "platform",
    "platforms",
    "template_text",
]
