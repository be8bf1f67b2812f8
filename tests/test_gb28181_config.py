"""The ``gb28181:`` config: validated ids, transport, charset; the password stays secret."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_settings

GOOD: dict[str, Any] = {
    "id": "county",
    "server_id": "34020000002000000001",
    "domain": "3402000000",
    "host": "10.1.2.3",
    "device_id": "34020000002000000002",
    "password": "pa55-word-xyz",
}


def _settings(**over: Any) -> Any:
    return parse_settings({"gb28181": {"upstream": [GOOD | over]}})


def test_defaults_fit_a_county_platform() -> None:
    up = _settings().gb28181.upstream[0]
    assert (up.transport, up.charset, up.port, up.keepalive_s, up.keepalive_misses) == (
        "udp",
        "gb2312",
        5060,
        60,
        3,
    )
    assert up.share == ["*"] and up.expires_s == 3600
    assert "pa55-word-xyz" not in repr(up) and "pa55-word-xyz" not in str(up.model_dump())
    assert parse_settings({}).gb28181 is None


@pytest.mark.parametrize(
    ("over", "path"),
    [
        ({"server_id": "3402000000200000000"}, "server_id"),
        ({"server_id": "3402000000200000000x"}, "server_id"),
        ({"domain": "34020"}, "domain"),
        ({"device_id": "34020000001310000002"}, "device_id"),
        ({"transport": "sctp"}, "transport"),
        ({"charset": "big5"}, "charset"),
        ({"port": 70000}, "port"),
        ({"civil_code": "3402001"}, "civil_code"),
        ({"keepalive_misses": 0}, "keepalive_misses"),
        ({"expires_s": 10}, "expires_s"),
    ],
)
def test_bad_values_name_their_key_and_never_echo_the_password(
    over: dict[str, Any], path: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _settings(**over)
    assert f"gb28181.upstream.0.{path}" in str(err.value)
    assert "pa55-word-xyz" not in str(err.value)


def test_nvr_type_and_duplicate_ids() -> None:
    assert _settings(device_id="34020000001180000002").gb28181.upstream[0].device_id[10:13] == "118"
    with pytest.raises(ConfigError, match="appears twice"):
        parse_settings({"gb28181": {"upstream": [GOOD, GOOD]}})
