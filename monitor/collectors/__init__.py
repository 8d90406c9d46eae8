"""Collectors, one module per platform, all behind the interface in ``base``.

Each platform's module is imported only when a brand uses that platform.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module

from monitor.collectors.base import Collector
from monitor.config import Settings
from monitor.models import ACCOUNT_STREAM, StreamKey

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


def configured(streams: Sequence[str], settings: Settings, platform: str) -> list[str]:
    """Those of ``streams`` that ``[platforms.NAME] streams`` asks for."""
    wanted = settings.platforms[platform].streams
    return [s for s in streams if s in wanted]


def planned_streams(settings: Settings) -> frozenset[StreamKey]:
    """Every stream the config asks for: each brand account's streams (keyword search only for
    a brand with keywords, under the query of its current keywords) and its account row. A
    stream in the store but not here (old keywords, an account or brand removed) is history:
    its health is not judged."""
    planned = set()
    for brand in settings.brands:
        for platform in brand.accounts:
            cls = collector_class(platform)
            planned.add(StreamKey(brand.name, platform, ACCOUNT_STREAM))
            for stream in configured(cls.streams, settings, platform):
                if stream != "keywords":
                    planned.add(StreamKey(brand.name, platform, stream))
                elif brand.keywords:
                    query = cls.keyword_query(brand.keywords)
                    planned.add(StreamKey(brand.name, platform, stream, query))
    return frozenset(planned)
