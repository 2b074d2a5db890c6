"""The box's settings: a TOML file (default ``/etc/twm/device.toml``) and ``TWM_DEVICE_…``
variables (nested keys with ``__``: ``TWM_DEVICE_AUDIO__INPUT=Jabra``), read once at start.

    server_url = "wss://twm.example.org/ws"
    role = "care_home"
    token_file = "/etc/twm/device.token"

    [audio]
    input = "Jabra"
    output = "Jabra"

    [pins]
    factory = "lgpio"
    start = 17

The device token is read from its own file (or the systemd credential ``device-token``), is a
``SecretStr`` and is never logged.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from device.errors import ConfigError
from device.net.link_settings import LinkSettings
from session_server.protocol import PartyKind

DEFAULT_CONFIG = Path("/etc/twm/device.toml")
DEFAULT_TOKEN_FILE = Path("/etc/twm/device.token")
CREDENTIAL_NAME = "device-token"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AudioSettings(_Section):
    input: str = Field(
        default="default", description="microphone: part of the sound card's name, or 'default'"
    )
    output: str = Field(
        default="default", description="speaker: part of the sound card's name, or 'default'"
    )
    echo_cancel: Literal["speakerphone", "pipewire"] = Field(
        default="speakerphone",
        description="who cancels the speaker's echo: the USB speakerphone itself, or PipeWire",
    )
    profile: Literal["music", "stock"] = Field(
        default="music",
        description=(
            "'music': 10 ms Opus for music and the adaptive jitter buffer (low delay); "
            "'stock': aiortc as shipped (20 ms voice frames, 4-packet buffer), the benchmark's "
            "baseline and a fallback"
        ),
    )


class PinSettings(_Section):
    """BCM pin numbers of the buttons and lights, and which pin library drives them."""

    factory: Literal["lgpio", "rpigpio", "native", "mock"] = Field(
        default="lgpio", description="'mock' on a machine with no GPIO (a laptop, the demo)"
    )
    start: int = Field(default=17, ge=0, le=27)
    clap: int = Field(default=27, ge=0, le=27)
    heart: int = Field(default=22, ge=0, le=27)
    volume_up: int = Field(default=23, ge=0, le=27)
    volume_down: int = Field(default=24, ge=0, le=27)
    mute: int = Field(default=25, ge=0, le=27)
    status_light: int = Field(default=12, ge=0, le=27)
    on_air_light: int = Field(default=13, ge=0, le=27)
    hold_seconds: float = Field(
        default=3.0, gt=0, le=10, description="hold START this long to leave"
    )

    @model_validator(mode="after")
    def _distinct(self) -> PinSettings:
        used: dict[int, str] = {}
        for name in (
            "start",
            "clap",
            "heart",
            "volume_up",
            "volume_down",
            "mute",
            "status_light",
            "on_air_light",
        ):
            pin = getattr(self, name)
            if pin in used:
                raise ValueError(f"pins.{name} and pins.{used[pin]} are both GPIO{pin}")
            used[pin] = name
        return self


PAD_BUTTONS = ("start", "clap", "heart", "volume_up", "volume_down", "mute")
_PAD_KINDS = {"note": "note", "cc": "cc", "control": "cc", "controller": "cc"}


def pad_key(text: str) -> tuple[Literal["note", "cc"], int]:
    """``"note 36"`` → ``("note", 36)``, ``"cc 20"`` → ``("cc", 20)``; ValueError otherwise."""
    words = text.split()
    kind = _PAD_KINDS.get(words[0].casefold()) if len(words) == 2 else None
    number = words[1] if len(words) == 2 else ""
    if kind is None or not number.isdigit() or not 0 <= int(number) <= 127:
        raise ValueError(
            f"{text!r} is not a pad key: write 'note N' or 'cc N' with N from 0 to 127 "
            "(`twm-device midi` shows what each pad sends)"
        )
    return ("note" if kind == "note" else "cc"), int(number)


class PadSettings(_Section):
    """A MIDI pad standing in for the big buttons (``device.controls.pad``): off unless ``port``
    names it. The defaults are the first six pads of most pads' factory setting (notes 36 to 41,
    General MIDI's drum notes)."""

    port: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the pad: a case-insensitive part of its MIDI port's name; none: no pad",
    )
    channel: int | None = Field(
        default=None, ge=1, le=16, description="the pad's MIDI channel (1 to 16); none: any"
    )
    start: str = Field(default="note 36", description="START: 'note N' or 'cc N'")
    clap: str = "note 37"
    heart: str = "note 38"
    volume_up: str = "note 39"
    volume_down: str = "note 40"
    mute: str = "note 41"

    @model_validator(mode="after")
    def _keys_are_distinct(self) -> PadSettings:
        if self.port is not None and not self.port.strip():
            raise ValueError("midi.pad.port is blank: name the pad's port, or leave it out")
        used: dict[tuple[str, int], str] = {}
        for name in PAD_BUTTONS:
            try:
                key = pad_key(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"midi.pad.{name}: {exc}") from None
            if key in used:
                raise ValueError(
                    f"midi.pad.{name} and midi.pad.{used[key]} are both {key[0]} {key[1]}"
                )
            used[key] = name
        return self

    def buttons(self) -> dict[tuple[str, int], str]:
        """``("note", 36)`` → ``"start"``, for every button."""
        return {pad_key(getattr(self, name)): name for name in PAD_BUTTONS}


class MidiSettings(_Section):
    """MIDI instruments played across the link (``device.midi``); none unless named."""

    inputs: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=16,
        description="instruments to play from: each a case-insensitive part of a port's name",
    )
    outputs: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "synths to play the other side's notes on: each a case-insensitive part of a port's "
            "name; none: the built-in synth"
        ),
    )
    backend: Literal["alsa", "jack"] = Field(
        default="alsa", description="rtmidi's MIDI system: ALSA's sequencer on a box, or JACK"
    )
    playout_ms: float = Field(
        default=20.0,
        ge=0,
        le=200,
        description=(
            "steady delay added to the other side's notes so that bunched packets keep their "
            "rhythm; more smooths a jittery network, less is closer to live"
        ),
    )
    pad: PadSettings = Field(
        default_factory=PadSettings, description="a MIDI pad as the big buttons"
    )

    @model_validator(mode="after")
    def _patterns_mean_something(self) -> MidiSettings:
        for key in ("inputs", "outputs"):
            if any(not pattern.strip() for pattern in getattr(self, key)):
                raise ValueError(f"midi.{key}: a name pattern is blank")
        return self


class DeviceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TWM_DEVICE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )
    _toml_file: ClassVar[Path | None] = None

    server_url: str = Field(description="the session server's WebSocket, e.g. wss://host/ws")
    role: PartyKind = PartyKind.CARE_HOME
    token_file: Path | None = Field(
        default=None,
        description="file holding the device token; default: the systemd credential "
        f"'{CREDENTIAL_NAME}', else {DEFAULT_TOKEN_FILE}",
    )
    allow_insecure: bool = Field(
        default=False, description="allow ws:// to a server that is not on this machine"
    )
    runtime_dir: Path = Field(
        default=Path("/run/twm-device"), description="where the box writes its status"
    )
    keyboard: bool = Field(
        default=False, description="drive the (mock) buttons from this terminal's keyboard"
    )
    audio: AudioSettings = AudioSettings()
    pins: PinSettings = PinSettings()
    midi: MidiSettings = MidiSettings()
    link: LinkSettings = LinkSettings()

    @model_validator(mode="after")
    def _tls_unless_local(self) -> DeviceSettings:
        parts = urlsplit(self.server_url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"server_url must look like wss://HOST/ws, not {self.server_url!r}")
        if parts.scheme == "ws" and not self.allow_insecure and not _is_loopback(parts.hostname):
            raise ValueError(
                "server_url uses ws:// (no TLS) to another machine: use wss://, "
                "or set allow_insecure = true for a test network"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)

    def token_path(self) -> Path:
        if self.token_file is not None:
            return self.token_file
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        if credentials:
            return Path(credentials) / CREDENTIAL_NAME
        return DEFAULT_TOKEN_FILE

    def read_token(self) -> SecretStr:
        """The device token, or a ``ConfigError`` saying where it was looked for."""
        path = self.token_path()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(
                f"no device token at {path}: enrol this box with twm-provision, "
                "or set token_file (TWM_DEVICE_TOKEN_FILE)"
            ) from None
        except PermissionError:
            raise ConfigError(
                f"cannot read the device token at {path}: run as the service user"
            ) from None
        if not token or any(ch.isspace() for ch in token) or len(token) > 200:
            raise ConfigError(f"the file {path} does not hold a device token")
        return SecretStr(token)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load(config: Path | None = None, **overrides: Any) -> DeviceSettings:
    """Read the settings, or raise ``ConfigError`` naming every wrong key."""
    explicit = config is not None or "TWM_DEVICE_CONFIG" in os.environ
    path = config or Path(os.environ.get("TWM_DEVICE_CONFIG", DEFAULT_CONFIG))
    if explicit and not path.is_file():
        raise ConfigError(f"no settings file at {path}")

    class _FromFile(DeviceSettings):
        _toml_file: ClassVar[Path | None] = path if path.is_file() else None

    try:
        loaded = _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe(exc, path)) from None
    except (OSError, ValueError) as exc:  # a TOML syntax error arrives as a ValueError
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return loaded


def describe(exc: ValidationError, path: Path) -> str:
    """Every problem, by key, without the values (a value may be a secret)."""
    lines = [f"the box's settings are wrong ({path} and TWM_DEVICE_… variables):"]
    for error in exc.errors(include_input=False, include_url=False):
        key = ".".join(str(part) for part in error["loc"]) or "settings"
        env = (
            "TWM_DEVICE_" + "__".join(str(p) for p in error["loc"]).upper() if error["loc"] else ""
        )
        hint = f" (or {env})" if env else ""
        lines.append(f"  {key}{hint}: {error['msg']}")
    return "\n".join(lines)
