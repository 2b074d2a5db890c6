"""The box's device.toml: built from the technician's settings, checked by the box's own
settings model, written as TOML the box reads back the same."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from device.settings import load
from provisioning.build import Platform, release_version, source_files
from provisioning.device_config import box_server_url, build_config, parse_assignments
from provisioning.errors import UsageError
from session_server.protocol import PartyKind

REPO = Path(__file__).resolve().parent.parent


def test_assignments_become_nested_typed_settings() -> None:
    assert parse_assignments(
        ["audio.input=Jabra SPEAK 410", "pins.start=5", "allow_insecure=true", 'midi.inputs=["K"]']
    ) == {
        "audio": {"input": "Jabra SPEAK 410"},
        "pins": {"start": 5},
        "allow_insecure": True,
        "midi": {"inputs": ["K"]},
    }
    with pytest.raises(UsageError, match="key=value"):
        parse_assignments(["audio.input"])


def test_the_rendered_file_is_what_the_box_loads(tmp_path: Path) -> None:
    config = build_config(
        "wss://twm.example.org/ws",
        PartyKind.SCHOOL,
        parse_assignments(['audio.input=Mic "A"', "pins.factory=mock", "pins.start=5"]),
    )
    path = tmp_path / "device.toml"
    path.write_text(config.render())

    settings = load(path)

    assert settings.server_url == "wss://twm.example.org/ws"
    assert settings.role is PartyKind.SCHOOL
    assert settings.audio.input == 'Mic "A"'
    assert settings.pins.factory == "mock"
    assert settings.pins.start == 5
    assert tomllib.loads(config.render())["pins"] == {"factory": "mock", "start": 5}


def test_the_same_settings_in_another_order_give_the_same_file() -> None:
    one = build_config(
        "wss://h/ws",
        PartyKind.CARE_HOME,
        parse_assignments(["pins.factory=mock", "audio.output=B", "audio.input=A"]),
    )
    other = build_config(
        "wss://h/ws",
        PartyKind.CARE_HOME,
        {"audio": {"input": "A", "output": "B"}, "pins": {"factory": "mock"}},
    )

    assert one.render() == other.render()
    assert one.render().index('server_url = "wss://h/ws"') < one.render().index("[audio]")


def test_a_wrong_setting_is_refused_naming_the_key() -> None:
    with pytest.raises(UsageError) as caught:
        build_config(
            "wss://twm.example.org/ws",
            PartyKind.CARE_HOME,
            parse_assignments(["pins.start=99", "audio.inptu=Jabra"]),
        )

    assert "audio.inptu: Extra inputs are not permitted" in str(caught.value)
    assert "pins.start: Input should be less than or equal to 27" in str(caught.value)


def test_what_the_tool_sets_itself_cannot_be_overridden() -> None:
    with pytest.raises(UsageError, match="token_file cannot be overridden"):
        build_config("wss://h/ws", PartyKind.CARE_HOME, {"token_file": "/tmp/x"})


def test_plain_ws_to_another_machine_needs_allow_insecure() -> None:
    with pytest.raises(UsageError, match="not encrypted"):
        build_config("ws://10.0.2.100:8000/ws", PartyKind.CARE_HOME, {})

    build_config("ws://10.0.2.100:8000/ws", PartyKind.CARE_HOME, {"allow_insecure": True})


def test_the_box_url_follows_from_the_server_address() -> None:
    assert box_server_url("https://twm.example.org") == "wss://twm.example.org/ws"
    assert box_server_url("http://127.0.0.1:8000/") == "ws://127.0.0.1:8000/ws"
    with pytest.raises(UsageError, match="https://HOST"):
        box_server_url("twm.example.org")


def test_wheel_platform_tags_cover_every_older_glibc() -> None:
    tags = Platform(python="3.11", machine="aarch64", libc=(2, 36)).tags()

    assert tags[0] == "manylinux_2_36_aarch64"
    assert "manylinux_2_17_aarch64" in tags
    assert "manylinux2014_aarch64" in tags
    assert "manylinux_2_16_aarch64" not in tags
    assert Platform(python="3.11", machine="x86_64", libc=(2, 36)).abi == "cp311"


def copy_tree(destination: Path) -> Path:
    for relative in source_files(REPO):
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        (destination / relative).write_bytes((REPO / relative).read_bytes())
    return destination


def test_the_release_version_follows_the_content(tmp_path: Path) -> None:
    source = copy_tree(tmp_path / "src")
    first = release_version(source)
    (source / "device" / "__pycache__").mkdir(exist_ok=True)
    (source / "device" / "__pycache__" / "x.pyc").write_bytes(b"not part of a release")

    assert release_version(source) == first
    assert first.startswith("0.1.0+") and len(first) == len("0.1.0+") + 12

    (source / "device" / "cli.py").write_text(
        (source / "device" / "cli.py").read_text() + "\n# changed\n"
    )
    assert release_version(source) != first
