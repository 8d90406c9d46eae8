"""The notify layer: delivery channels (email, Slack, a generic JSON webhook, the log), the
message they carry and its safe renderings (:mod:`.message`), the cleaning of untrusted text that
the digest uses too (:mod:`.text`), and the URL guard's network side (:mod:`.urlguard`). The
alerts (rules, outbox, watchdog, heartbeat) and the digest send through it; it knows nothing of
either.

:data:`CHANNEL_TYPES` maps a config ``type`` to its class; :func:`build_channel` builds a named
channel from the validated settings (secrets read from the environment variables they name);
:func:`create_channel` builds one from plain options.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.config import ChannelSettings, ConfigError, Settings
from monitor.config.urls import url_fix
from monitor.logs import clean
from monitor.notify.base import Channel, DeliveryError
from monitor.notify.email import EmailChannel
from monitor.notify.log import LogChannel
from monitor.notify.slack import SlackChannel
from monitor.notify.webhook import WebhookChannel

__all__ = [
    "CHANNEL_TYPES",
    "Channel",
    "DeliveryError",
    "EmailChannel",
    "LogChannel",
    "SlackChannel",
    "WebhookChannel",
    "build_channel",
    "channel_url_error",
    "create_channel",
    "unusable_url",
]

CHANNEL_TYPES: Mapping[str, type[Channel]] = {
    "email": EmailChannel,
    "slack": SlackChannel,
    "webhook": WebhookChannel,
    "log": LogChannel,
}
DEFAULT_TIMEOUT = 10.0


def create_channel(kind: str, **options: Any) -> Channel:
    """A channel of type ``kind`` built from keyword options (``ValueError`` if unknown)."""
    try:
        cls = CHANNEL_TYPES[kind]
    except KeyError:
        known = ", ".join(sorted(CHANNEL_TYPES))
        raise ValueError(f"unknown channel type {kind!r}; use one of: {known}") from None
    return cls(**options)


def _options(settings: Settings, name: str) -> tuple[str, dict[str, Any]]:
    """The channel's type and constructor options from its config section and secrets."""
    config = settings.channels[name]
    opts = dict(config.options)
    kwargs: dict[str, Any] = {"name": name}
    if config.type != "log":
        kwargs["timeout"] = float(opts.pop("timeout_seconds", DEFAULT_TIMEOUT))
    if config.type in ("slack", "webhook"):
        kwargs["allow_private"] = bool(opts.pop("allow_private_addresses", False))
    if config.type == "email":
        kwargs.update(
            username=settings.channel_secret(name, "username"),
            password=settings.channel_secret(name, "password"),
        )
    elif config.type == "slack":
        kwargs["webhook_url"] = settings.channel_secret(name, "webhook_url")
    elif config.type == "webhook":
        kwargs["secret"] = settings.channel_secret(name, "secret")
        if "url" in config.secret_env:  # url_env: the URL is a secret, like Slack's
            kwargs.update(url=settings.channel_secret(name, "url"), secret_url=True)
    kwargs.update(opts)
    return config.type, kwargs


def build_channel(settings: Settings, name: str) -> Channel:
    """The channel configured as ``[alerts.channels.NAME]``; ``"log"`` works unconfigured.
    Raises :class:`ConfigError` (one line, naming the key and the fix) when its URL is unusable,
    as ``check-config`` does: ``run``, ``collect`` and ``alerts test`` say the same."""
    if name not in settings.channels and name == "log":
        return LogChannel(name=name)
    kind, options = _options(settings, name)
    try:
        return create_channel(kind, **options)
    except (ValueError, OSError) as exc:
        raise channel_url_error(settings, name, exc) from None


def channel_url_error(settings: Settings, name: str, exc: Exception) -> ConfigError:
    """The error for channel ``name`` whose URL failed its check with ``exc``."""
    key, variable = _url_source(name, settings.channels[name])
    return unusable_url(settings, key, exc, "allow_private_addresses", variable=variable)


def _url_source(name: str, config: ChannelSettings) -> tuple[str, str | None]:
    """The config key a channel's URL comes from, and the variable holding it when it is a
    secret (Slack's webhook_url_env, a webhook's url_env)."""
    for secret in ("webhook_url", "url"):
        if secret in config.secret_env:
            return f"alerts.channels.{name}.{secret}_env", config.secret_env[secret]
    if "url" in config.options:
        return f"alerts.channels.{name}.url", None
    return f"alerts.channels.{name}", None


def unusable_url(
    settings: Settings, key: str, exc: Exception, allow_key: str, *, variable: str | None = None
) -> ConfigError:
    """The error for the URL (or channel) at ``key`` that failed its check with ``exc``, with
    the fix for what failed; when it was refused as private, the fix names the ``allow_key``
    that lets it through. ``variable``: the one the URL was read from, when it is a secret
    (the error says where the URL is, never what it is)."""
    problem, fix = clean(str(exc)), url_fix(str(exc), allow_key)
    if variable is not None:
        problem, fix = f"the URL in {variable}: {problem}", f"in {variable}, {fix}"
    return ConfigError(str(settings.source), key, problem, fix)
