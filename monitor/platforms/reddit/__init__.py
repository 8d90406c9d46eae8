"""Reddit: the platform's spec; the collector (on praw) is in :mod:`.collector`."""

from __future__ import annotations

from collections.abc import Sequence

from monitor.config import Platform, PlatformDefaults, SandboxSpec

DEFAULT_USER_AGENT = "touchpoint-monitor/0.1 (self-hosted brand monitor)"


def keyword_query(keywords: Sequence[str]) -> str:
    """Build a search query (lucene syntax) matching any keyword."""
    return " OR ".join(f'"{k}"' if " " in k else k for k in keywords)


PLATFORM = Platform(
    name="reddit",
    defaults=PlatformDefaults(
        api_base="https://oauth.reddit.com",
        secrets={"client_id": "REDDIT_CLIENT_ID", "client_secret": "REDDIT_CLIENT_SECRET"},
        optional_secrets={"username": "REDDIT_USERNAME", "password": "REDDIT_PASSWORD"},
        page_size=100,
        max_page_size=100,
        min_page_size=1,
        options={
            "auth_base": "https://www.reddit.com",
            "user_agent": DEFAULT_USER_AGENT,
            "subreddits": ["all"],
        },
    ),
    collector="monitor.platforms.reddit.collector:RedditCollector",
    keyword_query=keyword_query,
    sandbox=SandboxSpec(
        server="monitor.platforms.reddit.sandbox:RedditSandbox",
        handle="acme",
        server_secrets={
            "client_id": "sandbox-client",
            "client_secret": "sandbox-reddit-secret",
            "username": "acme",
            "password": "sandbox-reddit-password",
        },
        config_env={
            "client_id_env": "TOUCHPOINT_SANDBOX_REDDIT_ID",
            "client_secret_env": "TOUCHPOINT_SANDBOX_REDDIT_SECRET",
            "username_env": "TOUCHPOINT_SANDBOX_REDDIT_USER",
            "password_env": "TOUCHPOINT_SANDBOX_REDDIT_PASSWORD",
        },
        url_keys=("api_base", "auth_base"),
    ),
)
