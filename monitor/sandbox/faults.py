"""The faults a sandbox can inject, and what they do to an answer's body.

:class:`monitor.sandbox.server.SandboxServer` queues them and answers with them; this module
holds the kinds, their parameters and the platform-neutral body transforms (a truncated body,
a shuffled page, odd texts, a missing time, the oversized floods), so that no platform writes
its own.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Oversized answers, each a 200 streamed as the client reads it (never built whole here): a 40 MiB
# body with its Content-Length, a Content-Length of 2 GiB (bytes sent until the client hangs up),
# a chunked body that never ends, and a gzip body of 300 MiB that is about 300 KB on the wire.
FLOODS = ("huge_body", "huge_length", "endless_body", "gzip_bomb")
HUGE_BODY_BYTES = 40 * 1024 * 1024
HUGE_LENGTH_BYTES = 2 * 1024**3
GZIP_BOMB_BYTES = 300 * 1024 * 1024
FLOOD_PIECE = b" " * (64 * 1024)  # what a flood is made of: JSON whitespace, never a whole value
FAULT_KINDS = (
    "429",
    "429_bad_reset",
    "429_http_date",
    "500",
    "503",
    "malformed",
    "html",
    "error_body",
    "not_a_page",
    "shuffled",
    "slow",
    "trickle",
    "trickle_headers",
    "expired_token",
    "odd_text",
    "no_time",
    *FLOODS,
)
# What an "odd_text" answer appends to every text: a NUL, a right-to-left override and the first
# half of an emoji's surrogate pair (a text cut mid-emoji), which JSON can only carry escaped.
ODD_TEXT_SUFFIX = " \x00\u202e\ud83d"
TRICKLE_BYTES = 20  # body (or head) bytes a "trickle" ("trickle_headers") answer sends one by one
BAD_RESET = "nan"  # what a "429_bad_reset" answer says in its reset headers: not a time


def encode_json(payload: object) -> bytes:
    """UTF-8 JSON, non-ASCII characters kept as they are."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


@dataclass
class Fault:
    """A queued fault: its kind, the answers it still spoils and what it targets."""

    kind: str
    remaining: int
    endpoint: str | None
    delay: float
    reset_in: float

    def matches(self, endpoint: str) -> bool:
        return self.endpoint is None or self.endpoint == endpoint


@functools.cache
def gzip_bomb() -> bytes:
    """:data:`GZIP_BOMB_BYTES` of :data:`FLOOD_PIECE` gzipped (about 300 KB), built once."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    packed = [packer.compress(FLOOD_PIECE) for _ in range(GZIP_BOMB_BYTES // len(FLOOD_PIECE))]
    return b"".join([*packed, packer.flush()])


def flood_pieces(kind: str) -> Iterator[bytes]:
    """The body of the flood ``kind`` (one of :data:`FLOODS`) as it goes on the wire, in pieces
    of at most 64 KiB; ``endless_body``'s already chunk-encoded, and never ending."""
    if kind == "gzip_bomb":
        bomb = gzip_bomb()
        yield from (
            bomb[at : at + len(FLOOD_PIECE)] for at in range(0, len(bomb), len(FLOOD_PIECE))
        )
        return
    if kind == "endless_body":
        chunk = b"%x\r\n%s\r\n" % (len(FLOOD_PIECE), FLOOD_PIECE)
        while True:
            yield chunk
    length = HUGE_BODY_BYTES if kind == "huge_body" else HUGE_LENGTH_BYTES
    for _ in range(length // len(FLOOD_PIECE)):
        yield FLOOD_PIECE


def with_odd_texts(body: bytes) -> bytes:
    """``body`` (JSON) with :data:`ODD_TEXT_SUFFIX` after every string holding a space (texts,
    names; never ids, times, cursors or URLs), all non-ASCII escaped as the JSON of an API is."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except ValueError:
        return body

    def odd(value: Any) -> Any:
        if isinstance(value, str):
            return value + ODD_TEXT_SUFFIX if " " in value else value
        if isinstance(value, dict):
            return {k: odd(v) for k, v in value.items()}
        if isinstance(value, list):
            return [odd(v) for v in value]
        return value

    return json.dumps(odd(payload)).encode("ascii")


def truncated(body: bytes) -> bytes:
    """A prefix of ``body`` cut in the middle (for JSON objects: never valid JSON)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body[: max(1, len(body) // 2)]
    return text[: max(1, len(text) // 2)].encode("utf-8")


def without_time(body: bytes, field: str) -> bytes:
    """``body`` (JSON) with ``field`` left out of the first item of its longest list of objects
    (at whatever depth the item holds it), as :func:`shuffled` finds that list."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    items = _items(payload)
    todo: list[Any] = items[:1]
    while todo:
        current = todo.pop(0)
        if isinstance(current, dict):
            if field in current:
                del current[field]
                return encode_json(payload)
            todo.extend(current.values())
    return body


def _items(payload: Any) -> list[Any]:
    """The longest list of a page (at the top, or one level or two down)."""
    lists = [payload]
    for parent in (payload, payload.get("data") if isinstance(payload, dict) else None):
        if isinstance(parent, dict):
            lists += [v for v in parent.values() if isinstance(v, list)]
    return max((v for v in lists if isinstance(v, list)), key=len, default=[])


def shuffled(body: bytes) -> bytes:
    """``body`` with its longest list of objects (a page's items, at the top or one level or two
    down: X's data, Reddit's data.children) reversed and its first item repeated at the end."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    items = _items(payload)
    if not items:
        return body
    items.reverse()
    items.append(items[-1])
    return encode_json(payload)


def _number(payload: dict[str, Any], name: str, default: float) -> float:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def fault_from_json(payload: dict[str, Any]) -> Fault:
    kind, times, endpoint = payload.get("kind"), payload.get("times", 1), payload.get("endpoint")
    if not isinstance(kind, str):
        raise ValueError("kind must be a string")
    if isinstance(times, bool) or not isinstance(times, int):
        raise ValueError("times must be an integer")
    if endpoint is not None and not isinstance(endpoint, str):
        raise ValueError("endpoint must be a string or null")
    return Fault(
        kind, times, endpoint, _number(payload, "delay", 5.0), _number(payload, "reset_in", 2.0)
    )


def validate_fault(fault: Fault, endpoints: tuple[str, ...]) -> None:
    if fault.kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {fault.kind!r}; expected one of {FAULT_KINDS}")
    if fault.endpoint is not None and fault.endpoint not in endpoints:
        raise ValueError(f"unknown endpoint {fault.endpoint!r}; expected one of {endpoints}")
    if fault.remaining < 1:
        raise ValueError("times must be at least 1")
    if fault.delay < 0 or fault.reset_in < 0:
        raise ValueError("delay and reset_in must not be negative")


class FaultQueue:
    """The faults waiting to spoil answers, served in the order queued (thread-safe)."""

    def __init__(self, endpoints: tuple[str, ...]) -> None:
        self.endpoints = endpoints
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        """Queue ``fault`` (ValueError when it names an unknown kind or endpoint)."""
        validate_fault(fault, self.endpoints)
        with self._lock:
            self._faults.append(fault)

    @property
    def pending(self) -> int:
        """How many answers the queued faults will still spoil."""
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def clear(self) -> int:
        """Drop every queued fault; how many answers they would still have spoilt."""
        with self._lock:
            left = sum(f.remaining for f in self._faults)
            self._faults.clear()
        return left

    def take(self, endpoint: str) -> Fault | None:
        """The first fault for ``endpoint``, counted as served (a copy), or None."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(endpoint):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return dataclasses.replace(fault)
        return None
