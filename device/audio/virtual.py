"""Virtual sound cards on a private PipeWire, for machines with no sound hardware (the demo and
the tests): each box gets a microphone and a speaker that sounddevice opens by name.

    rig = PipeWire.start()                               # rig.stop() ends what it started
    with rig.box("carehome") as box:
        settings = box.settings                          # AudioSettings(input="carehome_mic", …)
        await box.play_into_room(samples)                # what the box's microphone hears
        heard = await box.record_speaker(seconds=1)      # what the box's speaker played
        box.vanish(); box.restore()                      # the USB card unplugged and back

Started exactly as LAB.md says: a temporary ``XDG_RUNTIME_DIR`` (0700), a session D-Bus (without
one wireplumber exits), then ``pipewire``, ``wireplumber`` and ``pipewire-pulse``; ready when
``pactl info`` answers and a probe recording through WirePlumber's links delivers sound. Missing
programs raise ``AudioError`` with the bootstrap hint. ``stop()`` ends everything started and puts
the process environment back.

A box's endpoints (all mono, 48 kHz):
- ``{name}_speaker``: a null sink the box plays into; tests record its ``.monitor``.
- ``{name}_room``: a null sink standing for the air in the room; tests play into it.
- ``{name}_mic``: ``module-remap-source`` of the room's monitor under its own name (an ALSA
  ``capture_node`` naming a sink's monitor would silently fall back to the default source).
- ALSA PCMs ``{name}_mic`` and ``{name}_speaker`` (``type pipewire`` with ``capture_node`` /
  ``playback_node``), in a file of this box's own added to ``ALSA_CONFIG_PATH`` after Debian's
  ``alsa.conf``. A new file (not an edit of an old one) changes that path, which is what makes
  alsa-lib reload its configuration when PortAudio restarts; an edited file is only noticed if
  its mtime moved by a whole second. PortAudio lists the PCMs by name (they carry a ``hint``).

Making a card vanish, and what was found doing it (PipeWire 0.3.65, WirePlumber 0.4.13,
PortAudio 19.6, pipewire-alsa):
- Unloading the modules removes the nodes, but the ALSA PCMs stay listed by PortAudio (they are
  configuration, not hardware), so "no longer listed" cannot be the signal here. (Without a
  running PipeWire at all, PortAudio drops them from the list.)
- A capture stream whose node disappears is re-linked by WirePlumber to the default source, and
  the stream carries on as if nothing happened: the failure is invisible.
- With ``node.dont-reconnect = true`` on the stream (``PIPEWIRE_PROPS``, read by libpipewire when
  the ALSA plugin creates the stream), WirePlumber destroys the stream's node instead; PortAudio
  then fails in its poll, the stream finishes by itself and ``finished_callback`` fires — visible.
  ``device.audio.soundcard`` opens the microphone that way.
- The same property on a *playback* stream makes PortAudio spin in its callback thread printing
  "Expression 'self->capture.ready || self->playback.ready' failed" millions of times a second,
  never calling back and never finishing. So the speaker is opened without it: a vanished speaker
  moves to the default sink. ``vanish()`` removes both (a USB speakerphone takes both with it);
  the microphone's failure is what the box notices.
- Opening the microphone while its source is missing "succeeds", but the callback is never
  called: the card's watchdog (no callback for ``STALL_SECONDS``) reports it, and the engine tries
  again later. Once ``restore()`` has loaded the modules again, the next opening delivers sound.
"""

# The rig runs fixed Debian programs (pipewire, pactl, pacat …) found on PATH, with arguments made
# here: the subprocess checks below do not apply.
# ruff: noqa: S603, S607

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt

from device.errors import AudioError
from device.settings import AudioSettings

BOOTSTRAP_HINT = (
    "run scripts/bootstrap as root (it installs pipewire, wireplumber, pipewire-pulse, "
    "pipewire-alsa, pulseaudio-utils, dbus and libportaudio2)"
)
PROGRAMS = ("dbus-daemon", "pipewire", "wireplumber", "pipewire-pulse", "pactl", "pacat")
ALSA_CONF = Path("/usr/share/alsa/alsa.conf")
ALSA_PIPEWIRE_PLUGIN = "libasound_module_pcm_pipewire.so"
RATE = 48_000
READY_SECONDS = 45.0  # generous: a loaded CI machine starts WirePlumber slowly


def _pcm(name: str, key: str, node: str) -> str:
    return (
        f"pcm.{name} {{\n"
        "    type pipewire\n"
        f'    {key} "{node}"\n'
        f'    hint {{ show on description "{name}" }}\n'
        "}\n"
    )


@dataclass
class Box:
    """One box's virtual sound card in the shared PipeWire."""

    pipewire: PipeWire
    name: str
    modules: dict[str, int] = field(default_factory=dict)
    alsa_file: Path | None = None

    @property
    def mic(self) -> str:
        return f"{self.name}_mic"

    @property
    def speaker(self) -> str:
        return f"{self.name}_speaker"

    @property
    def room(self) -> str:
        return f"{self.name}_room"

    @property
    def settings(self) -> AudioSettings:
        return AudioSettings(input=self.mic, output=self.speaker)

    def create(self) -> None:
        self.modules["room"] = self.pipewire.load_module(
            "module-null-sink", sink_name=self.room, rate=RATE, channels=1
        )
        self._load_card()
        self.alsa_file = self.pipewire.add_alsa_config(
            self.name,
            _pcm(self.mic, "capture_node", self.mic)
            + _pcm(self.speaker, "playback_node", self.speaker),
        )

    def _load_card(self) -> None:
        self.modules["speaker"] = self.pipewire.load_module(
            "module-null-sink", sink_name=self.speaker, rate=RATE, channels=1
        )
        self.modules["mic"] = self.pipewire.load_module(
            "module-remap-source",
            master=f"{self.room}.monitor",
            source_name=self.mic,
            channels=1,
        )

    def vanish(self) -> None:
        """The box's sound card is unplugged: its microphone and speaker nodes disappear."""
        for part in ("mic", "speaker"):
            module = self.modules.pop(part, None)
            if module is not None:
                self.pipewire.unload_module(module)

    def restore(self) -> None:
        """The card is plugged in again (the same names)."""
        if "mic" not in self.modules:
            self._load_card()

    @contextlib.contextmanager
    def hearing_own_speaker(
        self, *, latency_msec: int = 20, gain_db: float = 0.0
    ) -> Iterator[None]:
        """The box's microphone hears its own speaker (a loopback from speaker to room), after
        ``latency_msec`` (plus the graph's own delay) and ``gain_db`` quieter or louder."""
        module = self.pipewire.load_module(
            "module-loopback",
            source=f"{self.speaker}.monitor",
            sink=self.room,
            latency_msec=latency_msec,
            channels=1,  # mono all the way: a stereo stream would mix its gain back up by 3 dB
        )
        try:
            if gain_db != 0.0:
                self.pipewire.set_stream_volume(module, gain_db)
            yield
        finally:
            self.pipewire.unload_module(module)

    async def play_into_room(self, samples: npt.NDArray[np.int16]) -> None:
        """Play mono 48 kHz samples into the room; returns when they have been played."""
        process = await asyncio.create_subprocess_exec(
            "pacat",
            "--playback",
            f"--device={self.room}",
            *_RAW,
            stdin=subprocess.PIPE,
            env=self.pipewire.env,
        )
        await process.communicate(samples.astype("<i2").tobytes())
        if process.returncode != 0:
            raise RuntimeError(f"pacat could not play into {self.room}")

    async def record_speaker(self, seconds: float) -> npt.NDArray[np.int16]:
        """What the box's speaker plays over the next ``seconds`` (by the sink's clock)."""
        return await self.pipewire.record(f"{self.speaker}.monitor", seconds)

    async def record_microphone(self, seconds: float) -> npt.NDArray[np.int16]:
        """What the box's microphone hears over the next ``seconds``, before the box gets it."""
        return await self.pipewire.record(self.mic, seconds)

    def remove(self) -> None:
        self.vanish()
        room = self.modules.pop("room", None)
        if room is not None:
            self.pipewire.unload_module(room)
        if self.alsa_file is not None:
            self.pipewire.remove_alsa_config(self.alsa_file)
            self.alsa_file = None

    def __enter__(self) -> Box:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


_RAW = ("--raw", "--format=s16le", f"--rate={RATE}", "--channels=1", "--latency-msec=10")


@dataclass
class PipeWire:
    base: Path
    env: dict[str, str]
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    alsa_files: list[Path] = field(default_factory=list)
    saved_environ: dict[str, str | None] = field(default_factory=dict)

    @property
    def runtime_dir(self) -> Path:
        return self.base / "runtime"

    def pactl(self, *args: str) -> str:
        result = subprocess.run(
            ["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def load_module(self, name: str, **arguments: object) -> int:
        return int(self.pactl("load-module", name, *(f"{k}={v}" for k, v in arguments.items())))

    def unload_module(self, module: int) -> None:
        self.pactl("unload-module", str(module))

    def set_stream_volume(self, module: int, gain_db: float) -> None:
        """Turn the playback stream ``module`` made (a loopback's) up or down by ``gain_db``."""
        inputs = json.loads(self.pactl("-f", "json", "list", "sink-inputs"))
        mine = [
            item["index"]
            for item in inputs
            if item.get("properties", {}).get("pulse.module.id") == str(module)
        ]
        if not mine:
            raise RuntimeError(f"module {module} has no playback stream to turn")
        for index in mine:
            self.pactl("set-sink-input-volume", str(index), f"{gain_db:g}dB")

    def box(self, name: str) -> Box:
        box = Box(self, name)
        try:
            box.create()
        except BaseException:
            box.remove()
            raise
        return box

    def add_alsa_config(self, name: str, text: str) -> Path:
        path = self.base / "alsa" / f"{name}-{len(self.alsa_files)}.conf"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.alsa_files.append(path)
        self._publish_alsa_path()
        return path

    def remove_alsa_config(self, path: Path) -> None:
        if path in self.alsa_files:
            self.alsa_files.remove(path)
            self._publish_alsa_path()

    def _publish_alsa_path(self) -> None:
        os.environ["ALSA_CONFIG_PATH"] = ":".join(str(p) for p in [ALSA_CONF, *self.alsa_files])

    async def record(self, source: str, seconds: float) -> npt.NDArray[np.int16]:
        """Exactly ``seconds`` of ``source``, as the source's clock delivers them."""
        process = await asyncio.create_subprocess_exec(
            "pacat",
            "--record",
            f"--device={source}",
            *_RAW,
            stdout=subprocess.PIPE,
            env=self.env,
        )
        assert process.stdout is not None
        try:
            data = await asyncio.wait_for(
                process.stdout.readexactly(2 * round(seconds * RATE)), timeout=seconds + 15
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            await process.wait()
        return np.frombuffer(data, dtype="<i2").astype(np.int16)

    # --- start and stop ---------------------------------------------------------------

    @classmethod
    def start(cls) -> PipeWire:
        missing = [program for program in PROGRAMS if shutil.which(program) is None]
        if missing:
            raise AudioError(f"{', '.join(missing)} not found: {BOOTSTRAP_HINT}")
        if not ALSA_CONF.exists() or not _has_alsa_plugin():
            raise AudioError(f"ALSA's PipeWire plugin (pipewire-alsa) is missing: {BOOTSTRAP_HINT}")
        base = Path(tempfile.mkdtemp(prefix="twm-pipewire-"))
        runtime = base / "runtime"
        runtime.mkdir(mode=0o700)
        # pipewire-pulse looks for pulse/ and then makes it, and fails if it appeared in between:
        # pactl polling for the server makes it too (libpulse's autospawn lock). Made here first.
        (runtime / "pulse").mkdir(mode=0o700)
        bus = runtime / "bus"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PIPEWIRE_", "PULSE_", "ALSA_"))
        }
        env |= {
            "XDG_RUNTIME_DIR": str(runtime),
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={bus}",
        }
        pipewire = cls(base=base, env=env)
        try:
            pipewire._spawn(
                "dbus-daemon", "--session", f"--address=unix:path={bus}", "--nofork", "--nopidfile"
            )
            pipewire._wait_until(bus.exists, "the session D-Bus")
            pipewire._spawn("pipewire")
            pipewire._wait_until(lambda: (runtime / "pipewire-0").exists(), "pipewire")
            pipewire._spawn("wireplumber")
            pipewire._spawn("pipewire-pulse")
            pipewire._wait_until(pipewire._answers, "pipewire-pulse (pactl info)")
            pipewire._wait_for_links()
            pipewire._enter_environment()
        except BaseException:
            pipewire.stop()
            raise
        return pipewire

    def _spawn(self, program: str, *args: str) -> None:
        log = (self.base / f"{program}.log").open("wb")
        process = subprocess.Popen(
            [program, *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes.append((program, process))

    def _wait_until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while not ready():
            for program, process in self.processes:
                if process.poll() is not None:
                    raise AudioError(f"{program} exited while starting:\n{self._logs()}")
            if time.monotonic() > deadline:
                raise AudioError(f"{what} did not start in {READY_SECONDS:g} s:\n{self._logs()}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        result = subprocess.run(
            ["pactl", "info"], env=self.env, capture_output=True, timeout=10, check=False
        )
        return result.returncode == 0

    def _wait_for_links(self) -> None:
        """WirePlumber links streams: a recording that delivers sound proves it is at work."""
        probe = self.load_module("module-null-sink", sink_name="twm_probe", rate=RATE, channels=1)
        recorder = subprocess.Popen(
            ["pacat", "--record", "--device=twm_probe.monitor", *_RAW],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert recorder.stdout is not None
            ready, _, _ = select.select([recorder.stdout], [], [], READY_SECONDS)
            if not ready or not os.read(recorder.stdout.fileno(), 2 * RATE // 100):
                raise AudioError(f"WirePlumber does not link streams:\n{self._logs()}")
        finally:
            recorder.terminate()
            recorder.wait()
            if recorder.stdout is not None:
                recorder.stdout.close()
            self.unload_module(probe)

    def _enter_environment(self) -> None:
        """This process's sounddevice (and its ALSA PipeWire plugin) now finds this server."""
        for key in ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS", "ALSA_CONFIG_PATH"):
            self.saved_environ[key] = os.environ.get(key)
        os.environ["XDG_RUNTIME_DIR"] = self.env["XDG_RUNTIME_DIR"]
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = self.env["DBUS_SESSION_BUS_ADDRESS"]
        self._publish_alsa_path()

    def _logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
            for log in sorted(self.base.glob("*.log"))
        )

    def stop(self) -> None:
        for key, value in self.saved_environ.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for _program, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for _program, process in reversed(self.processes):
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def end_process(process: subprocess.Popen[bytes]) -> None:
    """End a program the rig's users started (pacat, pw-record …): SIGTERM, then SIGKILL if it
    has not gone within five seconds."""
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _has_alsa_plugin() -> bool:
    return any(Path("/usr/lib").glob(f"*/alsa-lib/{ALSA_PIPEWIRE_PLUGIN}")) or any(
        Path("/usr/lib").glob(f"alsa-lib/{ALSA_PIPEWIRE_PLUGIN}")
    )
