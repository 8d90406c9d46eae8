"""The form of a URL, checked without the network: scheme, host, no fragment.

The config checks a webhook ``url`` written in the file with :func:`parse_url` when it is read,
and says how to fix one it refuses (:func:`url_fix`); the notify layer's URL guard
(:mod:`monitor.notify.urlguard`) builds on the same checks before it resolves the host and pins
the address. Both live here, at the config layer, so that the config never imports the channels
that use it.

Nothing here ever puts the URL's path or query in a message: a Slack webhook URL carries its
secret in the path.  :func:`redact_url` gives a printable form.
"""

from __future__ import annotations

import httpx


class UnsafeURLError(ValueError):
    """The URL is refused by policy (scheme, form, or a non-public destination)."""


def redact_url(url: str | httpx.URL) -> str:
    """``scheme://host[:port]`` only: no user info, path, query or fragment (they may be secret)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<invalid url>"
    netloc = parsed.netloc.decode("ascii", "replace")
    return f"{parsed.scheme}://{netloc}/…" if netloc else "<invalid url>"


def parse_url(url: str, *, allow_http: bool = False) -> httpx.URL:
    """Parse and check the form of ``url``: scheme, host, no fragment.

    Raises :class:`UnsafeURLError`; the message never contains the path or query.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UnsafeURLError("invalid URL") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parsed.scheme not in schemes:
        wanted = " or ".join(schemes)
        raise UnsafeURLError(f"URL scheme must be {wanted}, not {parsed.scheme!r}")
    if not parsed.host:
        raise UnsafeURLError("URL has no host")
    if parsed.fragment:
        raise UnsafeURLError(f"URL {redact_url(parsed)} must not have a fragment")
    return parsed


def url_fix(problem: str, allow_key: str) -> str:
    """The fix to print for a URL refused with ``problem`` (a message of this module's
    errors or of the URL guard's);
    for a private destination it names ``allow_key``, the key that lets one through."""
    problem = problem.lower()
    if "private" in problem or "loopback" in problem:
        allow = f"if that address is really meant, set {allow_key} = true"
        return f"point it at a reachable public address; {allow}"
    if "not a valid url" in problem or "invalid url" in problem:
        return "copy the URL again, whole and with nothing around it"
    if "scheme" in problem or "no host" in problem:
        return 'write the whole URL, starting with https://, e.g. "https://hooks.example.com/path"'
    if "fragment" in problem:
        return "leave out the part of the URL from # on"
    if "cannot resolve" in problem:
        return "check the host name, and that this machine can reach a DNS server"
    return "see this channel's keys in config.example.toml"
