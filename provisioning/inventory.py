"""A fleet's inventory: a TOML file naming the boxes to enroll, check or update together.

    server = "https://twm.example.org"        # the admin API (as for enroll --server)

    [defaults]                                # for every box, unless the box says otherwise
    user = "pi"
    settings = { pins = { factory = "lgpio" } }

    [[box]]
    name = "rosewood-1"                       # its name at the server
    host = "192.168.1.50"
    care_home = 3

    [[box]]
    name = "st-marys"
    host = "10.2.0.9"
    port = 2222
    school = 7
    [box.settings]                            # device.toml overrides for this box
    audio = { input = "Jabra", output = "Jabra" }

Validated where it is read: each mistake is named by box number and name, key and what is wrong.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from provisioning.device_config import merge
from provisioning.errors import UsageError
from provisioning.target import Host, Target, User
from session_server.protocol import PartyKind

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Strict):
    user: User = "pi"
    port: int = Field(default=22, ge=1, le=65535)
    settings: dict[str, Any] = Field(default_factory=dict)


class Box(_Strict):
    name: Name
    host: Host
    port: int | None = Field(default=None, ge=1, le=65535)
    user: User | None = None
    care_home: int | None = Field(default=None, ge=1)
    school: int | None = Field(default=None, ge=1)
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_party(self) -> Box:
        if (self.care_home is None) == (self.school is None):
            raise ValueError("give exactly one of care_home = ID or school = ID")
        return self

    @property
    def role(self) -> PartyKind:
        return PartyKind.CARE_HOME if self.care_home is not None else PartyKind.SCHOOL

    @property
    def party_id(self) -> int:
        party = self.care_home if self.care_home is not None else self.school
        return party or 0


class Inventory(_Strict):
    server: str | None = None
    box_server_url: str | None = None
    defaults: Defaults = Defaults()
    box: list[Box] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> Inventory:
        names: set[str] = set()
        places: set[tuple[str, int]] = set()
        for box in self.box:
            if box.name in names:
                raise ValueError(f"two boxes are named {box.name!r}")
            names.add(box.name)
            place = (box.host, box.port or self.defaults.port)
            if place in places:
                raise ValueError(f"two boxes are at {place[0]} port {place[1]}")
            places.add(place)
        return self

    def target(self, box: Box) -> Target:
        return Target(
            host=box.host,
            port=box.port or self.defaults.port,
            user=box.user or self.defaults.user,
        )

    def settings(self, box: Box) -> dict[str, Any]:
        return merge(self.defaults.settings, box.settings)


def _where(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    if len(loc) >= 2 and loc[0] == "box" and isinstance(loc[1], int):
        boxes = data.get("box")
        entry = boxes[loc[1]] if isinstance(boxes, list) and loc[1] < len(boxes) else {}
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"box {loc[1] + 1}" + (f" ({name})" if name else "")
        rest = ".".join(str(part) for part in loc[2:])
        return f"{label}: {rest}" if rest else label
    return ".".join(str(part) for part in loc) or "the file"


def parse_inventory(text: str, source: str = "the inventory") -> Inventory:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source} is not valid TOML: {exc}") from None
    try:
        return Inventory.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {_where(tuple(error['loc']), data)}: "
            + str(error["msg"]).removeprefix("Value error, ")
            for error in exc.errors(include_input=False, include_url=False)
        ]
        raise UsageError(f"{source} is wrong:\n" + "\n".join(lines)) from None


def load_inventory(path: Path) -> Inventory:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the inventory {path}: {exc.strerror}") from None
    return parse_inventory(text, str(path))
