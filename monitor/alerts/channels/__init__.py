"""Delivery channels: email, Slack, a generic JSON webhook and the log.

:data:`CHANNEL_TYPES` maps a config ``type`` to its class; :func:`build_channel` builds a named
channel from the validated settings (secrets read from the environment variables they name);
:func:`create_channel` builds one from plain options.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.alerts.channels.base import Channel, DeliveryError
from monitor.alerts.channels.email import EmailChannel
from monitor.alerts.channels.log import LogChannel
from monitor.alerts.channels.slack import SlackChannel
from monitor.alerts.channels.webhook import WebhookChannel
from monitor.config import Settings

__all__ = [
    "CHANNEL_TYPES",
    "Channel",
    "DeliveryError",
    "EmailChannel",
    "LogChannel",
    "SlackChannel",
    "WebhookChannel",
    "build_channel",
    "create_channel",
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
    """The channel configured as ``[alerts.channels.NAME]``; ``"log"`` works unconfigured."""
    if name not in settings.channels and name == "log":
        return LogChannel(name=name)
    kind, options = _options(settings, name)
    return create_channel(kind, **options)
