"""Fuzzing the ONVIF client with hostile camera replies, over real loopback HTTP.

A fake device (``tests.fake_onvif``) answers the connection normally, then one
chosen operation's reply is replaced by random bytes, a byte-mutated copy of
the good reply, or the good reply with hostile values in its fields. The client
must end every call with a result or an :class:`~gateway.cameras.onvif.OnvifError`
(which names the camera), nothing else, and within its timeout.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.cameras import onvif
from tests.fake_onvif import FakeOnvif
from tests.test_fuzz_parsers import INSERTS

LABEL = "cam-fuzz"
OPS = ["GetDeviceInformation", "GetProfiles", "GetStreamUri", "GetSnapshotUri", "GetPresets"]


class HostileDevice(FakeOnvif):
    """A fake device whose reply to ``target`` goes through ``mutate`` (bytes → bytes)."""

    target: str = ""
    mutate: Any = None
    originals: dict[str, bytes]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        response = await super()._handle(request)
        try:
            op = etree.QName(
                etree.fromstring(raw).find("{http://www.w3.org/2003/05/soap-envelope}Body")[0]
            ).localname
        except Exception:
            return response
        if op != self.target or self.mutate is None or not isinstance(response, web.Response):
            return response
        body = response.body if isinstance(response.body, bytes) else response.text.encode()
        self.originals[op] = body
        return web.Response(
            body=self.mutate(body), status=response.status, content_type="application/soap+xml"
        )


@pytest.fixture
def device() -> Iterator[tuple[asyncio.AbstractEventLoop, HostileDevice]]:
    loop = asyncio.new_event_loop()
    dev = HostileDevice(host="127.0.0.1")
    dev.originals = {}
    runner = loop.run_until_complete(dev.start())
    try:
        yield loop, dev
    finally:
        loop.run_until_complete(runner.cleanup())
        loop.close()


async def _exercise(dev: HostileDevice) -> None:
    client = onvif.OnvifClient(
        dev.host, dev.port, dev.username, dev.password, timeout=3, label=LABEL
    )
    try:
        async with client as c:
            result = await c.probe()
            for p in result.profiles:
                assert p.stream_uri.startswith(("rtsp://", "rtsps://"))
                assert len(p.token) <= 64 and len(p.name) <= 128
                p.public()
            assert result.snapshot_uri is None or result.snapshot_uri.startswith("http")
            await c.ptz_presets("Profile_1")
    except onvif.OnvifError as err:
        assert LABEL in str(err) or "snapshot" in str(err), str(err)


def _run(loop: asyncio.AbstractEventLoop, dev: HostileDevice, op: str, mutate: Any) -> None:
    dev.target, dev.mutate = op, mutate
    # The client's own timeout is 3 s; a hang beyond that is a bug too.
    loop.run_until_complete(asyncio.wait_for(_exercise(dev), 20))


FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def test_good_replies_pass_through_the_hostile_device(device) -> None:
    loop, dev = device
    _run(loop, dev, "GetProfiles", lambda b: b)
    assert b"Profile_1" in dev.originals["GetProfiles"]


@FUZZ
@given(op=st.sampled_from(OPS), data=st.binary(max_size=400))
def test_random_bytes_as_replies(device, op: str, data: bytes) -> None:
    loop, dev = device
    _run(loop, dev, op, lambda _b: data)


@st.composite
def byte_edits(draw: st.DrawFn) -> list[tuple[str, float, bytes, int]]:
    """Edits as (kind, relative position, inserted bytes, length), applied to any reply."""
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "cut", "insert", "truncate"]),
                st.floats(0, 1),
                st.sampled_from(INSERTS),
                st.integers(1, 60),
            ),
            min_size=1,
            max_size=5,
        )
    )


def _apply(edits: list[tuple[str, float, bytes, int]], body: bytes) -> bytes:
    data = bytearray(body)
    for kind, where, insert, n in edits:
        if not data:
            break
        i = min(len(data) - 1, int(where * len(data)))
        if kind == "flip":
            data[i] = n * 4 % 256
        elif kind == "cut":
            del data[i : i + n]
        elif kind == "insert":
            data[i:i] = insert
        else:
            del data[i:]
    return bytes(data)


@FUZZ
@given(op=st.sampled_from(OPS), edits=byte_edits())
def test_byte_mutated_replies(device, op: str, edits: list) -> None:
    loop, dev = device
    _run(loop, dev, op, lambda b: _apply(edits, b))


VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "-1",
            "NaN",
            "INF",
            "1e999",
            "99999999999999999999999",
            "0x10",
            "true",
            "rtsp://",
            "rtsp://[::1",
            "rtsp://u:p@0.0.0.0:0/x",
            "http://0.0.0.0:99999/snap",
            "javascript:alert(1)",
            "x" * 3000,
        ]
    ),
)
FIELD_TAGS = [
    "Manufacturer",
    "Model",
    "FirmwareVersion",
    "Width",
    "Height",
    "FrameRateLimit",
    "BitrateLimit",
    "GovLength",
    "Encoding",
    "Name",
    "Uri",
    "Timeout",
    "InvalidAfterConnect",
]


def _replace_fields(body: bytes, replacements: list[tuple[str, str]]) -> bytes:
    from xml.sax.saxutils import escape

    text = body.decode("utf-8", "replace")
    for tag, value in replacements:
        clean = "".join(c for c in value if c in "\t\n\r" or " " <= c < "\ud800" or c > "\udfff")
        pattern = re.compile(rf"(<tt:{tag}>|<tds:{tag}>)[^<]*(</)")
        value_xml = escape(clean)
        text = pattern.sub(lambda m, v=value_xml: m.group(1) + v + m.group(2), text, count=1)
    text = re.sub(
        r"token='[^']*'",
        lambda m: "token=" + repr(replacements[0][1][:20]) if replacements else m.group(0),
        text,
        count=1,
    )
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(
    op=st.sampled_from(OPS),
    replacements=st.lists(st.tuples(st.sampled_from(FIELD_TAGS), VALUES), min_size=1, max_size=4),
)
def test_replies_with_hostile_field_values(device, op: str, replacements: list) -> None:
    loop, dev = device
    _run(loop, dev, op, lambda b: _replace_fields(b, replacements))
