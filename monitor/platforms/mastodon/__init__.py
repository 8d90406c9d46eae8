"""Mastodon: the platform's spec; the collector (on httpx) is in :mod:`.collector`."""

from __future__ import annotations

from collections.abc import Sequence

from monitor.config import Platform, PlatformDefaults, SandboxSpec


def keyword_query(keywords: Sequence[str]) -> str:
    """Keywords joined by ``OR`` (phrases quoted): one status search per keyword.

    Mastodon's search ANDs the words of a query and has no ``OR``, so the collector runs one
    search per term of this query.
    """
    terms = [k.replace('"', "").strip() for k in keywords]
    return " OR ".join(f'"{t}"' if any(c.isspace() for c in t) else t for t in terms if t)


PLATFORM = Platform(
    name="mastodon",
    defaults=PlatformDefaults(
        api_base="https://mastodon.social",
        secrets={"access_token": "MASTODON_ACCESS_TOKEN"},
        page_size=40,
        max_page_size=40,
        min_page_size=1,
    ),
    collector="monitor.platforms.mastodon.collector:MastodonCollector",
    keyword_query=keyword_query,
    sandbox=SandboxSpec(
        server="monitor.platforms.mastodon.sandbox:MastodonSandbox",
        handle="acme",
        server_secrets={"access_token": "sandbox-mastodon-token"},
        config_env={"access_token_env": "TOUCHPOINT_SANDBOX_MASTODON_TOKEN"},
    ),
)
