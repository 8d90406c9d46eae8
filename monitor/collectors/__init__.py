"""Collectors, one module per platform, all behind the interface in ``base``.

Each platform's module is imported only when a brand uses that platform.
"""

from __future__ import annotations

from importlib import import_module

from monitor.collectors.base import Collector
from monitor.config import Settings

COLLECTORS: dict[str, str] = {
    "x": "monitor.collectors.x:XCollector",
    "reddit": "monitor.collectors.reddit:RedditCollector",
    "mastodon": "monitor.collectors.mastodon:MastodonCollector",
    "bluesky": "monitor.collectors.bluesky:BlueskyCollector",
}


def collector_class(platform: str) -> type[Collector]:
    """Return the collector class of ``platform``."""
    module, name = COLLECTORS[platform].split(":")
    cls = getattr(import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, Collector)
    return cls


def build_collector(platform: str, settings: Settings) -> Collector:
    """Build the collector for ``platform`` from the settings (reads its secrets)."""
    return collector_class(platform).from_settings(settings)
