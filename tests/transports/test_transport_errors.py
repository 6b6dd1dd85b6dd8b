"""I/O failures become the millis_proto error family, with the right kind and wording."""

from __future__ import annotations

import errno
import socket
import ssl

import anyio
import pytest
import trio

from millis_proto import ConfigError, Endpoint, FailureKind, StartRequest, parse_endpoint
from transports._errors import BaseExceptionGroup, connect_failure, describe, redact, sentence
from transports.anyio import connect

ENDPOINT: Endpoint = parse_endpoint("wss://api.example:8080/millis")


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    """``outer`` raised ``from cause``, as the stream libraries do."""
    try:
        raise outer from cause
    except BaseException as exc:
        return exc


def cert_error(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    error.verify_message = message
    return error


def test_dns_failure() -> None:
    failure = connect_failure(socket.gaierror(-2, "Name or service not known"), ENDPOINT)
    assert failure.kind is FailureKind.DNS
    assert str(failure) == (
        "Could not find the server 'api.example': the host name did not resolve "
        "(Name or service not known)."
    )


def test_certificate_problem_inside_a_trio_broken_stream() -> None:
    error = chained(trio.BrokenResourceError(), cert_error("certificate has expired"))
    failure = connect_failure(error, ENDPOINT)
    assert failure.kind is FailureKind.TLS
    assert str(failure) == (
        "The TLS certificate of api.example was not accepted: certificate has expired."
    )


def test_refused_inside_an_exception_group() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    group = BaseExceptionGroup("attempts", [refused, OSError(errno.ENETUNREACH, "unreachable")])
    failure = connect_failure(chained(OSError("All connection attempts failed"), group), ENDPOINT)
    assert failure.kind is FailureKind.REFUSED


def test_os_timeout_and_anything_else() -> None:
    assert connect_failure(TimeoutError(), ENDPOINT).kind is FailureKind.TIMEOUT
    other = connect_failure(OSError(errno.EHOSTUNREACH, "No route to host"), ENDPOINT)
    assert other.kind is FailureKind.NETWORK
    assert str(other) == "Could not connect to api.example:8080 (no route to host)."


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (
            chained(anyio.BrokenResourceError(), ssl.SSLEOFError(8, "EOF occurred")),
            "the TLS peer closed the connection without close_notify",
        ),
        (
            chained(trio.BrokenResourceError(), ConnectionResetError(errno.ECONNRESET, "x")),
            "the connection was reset by the peer",
        ),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), "the peer stopped receiving (broken pipe)"),
        (anyio.ClosedResourceError(), "the connection was closed locally"),
    ],
)
def test_describe_says_why_a_connection_broke(error: BaseException, words: str) -> None:
    assert describe(error) == words


def test_redact_and_sentence() -> None:
    assert redact("bad key pk_1 given", "pk_1") == "bad key <public key> given"
    assert redact("nothing", None) == "nothing"
    assert sentence("connection lost: reset") == "Connection lost: reset."
    assert sentence("") == "No reason given."


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("connect_timeout", 0),
        ("disconnect_timeout", -1),
        ("max_queued_events", 0),
        ("max_message_bytes", 0),
    ],
)
@pytest.mark.anyio
async def test_bad_options_fail_before_any_io(option: str, value: object) -> None:
    request = StartRequest(public_key="pk_x", agent_id="a")
    with pytest.raises(ConfigError, match=option):
        async with connect("ws://127.0.0.1:9/millis", request, **{option: value}):  # type: ignore[misc]
            pytest.fail("connected")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
