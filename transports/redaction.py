"""Keeping the public key out of log records: :class:`RedactingFilter`.

The library logs with the standard :mod:`logging` module under its package names
(:data:`LIBRARY_LOGGERS`). Its own messages never include the key, but a record can quote
what the library did not write: an exception and its traceback, a URL whose query carries
the key, a server's words. An application that shows or stores the library's records adds
the filter to the handlers that receive them::

    import logging
    from transports import RedactingFilter

    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter(request.public_key))
    logging.getLogger("transports").addHandler(handler)

Put it on a *handler*: a handler's filter sees every record the handler is given, those of
child loggers included, while a logger's filter sees only the records logged on that very
logger. The ``millis-proto`` command installs one on its stderr handler for the key of
the call. Errors need nothing of the kind: every ``connect`` redacts the errors it raises.
"""

from __future__ import annotations

import logging

from millis_proto.errors import redact

__all__ = ["LIBRARY_LOGGERS", "RedactingFilter"]

#: The loggers of the library (each package's children log under it).
LIBRARY_LOGGERS = ("millis_proto", "transports", "audio_backends")


class RedactingFilter(logging.Filter):
    """Replace public keys in a record's message, arguments, traceback and stack.

    ``secrets`` are the keys to hide (``None`` and empty ones are ignored); :meth:`add`
    adds another. The forms are those of :func:`millis_proto.errors.redact` (raw,
    JSON-escaped, percent-encoded). The record is changed in place — the message is
    formatted with its arguments first — and always let through.
    """

    def __init__(self, *secrets: str | None) -> None:
        super().__init__()
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Hide ``secret`` too, from now on."""
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        clean = self._redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text once it is set, so the traceback they print is
            # this redacted one.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)
        return True

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = redact(text, secret)
        return text
