"""The log channel (one safe line per message) and the channel registry built from the config."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from monitor.config import ChannelSettings, load_settings
from monitor.logs import clean, setup_logging
from monitor.notify import (
    CHANNEL_TYPES,
    EmailChannel,
    LogChannel,
    SlackChannel,
    WebhookChannel,
    build_channel,
    create_channel,
)
from monitor.notify.log import log_line
from monitor.notify.message import AlertItem, Message

FORGED = "line1\n2026-01-01 ERROR forged \x1b[31mred\x1b[0m\r\x00 <!channel>"


def message(severity: str = "warning") -> Message:
    """A message whose title and item try to forge log lines."""
    item = AlertItem(
        text=FORGED, url="https://x.com/p/1", author="a", platform="x", created_at="2026-01-01"
    )
    return Message(
        key="fp:1",
        brand="acme",
        kind="unanswered_mention",
        severity=severity,
        title=FORGED,
        summary="s",
        items=(item,) * 5,
    )


def test_log_line_is_one_escaped_line() -> None:
    line = log_line(message())
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\x00" not in line
    assert line.startswith('alert brand="acme" kind="unanswered_mention" severity="warning"')
    assert "items=5" in line
    title = line.split("title=", 1)[1].split(" items=", 1)[0]
    assert json.loads(title).startswith("line1 2026-01-01 ERROR forged red")


def test_log_channel_writes_one_record_per_message() -> None:
    stream = io.StringIO()
    setup_logging(logging.INFO, stream=stream)
    channel = LogChannel()
    channel.send(message())
    channel.send(message("critical"))
    channel.send(message("info"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert " WARNING monitor.alerts: alert " in lines[0]
    assert " ERROR monitor.alerts: alert " in lines[1]
    assert " WARNING monitor.alerts: alert " in lines[2]  # info still shows at WARNING


def test_log_channel_is_safe_without_the_project_filter(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="monitor.alerts"):
        LogChannel().send(message())
    (record,) = caplog.records
    assert "\n" not in record.getMessage() and "\x1b" not in record.getMessage()


def test_registry_has_the_four_types() -> None:
    assert set(CHANNEL_TYPES) == {"email", "slack", "webhook", "log"}
    assert isinstance(create_channel("log", name="audit"), LogChannel)
    with pytest.raises(ValueError, match="unknown channel type"):
        create_channel("pager")


CHANNELS = {
    "mail": ChannelSettings(
        name="mail",
        type="email",
        options={
            "host": "smtp.example.com",
            "port": 465,
            "security": "ssl",
            "sender": "alerts@example.com",
            "recipients": ("team@example.com",),
            "timeout_seconds": 3,
        },
        secret_env={"username": "TP_TEST_SMTP_USER", "password": "TP_TEST_SMTP_PASSWORD"},
    ),
    "chat": ChannelSettings(
        name="chat", type="slack", options={}, secret_env={"webhook_url": "TP_TEST_SLACK_URL"}
    ),
    "hook": ChannelSettings(
        name="hook",
        type="webhook",
        options={
            "url": "https://hooks.example.com/touchpoint",
            "allow_private_addresses": True,
            "timeout_seconds": 2.5,
        },
        secret_env={"secret": "TP_TEST_HOOK_SECRET"},
    ),
    "audit": ChannelSettings(name="audit", type="log", options={}, secret_env={}),
}


def test_build_channel_from_settings(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The options and secret names ``[alerts.channels.NAME]`` yields become channels."""
    monkeypatch.setenv("TP_TEST_SMTP_USER", "mailer")
    monkeypatch.setenv("TP_TEST_SMTP_PASSWORD", "SMTP-SECRET-PW")
    monkeypatch.setenv("TP_TEST_SLACK_URL", "https://hooks.slack.com/services/T1/B1/XYZSECRET")
    monkeypatch.setenv("TP_TEST_HOOK_SECRET", "HOOK-SECRET-1")
    settings = replace(load_settings(write_config("http://127.0.0.1:9")), channels=CHANNELS)
    mail = build_channel(settings, "mail")
    assert isinstance(mail, EmailChannel)
    assert (mail.name, mail.port, mail.security, mail.timeout) == ("mail", 465, "ssl", 3.0)
    assert "SMTP-SECRET-PW" not in repr(mail)
    chat = build_channel(settings, "chat")
    assert isinstance(chat, SlackChannel) and "XYZSECRET" not in repr(chat)
    hook = build_channel(settings, "hook")
    assert isinstance(hook, WebhookChannel) and hook.name == "hook"
    assert isinstance(build_channel(settings, "audit"), LogChannel)
    assert isinstance(build_channel(settings, "log"), LogChannel)  # the default, unconfigured


def test_build_webhook_channel_with_its_url_from_the_environment(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``url_env``: the URL comes from the variable and is a secret, path and all."""
    url = "https://discord.example/api/webhooks/1/DISCORD-TOKEN-PATH"
    monkeypatch.setenv("TP_TEST_HOOK_URL", url)
    channels = {
        "hook": ChannelSettings(
            name="hook", type="webhook", options={}, secret_env={"url": "TP_TEST_HOOK_URL"}
        )
    }
    settings = replace(load_settings(write_config("http://127.0.0.1:9")), channels=channels)
    hook = build_channel(settings, "hook")
    assert isinstance(hook, WebhookChannel) and hook._target.url == url
    assert "DISCORD-TOKEN-PATH" not in repr(hook) and "DISCORD-TOKEN-PATH" not in clean(url)
