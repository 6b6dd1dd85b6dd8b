"""Audio files as sources: anything libsndfile reads, converted to the protocol's PCM.

Any rate, channel count and sample format libsndfile decodes — WAV at 44.1/48 kHz stereo
float, 8 kHz µ-law, 24-bit, FLAC, Ogg … — comes out as 16 kHz mono s16le through
:mod:`.convert` (equal-weight down-mix, soxr resampling, clamping). The file is decoded in
fixed blocks as it is read, so a long file costs no memory and the output does not depend
on how the caller sizes its reads.

Needs the ``audio`` extra (soundfile, numpy, soxr).
"""

from __future__ import annotations

import os
import re

from ._base import BlockSource
from .errors import AudioFileError, MissingExtraError

try:
    import soundfile as sf
except ImportError as exc:  # the optional extra is not installed
    raise MissingExtraError.for_module("reading audio files", exc.name, "audio") from exc
except OSError as exc:  # the package is there but the libsndfile library is not
    raise MissingExtraError(
        f"reading audio files needs the libsndfile library ({exc}): install libsndfile1 "
        "(Debian/Ubuntu) or reinstall 'soundfile', whose wheels bundle it",
        name="soundfile",
    ) from exc

from .convert import StreamConverter

__all__ = ["FileSource"]

#: Frames decoded per block (about 85 ms at 48 kHz).
READ_FRAMES = 4096

# libsndfile's log of a WAV whose data chunk is cut short: "data : 96000 (should be 47978)".
_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Streaming writers (a pipe, a recorder still running) leave placeholder sizes: those files
# are of unknown length, not truncated.
_PLACEHOLDER_SIZES = {0, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF - 8}
# First bytes of common audio containers: a file that starts like audio but does not open
# is damaged or cut short, not "not audio".
_AUDIO_MAGIC = {b"RIFF", b"RIFX", b"RF64", b"FORM", b"fLaC", b"OggS", b"ID3\x03", b"ID3\x04"}
# MPEG audio announces its length only in an optional Xing/Info (LAME) or VBRI header in
# its first frame; without one libsndfile estimates the frame count from the file size and
# the first frame's bit rate, so decoding fewer frames than that is not truncation.
_MPEG_LENGTH_TAGS = (b"Xing", b"Info", b"VBRI")
_ID3V2_HEADER_BYTES = 10
#: How far into the audio the length tag is looked for (it sits in the first frame).
_MPEG_TAG_SEARCH_BYTES = 4096


class FileSource(BlockSource):
    """Reads an audio file as protocol PCM (s16le, 16 kHz, mono).

    ``loop`` plays the file again and again; otherwise ``tail_silence_s`` of zeros follow
    it. ``sample_rate``, ``channels``, ``format``, ``subtype`` and ``duration_s`` describe
    the file as it is on disk.

    Raises :class:`~.errors.AudioFileError` naming the file and the problem when it is
    missing, unreadable, empty, not audio, truncated or has no audio — at construction
    when the header shows it, else from :meth:`read` when decoding reaches the damage.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        loop: bool = False,
        tail_silence_s: float = 0.0,
    ) -> None:
        super().__init__(loop=loop, tail_silence_s=tail_silence_s)
        self.path = os.fspath(path)
        self._file = _open(self.path)
        try:
            _check_header(self.path, self._file)
        except AudioFileError:
            self._file.close()
            raise
        self.sample_rate: int = self._file.samplerate
        self.channels: int = self._file.channels
        self.format: str = self._file.format
        self.subtype: str = self._file.subtype
        #: Frames announced by the header (an estimate when :attr:`length_is_estimate`).
        self.frames: int = self._file.frames
        #: True for MPEG audio without a length header: :attr:`frames` is then a guess
        #: and decoding fewer frames ends the file normally.
        self.length_is_estimate = self.format == "MP3" and not _has_mpeg_length(self.path)
        self.duration_s = self.frames / self.sample_rate
        self._converter = StreamConverter(self.sample_rate)
        self._frames_read = 0
        self._flushed = False

    def _next_block(self) -> bytes | None:
        if self._flushed:
            return None
        try:
            block = self._file.read(READ_FRAMES, dtype="float32", always_2d=True)
        except sf.LibsndfileError as exc:
            at = self._frames_read / self.sample_rate
            raise AudioFileError(
                self.path, f"is damaged: decoding failed after {at:.3f} s ({exc.error_string})"
            ) from exc
        if len(block):
            self._frames_read += len(block)
            return self._converter.push(block)
        if self._frames_read < self.frames and not self.length_is_estimate:
            raise AudioFileError(
                self.path,
                f"is truncated: its header announces {self.frames} frames, "
                f"only {self._frames_read} could be decoded",
            )
        self._flushed = True
        return self._converter.flush()

    def _rewind(self) -> None:
        # A fresh resampler per pass: each pass is converted as the file alone would be.
        self._file.seek(0)
        self._converter = StreamConverter(self.sample_rate)
        self._frames_read = 0
        self._flushed = False

    def _release(self) -> None:
        self._file.close()


def _open(path: str) -> sf.SoundFile:
    """Open ``path`` with libsndfile, turning its terse errors into a diagnosis."""
    try:
        return sf.SoundFile(path)
    except sf.LibsndfileError as exc:
        reason = exc.error_string
        cause: Exception = exc
    except (OSError, RuntimeError, TypeError) as exc:  # soundfile's own checks
        reason, cause = str(exc), exc
    # libsndfile says "System error." for most file-system problems: ask the OS instead.
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise AudioFileError(path, "does not exist") from cause
    except IsADirectoryError:
        raise AudioFileError(path, "is a directory, not a file") from cause
    except OSError as os_exc:
        raise AudioFileError(path, f"cannot be read: {os_exc.strerror}") from cause
    reason = reason.rstrip(".")
    if not magic:
        raise AudioFileError(path, "is empty (0 bytes)") from cause
    if magic in _AUDIO_MAGIC:
        raise AudioFileError(path, f"is truncated or damaged ({reason})") from cause
    raise AudioFileError(path, f"is not an audio file libsndfile can read ({reason})") from cause


def _has_mpeg_length(path: str) -> bool:
    """Whether an MPEG audio file states its length (a Xing/Info/VBRI first frame)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_ID3V2_HEADER_BYTES)
            if head[:3] == b"ID3" and len(head) == _ID3V2_HEADER_BYTES:
                # An ID3v2 tag comes first; its size is "syncsafe" (7 bits per byte).
                size = int.from_bytes(bytes(b & 0x7F for b in head[6:10]), "big")
                f.seek(_ID3V2_HEADER_BYTES + size)
                head = b""
            first = head + f.read(_MPEG_TAG_SEARCH_BYTES)
    except OSError:
        return False
    return any(tag in first for tag in _MPEG_LENGTH_TAGS)


def _check_header(path: str, file: sf.SoundFile) -> None:
    """Reject files whose header promises audio that is not there, or none at all."""
    short = _SHORT_DATA.search(file.extra_info)
    if short:
        announced, present = int(short[1]), int(short[2])
        if announced > present and announced not in _PLACEHOLDER_SIZES:
            raise AudioFileError(
                path,
                f"is truncated: its header announces {announced} bytes of audio, "
                f"only {present} are present",
            )
    if file.frames == 0:
        raise AudioFileError(path, "contains no audio (0 frames)")
