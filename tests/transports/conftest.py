"""Fixtures for the transport tests: backends, the websockets peer, TLS material, sockets.

The helpers themselves live in transport_helpers.py.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from transport_helpers import SECRET_KEY, Peer, Script, Tls

import transports.anyio
import transports.asyncio
import transports.trio
from millis_proto import StartRequest

#: backend + transport: anyio's connect on both backends (the backend's native session),
#: the native trio and asyncio ones, and the session on anyio's stream interface
#: (connect_generic; on trio too, where anyio's streams run over trio's).
FLAVORS: dict[str, tuple[str, Any]] = {
    "asyncio-anyio": ("asyncio", transports.anyio.connect),
    "trio-anyio": ("trio", transports.anyio.connect),
    "trio-trio": ("trio", transports.trio.connect),
    "asyncio-asyncio": ("asyncio", transports.asyncio.connect),
    "asyncio-generic": ("asyncio", transports.anyio.connect_generic),
    "trio-generic": ("trio", transports.anyio.connect_generic),
}
#: The flavours whose sessions are native (transports._native): sends never wait for the
#: network, backpressure drops audio (reported) and a stalled write is a lost connection.
NATIVE = frozenset({"trio-trio", "asyncio-asyncio", "asyncio-anyio", "trio-anyio"})


@pytest.fixture(params=list(FLAVORS))
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return FLAVORS[flavor][0]


@pytest.fixture
def connect(flavor: str) -> Any:
    """``transports.anyio.connect`` or ``transports.trio.connect``, per flavor."""
    return FLAVORS[flavor][1]


@pytest.fixture
def start_request() -> StartRequest:
    return StartRequest(public_key=SECRET_KEY, agent_id="agent-1")


@pytest.fixture
def peer() -> Iterator[Callable[..., Peer]]:
    """Start a scripted ``websockets`` peer: ``peer(script, **serve_options)``."""
    started: list[Peer] = []

    def start(script: Script, **options: Any) -> Peer:
        started.append(Peer(script, **options))
        return started[-1]

    yield start
    for one in started:
        one.close()


# --- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    localhost_only = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(localhost_only)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Tls(server=server, localhost_only=localhost_only, ca_file=ca_file)


# --- sockets ----------------------------------------------------------------------------


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel does) but never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as listener:
        yield listener.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
