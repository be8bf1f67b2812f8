"""Remux access units into fragmented MP4 segment files, cut on keyframes (no transcode).

A segment is one ``.mp4`` written with ``frag_keyframe+empty_moov+default_base_moof``:
the header is written first and every GOP becomes one ``moof``+``mdat`` fragment, so
a file cut by a crash or a power loss still plays up to its last whole fragment
(``gateway.recorder.recovery`` trims the torn tail).

The output stream is built from a template made by the raw ``h264``/``hevc`` demuxer
reading the segment's first keyframe: it carries SPS/PPS(/VPS) exactly as the camera
sends them, so the muxer writes a correct ``avcC``/``hvcC``. (``add_stream("h264")``
would open a libx264 encoder and put *its* default SPS in the header; measured with
PyAV 18 / FFmpeg 8.) Packets stay Annex B; the MP4 muxer converts them to length
prefixes itself.
"""

from __future__ import annotations

import errno
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from gateway.media.access_unit import AccessUnit
from gateway.media.annexb import is_annexb
from gateway.media.nal import nal_types, parameter_set_units, sniff_codec, sps_type

log = logging.getLogger(__name__)

FRAG_FLAGS = "frag_keyframe+empty_moov+default_base_moof"
SUPPORTED_CODECS = ("h264", "hevc")


class UnsupportedCodec(Exception):
    """The stream's codec cannot be recorded without transcoding."""


def is_disk_full(err: BaseException) -> bool:
    """Whether an error from the filesystem or FFmpeg means 'no space left'."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err).lower()
    return "no space left" in text or "disk quota" in text


class _Templates:
    """Template streams by parameter sets: probing a keyframe costs a decode (~20 ms at
    1080p), so it is done once per camera stream configuration, not once per segment."""

    def __init__(self, size: int = 64) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, bytes], av.container.InputContainer] = OrderedDict()
        self._size = size

    @contextmanager
    def get(self, keyframe: bytes, codec: str, parameter_sets: bytes) -> Iterator[av.VideoStream]:
        data = keyframe
        if parameter_sets and sps_type(codec) not in nal_types(codec, keyframe):
            # The camera sent its parameter sets only out of band (SDP): put them in front.
            data = parameter_sets + keyframe
        # The parameter sets are the stream's identity.
        key = (codec, b"|".join(parameter_set_units(codec, data)))
        with self._lock:
            container = self._items.get(key) if key[1] else None
            if container is None:
                container = av.open(io.BytesIO(data), "r", format=codec)
                if key[1]:
                    self._items[key] = container
                    while len(self._items) > self._size:
                        self._items.popitem(last=False)[1].close()
            else:
                self._items.move_to_end(key)
            try:
                yield container.streams.video[0]
            finally:
                if not key[1]:
                    container.close()


TEMPLATES = _Templates()


def codec_facts(hub: Any, first: AccessUnit) -> tuple[str, bytes]:
    """(codec, Annex B parameter sets from the SDP) of the stream ``first`` came from."""
    info = getattr(hub, "info", None)
    extradata = bytes(info.extradata) if info is not None and info.extradata else b""
    if not is_annexb(extradata):
        extradata = b""  # avcC/hvcC form: the keyframes carry their own parameter sets
    if info is not None and info.codec:
        return info.codec, extradata
    # No facts yet: the keyframe's parameter sets tell.
    return sniff_codec(first.data) or "h264", extradata


@dataclass
class SegmentResult:
    """What the index needs to know about a finished (or aborted) segment."""

    path: Path
    frames: int
    duration: float  # media seconds, including the last frame's duration
    bytes: int
    width: int
    height: int


class SegmentWriter:
    """One fMP4 file. Timestamps are rebased so the file starts at zero.

    ``write`` keeps dts strictly increasing (the MP4 muxer refuses anything else) and
    pts >= dts; the first access unit must be a keyframe.
    """

    def __init__(
        self, path: Path, first: AccessUnit, codec: str, parameter_sets: bytes = b""
    ) -> None:
        if codec not in SUPPORTED_CODECS:
            raise UnsupportedCodec(f"cannot record {codec!r} without transcoding")
        if not first.keyframe:
            raise ValueError("a segment must start on a keyframe")
        self.path = path
        self.codec = codec
        self.time_base = first.time_base
        self.frames = 0
        self._base = first.dts if first.dts is not None else first.pts
        self._last_dts: int | None = None
        self._frame_ticks = max(1, int(Fraction(1, 25) / first.time_base))
        path.parent.mkdir(parents=True, exist_ok=True)
        self._container: av.container.OutputContainer | None = None
        with TEMPLATES.get(first.data, codec, parameter_sets) as src:
            self._open(path, src, first)

    def _open(self, path: Path, src: av.VideoStream, first: AccessUnit) -> None:
        try:
            self.width, self.height = src.codec_context.width, src.codec_context.height
            self._container = av.open(
                str(path), "w", format="mp4", options={"movflags": FRAG_FLAGS}
            )
            self._stream = self._container.add_stream_from_template(src)
            self._stream.time_base = first.time_base
            if self.codec == "hevc":
                # Apple and the MSE spec want hvc1; parameter sets also stay in-band.
                self._stream.codec_tag = "hvc1"
        except BaseException:
            if self._container is not None:
                self._abort_container()
            raise

    @property
    def duration(self) -> float:
        """Media seconds written so far (including the last frame's duration)."""
        if self._last_dts is None:
            return 0.0
        return float((self._last_dts + self._frame_ticks) * self.time_base)

    def write(self, au: AccessUnit) -> None:
        """Mux one access unit (raises OSError, e.g. ENOSPC, from the filesystem)."""
        if au.time_base != self.time_base:
            # A new time base means a new stream: the caller cuts before this happens.
            raise ValueError("time base changed inside a segment")
        pts = au.pts - self._base
        dts = (au.dts if au.dts is not None else au.pts) - self._base
        if self._last_dts is not None:
            if dts <= self._last_dts:
                dts = self._last_dts + 1
            else:
                # Remember the frame interval: the last sample's duration comes from it.
                self._frame_ticks = dts - self._last_dts
        if pts < dts:
            pts = dts
        packet = av.Packet(au.data)
        packet.pts = pts
        packet.dts = dts
        packet.time_base = self.time_base
        packet.duration = self._frame_ticks
        packet.is_keyframe = au.keyframe
        packet.stream = self._stream
        assert self._container is not None, "write after close"
        self._container.mux(packet)
        self._last_dts = dts
        self.frames += 1

    def close(self) -> SegmentResult:
        """Write the trailer and return the file's facts. Raises on write errors."""
        assert self._container is not None, "closed twice"
        try:
            self._container.close()
        finally:
            self._container = None
        return self.result()

    def abort(self) -> SegmentResult:
        """Close without raising (the disk may be full); the file may end torn."""
        self._abort_container()
        return self.result()

    def _abort_container(self) -> None:
        container, self._container = self._container, None
        if container is None:
            return
        try:
            container.close()
        except Exception as err:  # a torn file is repaired by recovery
            log.warning("closing %s failed: %s", self.path, err)

    def result(self) -> SegmentResult:
        try:
            size = self.path.stat().st_size
        except OSError:
            size = 0
        return SegmentResult(self.path, self.frames, self.duration, size, self.width, self.height)
