"""One guarded request: the JSON POST of the Slack and webhook channels, the heartbeat's GET.

Each attempt re-checks the URL (:func:`~monitor.notify.urlguard.check_url`), connects to
the checked address only (pinned, see :mod:`~monitor.notify.urlguard`), never follows a
redirect, ignores proxy environment variables, and maps the outcome to success or a classified
:class:`~monitor.notify.base.DeliveryError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from monitor.config.urls import UnsafeURLError, parse_url, redact_url
from monitor.logs import register_secret
from monitor.notify.base import Channel, DeliveryError, parse_retry_after
from monitor.notify.text import clean_line
from monitor.notify.urlguard import ResolutionError, Resolver, check_url

logger = logging.getLogger(__name__)

USER_AGENT = "touchpoint-alerts/1"
MAX_ERROR_BODY = 2048
_HEADER_SAFE = re.compile(r"[!-~]{1,200}")
_RETRYABLE_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Target:
    """Where and how a channel posts: URL policy, timeout and TLS settings."""

    name: str
    url: str
    timeout: float
    allow_private: bool
    allow_http: bool
    resolver: Resolver | None = None
    ssl_context: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return f"Target(name={self.name!r}, url={redact_url(self.url)!r})"

    @classmethod
    def guarded(
        cls,
        *,
        name: str,
        url: str,
        timeout: float,
        allow_private: bool,
        allow_http: bool,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        secret_path: bool,
    ) -> Target:
        """A target whose URL's secret parts are masked in the logs (its path too, if
        ``secret_path``) and whose form is checked now (no DNS)."""
        register_url_secrets(url, whole_path=secret_path)
        parse_url(url, allow_http=allow_http)
        return cls(name, url, timeout, allow_private, allow_http, resolver, ssl_context)

    def check(self) -> None:
        """Check the URL now (DNS included); raise ``ValueError``/``OSError`` if it is unusable."""
        check_url(
            self.url,
            allow_private=self.allow_private,
            allow_http=self.allow_http,
            resolver=self.resolver,
        )


def register_url_secrets(url: str, *, whole_path: bool) -> None:
    """Ask the log filter to mask the URL's secret parts: a user name and password, its query,
    and its path if asked. ``ValueError`` (naming no part of it) if it is no URL at all."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise ValueError("not a valid URL (a space, control character or bad port?)") from None
    if parsed.userinfo:
        register_secret(parsed.userinfo.decode("ascii", "replace"))
        register_secret(parsed.password)
    if parsed.query:
        register_secret(parsed.query.decode("ascii", "replace"))
    path = parsed.raw_path.decode("ascii", "replace")
    if whole_path and len(path) >= 8:
        register_secret(path)


def header_key(key: str) -> str:
    """An ``Idempotency-Key`` value: the key itself when it is short visible ASCII, else a hash."""
    if _HEADER_SAFE.fullmatch(key):
        return key
    return "sha256-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def json_body(payload: Mapping[str, Any]) -> bytes:
    """Deterministic compact UTF-8 JSON (sorted keys), so every retry sends the same bytes."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text.encode("utf-8", "replace")


def _read_snippet(response: httpx.Response) -> str:
    """At most :data:`MAX_ERROR_BODY` bytes of the response body, as one clean line."""
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= MAX_ERROR_BODY:
            break
    return clean_line(data[:MAX_ERROR_BODY].decode("utf-8", "replace"), 120)


def _classify(target: Target, response: httpx.Response) -> None:
    """Return on 2xx; otherwise raise the matching :class:`DeliveryError`."""
    status = response.status_code
    if 200 <= status < 300:
        return
    where = f"{target.name}: {redact_url(target.url)}"
    if 300 <= status < 400:
        raise DeliveryError(f"{where} answered {status} (redirect not followed)", retryable=False)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status >= 500 or status in _RETRYABLE_4XX:
        raise DeliveryError(f"{where} answered {status}", retryable=True, retry_after=retry_after)
    snippet = _read_snippet(response)
    raise DeliveryError(f"{where} answered {status}: {snippet}", retryable=False)


def _request(
    client: httpx.Client, target: Target, method: str, body: bytes, headers: Mapping[str, str]
) -> httpx.Request:
    """A request to the checked, pinned address (see the urlguard module)."""
    try:
        checked = check_url(
            target.url,
            allow_private=target.allow_private,
            allow_http=target.allow_http,
            resolver=target.resolver,
        )
    except UnsafeURLError as exc:
        raise DeliveryError(f"{target.name}: {exc}", retryable=False) from None
    except ResolutionError as exc:
        raise DeliveryError(f"{target.name}: {exc}", retryable=True) from None
    extensions = {"sni_hostname": checked.sni_hostname} if checked.sni_hostname else {}
    all_headers = {"Host": checked.host_header, "User-Agent": USER_AGENT, **headers}
    return client.build_request(
        method, checked.pinned_url(), content=body, headers=all_headers, extensions=extensions
    )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it, at most five deep."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def _transport_reason(exc: httpx.TransportError) -> str:
    """Why a request did not get through, e.g. "ConnectError (Connection refused)": the
    operating system's words for it, never the exception's text (which may hold the URL)."""
    causes = list(_causes(exc))
    if any(isinstance(c, ssl.SSLCertVerificationError) for c in causes):
        return "certificate verification failed"
    why = next((c.strerror for c in causes if isinstance(c, OSError) and c.strerror), None)
    return f"{type(exc).__name__} ({why})" if why else type(exc).__name__


def post_json(target: Target, body: bytes, headers: Mapping[str, str]) -> None:
    """POST the JSON ``body`` once; return on 2xx, raise :class:`DeliveryError` otherwise."""
    json_headers = {"Content-Type": "application/json; charset=utf-8", **headers}
    request_once(target, "POST", body, json_headers)


def request_once(
    target: Target, method: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> None:
    """Send one request; return on 2xx, raise :class:`DeliveryError` otherwise."""
    verify: ssl.SSLContext | bool = target.ssl_context or True
    try:
        with httpx.Client(
            timeout=httpx.Timeout(target.timeout),
            follow_redirects=False,
            trust_env=False,
            verify=verify,
        ) as client:
            request = _request(client, target, method, body, headers or {})
            response = client.send(request, stream=True)
            try:
                _classify(target, response)
            finally:
                response.close()
    except httpx.TimeoutException as exc:
        where = f"{target.name}: {redact_url(target.url)}"
        reason = f"{type(exc).__name__} after {target.timeout:g} s"
        raise DeliveryError(f"{where}: {reason}", retryable=True) from None
    except httpx.TransportError as exc:
        where = f"{target.name}: {redact_url(target.url)}"
        raise DeliveryError(f"{where}: {_transport_reason(exc)}", retryable=True) from None
    except httpx.HTTPError as exc:
        where = f"{target.name}: {redact_url(target.url)}"
        raise DeliveryError(f"{where}: {type(exc).__name__}", retryable=False) from None
    logger.debug("%s: delivered to %s", target.name, redact_url(target.url))


class HttpChannel(Channel):
    """A channel that POSTs JSON to one URL, checked (and pinned) before every send."""

    name: str
    max_items: int
    max_text: int
    _target: Target

    def _configure(
        self,
        *,
        name: str,
        url: str,
        timeout: float,
        allow_private: bool,
        allow_http: bool | None,
        max_items: int,
        max_text: int,
        resolver: Resolver | None,
        ssl_context: ssl.SSLContext | None,
        secret_path: bool,
    ) -> None:
        """Check the URL's form now (no DNS); ``allow_http`` defaults to ``allow_private``."""
        self._target = Target.guarded(
            name=name,
            url=url,
            timeout=timeout,
            allow_private=allow_private,
            allow_http=allow_private if allow_http is None else allow_http,
            resolver=resolver,
            ssl_context=ssl_context,
            secret_path=secret_path,
        )
        self.name = name
        self.max_items = max_items
        self.max_text = max_text

    def validate(self) -> None:
        """Resolve and check the URL (refuses private destinations unless allowed)."""
        self._target.check()
