from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings


def test_embedded_default_loads_with_multicast_off() -> None:
    s = load_settings(env={})
    assert s.server.host == "127.0.0.1"
    assert s.discovery.interfaces == []
    assert s.auth.enabled is True


def test_bad_value_names_the_key_path(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("server:\n  port: 70000\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert "server.port" in str(err.value)
    assert "65535" in str(err.value)


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("motion:\n  sensitivty: 0.4\n")
    with pytest.raises(ConfigError, match=r"motion\.sensitivty"):
        load_settings(cfg, env={})


def test_invalid_yaml_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(cfg, env={})


def test_environment_overrides_keys(tmp_path: Path) -> None:
    env = {"GATEWAY__SERVER__PORT": "9001", "GATEWAY_DATA_DIR": str(tmp_path / "d")}
    s = load_settings(env=env)
    assert s.server.port == 9001
    assert s.data_dir == tmp_path / "d"


def test_duplicate_camera_ids_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "dup.yaml"
    cfg.write_text(
        "cameras:\n - {id: cam-01, rtsp_url: 'rtsp://a/x'}\n - {id: cam-01, rtsp_url: 'rtsp://b/y'}\n"
    )
    with pytest.raises(ConfigError, match="appears twice"):
        load_settings(cfg, env={})


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", env={})


@pytest.mark.parametrize("name", ["city", "town", "village"])
def test_shipped_examples_are_valid(name: str) -> None:
    path = Path(__file__).resolve().parent.parent / "config" / "examples" / f"{name}.yaml"
    s = load_settings(path, env={})
    assert s.cascade.level == name
