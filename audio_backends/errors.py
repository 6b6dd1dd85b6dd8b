"""The audio backends' errors: one branch of the :class:`~millis_proto.MillisError` family.

* :class:`MissingExtraError` — an optional dependency is not installed; the message names
  the ``pip install 'millis-proto[...]'`` extra (or the system library) that provides it.
* :class:`AudioFileError` — an audio file cannot be used; the message names the file and
  the problem (missing, empty, truncated, not audio, full).
* :class:`AudioDeviceError` — PortAudio is missing, no device matches, or a device refused
  to open.

Messages are sentences for a person.
"""

from __future__ import annotations

import os

from millis_proto import MillisError

__all__ = ["AudioDeviceError", "AudioError", "AudioFileError", "MissingExtraError"]


class AudioError(MillisError):
    """Base class of every error raised by the audio backends."""


class MissingExtraError(AudioError, ImportError):
    """An optional dependency is missing. ``name`` is the module that could not be imported.

    It is also an :class:`ImportError`, so ``except ImportError`` keeps working.
    """

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name  # ImportError's attribute: the module that is missing
        self.msg = message

    @classmethod
    def for_module(cls, feature: str, module: str | None, extra: str) -> MissingExtraError:
        """The error for ``feature`` needing ``module`` from the ``extra`` extra."""
        what = f"the Python package {module!r}" if module else "a Python package"
        return cls(
            f"{feature} needs {what}, which is not installed: pip install 'millis-proto[{extra}]'",
            name=module,
        )


class AudioFileError(AudioError):
    """An audio file cannot be read or written. ``path`` and ``problem`` are kept apart."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"audio file {self.path!r} {problem}")


class AudioDeviceError(AudioError):
    """A microphone or speaker cannot be used (PortAudio missing, no such device, …)."""
