"""The 8-byte front-end command of GB/T 28181 (annex A.3, ``PTZCmd`` in DeviceControl).

Byte 1 is ``A5``; byte 2 the version (high nibble) and a check nibble (low nibble:
the sum of the nibbles of byte 1 and of the version, mod 16); byte 3 the address's low
8 bits; byte 4 the command; bytes 5 and 6 data (pan and tilt speed, or 0 and the preset
number); byte 7 the zoom speed (high nibble) and the address's high 4 bits; byte 8 the
sum of bytes 1-7 mod 256. A command whose checksum or check nibble is wrong is refused.

Command byte, PTZ (bits 7-6 = 00): bit 5 zoom out, bit 4 zoom in, bit 3 up, bit 2 down,
bit 1 left, bit 0 right; all zero is stop. Focus/iris (bits 7-6 = 01). Presets:
0x81 set, 0x82 go to, 0x83 delete. Cruise 0x84-0x88, scan 0x89-0x8A, auxiliary
switches 0x8C-0x8D: recognised, not supported by ONVIF-backed cameras here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_HEX = re.compile(r"^[0-9A-Fa-f]{16}$")

PRESET_SET = 0x81
PRESET_GOTO = 0x82
PRESET_DELETE = 0x83
DEFAULT_SPEED = 0.5  # a direction bit with speed 0: platforms that leave speeds empty

Kind = Literal["move", "stop", "preset_set", "preset_goto", "preset_delete", "focus_iris", "other"]


class PtzCmdError(ValueError):
    """A command we refuse; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class PtzCommand:
    """One decoded command: ``pan``/``tilt``/``zoom`` velocities in -1..1 (ONVIF's
    generic space; positive pan is right, positive tilt up, positive zoom in)."""

    kind: Kind
    address: int
    code: int
    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 0.0
    preset: int = 0

    def as_onvif(self) -> dict[str, object]:
        """The command as our PTZ API's arguments (``action`` and velocities)."""
        if self.kind == "stop":
            return {"action": "stop"}
        return {"action": "move", "pan": self.pan, "tilt": self.tilt, "zoom": self.zoom}


def checksum(data: bytes) -> int:
    return sum(data[:7]) % 256


def check_nibble(first: int, version: int) -> int:
    return ((first >> 4) + (first & 0x0F) + version) % 16


def parse(text: str) -> PtzCommand:
    """Decode a ``PTZCmd`` (16 hex digits, surrounding spaces allowed)."""
    text = text.strip()
    if not _HEX.match(text):
        raise PtzCmdError(f"PTZCmd must be 16 hex digits, not {text[:24]!r}")
    b = bytes.fromhex(text)
    if b[0] != 0xA5:
        raise PtzCmdError(f"PTZCmd must start with A5, not {b[0]:02X}")
    version = b[1] >> 4
    if b[1] & 0x0F != check_nibble(b[0], version):
        raise PtzCmdError(f"PTZCmd check nibble {b[1] & 0x0F:X} is wrong")
    if b[7] != checksum(b):
        raise PtzCmdError(f"PTZCmd checksum {b[7]:02X} is wrong (expected {checksum(b):02X})")
    address = ((b[6] & 0x0F) << 8) | b[2]
    code = b[3]
    if code >> 6 == 0:
        return _ptz(code, address, b[4], b[5], b[6] >> 4)
    if code >> 6 == 1:
        return PtzCommand("focus_iris", address, code)
    if code in (PRESET_SET, PRESET_GOTO, PRESET_DELETE):
        if not 1 <= b[5] <= 255:
            raise PtzCmdError("preset number must be 1-255")
        kind: Kind = {
            PRESET_SET: "preset_set",
            PRESET_GOTO: "preset_goto",
            PRESET_DELETE: "preset_delete",
        }[code]  # type: ignore[assignment]
        return PtzCommand(kind, address, code, preset=b[5])
    return PtzCommand("other", address, code)


def _ptz(code: int, address: int, pan_speed: int, tilt_speed: int, zoom_speed: int) -> PtzCommand:
    if code & 0x30 == 0x30:
        raise PtzCmdError("zoom in and zoom out both set")
    if code & 0x0C == 0x0C:
        raise PtzCmdError("up and down both set")
    if code & 0x03 == 0x03:
        raise PtzCmdError("left and right both set")
    if code == 0:
        return PtzCommand("stop", address, code)
    pan_v = _speed(pan_speed, 255)
    tilt_v = _speed(tilt_speed, 255)
    zoom_v = _speed(zoom_speed, 15)
    pan = pan_v if code & 0x01 else -pan_v if code & 0x02 else 0.0
    tilt = tilt_v if code & 0x08 else -tilt_v if code & 0x04 else 0.0
    zoom = zoom_v if code & 0x10 else -zoom_v if code & 0x20 else 0.0
    return PtzCommand("move", address, code, pan=pan, tilt=tilt, zoom=zoom)


def _speed(value: int, top: int) -> float:
    return round(value / top, 4) if value else DEFAULT_SPEED


def build(code: int, data1: int = 0, data2: int = 0, zoom: int = 0, address: int = 1) -> str:
    """The 16 hex digits of a command (what platforms send; used by tests and tools)."""
    body = bytes(
        [
            0xA5,
            check_nibble(0xA5, 0),
            address & 0xFF,
            code & 0xFF,
            data1 & 0xFF,
            data2 & 0xFF,
            ((zoom & 0x0F) << 4) | ((address >> 8) & 0x0F),
        ]
    )
    return (body + bytes([checksum(body)])).hex().upper()
