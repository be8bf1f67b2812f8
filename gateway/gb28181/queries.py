"""MANSCDP queries from the platform: Catalog (paged, SumNum, the next page after the
200 OK), DeviceInfo and DeviceStatus. The MESSAGE carrying a query is answered 200 at
once; the answers travel in MESSAGEs of our own."""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.gb28181 import manscdp
from gateway.gb28181.platform import Platform
from gateway.gb28181.records import RecordInfo, RecordSource
from gateway.gb28181.sip.agent import SipTimeout, make_response, new_tag
from gateway.gb28181.sip.message import SipMessage

log = logging.getLogger(__name__)
SUPPORTED = ("Catalog", "DeviceInfo", "DeviceStatus", "ConfigDownload")


class Queries:
    def __init__(self, client: Platform, records: RecordSource | None = None) -> None:
        self.client = client
        self.record_info = RecordInfo(client, records)
        self.channels_pushed = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, req: SipMessage) -> SipMessage:
        cfg = self.client.cfg
        try:
            query = manscdp.parse(req.body, cfg.charset)
        except manscdp.ManscdpError as err:
            log.warning("gb28181 %s: refused a MESSAGE body: %s", cfg.id, err)
            return make_response(req, 400, f"Bad MANSCDP body: {err}"[:120], new_tag())
        if query.root == "Query" and query.cmd == "RecordInfo":
            return await self.record_info.handle(req, query)
        if query.root != "Query" or query.cmd not in SUPPORTED:
            log.info("gb28181 %s: %s %s not supported", cfg.id, query.root, query.cmd)
            return make_response(req, 200, "OK", new_tag())  # platforms retry a 4xx forever
        task = asyncio.create_task(self._answer(query))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return make_response(req, 200, "OK", new_tag())

    async def _answer(self, query: manscdp.Query) -> None:
        try:
            if query.cmd == "Catalog":
                await self._catalog(query.sn)
            elif query.cmd == "DeviceInfo":
                info = await asyncio.to_thread(self._device_info)
                await self._send("DeviceInfo", query.sn, info)
            elif query.cmd == "ConfigDownload":
                await self._send("ConfigDownload", query.sn, self._basic_param(query))
            else:
                await self._send("DeviceStatus", query.sn, _device_status())
        except (SipTimeout, OSError) as err:
            cfg_id = self.client.cfg.id
            log.warning("gb28181 %s: %s answer not delivered: %s", cfg_id, query.cmd, err)

    async def _send(self, cmd: str, sn: str, fields: list[tuple[str, object]]) -> bool:
        cfg = self.client.cfg
        body = manscdp.render(
            "Response",
            [("CmdType", cmd), ("SN", sn), ("DeviceID", cfg.device_id), *fields],
            cfg.charset,
        )
        resp = await self.client.send_message(body)
        if not 200 <= resp.status < 300:
            log.warning("gb28181 %s: %s answer refused: %s", cfg.id, cmd, resp.status)
            return False
        return True

    async def _catalog(self, sn: str) -> None:
        cfg = self.client.cfg
        channels = await asyncio.to_thread(self.client.directory.channels)
        civil = cfg.civil_code or cfg.device_id[:6]
        total = len(channels)
        page = cfg.catalog_page
        sent = 0
        for start in range(0, max(total, 1), page):
            items = [c.catalog_fields(civil) for c in channels[start : start + page]]
            fields: list[tuple[str, object]] = [("SumNum", total), ("DeviceList", items)]
            if not await self._send("Catalog", sn, fields):
                return
            sent += len(items)
        self.channels_pushed = sent
        log.info("gb28181 %s: catalog of %d channels sent", cfg.id, sent)

    def _basic_param(self, query: manscdp.Query) -> list[tuple[str, object]]:
        """ConfigDownload: BasicParam only (what WVP asks after a registration)."""
        cfg = self.client.cfg
        wanted = (query.xml.findtext("ConfigType") or "BasicParam").split("/")
        if "BasicParam" not in wanted:
            return [("Result", "ERROR")]
        return [
            ("Result", "OK"),
            (
                "BasicParam",
                [
                    ("Name", cfg.id),
                    ("DeviceID", cfg.device_id),
                    ("SIPServerID", cfg.server_id),
                    ("SIPServerIP", cfg.host),
                    ("SIPServerPort", cfg.port),
                    ("DomainName", cfg.domain),
                    ("Expiration", cfg.expires_s),
                    ("HeartBeatInterval", int(cfg.keepalive_s)),
                    ("HeartBeatCount", cfg.keepalive_misses),
                ],
            ),
        ]

    def _device_info(self) -> list[tuple[str, object]]:
        channels = self.client.directory.channels()
        return [
            ("DeviceName", self.client.cfg.id),
            ("Result", "OK"),
            ("Manufacturer", "edge-gateway"),
            ("Model", "gateway"),
            ("Firmware", "1.0"),
            ("Channel", sum(1 for c in channels if c.kind == "camera")),
        ]


def _device_status() -> list[tuple[str, object]]:
    return [
        ("Result", "OK"),
        ("Online", "ONLINE"),
        ("Status", "OK"),
        ("Encode", "ON"),
        ("Record", "OFF"),
        ("DeviceTime", time.strftime("%Y-%m-%dT%H:%M:%S")),
        ("Alarmstatus", []),
    ]
