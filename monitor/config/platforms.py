"""The platform registry: what each platform declares about itself, found through entry points.

A platform is one package (``monitor.platforms.x``, or a third party's) whose light
``__init__`` defines ``PLATFORM``, a :class:`Platform`: its name, its config defaults, where its
collector and its sandbox live ("module:Class", imported only when used), its sandbox's demo
credentials and its keyword query rule. It is registered under the entry-point group
``touchpoint.platforms`` (``x = "monitor.platforms.x:PLATFORM"``), built-ins the same way as any
other, so adding a platform is one package and one entry point; nothing here names a platform
package, and none is imported before :func:`platforms` is first called.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType

from monitor.config.settings import ConfigError, PlatformDefaults
from monitor.models import STREAMS, Stream

GROUP = "touchpoint.platforms"
BUILTINS = ("x", "reddit", "mastodon", "bluesky")  # listed first, in this order


@dataclass(frozen=True)
class SandboxSpec:
    """How the platform's local sandbox is started and how touchpoint's config reaches it."""

    server: str  # "module:Class" of the sandbox server (a TrafficSandbox)
    handle: str  # the sandbox brand's handle on the platform
    server_secrets: Mapping[str, str]  # sandbox keyword argument -> demo value
    config_env: Mapping[str, str]  # config key (e.g. bearer_token_env) -> environment variable
    url_keys: tuple[str, ...] = ("api_base",)  # config keys that point at the sandbox's URL


@dataclass(frozen=True)
class Platform:
    """What a platform declares about itself, without importing its client library."""

    name: str
    defaults: PlatformDefaults
    collector: str  # "module:Class" of its Collector
    keyword_query: Callable[[Sequence[str]], str]  # the search query finding any of the keywords
    sandbox: SandboxSpec | None = None
    streams: tuple[Stream, ...] = field(default=STREAMS)  # the streams it can offer


class PlatformError(ConfigError):
    """A platform's entry point cannot be used; one line naming it and the fix."""

    def __init__(self, entry: str, problem: str, fix: str) -> None:
        super().__init__(f"entry point {entry} (group {GROUP})", "", problem, fix)


@functools.cache
def platforms() -> Mapping[str, Platform]:
    """Every registered platform by name: the built-ins in their order, then the others by name.

    Read once from the installed distributions' metadata (cached; ``platforms.cache_clear()``
    after installing one at run time)."""
    found: dict[str, Platform] = {}
    seen: dict[str, EntryPoint] = {}
    for entry in entry_points(group=GROUP):
        if entry.name in seen:
            other = _describe(seen[entry.name])
            raise PlatformError(
                _describe(entry),
                f"platform {entry.name!r} is registered twice, also by {other}",
                "uninstall one of the two distributions",
            )
        found[entry.name] = _load(entry)
        seen[entry.name] = entry
    if not found:
        raise PlatformError(
            "(none)",
            "no platform is registered",
            "reinstall touchpoint (pip install -e .) so that its entry points are installed",
        )
    order = [n for n in BUILTINS if n in found] + sorted(n for n in found if n not in BUILTINS)
    return MappingProxyType({name: found[name] for name in order})


def platform(name: str) -> Platform:
    """The registered platform ``name`` (a KeyError for an unknown one)."""
    return platforms()[name]


def _load(entry: EntryPoint) -> Platform:
    """The Platform an entry point names, or a PlatformError saying why it is not one."""
    try:
        spec = entry.load()
    except Exception as exc:  # noqa: BLE001 - any import failure is the entry point's
        first = (str(exc).splitlines() or [""])[0]
        raise PlatformError(
            _describe(entry),
            f"cannot be loaded: {type(exc).__name__}: {first}",
            "fix or uninstall the distribution that declares it",
        ) from exc
    if not isinstance(spec, Platform):
        raise PlatformError(
            _describe(entry),
            f"names a {type(spec).__name__}, not a monitor.config.platforms.Platform",
            "point it at the package's PLATFORM",
        )
    if spec.name != entry.name:
        raise PlatformError(
            _describe(entry),
            f"its Platform is named {spec.name!r}",
            f"register it as {spec.name} = {entry.value!r}",
        )
    return spec


def _describe(entry: EntryPoint) -> str:
    dist = f" from {entry.dist.name} {entry.dist.version}" if entry.dist is not None else ""
    return f"{entry.name} = {entry.value!r}{dist}"
