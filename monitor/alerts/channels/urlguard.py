"""SSRF guard for outgoing webhooks: refuse private destinations and pin the checked address.

A webhook URL comes from the config, but the host name in it is resolved by DNS, which an
attacker may control (a public name that resolves to ``10.0.0.5``, or one that changes between the
check and the connection: DNS rebinding).  :func:`check_url` therefore

1. accepts only ``https`` (``http`` only when explicitly allowed) with a host and no fragment;
2. resolves the host once — numeric forms such as ``2130706433`` or ``0x7f.1`` are read the way
   ``inet_aton`` reads them, IPv6 literals as they are — and refuses it when *any* of its
   addresses is loopback, private, link-local, shared (CGNAT), reserved, multicast or unspecified,
   looking inside IPv4-mapped, 6to4 and Teredo IPv6 addresses;
3. returns a :class:`CheckedURL` that names the one address to connect to.

**Pinning.**  The caller sends the request to :meth:`CheckedURL.pinned_url` (the URL with its host
replaced by the checked IP address) with the original ``Host`` header, and, for ``https``, the
``sni_hostname`` request extension of httpx set to the original name, so TLS still sends that name
(SNI) and verifies the certificate against it.  The connection can only go to the address that was
checked; no second DNS lookup happens.  This uses only public httpx API (a URL, a header and a
documented request extension), unlike a custom transport or network backend.  Redirects must not be
followed (``follow_redirects=False``) and proxies must not be used (``trust_env=False``), or the
pin would be bypassed.

Nothing here ever puts the URL's path or query in a message: a Slack webhook URL carries its secret
in the path.  :func:`redact_url` gives a printable form.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURLError(ValueError):
    """The URL is refused by policy (scheme, form, or a non-public destination)."""


class ResolutionError(OSError):
    """The URL's host name could not be resolved (possibly temporary)."""


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed the guard and the address its connection must go to."""

    url: httpx.URL
    address: str

    @property
    def host_header(self) -> str:
        """The ``Host`` header to send: the original host and its explicit port, if any."""
        return self.url.netloc.decode("ascii")

    @property
    def sni_hostname(self) -> str | None:
        """The TLS server name for ``https`` (the original host), else ``None``."""
        return self.url.host if self.url.scheme == "https" else None

    def pinned_url(self) -> httpx.URL:
        """The URL with its host replaced by the checked address."""
        return self.url.copy_with(host=self.address)


def redact_url(url: str | httpx.URL) -> str:
    """``scheme://host[:port]`` only: no user info, path, query or fragment (they may be secret)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<invalid url>"
    netloc = parsed.netloc.decode("ascii", "replace")
    return f"{parsed.scheme}://{netloc}/…" if netloc else "<invalid url>"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4, Teredo or NAT64 IPv6 address, if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(ip: Address) -> bool:
    """True if ``ip`` is a globally routable unicast address (and so is any IPv4 inside it)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public_address(inner):
            return False
    flags = (
        ip.is_private,
        ip.is_loopback,
        ip.is_link_local,
        ip.is_reserved,
        ip.is_multicast,
        ip.is_unspecified,
        ip in _SHARED,
    )
    return ip.is_global and not any(flags)


def _literal(host: str) -> Address | None:
    """The address a literal host denotes: IPv6, dotted IPv4 or an ``inet_aton`` numeric form."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:  # 2130706433, 0x7f.1, 017700000001, 127.1: what C resolvers accept
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from ``getaddrinfo``, in the order the system prefers them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _resolve(host: str, port: int, resolver: Resolver) -> list[Address]:
    """Every address of ``host``; a literal needs no lookup."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        found = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolver(host, port)]
    except (OSError, UnicodeError, ValueError) as exc:
        raise ResolutionError(f"cannot resolve {host!r}: {type(exc).__name__}") from None
    if not found:
        raise ResolutionError(f"cannot resolve {host!r}: no address")
    return found


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
    """The fix to print for a URL refused with ``problem`` (a message of this module's errors);
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


def check_url(
    url: str,
    *,
    allow_private: bool = False,
    allow_http: bool = False,
    resolver: Resolver | None = None,
) -> CheckedURL:
    """Check ``url`` and choose the address to connect to (see the module docstring).

    Raises :class:`UnsafeURLError` when the URL is refused and :class:`ResolutionError` when its
    host cannot be resolved.  With ``allow_private`` every destination is accepted, but the
    connection is still pinned to the resolved address.
    """
    parsed = parse_url(url, allow_http=allow_http)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = _resolve(parsed.host, port, resolver or system_resolver)
    if not allow_private:
        refused = [ip for ip in addresses if not is_public_address(ip)]
        if refused:
            raise UnsafeURLError(
                f"URL {redact_url(parsed)} resolves to a non-public address ({refused[0]}); "
                "set allow_private to send there"
            )
    return CheckedURL(url=parsed, address=str(addresses[0]))
