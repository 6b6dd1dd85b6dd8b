"""``import audio_backends`` needs no extra; using a backend without its extra names it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = textwrap.dedent(
    """
    import sys
    for name in ("numpy", "soundfile", "soxr", "sounddevice"):
        sys.modules[name] = None  # as if not installed

    import audio_backends
    from audio_backends import *  # noqa: F403
    from audio_backends import MemorySource, MissingExtraError, WavSink

    assert MemorySource(b"\\x01\\x00").read(1) == b"\\x01\\x00"
    for name, extra in [("FileSource", "audio"), ("pcm_from_array", "audio"),
                        ("Microphone", "devices"), ("list_devices", "devices")]:
        try:
            getattr(audio_backends, name)
        except MissingExtraError as exc:
            assert isinstance(exc, ImportError)
            print(name, "->", exc)
            assert f"pip install 'millis-proto[{extra}]'" in str(exc), exc
        else:
            raise AssertionError(name + " imported without its extra")
    try:
        audio_backends.NoSuchThing
    except AttributeError:
        pass
    print("ok")
    """
)


def test_the_package_imports_without_extras_and_names_the_missing_one() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "ok"
    assert lines[0] == (
        "FileSource -> reading audio files needs the Python package 'soundfile', which is "
        "not installed: pip install 'millis-proto[audio]'"
    )
