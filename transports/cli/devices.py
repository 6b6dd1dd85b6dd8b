"""``millis-proto devices``: list audio devices."""

from __future__ import annotations

import sys


def devices_command() -> int:
    """Print one line per device; a clear error when PortAudio or devices are missing."""
    from audio_backends import list_devices

    devices = list_devices()
    if not devices:
        sys.stderr.write("millis-proto: no audio devices found.\n")
        return 1
    for d in devices:
        sys.stdout.write(f"{d}\n")
    return 0
