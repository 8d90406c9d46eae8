"""fakeplat's collector: only what differs from the built-ins' shared walk and kind rule."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from fakeplat import keyword_query
from monitor.config import Settings
from monitor.models import Cursor, Post
from monitor.platforms.base import (
    AuthError,
    Collector,
    Page,
    Step,
    Target,
    TransientError,
    as_object,
    kind_of,
    newest_first,
    request_timeout,
)


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
        return newest_first(target, cursor, self._walk(target, cursor))

    def _walk(self, target: Target, cursor: Cursor) -> Iterator[Step]:
        """Down from the newest item to the position (``since_id``), a page below the last
        (``max_id``); the shared walk commits it and moves the position at its end."""
        walk = cursor.pending or {}
        since: str | None = walk.get("since_id", cursor.position)
        newest: str | None = walk.get("newest_id")
        max_id: str | None = walk.get("max_id")
        while True:
            params = {"limit": self.page_size, "q": target.query}
            params.update({k: v for k, v in (("since_id", since), ("max_id", max_id)) if v})
            body = self._get(f"/api/{target.stream}", params)
            ids = [int(item["id"]) for item in body["items"]]
            newest = str(max([*ids, int(newest or 0)])) if ids or newest else None
            max_id = body.get("next_max_id")
            if not max_id:
                yield Step(raw=body, position=newest or since)
                return
            yield Step(raw=body, pending={"since_id": since, "newest_id": newest, "max_id": max_id})

    def normalize(self, raw: dict[str, Any], target: Target) -> list[Post]:
        return [self._post(item, target) for item in raw["items"]]

    def _post(self, item: dict[str, Any], target: Target) -> Post:
        is_brand = item["author"] == target.handle
        addressed = f"@{target.handle}" in item["text"]
        return Post(
            platform="fakeplat",
            native_id=item["id"],
            brand=target.key.brand,
            author_id=item["author"],
            author_handle=item["author"],
            is_brand=is_brand,
            kind=kind_of(target, is_brand=is_brand, answers_someone=False, addressed=addressed),
            text=item["text"],
            url=f"https://fakeplat.example/{item['author']}/{item['id']}",
            created_at=item["created_at"],
            raw=item,
        )

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
