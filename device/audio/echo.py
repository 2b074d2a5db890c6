"""PipeWire's echo canceller between the box's microphone and its speaker, for a speakerphone
that has none of its own (``audio.echo_cancel = "pipewire"``).

    canceller = EchoCanceller(settings.audio)
    canceller.start()          # loads it, or reuses the one already loaded; AudioError if it can't
    canceller.source_node      # open this instead of the microphone …
    canceller.sink_node        # … and this instead of the speaker
    canceller.problem()        # "the microphone (…) is gone …" once a card behind it vanishes
    canceller.stop()           # unloads what this start loaded

The canceller is PipeWire's ``libpipewire-module-echo-cancel`` (WebRTC AEC, from Debian's
``libspa-0.2-modules`` and ``libwebrtc-audio-processing1``, which ``pipewire`` pulls in), loaded
through pipewire-pulse with ``pactl load-module module-echo-cancel``. Loaded there, it lives in the
sound server: it has an index to unload it by and a listing to find it again, so a box that
restarts finds the one it loaded before and reuses it instead of stacking a second one.

It sits between two PipeWire nodes (its *masters*): it takes the microphone's node, removes what
its speaker's node is playing, and offers the result as a new source; what is played into its new
sink goes on to the speaker and is the reference it cancels. The box's settings name sound cards
the way PortAudio lists them, so they are mapped to PipeWire nodes (``pactl -f json list sources``
/ ``sinks``; monitors and the canceller's own nodes are left out):

- ``"default"``: PipeWire's default source / sink at the time the canceller is loaded (pinned, so
  that the canceller itself becoming the default does not make it listen to itself);
- a PortAudio ALSA name with ``(hw:CARD,DEVICE)`` in it: the node of that ALSA card and device;
- otherwise, an exact node name (or description) wins over a part of one, and the part may be of
  the node's name, description, nickname or ALSA card name ("Jabra" finds
  ``alsa_input.usb-0b0e_Jabra_SPEAK_510_USB…``). Nothing matching raises ``AudioError`` listing the
  nodes found and the setting to change.

PortAudio reaches the canceller's nodes through pipewire-alsa: the card is PortAudio's
``pipewire`` device (the ALSA PCM ``type pipewire`` that pipewire-alsa installs), and the node is
chosen by ``PIPEWIRE_NODE``, which that plugin reads when the stream is opened, exactly as a
``capture_node`` / ``playback_node`` in an ALSA configuration file would choose it. No
configuration file is written, so PortAudio never has to restart to see new PCMs (it cannot
while another stream is open, see ``device.audio.cards``).

The canceller's nodes are named after the cards they serve (``twm_echo_cancel_source.<mic>``,
``twm_echo_cancel_sink.<speaker>``), so two boxes sharing one PipeWire (the demo, the bench) each
get their own. Its load arguments carry the loading process's id (``twm.pid``): a canceller left
by a box that died is adopted (and unloaded when this one stops), one in use by another live
process (``twm-device test-audio`` beside the service) is shared and left loaded, and within one
process a count of users unloads it when the last one stops.

When a master vanishes (the USB card is unplugged) the module stays loaded and its source goes
on delivering, so the box would never notice: ``pactl subscribe`` is watched on a thread, and
once a master is missing ``problem()`` says so; the card reports it like any other failure.

Found doing it (PipeWire 0.3.65, pactl 16.1):
- Without ``aec_args`` the WebRTC noise suppressor is on and takes 18 dB off steady near-end
  sound (music!); ``webrtc.noise_suppression=false`` and ``webrtc.gain_control=false`` keep the
  room's sound as it was (within 0.3 dB). ``aec_method`` is ignored ("aec.method is not supported
  anymore"): the library is PipeWire's default, WebRTC.
- pipewire-pulse's module takes no properties for its capture stream, so ``node.dont-reconnect``
  cannot be set on it: hence the watching thread above.
- Once loaded, WirePlumber may make the canceller's source the default source.
- ``pactl -f json list modules`` has no index; the short listing is read instead.
- Unloading the module while its sink is still scheduled crashes pipewire-pulse now and then
  (see ``_quiesce``): its sink and source are suspended first.
- Measured in ``tests/test_echo_cancel.py`` on a shared, busy machine: ERLE 62-82 dB in most
  runs; a late block of audio shifts the canceller's alignment of speaker and microphone (its
  ring buffers keep the shift) and it settles again at 27-29 dB (20-31 dB when the box's audio
  threads did not have real-time priority, with many late blocks). A voice in the room passes
  within 1 dB alone, about 6 dB down while the far end also sounds. The canceller adds about
  23 ms from the microphone and 16 ms to the speaker (10 ms quantum).
"""

# pactl is a fixed Debian program (found on PATH), with arguments made here.
# ruff: noqa: S603

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from device.audio.cards import Card, Direction
from device.audio.format import SAMPLE_RATE
from device.errors import AudioError
from device.settings import AudioSettings

MODULE = "module-echo-cancel"
SOURCE_PREFIX = "twm_echo_cancel_source."
SINK_PREFIX = "twm_echo_cancel_sink."
OWNER_KEY = "twm.pid"
# Music goes through this: no noise suppression (it eats sustained notes), no gain control.
AEC_ARGS = "webrtc.noise_suppression=false webrtc.gain_control=false"
PORTAUDIO_DEVICE = "pipewire"  # pipewire-alsa's PCM; PIPEWIRE_NODE picks the node
PACTL_SECONDS = 10.0
BOOTSTRAP_HINT = (
    "run scripts/bootstrap as root (it installs pipewire, pipewire-pulse, pipewire-alsa and "
    'pulseaudio-utils), or set audio.echo_cancel = "speakerphone" '
    "(TWM_DEVICE_AUDIO__ECHO_CANCEL)"
)

_lock = threading.Lock()  # one load or unload at a time in this process
_users: dict[int, int] = {}  # module index -> cancellers in this process using it


@dataclass(frozen=True)
class Node:
    """A PipeWire source or sink as pipewire-pulse lists it."""

    name: str
    description: str = ""
    properties: Mapping[str, str] = field(default_factory=dict)

    def labels(self) -> list[str]:
        keys = ("node.nick", "alsa.card_name", "device.product.name", "device.description")
        return [self.name, self.description, *(self.properties.get(key, "") for key in keys)]


@dataclass(frozen=True)
class LoadedModule:
    """An echo canceller module in pipewire-pulse, with its load arguments."""

    index: int
    arguments: Mapping[str, str]

    @property
    def owner(self) -> int | None:
        match = re.search(
            rf"{re.escape(OWNER_KEY)}=(\d+)", self.arguments.get("source_properties", "")
        )
        return int(match[1]) if match else None

    def same_as(self, wanted: Mapping[str, str]) -> bool:
        mine = {key: value for key, value in self.arguments.items() if key != "source_properties"}
        return mine == {key: value for key, value in wanted.items() if key != "source_properties"}


def pipewire_device(cards: Sequence[Card]) -> Card:
    """PortAudio's ``pipewire`` device, through which the canceller's nodes are opened."""
    for card in cards:
        if card.name == PORTAUDIO_DEVICE and card.inputs > 0 and card.outputs > 0:
            return card
    raise AudioError(
        "the echo canceller is reached through PortAudio's 'pipewire' device, which is not "
        f"listed (found: {', '.join(card.name for card in cards) or 'no sound card at all'}): "
        f"ALSA's PipeWire plugin (pipewire-alsa) is missing or PipeWire is not running; "
        f"{BOOTSTRAP_HINT}"
    )


def pipewire_node(
    wanted: str, direction: Direction, nodes: Sequence[Node], default: str | None
) -> str:
    """The PipeWire node that ``wanted`` (a setting, as for PortAudio) names, or ``AudioError``."""
    key = wanted.strip()
    if key.casefold() == "default":
        if default is not None and any(node.name == default for node in nodes):
            return default
        raise AudioError(
            f"PipeWire has no default {direction.noun} for the echo canceller — found: "
            f"{_names(nodes)}; plug in the sound card, or set {direction.setting}"
        )
    hw = re.search(r"\(?\bhw:(\d+)(?:,(\d+))?\)?", key)
    if hw is not None:
        on_card = [node for node in nodes if _alsa(node, "card") == hw[1]]
        on_device = [node for node in on_card if hw[2] is None or _alsa(node, "device") == hw[2]]
        if on_device or on_card:
            return (on_device or on_card)[0].name
        key = key[: hw.start()].strip()
    keys = [key.casefold()]
    if ":" in key:  # PortAudio's ALSA names are "CARD NAME: PCM NAME"
        keys.append(key.split(":", 1)[0].strip().casefold())
    for each in keys:
        exact = [
            node for node in nodes if each in (node.name.casefold(), node.description.casefold())
        ]
        partial = [
            node
            for node in nodes
            if each and any(each in label.casefold() for label in node.labels())
        ]
        if exact or partial:
            return (exact or partial)[0].name
    raise AudioError(
        f"no {direction.noun} named {wanted!r} in PipeWire for the echo canceller — found: "
        f"{_names(nodes)}; set {direction.setting}"
    )


def _alsa(node: Node, what: str) -> str | None:
    return node.properties.get(f"alsa.{what}") or node.properties.get(f"api.alsa.pcm.{what}")


def _names(nodes: Sequence[Node]) -> str:
    return ", ".join(node.name for node in nodes) or "none at all"


class EchoCanceller:
    """One box's echo canceller: loaded (or reused) by ``start``, unloaded by ``stop``."""

    def __init__(
        self,
        settings: AudioSettings,
        *,
        environ: Mapping[str, str] | None = None,
        module_name: str = MODULE,
    ) -> None:
        self._settings = settings
        self._environ = dict(environ) if environ is not None else None
        self._module_name = module_name
        self._module: int | None = None
        self._counted = False  # this process's count of users includes this canceller
        self.source_master: str | None = None
        self.sink_master: str | None = None
        self._problem: str | None = None
        self._watcher: subprocess.Popen[str] | None = None
        self._unwatching = threading.Event()
        self._watch_thread: threading.Thread | None = None

    # --- what the card uses ---------------------------------------------------------------

    @property
    def source_node(self) -> str:
        return SOURCE_PREFIX + self._require(self.source_master)

    @property
    def sink_node(self) -> str:
        return SINK_PREFIX + self._require(self.sink_master)

    @property
    def input_name(self) -> str:
        return f"{self.source_master or self._settings.input} (echo-cancelled by PipeWire)"

    @property
    def output_name(self) -> str:
        return f"{self.sink_master or self._settings.output} (echo reference for PipeWire)"

    @property
    def module(self) -> int | None:
        """pipewire-pulse's index of the module in use, None while stopped."""
        return self._module

    def problem(self) -> str | None:
        """A card behind the canceller vanished (noticed on the watching thread), or None."""
        return self._problem

    # --- life -----------------------------------------------------------------------------

    def start(self) -> None:
        """Load the canceller between the cards the settings name, or reuse the one loaded."""
        if self._module is not None:
            return
        self._problem = None
        self._check_server()
        with _lock:
            modules = self.loaded_modules()
            self.source_master, self.sink_master = self._masters(modules)
            wanted = self._arguments()
            existing = next(
                (m for m in modules if m.arguments.get("source_name") == wanted["source_name"]),
                None,
            )
            if existing is not None:
                self._take_over(existing, wanted)
            if self._module is None:
                self._module = self._load(wanted)
                self._count()
        try:
            self._watch()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop watching; unload the module if no one else (here or in a live box) uses it."""
        self._unwatch()
        module, self._module = self._module, None
        if module is None:
            return
        with _lock:
            if not self._counted:
                return  # shared with another live process: that one unloads it
            self._counted = False
            _users[module] -= 1
            if _users[module] > 0:
                return
            del _users[module]
            with contextlib.suppress(AudioError):
                # Already gone (its server restarted, someone unloaded it): nothing to undo.
                self._quiesce()
                self._pactl("unload-module", str(module))

    def _quiesce(self) -> None:
        """Stop the canceller's processing before it is unloaded.

        PipeWire 0.3.65's module destroys its streams one by one; its sink, still fed each
        cycle, runs the canceller into the already destroyed source stream and pipewire-pulse
        crashes (``pw_stream_dequeue_buffer`` on NULL; here about one unload in ten with the
        speaker playing). Suspended, its sink and source are no longer scheduled.
        """
        self._pactl("suspend-sink", self.sink_node, "1")
        self._pactl("suspend-source", self.source_node, "1")

    # --- loading --------------------------------------------------------------------------

    def _take_over(self, existing: LoadedModule, wanted: Mapping[str, str]) -> None:
        owner = existing.owner
        other_live_owner = owner is not None and owner != os.getpid() and _alive(owner)
        if existing.same_as(wanted):
            self._module = existing.index
            if not other_live_owner:
                self._count()  # ours, or left by a box that died: ours to unload now
            return
        if other_live_owner or existing.index in _users:
            raise AudioError(
                f"the echo canceller on {self.source_master} is in use by process {owner} with "
                f"another speaker ({existing.arguments.get('sink_master')}): stop that "
                "twm-device, or give both the same audio settings"
            )
        self._pactl("unload-module", str(existing.index))  # left by a box that died

    def _count(self) -> None:
        assert self._module is not None
        _users[self._module] = _users.get(self._module, 0) + 1
        self._counted = True

    def _arguments(self) -> dict[str, str]:
        source = self._require(self.source_master)
        sink = self._require(self.sink_master)
        return {
            "source_name": SOURCE_PREFIX + source,
            "sink_name": SINK_PREFIX + sink,
            "source_master": source,
            "sink_master": sink,
            "rate": str(SAMPLE_RATE),
            "channels": "1",
            "aec_args": AEC_ARGS,
            "source_properties": f"{OWNER_KEY}={os.getpid()}",
        }

    def _load(self, arguments: Mapping[str, str]) -> int:
        args = [f"{key}={_quote(value)}" for key, value in arguments.items()]
        try:
            return int(self._pactl("load-module", self._module_name, *args).strip())
        except AudioError as exc:
            raise AudioError(
                f"PipeWire could not load its echo canceller ({self._module_name}): "
                f"{exc}; it comes with Debian's pipewire (libpipewire-0.3-modules, "
                f"libspa-0.2-modules, libwebrtc-audio-processing1): {BOOTSTRAP_HINT}"
            ) from None

    def loaded_modules(self) -> list[LoadedModule]:
        """The echo canceller modules pipewire-pulse has loaded for boxes."""
        # pactl 16's JSON for modules has no index; the short listing has, one module a line
        # (other modules' arguments can run over several lines: they do not match).
        modules = []
        for line in self._pactl("list", "short", "modules").splitlines():
            parts = line.split("\t")
            if len(parts) < 3 or not parts[0].isdigit() or parts[1] != MODULE:
                continue
            arguments = _parse_arguments(parts[2])
            if arguments.get("source_name", "").startswith(SOURCE_PREFIX):
                modules.append(LoadedModule(int(parts[0]), arguments))
        return modules

    # --- which nodes ----------------------------------------------------------------------

    def _masters(self, modules: Sequence[LoadedModule]) -> tuple[str, str]:
        ours = {
            m.arguments.get("source_name", ""): m.arguments.get("source_master", "")
            for m in modules
        }
        ours |= {
            m.arguments.get("sink_name", ""): m.arguments.get("sink_master", "") for m in modules
        }
        masters = []
        for direction, kind in ((Direction.INPUT, "source"), (Direction.OUTPUT, "sink")):
            nodes = self.nodes(kind)
            default: str | None = None
            with contextlib.suppress(AudioError):  # no default at all: only "default" cares
                default = self._pactl(f"get-default-{kind}").strip() or None
            # A canceller being the default stands for the card it was loaded on.
            default = ours.get(default, default) if default is not None else None
            wanted = self._settings.input if direction is Direction.INPUT else self._settings.output
            masters.append(pipewire_node(wanted, direction, nodes, default))
        return masters[0], masters[1]

    def nodes(self, kind: str) -> list[Node]:
        """PipeWire's sources (``kind="source"``) or sinks, without monitors or cancellers."""
        found: list[dict[str, Any]] = json.loads(self._pactl("-f", "json", "list", f"{kind}s"))
        media_class = "Audio/Source" if kind == "source" else "Audio/Sink"
        prefix = SOURCE_PREFIX if kind == "source" else SINK_PREFIX
        nodes = []
        for item in found:
            properties = {str(k): str(v) for k, v in (item.get("properties") or {}).items()}
            name = str(item.get("name", ""))
            # A sink's monitor is listed as a source but is the sink's node (class Audio/Sink).
            if not properties.get("media.class", "").startswith(media_class):
                continue
            if name.startswith(prefix) or properties.get("device.class") == "monitor":
                continue
            nodes.append(Node(name, str(item.get("description", "")), properties))
        return nodes

    # --- watching the masters -------------------------------------------------------------

    def _watch(self) -> None:
        self._unwatching.clear()
        self._watcher = subprocess.Popen(
            [self._pactl_path(), "subscribe"],
            env=self._environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        watcher = self._watcher
        self._watch_thread = threading.Thread(
            target=self._follow, args=(watcher,), name="twm-echo-cancel-watch", daemon=True
        )
        self._watch_thread.start()
        self._check_masters()  # one may have gone before the subscription began

    def _follow(self, watcher: subprocess.Popen[str]) -> None:
        assert watcher.stdout is not None
        for line in watcher.stdout:
            if "'remove' on source" in line or "'remove' on sink" in line:
                with contextlib.suppress(AudioError):
                    self._check_masters()
        if self._unwatching.is_set():
            return  # stopped by us
        self._problem = "PipeWire's sound server stopped (the echo canceller went with it)"

    def _check_masters(self) -> None:
        for kind, master, noun in (
            ("source", self.source_master, "microphone"),
            ("sink", self.sink_master, "speaker"),
        ):
            listed = self._pactl("list", "short", f"{kind}s").splitlines()
            names = {line.split("\t")[1] for line in listed if "\t" in line}
            if master not in names:
                self._problem = f"the {noun} ({master}) is gone: was the sound card unplugged?"
                return

    def _unwatch(self) -> None:
        self._unwatching.set()
        watcher, self._watcher = self._watcher, None
        thread, self._watch_thread = self._watch_thread, None
        if watcher is not None:
            watcher.terminate()
            watcher.wait()
        if thread is not None and thread is not threading.current_thread():
            thread.join()  # it reads to the end of what the stopped pactl wrote
        if watcher is not None and watcher.stdout is not None:
            watcher.stdout.close()

    # --- pactl ----------------------------------------------------------------------------

    def _check_server(self) -> None:
        try:
            info = self._pactl("info")
        except AudioError as exc:
            raise AudioError(
                f"cannot reach PipeWire's Pulse server (pipewire-pulse) to load the echo "
                f"canceller ({exc}): is PipeWire running for this user, and XDG_RUNTIME_DIR "
                f"set to its runtime directory? {BOOTSTRAP_HINT}"
            ) from None
        server = next((line for line in info.splitlines() if line.startswith("Server Name:")), "")
        if "PipeWire" not in server:
            raise AudioError(
                f"the sound server is not PipeWire ({server.strip() or 'no name'}): the echo "
                f"canceller needs PipeWire with pipewire-pulse; {BOOTSTRAP_HINT}"
            )

    def _pactl_path(self) -> str:
        path = self._environ.get("PATH") if self._environ is not None else None
        found = shutil.which("pactl", path=path)
        if found is None:
            raise AudioError(
                f"pactl not found, the echo canceller is loaded with it: {BOOTSTRAP_HINT}"
            )
        return found

    def _pactl(self, *args: str) -> str:
        try:
            result = subprocess.run(
                [self._pactl_path(), *args],
                env=self._environ,
                capture_output=True,
                text=True,
                timeout=PACTL_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise AudioError(f"pactl {args[0]} did not answer in {PACTL_SECONDS:g} s") from None
        if result.returncode != 0:
            said = result.stderr.strip() or result.stdout.strip()
            raise AudioError(f"pactl {' '.join(args[:2])} failed: {said}")
        return result.stdout

    @staticmethod
    def _require(master: str | None) -> str:
        if master is None:
            raise RuntimeError("the echo canceller is not started")
        return master


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def _quote(value: str) -> str:
    return f'"{value}"' if any(ch.isspace() for ch in value) else value


def _parse_arguments(text: str) -> dict[str, str]:
    """``key=value key="a b"`` as pactl lists a module's arguments."""
    try:
        words = shlex.split(text)
    except ValueError:
        return {}
    return dict(word.split("=", 1) for word in words if "=" in word)
