"""The collectors over HTTPS, as every real platform API is served: each real client (tweepy, praw,
httpx) against its sandbox serving TLS with a certificate from a local test CA (trustme)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.sandbox import fleet
from monitor.sandbox.faults import TRICKLE_BYTES
from tests.conftest import LocalCA
from tests.platforms.test_contract import World, advance, all_kinds, open_world

# where each client library looks for extra trusted CAs: requests (tweepy, praw) and httpx
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


@pytest.fixture(params=fleet.PLATFORMS)
def tls_world(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    local_ca: LocalCA,
) -> Iterator[World]:
    for variable in CA_VARIABLES:
        monkeypatch.setenv(variable, str(local_ca.bundle))
    with open_world(request.param, tmp_path, monkeypatch, tls=local_ca.server) as world:
        assert world.server.url.startswith("https://")
        yield world


def test_tls_collects_everything_and_bounds_a_header_trickle(tls_world: World) -> None:
    world = tls_world
    advance(world)  # half the traffic, collected over TLS
    assert world.stored(*all_kinds())
    before = world.cursor("posts"), world.stored("post", "reply")
    # the status line and headers dripped one byte at a time, each gap under the read timeout:
    # over TLS the deadline must still cut them (requests: a timer shuts an SSL socket down while
    # another thread reads it; httpx: the stream returned by start_tls keeps the deadline)
    world.server.add_fault("trickle_headers", times=2, delay=0.4)
    started = time.monotonic()
    results = world.collect()
    took = time.monotonic() - started
    assert results["posts"].outcome == "failed"
    assert "not complete in 2s" in (results["posts"].error or "")
    assert took < TRICKLE_BYTES * 0.4, took  # two attempts of 2 s, not of 8 s
    assert (world.cursor("posts"), world.stored("post", "reply")) == before
    healed = world.collect()
    assert {r.outcome for r in healed.values()} == {"ok"}
    assert world.stored(*all_kinds()) == world.expected(*all_kinds())


def test_tls_refuses_a_certificate_it_cannot_trust_clearly_and_stores_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    local_ca: LocalCA,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for variable in CA_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    for platform in fleet.PLATFORMS:
        (tmp_path / platform).mkdir()
        with open_world(platform, tmp_path / platform, monkeypatch, tls=local_ca.server) as world:
            results = world.collect()
            assert results and {r.outcome for r in results.values()} != {"ok"}, platform
            failed = [r for r in results.values() if r.outcome != "ok"]
            for result in failed:
                error = result.error or ""
                assert "its TLS certificate is not trusted here" in error, (platform, error)
                assert "REQUESTS_CA_BUNDLE" in error and "SSL_CERT_FILE" in error
            assert world.stored(*all_kinds()) == set()
            assert world.server.requests == []  # no request got past the handshake
    assert not [r for r in caplog.records if r.exc_info]  # a clear line, not a traceback
