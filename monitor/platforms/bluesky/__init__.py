"""Bluesky: the platform's spec; the collector (XRPC on httpx) is in :mod:`.collector`."""

from __future__ import annotations

from collections.abc import Sequence

from monitor.config import Platform, PlatformDefaults, SandboxSpec


def keyword_query(keywords: Sequence[str]) -> str:
    """Any of ``keywords``: phrases quoted, alternatives joined by ``|`` (palomar's OR)."""
    terms = [f'"{k}"' if any(c.isspace() for c in k) else k for k in keywords]
    return " | ".join(terms)


PLATFORM = Platform(
    name="bluesky",
    defaults=PlatformDefaults(
        api_base="https://bsky.social",
        secrets={"app_password": "BLUESKY_APP_PASSWORD"},
        page_size=100,
        max_page_size=100,
        min_page_size=1,
    ),
    collector="monitor.platforms.bluesky.collector:BlueskyCollector",
    keyword_query=keyword_query,
    sandbox=SandboxSpec(
        server="monitor.platforms.bluesky.sandbox:BlueskySandbox",
        handle="acme.bsky.social",
        server_secrets={"app_password": "sandbox-bluesky-password"},
        config_env={"app_password_env": "TOUCHPOINT_SANDBOX_BLUESKY_PASSWORD"},
    ),
)
