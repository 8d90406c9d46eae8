"""All four sandboxes at once, with the credentials and the config that point touchpoint at them.

Used by ``touchpoint demo``, ``touchpoint sandbox`` and the tests: one brand, ``acme``, on X,
Reddit, Mastodon and Bluesky, each platform served by its own local server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from importlib import import_module
from pathlib import Path
from typing import Any

from monitor.config import BUILTINS, SandboxSpec
from monitor.config import platforms as registered_platforms
from monitor.sandbox.traffic import TrafficItem, TrafficRates, TrafficSandbox

PLATFORMS = BUILTINS  # the demo's platforms; any registered platform with a sandbox also works
BRAND = "acme"


def spec(platform: str) -> SandboxSpec:
    """The sandbox spec ``platform`` declares (a KeyError for a platform without a sandbox)."""
    declared = registered_platforms()[platform].sandbox
    if declared is None:
        raise KeyError(f"platform {platform!r} declares no sandbox")
    return declared


def environment(platforms: Sequence[str] = PLATFORMS) -> dict[str, str]:
    """Return the environment variables (name -> value) holding the sandboxes' credentials."""
    env = {}
    for platform in platforms:
        declared = spec(platform)
        for config_key, variable in declared.config_env.items():
            env[variable] = declared.server_secrets[config_key.removesuffix("_env")]
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
    declared = spec(platform)
    module, name = declared.server.split(":")
    server = getattr(import_module(module), name)
    assert isinstance(server, type) and issubclass(server, TrafficSandbox)
    build: Callable[..., TrafficSandbox] = server  # each platform's sandbox has its own keywords
    return build(
        seed=seed,
        brand_handle=declared.handle,
        keywords=tuple(keywords),
        start=start,
        end=end,
        port=port,
        traffic=traffic,
        **declared.server_secrets,
        **rates,
    )


def platform_section(platform: str, url: str, *, page_size: int | None = None) -> str:
    """Return the ``[platforms.<p>]`` TOML section pointing at a sandbox at ``url``."""
    declared = spec(platform)
    lines = [f"[platforms.{platform}]"]
    lines += [f'{key} = "{url}"' for key in declared.url_keys]
    lines += [f'{key} = "{variable}"' for key, variable in declared.config_env.items()]
    if page_size is not None:
        lines.append(f"page_size = {page_size}")
    return "\n".join(lines) + "\n"


def brand_section(platforms: Sequence[str], *, keywords: Sequence[str] = (BRAND,)) -> str:
    """Return the ``[[brands]]`` table of the sandbox brand on ``platforms``."""
    accounts = "\n".join(f'{p} = "{spec(p).handle}"' for p in platforms)
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
