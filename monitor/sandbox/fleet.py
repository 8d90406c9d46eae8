"""All four sandboxes at once, with the credentials and the config that point touchpoint at them.

Used by ``touchpoint demo``, ``touchpoint sandbox`` and the tests: one brand, ``acme``, on X,
Reddit, Mastodon and Bluesky, each platform served by its own local server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.sandbox.bluesky import BlueskySandbox
from monitor.sandbox.mastodon import MastodonSandbox
from monitor.sandbox.reddit import RedditSandbox
from monitor.sandbox.traffic import TrafficItem, TrafficRates, TrafficSandbox
from monitor.sandbox.x import XSandbox

PLATFORMS = ("x", "reddit", "mastodon", "bluesky")
BRAND = "acme"


@dataclass(frozen=True)
class Spec:
    """How one platform's sandbox is started and how touchpoint's config reaches it."""

    handle: str
    server_secrets: Mapping[str, str]  # sandbox keyword argument -> demo value
    config_env: Mapping[str, str]  # config key (e.g. bearer_token_env) -> environment variable


SPECS: dict[str, Spec] = {
    "x": Spec(
        handle=BRAND,
        server_secrets={"bearer_token": "sandbox-x-token"},
        config_env={"bearer_token_env": "TOUCHPOINT_SANDBOX_X_TOKEN"},
    ),
    "reddit": Spec(
        handle=BRAND,
        server_secrets={
            "client_id": "sandbox-client",
            "client_secret": "sandbox-reddit-secret",
            "username": BRAND,
            "password": "sandbox-reddit-password",
        },
        config_env={
            "client_id_env": "TOUCHPOINT_SANDBOX_REDDIT_ID",
            "client_secret_env": "TOUCHPOINT_SANDBOX_REDDIT_SECRET",
            "username_env": "TOUCHPOINT_SANDBOX_REDDIT_USER",
            "password_env": "TOUCHPOINT_SANDBOX_REDDIT_PASSWORD",
        },
    ),
    "mastodon": Spec(
        handle=BRAND,
        server_secrets={"access_token": "sandbox-mastodon-token"},
        config_env={"access_token_env": "TOUCHPOINT_SANDBOX_MASTODON_TOKEN"},
    ),
    "bluesky": Spec(
        handle=f"{BRAND}.bsky.social",
        server_secrets={"app_password": "sandbox-bluesky-password"},
        config_env={"app_password_env": "TOUCHPOINT_SANDBOX_BLUESKY_PASSWORD"},
    ),
}


def environment(platforms: Sequence[str] = PLATFORMS) -> dict[str, str]:
    """Return the environment variables (name -> value) holding the sandboxes' credentials."""
    env = {}
    for platform in platforms:
        spec = SPECS[platform]
        for config_key, variable in spec.config_env.items():
            env[variable] = spec.server_secrets[config_key.removesuffix("_env")]
    return env


def start_sandbox(
    platform: str,
    *,
    seed: int,
    start: datetime,
    end: datetime,
    keywords: Sequence[str] = (BRAND,),
    port: int = 0,
    traffic: Sequence[TrafficItem] | None = None,
    **rates: Any,
) -> TrafficSandbox:
    """Build (not start) the sandbox of ``platform`` with the demo credentials."""
    spec = SPECS[platform]
    common: dict[str, Any] = dict(
        seed=seed,
        brand_handle=spec.handle,
        keywords=tuple(keywords),
        start=start,
        end=end,
        port=port,
        traffic=traffic,
        **spec.server_secrets,
        **rates,
    )
    if platform == "x":
        return XSandbox(**common)
    if platform == "reddit":
        return RedditSandbox(**common)
    if platform == "mastodon":
        return MastodonSandbox(**common)
    return BlueskySandbox(**common)


def platform_section(platform: str, url: str, *, page_size: int | None = None) -> str:
    """Return the ``[platforms.<p>]`` TOML section pointing at a sandbox at ``url``."""
    spec = SPECS[platform]
    lines = [f"[platforms.{platform}]", f'api_base = "{url}"']
    if platform == "reddit":
        lines.append(f'auth_base = "{url}"')
    lines += [f'{key} = "{variable}"' for key, variable in spec.config_env.items()]
    if page_size is not None:
        lines.append(f"page_size = {page_size}")
    return "\n".join(lines) + "\n"


def brand_section(platforms: Sequence[str], *, keywords: Sequence[str] = (BRAND,)) -> str:
    """Return the ``[[brands]]`` table of the sandbox brand on ``platforms``."""
    accounts = "\n".join(f'{p} = "{SPECS[p].handle}"' for p in platforms)
    quoted = ", ".join(f'"{k}"' for k in keywords)
    return f'[[brands]]\nname = "{BRAND}"\nkeywords = [{quoted}]\n\n[brands.accounts]\n{accounts}\n'


# The first line of every config written for the sandboxes: what demo and sandbox may overwrite.
MARKER = "# Written for the local sandboxes: no real API is contacted."


def config_text(urls: Mapping[str, str], *, db_path: str = "touchpoint.db") -> str:
    """Return a whole config: the store, one section per sandbox and the brand on all of them."""
    sections = "\n".join(platform_section(p, url) for p, url in urls.items())
    return f'{MARKER}\n[store]\npath = "{db_path}"\n\n{sections}\n{brand_section(list(urls))}'


def is_sandbox_config(path: Path) -> bool:
    """Whether ``path`` is a config :func:`config_text` wrote (so it may be written again)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return handle.readline().rstrip("\n") == MARKER
    except OSError:
        return False


@contextmanager
def running(
    *,
    seed: int,
    start: datetime,
    end: datetime,
    platforms: Sequence[str] = PLATFORMS,
    first_port: int = 0,
    **rates: Any,
) -> Iterator[dict[str, TrafficSandbox]]:
    """Start the sandboxes of ``platforms`` (ports first_port, +1, ... or free ones); stop after."""
    rates_: TrafficRates = rates  # type: ignore[assignment]
    with ExitStack() as stack:
        servers: dict[str, TrafficSandbox] = {}
        for offset, platform in enumerate(platforms):
            port = first_port + offset if first_port else 0
            server = start_sandbox(platform, seed=seed, start=start, end=end, port=port, **rates_)
            stack.enter_context(server)
            servers[platform] = server
        yield servers
