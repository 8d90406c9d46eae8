"""fakeplat's collector: pages newest-first from its API, the newest id as each stream's cursor."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from fakeplat import keyword_query
from monitor.config import Settings
from monitor.models import Cursor, Kind, Post
from monitor.platforms.base import (
    AuthError,
    Collector,
    Page,
    Target,
    TransientError,
    as_object,
    request_timeout,
)

KINDS: dict[str, Kind] = {"posts": "post", "mentions": "mention", "keywords": "keyword"}


class FakeCollector(Collector):
    """Reads ``GET /api/<stream>?since_id=..`` (newest first, ``page_size`` items a page)."""

    platform = "fakeplat"

    def __init__(self, api_base: str, token: str, page_size: int, timeout: float) -> None:
        self.page_size = page_size
        self.client = httpx.Client(
            base_url=api_base, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> FakeCollector:
        platform = settings.platforms["fakeplat"]
        return cls(
            platform.api_base,
            settings.secret("fakeplat", "token"),
            platform.page_size,
            max(request_timeout(settings.collect)),
        )

    def resolve_account(self, handle: str) -> str:
        return str(self._get(f"/api/accounts/{handle}", {})["id"])

    @classmethod
    def keyword_query(cls, keywords: Sequence[str]) -> str:
        return keyword_query(keywords)

    def fetch(self, target: Target, cursor: Cursor) -> Iterator[Page]:
        """Walk down from the newest item to the cursor; the cursor moves after the last page."""
        params: dict[str, Any] = {"limit": self.page_size, "q": target.query}
        if cursor.position:
            params["since_id"] = cursor.position
        newest = cursor.position
        while True:
            body = self._get(f"/api/{target.stream}", params)
            items = body["items"]
            if items and (newest is None or int(items[0]["id"]) > int(newest)):
                newest = items[0]["id"]
            last = not body.get("next_max_id")
            yield Page(raw=body, cursor=Cursor(position=newest if last else cursor.position))
            if last:
                return
            params["max_id"] = body["next_max_id"]

    def normalize(self, raw: dict[str, Any], target: Target) -> list[Post]:
        return [
            Post(
                platform="fakeplat",
                native_id=item["id"],
                brand=target.key.brand,
                author_id=item["author"],
                author_handle=item["author"],
                is_brand=item["author"] == target.handle,
                kind=KINDS[target.stream],
                text=item["text"],
                url=f"https://fakeplat.example/{item['author']}/{item['id']}",
                created_at=item["created_at"],
                raw=item,
            )
            for item in raw["items"]
        ]

    def close(self) -> None:
        self.client.close()

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise TransientError(f"fakeplat: {type(exc).__name__}") from exc
        if response.status_code == 401:
            raise AuthError("fakeplat: the token was refused")
        if response.status_code != 200:
            raise TransientError(f"fakeplat: HTTP {response.status_code}")
        return as_object(response.json(), "fakeplat")
