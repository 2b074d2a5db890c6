"""A fleet inventory is checked when it is read, and every mistake is named by box and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning.errors import UsageError
from provisioning.inventory import load_inventory, parse_inventory
from provisioning.target import Target
from session_server.protocol import PartyKind

GOOD = """
server = "https://twm.example.org"

[defaults]
user = "admin"
settings = { pins = { factory = "lgpio" }, audio = { input = "USB" } }

[[box]]
name = "rosewood-1"
host = "192.168.1.50"
care_home = 3

[[box]]
name = "st-marys"
host = "10.2.0.9"
port = 2222
user = "pi"
school = 7
[box.settings]
audio = { input = "Jabra" }
"""


def test_a_good_inventory_gives_targets_roles_and_merged_settings() -> None:
    inventory = parse_inventory(GOOD)
    rosewood, school = inventory.box

    assert inventory.target(rosewood) == Target(host="192.168.1.50", port=22, user="admin")
    assert inventory.target(school) == Target(host="10.2.0.9", port=2222, user="pi")
    assert (rosewood.role, rosewood.party_id) == (PartyKind.CARE_HOME, 3)
    assert (school.role, school.party_id) == (PartyKind.SCHOOL, 7)
    assert inventory.settings(school) == {
        "pins": {"factory": "lgpio"},
        "audio": {"input": "Jabra"},
    }


def message(text: str) -> str:
    with pytest.raises(UsageError) as caught:
        parse_inventory(text, "boxes.toml")
    return str(caught.value)


def test_each_mistake_is_named_by_box_and_key() -> None:
    text = message(
        """
[[box]]
name = "rosewood"
host = "192.168.1.50"
care_home = 3
school = 4

[[box]]
name = "hillside"
host = "-oProxyCommand=x"
school = 0
colour = "blue"
"""
    )

    assert text.splitlines() == [
        "boxes.toml is wrong:",
        "  box 1 (rosewood): give exactly one of care_home = ID or school = ID",
        "  box 2 (hillside): host: a host name or address, without spaces, not starting with '-'",
        "  box 2 (hillside): school: Input should be greater than or equal to 1",
        "  box 2 (hillside): colour: Extra inputs are not permitted",
    ]


def test_two_boxes_with_one_name_or_one_address_are_refused() -> None:
    twice = '[[box]]\nname = "a"\nhost = "h"\ncare_home = 1\n'
    assert "two boxes are named 'a'" in message(twice + twice)
    other = '[[box]]\nname = "b"\nhost = "h"\ncare_home = 1\n'
    assert "two boxes are at h port 22" in message(twice + other)


def test_no_boxes_and_bad_toml_are_said_plainly() -> None:
    assert "box: List should have at least 1 item" in message('server = "https://x"\nbox = []\n')
    assert "boxes.toml is not valid TOML" in message("[[box]\n")


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the inventory"):
        load_inventory(tmp_path / "nowhere.toml")
