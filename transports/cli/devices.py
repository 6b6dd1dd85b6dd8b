"""``millis-proto devices``: the audio devices as a table."""

from __future__ import annotations

import sys

from audio_backends.devices import DeviceInfo

from .output import Lines


def device_table(devices: list[DeviceInfo]) -> list[str]:
    """One header line and one line per device: index, name, channels, rate, default."""
    width = max(len("name"), *(len(d.name) for d in devices))
    rows = [("#", "name", "in", "out", "rate", "default")]
    for d in devices:
        default = [kind for kind in ("input", "output") if d.is_default(kind)]
        rows.append(
            (
                str(d.index),
                d.name,
                str(d.max_input_channels),
                str(d.max_output_channels),
                f"{d.default_sample_rate:.0f}",
                ", ".join(default),
            )
        )
    index_width = max(len(r[0]) for r in rows)
    return [
        f"{r[0]:>{index_width}}  {r[1]:<{width}}  {r[2]:>3}  {r[3]:>3}  {r[4]:>6}  {r[5]}".rstrip()
        for r in rows
    ]


def devices_command() -> int:
    """Print the devices; a clear error when PortAudio or devices are missing."""
    from audio_backends import list_devices

    devices = list_devices()
    if not devices:
        sys.stderr.write("millis-proto: no audio devices found.\n")
        return 1
    out = Lines()
    for line in device_table(devices):
        out.write(line)
    out.write("Pick one with talk --input-device / --output-device (by # or name).")
    return 0
