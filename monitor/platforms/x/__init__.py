"""X (Twitter): the platform's spec; the collector (on tweepy) is in :mod:`.collector`."""

from __future__ import annotations

from collections.abc import Sequence

from monitor.config import Platform, PlatformDefaults, SandboxSpec


def keyword_query(keywords: Sequence[str]) -> str:
    """Build a recent-search query matching any keyword, retweets left out."""
    terms = [f'"{k}"' if " " in k else k for k in keywords]
    joined = " OR ".join(terms)
    return f"({joined}) -is:retweet" if len(terms) > 1 else f"{joined} -is:retweet"


PLATFORM = Platform(
    name="x",
    defaults=PlatformDefaults(
        api_base="https://api.twitter.com",
        secrets={"bearer_token": "X_BEARER_TOKEN"},
        page_size=100,
        max_page_size=100,
        min_page_size=10,
    ),
    collector="monitor.platforms.x.collector:XCollector",
    keyword_query=keyword_query,
    sandbox=SandboxSpec(
        server="monitor.platforms.x.sandbox:XSandbox",
        handle="acme",
        server_secrets={"bearer_token": "sandbox-x-token"},
        config_env={"bearer_token_env": "TOUCHPOINT_SANDBOX_X_TOKEN"},
    ),
)
