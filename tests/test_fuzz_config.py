"""Hostile and random configs: a ConfigError naming the problem, never another exception."""

from __future__ import annotations

import contextlib
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import ConfigError, load_settings, parse_settings

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=12), children, max_size=4),
    ),
    max_leaves=20,
)
SECTIONS = [
    "server",
    "discovery",
    "cameras",
    "streams",
    "relay",
    "motion",
    "recording",
    "retention",
    "cascade",
    "linkage",
    "auth",
    "mqtt",
    "logging",
    "data_dir",
]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(SECTIONS), trees, max_size=4))
def test_random_trees_give_config_errors_only(tree: dict) -> None:
    try:
        parse_settings(tree, "fuzz")
    except ConfigError as err:
        assert str(err).startswith("invalid configuration in fuzz")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=400))
def test_random_bytes_as_a_config_file(tmp_path: Path, data: bytes) -> None:
    cfg = tmp_path / "fuzz.yaml"
    cfg.write_bytes(data)
    with contextlib.suppress(ConfigError):
        load_settings(cfg, env={})


def test_yaml_bombs_and_tags_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text("a: !!python/object/apply:os.system ['echo pwned']\n")
    try:
        load_settings(cfg, env={})
        raise AssertionError("a python tag must not load")
    except ConfigError as err:
        assert "not valid YAML" in str(err)
    # Billion laughs with anchors: safe_load expands references, not copies; a huge
    # alias tree must still end in a ConfigError (wrong types), not a hang or crash.
    lol = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i, prev in zip("bcdefgh", "abcdefg", strict=True):
        lol.append(f"{i}: &{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    lol.append("server: *h")
    cfg.write_text("\n".join(lol) + "\n")
    try:
        load_settings(cfg, env={})
        raise AssertionError("must be rejected")
    except ConfigError as err:
        assert "server" in str(err)


def test_env_override_with_bad_path_is_clear() -> None:
    try:
        load_settings(env={"GATEWAY__SERVER__PO RT": "1"})
        raise AssertionError("must be rejected")
    except ConfigError as err:
        assert "GATEWAY__SERVER__PO RT" in str(err)


def test_env_override_value_is_validated() -> None:
    try:
        load_settings(env={"GATEWAY__SERVER__PORT": "not-a-port"})
        raise AssertionError("must be rejected")
    except ConfigError as err:
        assert "server.port" in str(err)


def test_dump_of_defaults_round_trips() -> None:
    s = load_settings(env={})
    again = parse_settings(yaml.safe_load(yaml.safe_dump(s.model_dump(mode="json", by_alias=True))))
    assert again == s
