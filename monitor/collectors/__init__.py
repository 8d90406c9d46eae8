"""Collectors, one module per platform, all behind the interface in ``base``."""

from __future__ import annotations

from monitor.collectors.base import Collector
from monitor.collectors.x import XCollector
from monitor.config import Settings

COLLECTORS: dict[str, type[Collector]] = {
    "x": XCollector,
}


def build_collector(platform: str, settings: Settings) -> Collector:
    """Build the collector for ``platform`` from the settings (reads its secrets)."""
    return COLLECTORS[platform].from_settings(settings)
