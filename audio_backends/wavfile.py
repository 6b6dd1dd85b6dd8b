"""WAV output: a sink that records what the speaker would have played, and a call recorder.

Theory of operation
-------------------
Both write 16-bit PCM WAV with the standard library alone, through :class:`WavWriter`,
whose header is **correct after every write**: each write appends the samples, then
patches the two size fields, then flushes to the operating system. The usual writers
(``wave``, libsndfile) fix the sizes only on close, so a process that dies before closing
leaves a header claiming no audio. Here:

* normal close, an exception, a cancellation, Ctrl-C (``KeyboardInterrupt``): the owner's
  ``with`` block closes the file, and closing sets the sizes from the file's real length,
  so even an interruption inside a write ends in an exact header;
* a hard kill (SIGKILL, power loss aside): the file is still valid, holding everything up
  to the last completed write. Samples go in before the sizes that count them, so an
  interruption between the two leaves a header that is short, never one that overstates.

The path ``"-"`` writes the WAV to standard output as a stream (for pipes): its two sizes
are the largest a WAV can hold, the usual mark of "length unknown", and are never patched.

Writes are unbuffered (each one reaches the operating system when it returns), so a
failing disk is seen by the write that failed, never later by a flush hidden in a seek or
in closing. When the disk is full the write raises :class:`~.errors.AudioFileError`; the
file keeps the whole frames that fit and its header is set to count exactly those on
close (rewriting the header needs no new space).

A WAV file's sizes are 32-bit: :data:`MAX_WAV_DATA_BYTES` is the bound (about 37 hours of
16 kHz mono, 18 of stereo). A write past it raises :class:`~.errors.AudioFileError` and
leaves the file valid and complete up to the bound.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import struct
import sys
from array import array

from millis_proto import BYTES_PER_SAMPLE, SAMPLE_RATE

from ._base import CloseOnExit, check_pcm
from .errors import AudioFileError

__all__ = ["MAX_RECORDER_SKEW_S", "MAX_WAV_DATA_BYTES", "CallRecorder", "WavSink", "WavWriter"]

_HEADER_BYTES = 44
#: The path that means "standard output, as a stream".
STDOUT_PATH = "-"
#: Largest data chunk a WAV file can describe (its RIFF size field is 32-bit).
MAX_WAV_DATA_BYTES = 0xFFFFFFFF - (_HEADER_BYTES - 8)
#: How far one channel of a :class:`CallRecorder` may run ahead of the other before the
#: late one is taken to be silent (a source that ended, or one never started).
MAX_RECORDER_SKEW_S = 1.0


def _write_all(f: io.FileIO, data: bytes) -> None:
    """Write all of ``data`` to an unbuffered file (a raw write may take only part)."""
    view = memoryview(data)
    while view:
        n = f.write(view)
        if not n:  # None (non-blocking) or 0: no progress is possible
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        view = view[n:]


class WavWriter(CloseOnExit):
    """Writes interleaved s16le frames to a PCM_16 WAV file that is valid after every write.

    Raises :class:`~.errors.AudioFileError` if the file cannot be created or written, or
    when it is full (:data:`MAX_WAV_DATA_BYTES`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        channels: int = 1,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        if channels < 1 or sample_rate < 1:
            raise ValueError("channels and sample_rate must be positive.")
        self.path = os.fspath(path)
        self.channels = channels
        self.sample_rate = sample_rate
        self._frame_bytes = BYTES_PER_SAMPLE * channels
        self._limit = MAX_WAV_DATA_BYTES - MAX_WAV_DATA_BYTES % self._frame_bytes
        self._data_bytes = 0
        self._streaming = self.path == STDOUT_PATH
        self._file: io.FileIO | None = None
        try:
            if self._streaming:
                sys.stdout.flush()  # what was printed before goes first
                self._file = io.FileIO(sys.stdout.fileno(), "wb", closefd=False)
                _write_all(self._file, self._header(data_bytes=self._limit))
            else:
                self._file = io.FileIO(self.path, "wb")  # closed by close()
                _write_all(self._file, self._header())
        except OSError as exc:
            self._discard()
            raise AudioFileError(self.path, f"cannot be written: {exc.strerror}") from exc

    @property
    def frames(self) -> int:
        """Frames (one sample per channel) written so far."""
        return self._data_bytes // self._frame_bytes

    def _header(self, *, data_bytes: int | None = None) -> bytes:
        size = self._data_bytes if data_bytes is None else data_bytes
        block_align = self._frame_bytes
        return b"".join(
            (
                b"RIFF",
                struct.pack("<I", _HEADER_BYTES - 8 + size),
                b"WAVEfmt ",
                struct.pack(
                    "<IHHIIHH",
                    16,  # fmt chunk size
                    1,  # WAVE_FORMAT_PCM
                    self.channels,
                    self.sample_rate,
                    self.sample_rate * block_align,
                    block_align,
                    16,  # bits per sample
                ),
                b"data",
                struct.pack("<I", size),
            )
        )

    def write(self, frames: bytes) -> None:
        """Append interleaved s16le ``frames``; the header matches when this returns."""
        if self._file is None:
            raise ValueError("write to a closed WAV file.")
        if len(frames) % self._frame_bytes:
            raise ValueError(f"frames must be whole {self.channels}-channel s16le frames.")
        room = self._limit - self._data_bytes
        full = len(frames) > room
        if full:
            frames = frames[:room]
        if frames:
            f = self._file
            try:
                if not self._streaming:
                    f.seek(_HEADER_BYTES + self._data_bytes)
                _write_all(f, frames)
                self._data_bytes += len(frames)
                if not self._streaming:
                    # Sizes after samples: an interruption here leaves the header short, not long.
                    f.seek(4)
                    _write_all(f, struct.pack("<I", _HEADER_BYTES - 8 + self._data_bytes))
                    f.seek(_HEADER_BYTES - 4)
                    _write_all(f, struct.pack("<I", self._data_bytes))
            except OSError as exc:
                raise AudioFileError(self.path, f"cannot be written: {exc.strerror}") from exc
        if full:
            raise AudioFileError(self.path, "is full: a WAV file holds at most 4 GiB of audio")

    def close(self) -> None:
        """Finalize and close the file; idempotent.

        The sizes are set once more from the file's real length (cut to whole frames): a
        ``KeyboardInterrupt`` may have landed inside :meth:`write`, between the samples
        and the sizes that count them.
        """
        f = self._file
        if f is None:
            return
        if self._streaming:
            self._discard()  # unbuffered and closefd=False: standard output stays open
            return
        try:
            end = f.seek(0, os.SEEK_END)
            # A write that failed part-way (disk full) may have left a partial frame.
            self._data_bytes = max(0, min(self._limit, end - _HEADER_BYTES))
            self._data_bytes -= self._data_bytes % self._frame_bytes
            f.truncate(_HEADER_BYTES + self._data_bytes)
            f.seek(0)
            _write_all(f, self._header())
        except OSError as exc:
            raise AudioFileError(self.path, f"cannot be finalized: {exc.strerror}") from exc
        finally:
            # Unbuffered, so closing flushes nothing and cannot replace the error above.
            self._discard()

    def _discard(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


class WavSink(CloseOnExit):
    """Writes what the speaker would have played to a 16 kHz mono PCM_16 WAV file.

    Fed by :func:`~.pacing.play_to_sink`, sample ``i`` of the file is what was played at
    ``i/16000`` s after playback started, silence included, so the file lines up with the
    input's timeline. The file is valid after any ending (see the module docstring); use
    it as ``with WavSink(path) as sink:``. Raises :class:`~.errors.AudioFileError` if the
    file cannot be written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._writer = WavWriter(path)
        self.path = self._writer.path
        self.played_samples = 0

    @property
    def written_samples(self) -> int:
        """Samples in the file, silence included."""
        return self._writer.frames

    def write(self, pcm: bytes, real_samples: int) -> None:
        """Append ``pcm`` to the file; count ``real_samples`` as played."""
        check_pcm(pcm, "pcm")
        self._writer.write(pcm)
        self.played_samples += real_samples

    def close(self) -> None:
        """Finish the file; idempotent."""
        self._writer.close()


class _Channel(CloseOnExit):
    """One side of a :class:`CallRecorder`; an :class:`~.protocols.AudioSink`."""

    def __init__(self, recorder: CallRecorder, index: int) -> None:
        self._recorder = recorder
        self._index = index
        self.played_samples = 0

    def write(self, pcm: bytes, real_samples: int) -> None:
        """Add ``pcm`` to this side of the recording."""
        check_pcm(pcm, "pcm")
        self.played_samples += real_samples
        self._recorder._add(self._index, pcm)


class CallRecorder(CloseOnExit):
    """Records a call as a stereo 16 kHz PCM_16 WAV: user on the left, agent on the right.

    :attr:`user` and :attr:`agent` are sinks: give ``user`` to
    :func:`~.pacing.stream_source` and ``agent`` to :func:`~.pacing.play_to_sink` as taps,
    with the same ``start``, and the two sides line up sample for sample (the agent side
    as played, pauses and silence included). A side that falls more than
    :data:`MAX_RECORDER_SKEW_S` behind the other is filled with silence, so a source that
    ended does not hold the recording back. Valid after any ending, like :class:`WavSink`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._writer = WavWriter(path, channels=2)
        self.path = self._writer.path
        self._pending: tuple[bytearray, bytearray] = (bytearray(), bytearray())
        self._max_skew_bytes = round(MAX_RECORDER_SKEW_S * SAMPLE_RATE) * BYTES_PER_SAMPLE
        self._closed = False
        #: The left channel: what the user sent.
        self.user = _Channel(self, 0)
        #: The right channel: what the agent played.
        self.agent = _Channel(self, 1)

    @property
    def frames(self) -> int:
        """Stereo frames in the file so far."""
        return self._writer.frames

    def _add(self, index: int, pcm: bytes) -> None:
        if self._closed:
            raise ValueError("write to a closed CallRecorder.")
        self._pending[index].extend(pcm)
        ahead, behind = self._pending[index], self._pending[1 - index]
        lag = len(ahead) - len(behind) - self._max_skew_bytes
        if lag > 0:
            behind.extend(bytes(lag))
        self._write_common()

    def _write_common(self) -> None:
        left, right = self._pending
        n = min(len(left), len(right))
        if not n:
            return
        # Interleaving moves whole 2-byte samples, so it is byte-order independent.
        frames = array("h", bytes(2 * n))
        frames[0::2] = array("h", left[:n])
        frames[1::2] = array("h", right[:n])
        del left[:n], right[:n]
        self._writer.write(frames.tobytes())

    def close(self) -> None:
        """Write what is left (the shorter side padded with silence) and finish the file."""
        self._closed = True
        left, right = self._pending
        longest = max(len(left), len(right))
        left.extend(bytes(longest - len(left)))
        right.extend(bytes(longest - len(right)))
        try:
            self._write_common()
        except AudioFileError:
            # Finalize what is on disk; the write's error is the one to report.
            with contextlib.suppress(AudioFileError):
                self._writer.close()
            raise
        self._writer.close()
