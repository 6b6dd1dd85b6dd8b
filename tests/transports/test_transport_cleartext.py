"""Plain ``ws://`` carries the public key in cleartext: refused off loopback, before any I/O.

An audit hook records every ``socket.getaddrinfo`` and ``socket.connect`` the process
makes, so "before any I/O" is checked, not assumed. The remote address is TEST-NET-1
(RFC 5737), which is never routed: even a regression would send nothing anywhere.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from millis_proto import ConfigError, StartRequest, parse_endpoint
from transports._client import check_cleartext, is_loopback

pytestmark = pytest.mark.anyio

_NETWORK_CALLS: list[tuple[str, tuple[Any, ...]]] = []
_RECORDING = [False]


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _RECORDING[0] and event in {"socket.getaddrinfo", "socket.connect"}:
        _NETWORK_CALLS.append((event, args))


sys.addaudithook(_hook)  # hooks cannot be removed; this one only records while asked to


@pytest.mark.parametrize("url", ["ws://192.0.2.1/millis", "ws://api.example.com:80/millis"])
async def test_cleartext_to_a_remote_host_is_refused_without_network_io(
    connect: Any, start_request: StartRequest, url: str
) -> None:
    _NETWORK_CALLS.clear()
    _RECORDING[0] = True
    try:
        with pytest.raises(ConfigError, match="refusing plain ws://") as caught:
            async with connect(url, start_request):
                pytest.fail("connected in cleartext")
    finally:
        _RECORDING[0] = False
    assert _NETWORK_CALLS == []
    assert "allow_insecure=True" in str(caught.value)
    assert start_request.public_key not in str(caught.value)


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST.", "127.0.0.1", "127.8.9.10", "::1", "[::1]"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["192.0.2.1", "example.com", "localhost.example", "::2", "10.0.0.1"]
)
def test_not_loopback_hosts(host: str) -> None:
    assert not is_loopback(host)


def test_explicit_opt_in_and_wss_pass_the_check() -> None:
    check_cleartext(parse_endpoint("ws://192.0.2.1/millis"), allow_insecure=True)
    check_cleartext(parse_endpoint("wss://192.0.2.1/millis"), allow_insecure=False)
    check_cleartext(parse_endpoint("ws://[::1]:8080/millis"), allow_insecure=False)
