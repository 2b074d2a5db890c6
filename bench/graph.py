"""The latency benchmark's own parts in the rig's PipeWire graph: a player per room, one
recorder on every port that matters, and the copier that stands in for a box without a network.

    with playing(pipewire, home_card.room, Stimulus(seed=1)):          # clicks into the room
        with recording(pipewire, [f"{home_card.room}:monitor_MONO",      # what went in…
                                  f"{school_card.speaker}:monitor_MONO"],  # …what came out
                       work / "ear.raw") as ear:
            ...
            ear.frames                         # recorded so far
            ear.channel(1, start, end)         # int16 samples of one port

Why one recorder: ``pw-record`` with N input ports, each linked by hand (``pw-link``) to one
monitor port, receives all N in the same buffer of the same graph cycle. Linked nodes run under
one driver, so a click's position in the room's channel and in the speaker's channel are on one
timeline, to the sample, whatever the recorder's own buffering or a late wake-up of its process
(samples it loses are lost from every channel alike, and the analysis finds where: see
``bench.clicks.schedule_offsets``). The recorder brings its own driver (see ``recording``).
Nothing is timed with ``time.monotonic()``: the delay is counted in samples between channels.

The copier (``copying``) is the rig's own latency: the box's card code
(``device.audio.soundcard``, the same streams, 10 ms blocks, ``latency="low"``) with the
microphone's blocks handed straight to the speaker. A click's delay through it is what the
sound cards and PipeWire cost without any network, codec or jitter buffer.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.clicks import RATE, Stimulus
from device.audio.soundcard import sounddevice_card
from device.audio.virtual import PipeWire, end_process
from device.settings import AudioSettings

PORT_SECONDS = 10.0  # a failsafe for a recorder whose ports never appear
DRIVER_PRIORITY = 100_000  # above any sink's or card's priority.driver: see recording()
# On a busy machine the harness's own processes must not be what is late: pw-record takes its
# samples off the stream on its main thread, and a player that runs dry makes the sound server
# skip what then arrives late (a seam in the tone that would come out of the other box's
# speaker as if the box had glitched). Real-time scheduling (root can) keeps both on time; they
# do little work. What is still lost then comes from the boxes' own streams (see recording()).
_REALTIME = ("chrt", "--fifo", "10") if os.geteuid() == 0 and shutil.which("chrt") else ()


class GraphError(Exception):
    """A part of the benchmark's rig did not start."""


def monitor(sink: str) -> str:
    """The output port of a mono null sink that carries what is played into it."""
    return f"{sink}:monitor_MONO"


def _ports(pipewire: PipeWire, flag: str) -> set[str]:
    result = subprocess.run(
        ["pw-link", flag], env=pipewire.env, capture_output=True, text=True, timeout=10
    )
    return set(result.stdout.split())


# --- the recorder -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """A recorder running: channel k is what the k-th port carried, all on one timeline (and
    one more channel at the end: the driver's, silent).

    pw-record writes straight into the file (its standard output is the file): no pipe and
    no thread of ours in between that a busy machine could make it wait for."""

    path: Path
    channels: int

    @property
    def _frame_bytes(self) -> int:
        return 2 * self.channels

    @property
    def frames(self) -> int:
        """Recorded so far."""
        return self.path.stat().st_size // self._frame_bytes

    def recent(self, channel: int, seconds: float) -> npt.NDArray[np.int16]:
        """The last ``seconds`` of one channel."""
        frames = self.frames
        count = min(frames, round(seconds * RATE))
        return self.channel(channel, frames - count, frames)

    def channel(self, channel: int, start: int, end: int) -> npt.NDArray[np.int16]:
        """Frames ``start`` to ``end`` of one channel (fewer if not recorded yet)."""
        end = min(end, self.frames)
        if end <= start:
            return np.zeros(0, dtype=np.int16)
        with self.path.open("rb") as file:
            file.seek(start * self._frame_bytes)
            data = file.read((end - start) * self._frame_bytes)
        whole = len(data) - len(data) % self._frame_bytes
        samples = np.frombuffer(data[:whole], dtype="<i2").reshape(-1, self.channels)
        return samples[:, channel].astype(np.int16)


@contextlib.contextmanager
def recording(pipewire: PipeWire, ports: Sequence[str], path: Path) -> Iterator[Recording]:
    """Record ``ports`` (output ports of the graph) into ``path``, interleaved int16.

    The recorder also links a sink of its own, made to be the graph's driver. Linked nodes run
    in one group under one driver, and a null sink that drives the group hands its monitor the
    previous cycle's samples (it runs first, before anything has been played into it), while a
    follower's monitor carries this cycle's: two rooms fed the same samples came out one
    quantum apart when one of them drove. With a driver that is none of the measured sinks,
    every port recorded is on the same cycle.

    The recorder runs after every sink it listens to. When one of them is held up for a cycle
    (a box's speaker stream, or the rig's copy, whose thread did not get the CPU in time: an
    xrun of that virtual card), the recorder gets nothing for that cycle, in any channel. The
    analysis finds such seams (``bench.clicks.schedule_offsets``) and leaves their clicks out."""
    channels = len(ports)
    tag = f"{os.getpid()}_{time.monotonic_ns() % 1_000_000}"
    node = f"bench_ear_{tag}"
    clock = f"bench_clock_{tag}"
    names = [f"AUX{k}" for k in range(channels + 1)]  # the last one: the clock's, unused
    module = pipewire.load_module(
        "module-null-sink",
        sink_name=clock,
        rate=RATE,
        channels=1,
        sink_properties=f"priority.driver={DRIVER_PRIORITY}",
    )
    try:
        with path.open("wb") as sink:
            process = subprocess.Popen(
                [
                    *_REALTIME,
                    "pw-record",
                    "--target=0",  # no automatic link: the links below are the only inputs
                    f"--channels={channels + 1}",
                    f"--channel-map={','.join(names)}",
                    "--format=s16",
                    f"--rate={RATE}",
                    "-P",
                    f"{{ node.name = {node} node.autoconnect = false }}",
                    "-",  # raw samples to standard output: the file
                ],
                env=pipewire.env,
                stdout=sink,
                stderr=subprocess.DEVNULL,
            )
        try:
            wanted = [f"{node}:input_{name}" for name in names]
            deadline = time.monotonic() + PORT_SECONDS
            while not set(wanted) <= _ports(pipewire, "-i"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise GraphError(f"pw-record's ports did not appear ({node})")
                time.sleep(0.05)
            for source, target in zip([*ports, monitor(clock)], wanted, strict=True):
                result = subprocess.run(
                    ["pw-link", source, target],
                    env=pipewire.env,
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                if result.returncode != 0:
                    raise GraphError(f"pw-link {source} {target}: {result.stderr.strip()}")
            yield Recording(path=path, channels=channels + 1)
        finally:
            end_process(process)
    finally:
        pipewire.unload_module(module)


# --- the player ---------------------------------------------------------------------------------


@contextlib.contextmanager
def playing(pipewire: PipeWire, sink: str, stimulus: Stimulus) -> Iterator[None]:
    """Play ``stimulus`` into ``sink`` (a room) without end, for as long as the block lasts.

    When it plays does not matter (the recorder hears the room too), only that it does not run
    dry on a busy machine: pacat gets half a second of buffer and real-time scheduling, and
    the pipe paces the writes."""
    process = subprocess.Popen(
        [
            *_REALTIME,
            "pacat",
            "--playback",
            f"--device={sink}",
            "--raw",
            "--format=s16le",
            f"--rate={RATE}",
            "--channels=1",
            "--latency-msec=500",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=pipewire.env,
    )
    stopping = threading.Event()

    def play() -> None:
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            while not stopping.is_set():
                process.stdin.write(stimulus.next_int16(RATE // 20).astype("<i2").tobytes())
                process.stdin.flush()

    player = threading.Thread(target=play, name=f"bench-player-{sink}", daemon=True)
    player.start()
    try:
        yield
    finally:
        stopping.set()
        end_process(process)
        player.join(timeout=5)
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()


# --- the copier: a box without a network ----------------------------------------------------


TRIM_BLOCKS = 50  # 0.5 s of speaker callbacks


class _Copy:
    """The microphone's blocks straight to the speaker (what a box would do with no link).

    A plain queue would keep, for as long as it runs, any blocks that piled up while the two
    streams started or while one of them stalled once: the rig would then measure its own
    start-up luck. So the copy trims itself, as a jitter buffer aiming at no delay would: when
    the queue never ran below two blocks at the speaker's call over half a second, the
    surplus goes. What stays is the least delay the two streams allow."""

    def __init__(self) -> None:
        self._blocks: collections.deque[npt.NDArray[np.float32]] = collections.deque(maxlen=64)
        self._lowest = 1 << 30
        self._calls = 0
        self.errors: list[str] = []
        self.underruns = 0
        self.trimmed = 0

    def on_input(self, block: npt.NDArray[np.int16]) -> None:
        self._blocks.append(block.astype(np.float32) / 32768)

    def on_output(self, out: npt.NDArray[np.float32]) -> None:
        self._lowest = min(self._lowest, len(self._blocks))
        self._calls += 1
        if self._calls >= TRIM_BLOCKS:
            for _ in range(self._lowest - 1):
                self._blocks.popleft()
                self.trimmed += 1
            self._lowest, self._calls = 1 << 30, 0
        try:
            block = self._blocks.popleft()
        except IndexError:
            self.underruns += 1
            return
        if len(block) == len(out):
            out[:] = block

    def on_error(self, message: str) -> None:
        self.errors.append(message)


@contextlib.contextmanager
def copying(mic: str, speaker: str) -> Iterator[_Copy]:
    """The box's own card code between ``mic`` and ``speaker``, copying one to the other."""
    card = sounddevice_card(AudioSettings(input=mic, output=speaker))
    handler = _Copy()
    card.start(handler)
    try:
        yield handler
    finally:
        card.stop()
