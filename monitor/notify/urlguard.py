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
in the path.  The checks of the URL's form (:func:`~monitor.config.urls.parse_url`, which the
config uses too) and :func:`~monitor.config.urls.redact_url`, its printable form, live in
:mod:`monitor.config.urls`: this is the network side.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from monitor.config.urls import UnsafeURLError, parse_url, redact_url

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


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
