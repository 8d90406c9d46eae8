"""The webhook URL guard: private, loopback and metadata destinations refused unless allowed."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from monitor.config.urls import UnsafeURLError, redact_url
from monitor.notify.urlguard import ResolutionError, Resolver, check_url, is_public_address

PUBLIC = "93.184.216.34"


def stub(mapping: dict[str, Sequence[str]]) -> Resolver:
    """A resolver answering from ``mapping`` (no DNS); unknown names fail like NXDOMAIN."""

    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in mapping:
            raise OSError(f"no such host {host}")
        return mapping[host]

    return resolve


RESOLVER = stub(
    {
        "localhost": ["127.0.0.1", "::1"],
        "internal.example.com": ["10.0.0.5"],
        "mixed.example.com": [PUBLIC, "192.168.1.2"],
        "public.example.com": [PUBLIC],
        "shared.example.com": ["100.64.1.1"],
    }
)

REFUSED = [
    "http://127.0.0.1:8080/",
    "https://127.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 around 169.254.169.254
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://127.1/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://10.0.0.5/",
    "http://172.16.0.1/",
    "http://192.168.0.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://localhost:9000/hook",
    "http://internal.example.com/hook",  # a public name resolving to 10.0.0.5
    "http://mixed.example.com/hook",  # one private address is enough
    "http://shared.example.com/hook",  # 100.64.0.0/10 (carrier-grade NAT)
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused_without_the_allow_flag(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="non-public address"):
        check_url(url, allow_http=True, resolver=RESOLVER)


@pytest.mark.parametrize("url", REFUSED)
def test_allowed_with_the_allow_flag(url: str) -> None:
    checked = check_url(url, allow_private=True, allow_http=True, resolver=RESOLVER)
    ipaddress.ip_address(checked.address)  # pinned to an address, never to a name


def test_is_public_address() -> None:
    assert is_public_address(ipaddress.ip_address(PUBLIC))
    assert is_public_address(ipaddress.ip_address("2606:4700::1111"))
    assert not is_public_address(ipaddress.ip_address("::ffff:10.0.0.1"))


def test_numeric_forms_are_read_like_inet_aton() -> None:
    for url in ("http://2130706433/", "http://0x7f.1/", "http://127.1/"):
        checked = check_url(url, allow_private=True, allow_http=True)
        assert checked.address == "127.0.0.1"


def test_public_address_accepted_and_pinned() -> None:
    checked = check_url("https://public.example.com:8443/a/b?c=1", resolver=RESOLVER)
    assert checked.address == PUBLIC
    assert str(checked.pinned_url()) == f"https://{PUBLIC}:8443/a/b?c=1"
    assert checked.host_header == "public.example.com:8443"
    assert checked.sni_hostname == "public.example.com"


def test_ipv6_pinned_url_has_brackets() -> None:
    checked = check_url(
        "http://localhost/x",
        allow_private=True,
        allow_http=True,
        resolver=stub({"localhost": ["::1"]}),
    )
    assert str(checked.pinned_url()) == "http://[::1]/x"
    assert checked.sni_hostname is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://public.example.com/", "scheme must be https"),
        ("ftp://public.example.com/", "scheme must be https"),
        ("file:///etc/passwd", "scheme must be https"),
        ("javascript:alert(1)", "scheme must be https"),
        ("https:///nohost", "no host|invalid"),
        ("https://public.example.com/#frag", "fragment"),
        ("not a url", "scheme|invalid"),
    ],
)
def test_form_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURLError, match=reason):
        check_url(url, resolver=RESOLVER)


def test_http_needs_an_explicit_opt_in() -> None:
    check_url("http://public.example.com/", allow_http=True, resolver=RESOLVER)


def test_unresolvable_host_is_a_resolution_error() -> None:
    with pytest.raises(ResolutionError, match="cannot resolve"):
        check_url("https://nowhere.invalid/", resolver=RESOLVER)


def test_errors_and_redaction_never_show_path_or_query() -> None:
    url = "http://user:pw@10.0.0.5:81/services/T0/B0/SECRETPATH?token=SECRETQ"
    with pytest.raises(UnsafeURLError) as info:
        check_url(url, allow_http=True)
    for secret in ("SECRETPATH", "SECRETQ", "pw"):
        assert secret not in str(info.value)
    assert redact_url(url) == "http://10.0.0.5:81/…"
