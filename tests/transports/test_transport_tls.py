"""TLS: certificates made in the test with trustme, peers written with websockets and ours."""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from typing import Any

import anyio
import pytest
from transport_helpers import (
    SECRET_KEY,
    Peer,
    Tls,
    is_a,
    open_session,
    read_events,
    read_until_error,
    wait_for_method,
)

from millis_proto import (
    ClientConfig,
    ClientConnection,
    CloseInitiator,
    ConfigError,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionLost,
    FailureKind,
    InitiateReceived,
    Ready,
    StartRequest,
)
from transports.server import ServerSession, serve

pytestmark = pytest.mark.anyio


async def _ready_then_wait_close(ws: Any, peer: Peer) -> None:
    peer.results["initiate"] = await open_session(ws)
    await ws.wait_closed()
    peer.results["close_code"] = ws.close_code


async def test_trusted_through_cafile(
    connect: Any, peer: Any, start_request: Any, tls: Tls
) -> None:
    server = peer(_ready_then_wait_close, ssl=tls.server)
    async with connect(server.url("wss"), start_request, cafile=tls.ca_file) as session:
        await read_events(session, is_a(Ready))
    await server.wait_done()
    assert server.results["initiate"]["public_key"] == SECRET_KEY
    assert server.results["close_code"] == 1000


async def test_trusted_through_ssl_cert_file(
    connect: Any,
    peer: Any,
    start_request: Any,
    tls: Tls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default context reads the system trust store, so SSL_CERT_FILE works."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    server = peer(_ready_then_wait_close, ssl=tls.server)
    async with connect(server.url("wss"), start_request) as session:
        await read_events(session, is_a(Ready))
    await server.wait_done()


async def test_trusted_through_an_ssl_context(
    connect: Any, peer: Any, start_request: Any, tls: Tls
) -> None:
    server = peer(_ready_then_wait_close, ssl=tls.server)
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    async with connect(server.url("wss"), start_request, ssl_context=context) as session:
        await read_events(session, is_a(Ready))
    await server.wait_done()


async def test_untrusted_certificate_is_refused(
    connect: Any, peer: Any, start_request: Any, tls: Tls
) -> None:
    server = peer(_ready_then_wait_close, ssl=tls.server)
    with pytest.raises(ConnectionFailed) as caught:
        async with connect(server.url("wss"), start_request):
            pytest.fail("trusted a certificate from an unknown CA")
    assert caught.value.kind is FailureKind.TLS
    message = str(caught.value)
    assert message.startswith("The TLS certificate of 127.0.0.1 was not accepted: ")
    assert "issuer certificate" in message or "self-signed" in message
    assert SECRET_KEY not in message


async def test_certificate_for_another_host_is_refused(
    connect: Any,
    peer: Any,
    start_request: Any,
    tls: Tls,
) -> None:
    """Host name checking is on: a trusted certificate for ``localhost`` does not do
    for 127.0.0.1."""
    server = peer(_ready_then_wait_close, ssl=tls.localhost_only)
    with pytest.raises(ConnectionFailed) as caught:
        async with connect(server.url("wss"), start_request, cafile=tls.ca_file):
            pytest.fail("accepted a certificate for another host")
    assert caught.value.kind is FailureKind.TLS
    assert "mismatch" in str(caught.value)


async def test_tls_peer_vanishing_without_close_notify(
    connect: Any, peer: Any, start_request: Any, tls: Tls, flavor: str
) -> None:
    """TCP ends under TLS without close_notify: ConnectionLost (1006) that says so."""

    async def script(ws: Any, peer: Peer) -> None:
        await open_session(ws)
        await wait_for_method(ws, "go")
        ws.transport.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        ws.transport.abort()

    server = peer(script, ssl=tls.server)
    async with connect(server.url("wss"), start_request, cafile=tls.ca_file) as session:
        await read_events(session, is_a(Ready))
        await session.send_message("go")
        events, error = await read_until_error(session)
    assert isinstance(error, ConnectionLost)
    assert events[-1].code == 1006
    if flavor in ("asyncio-asyncio", "asyncio-anyio"):
        # asyncio's SSL layer reports a vanished TLS peer as a plain end of stream.
        assert str(error) == (
            "Connection lost: the peer closed the connection without a WebSocket close handshake."
        )
    else:
        assert str(error) == (
            "Connection lost: the TLS peer closed the connection without close_notify."
        )
    await server.wait_done()


async def test_own_server_over_tls(connect: Any, start_request: Any, tls: Tls) -> None:
    seen: list[Any] = []
    finished = anyio.Event()

    async def handler(session: ServerSession) -> None:
        async for event in session:
            seen.append(event)
            if isinstance(event, InitiateReceived):
                session.server.send_ready("tls-1")
                await session.flush()
        finished.set()

    async with anyio.create_task_group() as group:
        address = await group.start(functools.partial(serve, handler, ssl_context=tls.server))
        assert address.url.startswith("wss://127.0.0.1:")
        async with connect(address.url, start_request, cafile=tls.ca_file) as session:
            await read_events(session, is_a(Ready))
            assert session.session_id == "tls-1"
        with anyio.fail_after(5):
            await finished.wait()
        group.cancel_scope.cancel()
    assert seen[-1] == ConnectionClosed(code=1000, reason="", initiator=CloseInitiator.REMOTE)


async def test_tls_handshake_never_answered(
    connect: Any, silent_listener: int, start_request: Any
) -> None:
    with pytest.raises(ConnectionFailed) as caught:
        async with connect(
            f"wss://127.0.0.1:{silent_listener}/millis", start_request, connect_timeout=0.3
        ):
            pytest.fail("connected to a server that never answered")
    assert caught.value.kind is FailureKind.TIMEOUT
    assert "TCP/TLS connection" in str(caught.value)


async def test_tls_options_need_a_wss_url(connect: Any, start_request: Any, tls: Tls) -> None:
    with pytest.raises(ConfigError, match="wss://"):
        async with connect("ws://127.0.0.1:9/millis", start_request, cafile=tls.ca_file):
            pytest.fail("connected")


async def test_a_bug_in_a_timer_ends_the_session_and_is_not_swallowed(
    connect: Any, flavor: str, peer: Any, tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core raising in ``handle_timer`` (a bug), over TLS (trio's timer task) and on
    asyncio (a loop callback): the session ends within bounds and the error comes out —
    as itself from a task-based session; from the native asyncio one, as a
    ``ConnectionLost`` naming it, with the error itself given to the loop's exception
    handler — instead of the session running on with no timers."""
    server = peer(_ready_then_wait_close, ssl=tls.server)
    real = ClientConnection.handle_timer
    armed: list[bool] = []

    def buggy(self: ClientConnection, now: float) -> None:
        if armed:
            raise RuntimeError("a bug in the core")
        real(self, now)

    monkeypatch.setattr(ClientConnection, "handle_timer", buggy)
    reported: list[BaseException] = []
    native_asyncio = flavor in ("asyncio-asyncio", "asyncio-anyio")
    if native_asyncio:
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: reported.append(context["exception"])
        )

    async def run() -> None:
        async with connect(
            server.url("wss"),
            StartRequest(public_key=SECRET_KEY, agent_id="agent-1"),
            cafile=tls.ca_file,
            config=ClientConfig(liveness_timeout=0.2),
            disconnect_timeout=0.2,
        ) as session:
            await read_events(session, is_a(Ready))
            armed.append(True)
            async for _event in session:
                pass

    with (
        anyio.fail_after(5),
        pytest.raises(ConnectionLost if native_asyncio else RuntimeError) as caught,
    ):
        await run()
    if native_asyncio:
        assert "internal error in a timer (RuntimeError)" in str(caught.value)
        assert [str(exc) for exc in reported] == ["a bug in the core"]
    else:
        assert "a bug in the core" in str(caught.value)
