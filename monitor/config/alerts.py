"""Parse the alert sections: ``[alerts]``, its ``[alerts.channels.NAME]`` and ``[digest]`` (with
the brands' own ``digest_recipients``).

``[alerts]`` holds the rules' policy (:class:`AlertPolicy`); a brand's ``alerts`` table overrides it
through the same parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from monitor.config.settings import (
    SELF_PROMOTION_PRESETS,
    WEEKDAYS,
    AlertPolicy,
    BrandSettings,
    ChannelSettings,
    DigestSettings,
)
from monitor.config.urls import UnsafeURLError, parse_url, url_fix
from monitor.config.validate import _Validator

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
# Every key of an alert policy table ([alerts], a brand's [brands.alerts]) but "channels".
RULE_KEYS = frozenset(
    {
        *_POLICY_KEYS,
        "business_hours",
        "business_days",
        "self_promotion",
        "repeat_hours",
        "group_interval_minutes",
    }
)


def parse_policy(
    v: _Validator, table: Mapping[str, Any], key: str, base: AlertPolicy, *, extra: set[str]
) -> AlertPolicy:
    """The rules' policy at ``key`` (``[alerts]`` or a brand's ``alerts``), keys it leaves out
    taken from ``base``, so that a brand overrides only what it names; ``extra``: other keys
    allowed there."""
    v.known_keys(table, key, {*RULE_KEYS, *extra})
    values: dict[str, Any] = {
        name: v.integer(table, key, name, getattr(base, name), low, high)
        for name, (low, high) in _POLICY_KEYS.items()
    }
    values["repeat_hours"] = v.number(table, key, "repeat_hours", base.repeat_hours, 0.05, 720)
    values["group_interval_minutes"] = v.number(
        table, key, "group_interval_minutes", base.group_interval_minutes, 0, 1440
    )
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
    last, least = policy.self_promotion_last_posts, policy.self_promotion_min_posts
    if 0 < last < least:
        raise v.error(
            f"{key}.self_promotion_last_posts",
            f"judges the last {last} posts, fewer than self_promotion_min_posts ({least}): "
            "the rule would never judge a channel",
            f"set self_promotion_min_posts to at most {last}, or self_promotion_last_posts to "
            f"at least {least}",
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
        int(match[1]) < 24 and int(match[3]) <= 24 and int(match[2]) < 60 and int(match[4]) < 60
    ):
        raise v.error(
            f"{key}.business_hours",
            f"{value!r} is not a time range",
            'write business_hours = "09:00-17:00" (24-hour clock), or "" for around the clock',
        )
    if match[1] + match[2] == match[3] + match[4]:
        raise v.error(
            f"{key}.business_hours",
            f"{value!r} opens and closes at the same time",
            'write business_hours = "" for around the clock, or a range such as "09:00-17:00"',
        )
    return str(value)


CHANNEL_KEYS: dict[str, tuple[set[str], set[str]]] = {
    # type: (plain option keys, secret names read from *_env keys)
    "email": (
        {"host", "port", "security", "sender", "recipients", "timeout_seconds"},
        {"username", "password"},
    ),
    "slack": ({"timeout_seconds", "allow_private_addresses"}, {"webhook_url"}),
    "webhook": ({"url", "timeout_seconds", "allow_private_addresses"}, {"secret", "url"}),
    "log": (set(), set()),
}
# type: the keys it needs; "a|b" is one of a or b, not both
_REQUIRED: dict[str, tuple[str, ...]] = {
    "email": ("host", "sender", "recipients"),
    "slack": ("webhook_url_env",),
    "webhook": ("url|url_env",),
    "log": (),
}


def _check_required(v: _Validator, section: Mapping[str, Any], key: str, kind: str) -> None:
    for required in _REQUIRED[kind]:
        present = [k for k in required.split("|") if k in section]
        if not present:
            names = " or ".join(f"{k} = ..." for k in required.split("|"))
            raise v.error(
                f"{key}.{required.split('|')[0]}",
                "is missing",
                f"add {names} (see config.example.toml)",
            )
        if len(present) > 1:
            raise v.error(
                f"{key}.{present[1]}",
                f"is set as well as {present[0]}",
                f"keep one of {' and '.join(present)}",
            )


def parse_channels(v: _Validator, table: Mapping[str, Any]) -> dict[str, ChannelSettings]:
    """The ``[alerts.channels.NAME]`` sections by name: their type, plain options and the
    variables their secrets are read from (read later, when the channel is built)."""
    channels = {}
    for name in table:
        key = f"alerts.channels.{name}"
        section = v.table(table, name, prefix="alerts.channels")
        kind = section.get("type")
        if not isinstance(kind, str) or kind not in CHANNEL_KEYS:
            raise v.error(
                f"{key}.type",
                f"{kind!r} is not a channel type",
                f"use one of: {', '.join(CHANNEL_KEYS)}",
            )
        plain, secrets = CHANNEL_KEYS[kind]
        v.known_keys(section, key, {"type", *plain, *(f"{s}_env" for s in secrets)})
        _check_required(v, section, key, kind)
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
            options[name] = _addresses(v, section, key, name)
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
        elif name == "url":
            options[name] = _plain_url(v, section, key)
        else:
            options[name] = v.string(section, key, name)
    return options


def _plain_url(v: _Validator, section: Mapping[str, Any], key: str) -> str:
    """A webhook ``url`` written in the file: refused if it carries a user name or password."""
    url = v.string(section, key, "url")
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        raise v.error(
            f"{key}.url", f"{url!r} is not a URL", 'write url = "https://hooks.example.com/path"'
        ) from None
    if "@" in netloc:
        raise v.error(
            f"{key}.url",
            "holds a user name or password, which do not belong in the config file",
            'put the whole URL in an environment variable and name it: url_env = "HOOK_URL"',
        )
    try:  # its form only; whether http is allowed, and where the host leads, the channel checks
        parse_url(url, allow_http=True)
    except UnsafeURLError as exc:
        raise v.error(
            f"{key}.url", str(exc), url_fix(str(exc), "allow_private_addresses")
        ) from None
    return url


_ADDRESS = re.compile(r"[^@\s\x00-\x1f\x7f<>,;\"]+@[A-Za-z0-9.-]+")
_ADDRESS_EXAMPLE = '"social@example.com"'


def _addresses(v: _Validator, table: Mapping[str, Any], key: str, name: str) -> tuple[str, ...]:
    """A list of plain email addresses (``[digest] recipients``, a brand's digest_recipients)."""
    value = table.get(name, [])
    if not isinstance(value, list) or not all(isinstance(a, str) and a.strip() for a in value):
        raise v.error(
            f"{key}.{name}",
            "must be a list of email addresses",
            f"write {name} = [{_ADDRESS_EXAMPLE}]",
        )
    # one address listed twice (in any case) would be two sends of the same mail
    unique: dict[str, str] = {}
    for address in value:
        unique.setdefault(address.strip().lower(), address.strip())
    addresses = tuple(unique.values())
    for address in addresses:
        if not _ADDRESS.fullmatch(address):
            raise v.error(
                f"{key}.{name}",
                f"{address!r} is not an email address",
                f"write a plain address, e.g. {name} = [{_ADDRESS_EXAMPLE}]",
            )
    return addresses


def _brand_recipients(
    v: _Validator, data: Mapping[str, Any], brands: Sequence[BrandSettings]
) -> dict[str, tuple[str, ...]]:
    """Each brand's own ``digest_recipients`` by brand name, for the brands that set it."""
    entries = data.get("brands", [])  # already checked: a list of tables, one per brand
    return {
        brand.name: _addresses(v, entry, f"brands[{i}]", "digest_recipients")
        for i, (entry, brand) in enumerate(zip(entries, brands, strict=True))
        if "digest_recipients" in entry
    }


def parse_digest(
    v: _Validator,
    data: Mapping[str, Any],
    channels: Mapping[str, ChannelSettings],
    brands: Sequence[BrandSettings],
) -> DigestSettings:
    """The ``[digest]`` section with the brands' own ``digest_recipients``; read after the
    channels, since the digest is sent through one of them."""
    own = _brand_recipients(v, data, brands)
    if "digest" not in data:
        # a brand's own recipients turn the email on for that brand alone, through the only
        # email channel; the others, with no [digest] recipients to fall back on, get none
        first = next((i for i, b in enumerate(brands) if own.get(b.name)), None)
        if first is None:
            return DigestSettings(brand_recipients=own)
        channel = _digest_channel(v, {}, channels, key=f"brands[{first}].digest_recipients")
        return DigestSettings(channel=channel, brand_recipients=own)
    table = v.table(data, "digest")
    v.known_keys(table, "digest", {"recipients", "send_time", "channel", "sender"})
    send_time = v.string(table, "digest", "send_time", default="08:00")
    match = re.fullmatch(r"(\d\d):(\d\d)", send_time)
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise v.error(
            "digest.send_time",
            f"{send_time!r} is not a time of day",
            'write send_time = "08:00" (HH:MM in the brand\'s time zone)',
        )
    channel = _digest_channel(v, table, channels)
    recipients = _addresses(v, table, "digest", "recipients")
    sender = table.get("sender", "")
    if sender and not (isinstance(sender, str) and _ADDRESS.fullmatch(sender)):
        raise v.error(
            "digest.sender",
            f"{sender!r} is not an email address",
            'write a plain address, e.g. sender = "touchpoint@example.com"',
        )
    if "recipients" not in table:  # unset: the channel's; [] (as for a brand's own): nobody
        recipients = tuple(channels[channel].options.get("recipients", ()))
    return DigestSettings(
        recipients=recipients,
        send_time=send_time,
        channel=channel,
        sender=sender,
        brand_recipients=own,
    )


def _digest_channel(
    v: _Validator,
    table: Mapping[str, Any],
    channels: Mapping[str, ChannelSettings],
    *,
    key: str = "digest.channel",
) -> str:
    """The email channel the digest is sent by; ``key`` names what needs one in an error."""
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
            key,
            problem,
            f"name one in [digest]: channel = {json.dumps(emails[0])} (one of {', '.join(emails)})"
            if emails
            else 'define an [alerts.channels.NAME] with type = "email" (see config.example.toml)',
        )
    return emails[0]
