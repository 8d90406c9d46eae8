"""fakeplat's local API on 127.0.0.1: the brand's posts, mentions of it and keyword hits."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from monitor.models import iso

STREAMS = ("posts", "mentions", "keywords")


def items(handle: str, day: datetime) -> dict[str, list[dict[str, str]]]:
    """Two items of each stream on ``day``, newest first, ids rising with time."""
    made: dict[str, list[dict[str, str]]] = {}
    for n, stream in enumerate(STREAMS):
        author = handle if stream == "posts" else f"fan{n}"
        text = {"posts": "our launch", "mentions": f"@{handle} love it", "keywords": "acme rocks"}
        made[stream] = [
            {
                "id": str(10 * (n + 1) + i),
                "author": author,
                "text": f"{text[stream]} #{i}",
                "created_at": iso(day + timedelta(hours=3 * n + i)),
            }
            for i in (2, 1)
        ]
    return made


class FakeSandbox:
    """Serves ``items``; every request needs ``Authorization: Bearer <token>``."""

    def __init__(self, *, handle: str, token: str, day: datetime) -> None:
        self.token = token
        self.handle = handle
        self.items = items(handle, day)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeSandbox:
        self.thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, query: dict[str, list[str]]) -> dict[str, Any] | None:
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "accounts"] and parts[2:] == [self.handle]:
            return {"id": "1"}
        if len(parts) != 2 or parts[1] not in self.items:
            return None
        since = int(query.get("since_id", ["0"])[0])
        below = int(query.get("max_id", ["999999"])[0])
        limit = int(query.get("limit", ["50"])[0])
        found = [i for i in self.items[parts[1]] if since < int(i["id"]) < below]
        page = found[:limit]
        more = len(found) > limit
        return {"items": page, "next_max_id": page[-1]["id"] if more else None}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                split = urlsplit(self.path)
                if self.headers.get("Authorization") != f"Bearer {sandbox.token}":
                    self._send(401, {"error": "unauthorized"})
                    return
                body = sandbox.answer(split.path, parse_qs(split.query))
                self._send(404 if body is None else 200, body or {"error": "not found"})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler
