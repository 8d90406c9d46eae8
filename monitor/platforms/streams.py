"""The registered platforms' collectors and the streams the config asks them for.

A platform's collector module (and its client library) is imported only when a brand uses that
platform: which streams are planned comes from the light :class:`monitor.config.Platform` spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module

from monitor.config import BrandSettings, Platform, Settings, platforms
from monitor.models import ACCOUNT_STREAM, Stream, StreamKey
from monitor.platforms.base import Collector


def collector_class(platform: str) -> type[Collector]:
    """Return the collector class of ``platform`` (imports its module)."""
    module, name = platforms()[platform].collector.split(":")
    cls = getattr(import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, Collector)
    return cls


def build_collector(platform: str, settings: Settings) -> Collector:
    """Build the collector for ``platform`` from the settings (reads its secrets)."""
    return collector_class(platform).from_settings(settings)


def configured(streams: Sequence[Stream], settings: Settings, platform: str) -> list[Stream]:
    """Those of ``streams`` that ``[platforms.NAME] streams`` asks for."""
    wanted = settings.platforms[platform].streams
    return [s for s in streams if s in wanted]


def brand_streams(
    offers: Collector | type[Collector] | Platform,
    settings: Settings,
    brand: BrandSettings,
    platform: str,
) -> list[tuple[Stream, str]]:
    """The streams of ``brand``'s account on ``platform`` that are collected, with their search
    queries: those of the streams ``offers`` (a collector, or the platform's spec) the config
    asks for, keyword search only for a brand with keywords (under the platform's query for
    them; the other streams' query is "")."""
    found: list[tuple[Stream, str]] = []
    for stream in configured(offers.streams, settings, platform):
        if stream != "keywords":
            found.append((stream, ""))
        elif brand.keywords:
            found.append((stream, offers.keyword_query(brand.keywords)))
    return found


def planned_streams(settings: Settings) -> frozenset[StreamKey]:
    """Every stream the config asks for: each brand account's streams (keyword search only for
    a brand with keywords, under the query of its current keywords) and its account row. A
    stream in the store but not here (old keywords, an account or brand removed) is history:
    its health is not judged. Read from the platform specs: no collector is imported."""
    planned = set()
    for brand in settings.brands:
        for platform in brand.accounts:
            spec = platforms()[platform]
            planned.add(StreamKey(brand.name, platform, ACCOUNT_STREAM))
            for stream, query in brand_streams(spec, settings, brand, platform):
                planned.add(StreamKey(brand.name, platform, stream, query))
    return frozenset(planned)
