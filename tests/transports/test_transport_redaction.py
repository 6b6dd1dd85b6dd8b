"""No error and no log record of the library carries the public key.

Against real loopback peers, through every transport (native trio and asyncio, anyio on
both): a rejection body that echoes the key, a close reason that echoes it, and errors
that quote a URL whose query carries it. The key is chosen so that its raw, JSON-escaped
and percent-encoded forms all differ; none of them may appear.
"""

from __future__ import annotations

import json
import logging
import traceback
import urllib.parse
from typing import Any

import pytest
from raw_peers import rejecting_server
from transport_helpers import Peer, open_session

from millis_proto import (
    ConfigError,
    ConnectionClosedByServer,
    ConnectionFailed,
    MillisError,
    StartRequest,
)
from millis_proto.errors import REDACTED
from transports import RedactingFilter

pytestmark = pytest.mark.anyio

KEY = 'pk_live/SECRET+"9c" é'
FORMS = {KEY, urllib.parse.quote(KEY, safe=""), urllib.parse.quote_plus(KEY), json.dumps(KEY)[1:-1]}
REQUEST = StartRequest(public_key=KEY, agent_id="agent-1")
QUERY = "?public_key=" + urllib.parse.quote(KEY, safe="")


assert len(FORMS) == 4  # the four forms differ, so each one is checked


def assert_no_key(text: str) -> None:
    for form in FORMS:
        assert form not in text, text


def everything_about(exc: BaseException) -> str:
    """What a person could see of ``exc``: its message, and the full traceback with causes."""
    return str(exc) + "".join(traceback.format_exception(exc))


@pytest.mark.parametrize("form", sorted(FORMS))
async def test_a_rejection_that_echoes_the_key_in_any_form(connect: Any, form: str) -> None:
    body = f"invalid public key {form} for this agent".encode()
    with rejecting_server(body) as url, pytest.raises(ConnectionFailed) as caught:
        async with connect(url + QUERY, REQUEST, connect_timeout=5):
            pytest.fail("connected")
    assert "HTTP 401" in str(caught.value) and REDACTED in str(caught.value)
    assert_no_key(everything_about(caught.value))


async def _close_echoing_the_key(ws: Any, peer: Peer) -> None:
    await open_session(ws)
    reason = f"bad key {urllib.parse.quote(KEY, safe='')} / {json.dumps(KEY)[1:-1]}"
    await ws.close(code=4001, reason=reason)


async def test_a_close_reason_that_echoes_the_key(connect: Any, peer: Any) -> None:
    server = peer(_close_echoing_the_key)
    async with connect(server.url() + QUERY, REQUEST) as session:
        with pytest.raises(ConnectionClosedByServer) as caught:
            async for _ in session:
                pass
    assert caught.value.code == 4001
    assert session.closed is not None
    assert session.closed.reason == f"bad key {REDACTED} / {REDACTED}"
    assert_no_key(everything_about(caught.value) + caught.value.reason)


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("ws://127.0.0.1:9/millis" + QUERY, {"cafile": "ca.pem"}),  # quotes the URL
        ("ws://[::1/millis" + QUERY, {}),  # an invalid URL, quoted
        ("ws://127.0.0.1:99999/millis" + QUERY, {}),
    ],
)
async def test_errors_that_quote_a_url_with_the_key(
    connect: Any, url: str, options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError) as caught:
        async with connect(url, REQUEST, **options):
            pytest.fail("connected")
    assert REDACTED in str(caught.value)
    assert_no_key(everything_about(caught.value))


# --- log records ------------------------------------------------------------------------


def test_the_filter_redacts_messages_arguments_tracebacks_and_stacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.handler.addFilter(RedactingFilter(None, "", KEY))
    log = logging.getLogger("transports.test_redaction")
    with caplog.at_level(logging.DEBUG, logger="transports"):
        log.warning("connecting to %s", "wss://example/millis" + QUERY)
        log.info("request %r", {"public_key": KEY, "n": 1})
        try:
            raise MillisError(f"the server said {json.dumps(KEY)[1:-1]}")
        except MillisError:
            log.exception("it failed")
        log.debug("where %s", KEY, stack_info=True)
        log.warning("nothing secret here: %d", 42)
    assert len(caplog.records) == 5
    shown = caplog.text + "".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert_no_key(shown)
    assert shown.count(REDACTED) >= 4
    assert "Traceback" in caplog.text  # the traceback is kept, only redacted
    assert caplog.records[-1].getMessage() == "nothing secret here: 42"


def test_a_filter_without_a_key_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="transports"):
        logging.getLogger("transports.x").info("%s and %d", "a", 1)
    [record] = caplog.records
    assert record.args == ("a", 1) and record.getMessage() == "a and 1"
