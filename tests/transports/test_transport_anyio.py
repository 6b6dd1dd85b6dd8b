"""``transports.anyio.connect`` opens the running backend's native session."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from transport_helpers import Peer, open_session, read_events

pytestmark = pytest.mark.anyio

#: flavour -> the session class ``transports.anyio.connect`` must give on that backend.
EXPECTED = {
    "asyncio-anyio": "transports.asyncio.AsyncioSession",
    "trio-anyio": "transports.trio.TrioSession",
    "asyncio-generic": "transports._client.AnyioSession",
    "trio-generic": "transports._client.AnyioSession",
}


@pytest.mark.parametrize("flavor", sorted(EXPECTED))
async def test_each_backend_gets_its_native_session(
    connect: Any, peer: Any, start_request: Any, flavor: str
) -> None:
    async def agent(ws: Any, peer: Peer) -> None:
        await open_session(ws)
        await ws.send(bytes(640))  # a frame of agent audio, then the server hangs up
        await ws.close(1000, "bye")

    server = peer(agent)
    async with connect(server.url(), start_request) as session:
        kind = f"{type(session).__module__}.{type(session).__qualname__}"
        assert kind == EXPECTED[flavor]
        assert (await read_events(session))[-1].code == 1000
        assert session.connection.playback.queued_samples == 320
    await server.wait_done()


def test_an_asyncio_program_never_imports_trio() -> None:
    """On asyncio, choosing the backend does not load trio (or the trio transport)."""
    code = (
        "import asyncio, sys\n"
        "import transports.anyio as t\n"
        "from millis_proto import StartRequest\n"
        "async def main():\n"
        "    try:\n"
        "        async with t.connect('ws://127.0.0.1:9/x', StartRequest(public_key='k', "
        "agent_id='a'), connect_timeout=2):\n"
        "            pass\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__)\n"
        "asyncio.run(main())\n"
        "print('trio' in sys.modules, 'transports.trio' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split("\n")
    assert out[0] == "ConnectionFailed"  # refused: nothing listens on port 9
    assert out[1] == "False False"
