"""HTTP plumbing the collectors share: each answer read within an overall deadline and a size cap.

A read timeout bounds each socket read only: a server (or a proxy) that trickles a byte now and then
stays under it for as long as it likes, and one collector run would hang on a single request. So the
body of every answer is read as it arrives, one socket read at a time, against a deadline counted
from the start of the request: ``requests`` (tweepy, praw) through :class:`DeadlineAdapter`,
``httpx`` (Mastodon, Bluesky) through :func:`read_body` over ``iter_bytes``. The deadline is checked
between reads, so an exchange overshoots it by at most one read timeout; the status line and
headers are bounded by the read timeout per line only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError
from urllib3.response import BaseHTTPResponse

from monitor.collectors.base import MalformedResponse, TransientError

MAX_BODY_BYTES = 16 * 1024 * 1024
CHUNK_BYTES = 64 * 1024


def request_deadline(timeout: tuple[float, float]) -> float:
    """Seconds one whole exchange may take: the connect timeout plus the read timeout."""
    return timeout[0] + timeout[1]


def read_body(chunks: Iterable[bytes], *, started: float, seconds: float, what: str) -> bytes:
    """Join an answer's body; refuse one not complete ``seconds`` after ``started`` (monotonic)
    or larger than :data:`MAX_BODY_BYTES`."""
    content = bytearray()
    for chunk in chunks:
        content.extend(chunk)
        if len(content) > MAX_BODY_BYTES:
            raise MalformedResponse(f"{what}: answer larger than {MAX_BODY_BYTES:,} B")
        if time.monotonic() - started > seconds:
            raise TransientError(f"{what}: answer not complete in {seconds:g}s")
    return bytes(content)


def fetch_whole(
    client: httpx.Client, method: str, url: str, *, seconds: float, what: str, **options: Any
) -> httpx.Response:
    """``client.request(method, url, **options)``, its body read within ``seconds`` by
    :func:`read_body`; the answer comes back complete (decoded, so without Content-Encoding)."""
    started = time.monotonic()
    with client.stream(method, url, **options) as streamed:
        body = read_body(streamed.iter_bytes(), started=started, seconds=seconds, what=what)
    headers = [
        (name, value)
        for name, value in streamed.headers.multi_items()
        if name.lower() != "content-encoding"
    ]
    return httpx.Response(
        streamed.status_code,
        headers=headers,
        content=body,
        request=streamed.request,
        extensions=streamed.extensions,
    )


class DeadlineAdapter(HTTPAdapter):
    """A requests adapter: the (connect, read) ``timeout`` on every request unless one is given,
    and the body read within :func:`request_deadline` (a :class:`TransientError` past it)."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.timeout = timeout
        self.deadline = request_deadline(timeout)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        started = time.monotonic()
        proxies = self.route(request, proxies)
        response = super().send(
            request,
            stream=True,
            timeout=timeout or self.timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )
        if stream:
            return response
        what = urlsplit(request.url or "").path or "/"
        try:
            body = read_body(
                _reads(response.raw), started=started, seconds=self.deadline, what=what
            )
        except BaseException:
            response.close()  # the connection is mid-answer: drop it, never pool it
            raise
        # what requests' own Response.content does once it has read the stream
        response._content = body
        response._content_consumed = True  # type: ignore[attr-defined]
        return response

    def route(
        self, request: requests.PreparedRequest, proxies: Mapping[str, str] | None
    ) -> Mapping[str, str] | None:
        """Where ``request`` goes: a subclass may rewrite its URL in place and return the proxies
        for the new one; as it is, nothing changes."""
        return proxies


def _reads(raw: BaseHTTPResponse) -> Iterator[bytes]:
    """The decoded body, one socket read at a time (``iter_content`` would block until a whole
    chunk arrived, however slowly), with urllib3's errors raised as requests raises them."""
    try:
        while chunk := raw.read1(CHUNK_BYTES, decode_content=True):
            yield chunk
    except ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(exc) from exc
    except ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
