"""fakeplat: a third party's platform, written as one package the way a built-in is.

Light, like every platform package's ``__init__``: the spec only; :mod:`.collector` (on httpx)
is imported when a brand uses it. Its local API (:mod:`.sandbox`) is started by the test itself:
it is not one of the demo's traffic sandboxes, so the spec declares none.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitor.config import Platform, PlatformDefaults


def keyword_query(keywords: Sequence[str]) -> str:
    """The sandbox's search: any of the keywords, comma-separated."""
    return ",".join(keywords)


PLATFORM = Platform(
    name="fakeplat",
    defaults=PlatformDefaults(
        api_base="https://api.fakeplat.example",
        secrets={"token": "FAKEPLAT_TOKEN"},
        page_size=2,
        max_page_size=50,
        min_page_size=1,
    ),
    collector="fakeplat.collector:FakeCollector",
    keyword_query=keyword_query,
)
