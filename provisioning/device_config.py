"""The box's ``/etc/twm/device.toml``, built from what the technician gave and checked against the
box's own settings model before it is written.

    config = DeviceConfig(server_url="wss://twm.example.org/ws", role=PartyKind.CARE_HOME,
                          overrides=parse_assignments(["audio.input=Jabra"]))
    config.render()       # the file's text; DeviceSettings would accept it

Overrides are the settings a box differs in (its sound card's name, its pins): given with
``--set key=value`` or in an inventory's ``[box.settings]`` table. A wrong key or value is refused
here, by :class:`device.settings.DeviceSettings` itself, naming the key: the box would refuse it
at start-up anyway, and later, where nobody reads its log.
"""

from __future__ import annotations

import ipaddress
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from device.settings import DeviceSettings
from provisioning.errors import UsageError
from session_server.protocol import PartyKind

CONFIG_PATH = "/etc/twm/device.toml"
TOKEN_PATH = "/etc/twm/device.token"  # noqa: S105 (where the token goes, not a token)
# Set by twm-provision itself; an override could only break the box.
RESERVED = ("server_url", "role", "token_file", "runtime_dir", "keyboard")
HEADER = (
    "# Written by twm-provision; a change made here by hand is replaced at the next enroll.\n"
    "# Change settings with `twm-provision enroll HOST --set key=value` or the fleet inventory.\n"
)


def box_server_url(server: str) -> str:
    """The WebSocket a box uses, from the server's base address: https://h → wss://h/ws."""
    parts = urlsplit(server)
    scheme = {"https": "wss", "http": "ws", "wss": "wss", "ws": "ws"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise UsageError(f"the server address must look like https://HOST, not {server!r}")
    path = parts.path if parts.path.endswith("/ws") else parts.path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def parse_value(raw: str) -> Any:
    """A TOML value (``5``, ``true``, ``["a"]``, ``"x"``), else the text as a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def parse_assignments(assignments: Sequence[str]) -> dict[str, Any]:
    """``["audio.input=Jabra", "pins.start=5"]`` → ``{"audio": {"input": "Jabra"}, …}``."""
    tree: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        path = [part.strip() for part in key.split(".")]
        if not sep or not all(path):
            raise UsageError(f"--set wants key=value (e.g. audio.input=Jabra), not {assignment!r}")
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UsageError(f"--set {key}: {part} is a value, not a section")
            node = child
        node[path[-1]] = parse_value(raw.strip())
    return tree


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, section by section."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _needs_insecure(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        return False
    if parts.hostname == "localhost":
        return False
    try:
        return not ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return True


class DeviceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    server_url: str
    role: PartyKind
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid_for_the_box(self) -> DeviceConfig:
        reserved = sorted(set(self.overrides) & set(RESERVED))
        if reserved:
            raise ValueError(
                f"{', '.join(reserved)} cannot be overridden: twm-provision sets "
                f"{'it' if len(reserved) == 1 else 'them'} itself"
            )
        if _needs_insecure(self.server_url) and self.overrides.get("allow_insecure") is not True:
            raise ValueError(
                f"{self.server_url} is not encrypted (ws://): use the server's https:// address, "
                "or on a test network --set allow_insecure=true"
            )
        try:
            # The box's own model, with nothing from this machine's environment mixed in.
            DeviceSettings.model_validate(self.settings(), context=None)
        except ValidationError as exc:
            raise ValueError(_describe(exc)) from None
        return self

    def settings(self) -> dict[str, Any]:
        return merge({"server_url": self.server_url, "role": self.role.value}, self.overrides)

    def render(self) -> str:
        """The file's text, the same for the same settings however they were given (a command
        line or an inventory, in any order), so that an unchanged box is seen as unchanged."""
        settings = self.settings()
        first = {key: settings.pop(key) for key in ("server_url", "role")}
        return HEADER + dumps({**first, **_sorted(settings)})


def _sorted(tree: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: _sorted(value) if isinstance(value, Mapping) else value
        for key, value in sorted(tree.items())
    }


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        key = ".".join(str(part) for part in error["loc"]) or "settings"
        lines.append(f"{key}: {str(error['msg']).removeprefix('Value error, ')}")
    return "the box's settings would be wrong: " + "; ".join(lines)


def build_config(server_url: str, role: PartyKind, overrides: Mapping[str, Any]) -> DeviceConfig:
    """A checked ``DeviceConfig``, or ``UsageError`` saying which setting is wrong."""
    try:
        return DeviceConfig(server_url=server_url, role=role, overrides=dict(overrides))
    except ValidationError as exc:
        messages = [
            str(error["msg"]).removeprefix("Value error, ")
            for error in exc.errors(include_input=False, include_url=False)
        ]
        raise UsageError("; ".join(messages)) from None


# --- a small TOML writer: strings, numbers, booleans, lists of those, and tables --------------


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"{value} cannot be written as a setting")
        return repr(value)
    if isinstance(value, str):
        # JSON's string escapes are all valid in a TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(item) for item in value) + "]"
    raise UsageError(f"a setting cannot be {type(value).__name__}: {value!r}")


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def dumps(tree: Mapping[str, Any], prefix: str = "") -> str:
    """TOML text for ``tree``: its plain keys first, then one ``[table]`` per section."""
    lines = [f"{_key(k)} = {_scalar(v)}" for k, v in tree.items() if not isinstance(v, Mapping)]
    text = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tree.items():
        if isinstance(value, Mapping):
            name = f"{prefix}.{_key(key)}" if prefix else _key(key)
            body = dumps(value, name)
            text += f"\n[{name}]\n{body}"
    return text
