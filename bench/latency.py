"""One-way audio latency between two boxes, stock aiortc against the music path, on this machine.

    python -m bench.latency            # every condition, both profiles: a table (~25 minutes)
    python -m bench.latency --quick    # the clean condition only (a minute and a half)
    python -m bench.latency --json     # one JSON object on stdout (progress goes to stderr)

Two whole boxes, the care home's and the school's, each its own ``twm-device run`` process with
its own virtual sound card, meet through the real session server on loopback. A harness plays
clicks over a quiet tone into each box's room and records, in one PipeWire stream, each room
and the other box's speaker: a click's delay is counted in samples between the two channels
(``bench/graph.py``, ``bench/clicks.py``). The same recorder measures the rig on its own
(a few times first, then once before every run): the box's card code copying its microphone
straight to its speaker, no network. What matters is the **added latency**: end to end minus
the rig.

Conditions (each run with ``TWM_DEVICE_AUDIO__PROFILE=stock``, then ``music``):
  clean       both boxes on loopback, host candidates, nothing in between
  loss2       both boxes relay-only through coturn, behind a UDP proxy dropping 2% of the
              datagrams each box sends (``bench/udp_proxy.py``)
  jitter10    the same, each datagram delayed by 10 ms ± 10 ms instead (mean 10 ms, reordering
              allowed: netem's ``delay 10ms 10ms``)
  drift10min  clean, for ten minutes: does the latency creep up?

Needs the packages scripts/bootstrap installs (PipeWire, pipewire-bin's pw-record and pw-link,
pulseaudio-utils, coturn); as root, the harness's recorder and players run real-time (chrt) so
a busy machine disturbs them less. Everything it starts it stops, however it ends (Ctrl-C and
SIGTERM included). See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bench.clicks import (
    BLOCK,
    RATE,
    TONE_HZ,
    Dropouts,
    Seam,
    Stimulus,
    across_seams,
    drift,
    dropouts,
    find_clicks,
    joint_zones,
    jump_zones,
    locate,
    lost_step,
    match_clicks,
    schedule_offsets,
    shared_seams,
    summary,
    tone_levels,
)
from bench.graph import GraphError, Recording, copying, monitor, playing, recording
from bench.logs import quiet_logs
from bench.machine import machine, stop_on_sigterm
from bench.udp_proxy import Faults
from device.audio.virtual import Box, PipeWire
from device.errors import AudioError
from device.lifecycle.states import State
from device.settings import MidiSettings
from session_server.protocol import PartyKind, Route
from session_server.settings import ServerSettings
from tests.box_process import BoxProcess, box_process, rig_environment, write_config
from tests.conftest import ADMIN_TOKEN, serving
from tests.net_support import running_coturn
from tests.running_clock import RunningClock
from tests.seed import seed_pair

REPO = Path(__file__).resolve().parent.parent
PROFILES = {"stock": "stock", "tuned": "music"}  # the benchmark's name → the box's setting
DIRECTIONS = ("care_home_to_school", "school_to_care_home")
ARROWS = {"care_home_to_school": "home → school", "school_to_care_home": "school → home"}

# Targets (DESIGN.md, issue 4), for the tuned profile; stock is the baseline beside them.
# "No upward drift" over ten minutes, read as: the line through a few thousand clicks rises
# less than 0.2 ms a minute, and the last minute's median is within 2 ms of the first's.
TARGETS: dict[str, Any] = {
    "clean": {"median": 15.0, "p95": 25.0},
    "loss2": {"p95": 40.0},
    "drift10min": {"slope_ms_per_min": 0.2, "last_minus_first_minute_ms": 2.0},
    "cpu_pct": 10.0,
}

WAIT = 60.0  # a failsafe for a box that never gets somewhere; never a measurement
FLOW_WAIT = 30.0  # both boxes live, and still no sound out of a speaker after this: failed
SETTLE_SECONDS = 3.0  # after sound first flows: the cues end, jitter buffers find their level
TAIL_SECONDS = 1.0  # the speakers are recorded this much longer than the rooms: late clicks
HEARD = 0.003  # the tone's amplitude at a speaker (about 0.02 at the default volume)
RIG_OPENINGS = 3  # before the first run (then one more before each run)
RIG_SECONDS = 4.0
QUICK_RIG_OPENINGS = 2
QUICK_RIG_SECONDS = 3.0
RIG_SETTLE_SECONDS = 1.5  # the copy trims what piled up while it started (bench/graph.py)
QUICK_SECONDS = 12.0
FULL_SECONDS = 60.0
DRIFT_MINUTES = 10.0
TIMELINE_SECONDS = 10.0

WIDTH = 150  # rich wraps at 80 columns when not on a terminal: too narrow for the table
progress = Console(stderr=True, highlight=False, width=WIDTH)


class BenchError(Exception):
    """Something did not happen that the measurement waits for."""


@dataclass(frozen=True)
class Condition:
    name: str
    description: str
    faults: Faults | None  # None: the boxes meet directly; else relay-only behind the proxy
    seconds: float
    drift: bool = False

    @property
    def path_delay_ms(self) -> float:
        """The mean one-way delay the proxy adds on purpose (already in the figures)."""
        return 1000 * self.faults.delay if self.faults is not None else 0.0


def conditions(quick: bool, seconds: float, drift_minutes: float) -> list[Condition]:
    clean = Condition("clean", "loopback, direct (host candidates)", None, seconds)
    if quick:
        return [clean]
    return [
        clean,
        Condition("loss2", "relay-only via proxy, 2% loss", Faults(loss=0.02), seconds),
        Condition(
            "jitter10",
            "relay-only via proxy, 10 ± 10 ms",
            Faults(delay=0.010, jitter=0.010),
            seconds,
        ),
        Condition(
            "drift10min",
            f"loopback, {drift_minutes:g} minutes",
            None,
            drift_minutes * 60,
            drift=True,
        ),
    ]


# --- small helpers ------------------------------------------------------------------------------


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time so far of the process's main thread (the box's event loop: aiortc, signalling,
    the lifecycle) and of all its other threads together (the sound card's callbacks, PortAudio
    and the PipeWire client inside them, aiortc's codec threads)."""
    tick = os.sysconf("SC_CLK_TCK")
    split = {"event_loop": 0.0, "other_threads": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:
            continue  # a thread that ended while we looked
        fields = text[text.rindex(")") + 2 :].split()
        key = "event_loop" if task.name == str(pid) else "other_threads"
        split[key] += (int(fields[11]) + int(fields[12])) / tick
    return split


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # After "pid (comm) ": state is field 3, utime 14 and stime 15 (man 5 proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flowing(ear: Recording, channel: int) -> bool:
    """The tone came out on ``channel`` in at least 80% of the last half second."""
    recent = ear.recent(channel, 0.5)
    if len(recent) < 0.4 * RATE:
        return False
    levels = tone_levels(recent)
    return bool(np.mean(levels > HEARD) >= 0.8)


async def until(check: Any, what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"waited {seconds:g} s for {what}")
        await asyncio.sleep(0.05)


async def hold(seconds: float, what: str, boxes: Sequence[BoxProcess] = ()) -> None:
    """Wait ``seconds`` with a progress bar; a box that exits meanwhile ends the run."""
    with Progress(
        TextColumn(f"  {what}"),
        BarColumn(),
        TimeRemainingColumn(),
        console=progress,
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=seconds)
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            for box in boxes:
                if not box.running():
                    raise BenchError(
                        f"a box exited during the measurement ({box.process.returncode}):\n"
                        f"{box.tail(20)}"
                    )
            bar.update(task, completed=elapsed)
            await asyncio.sleep(min(0.5, seconds - elapsed))


# --- the rig on its own -------------------------------------------------------------------------


async def rig_opening(pipewire: PipeWire, path: Path, seconds: float) -> dict[str, Any]:
    """One opening of the rig: a card of its own, the box's card code copying its microphone to
    its speaker (no network, no codec, no jitter buffer), clicks through it for ``seconds``."""
    stimulus = Stimulus(seed=secrets.randbits(32))
    with (
        pipewire.box(f"lat_rig_{secrets.token_hex(3)}") as card,
        playing(pipewire, card.room, stimulus),
        recording(pipewire, [monitor(card.room), monitor(card.speaker)], path) as ear,
        copying(card.mic, card.speaker) as copy,
    ):
        await until(lambda: flowing(ear, 1), "sound through the rig", FLOW_WAIT)
        await asyncio.sleep(RIG_SETTLE_SECONDS)
        start = ear.frames
        await asyncio.sleep(seconds)
        end = ear.frames
        await asyncio.sleep(TAIL_SECONDS)
        if copy.errors:
            raise BenchError(f"the rig's card failed: {copy.errors[0]}")
    played = find_clicks(ear.channel(0, start, end))
    heard = find_clicks(ear.channel(1, start, end + round(TAIL_SECONDS * RATE)))
    # One room only: a seam cannot be told from a player that ran dry, so its clicks are left
    # out rather than put right (the rig has clicks to spare).
    seams = [
        Seam(seam.start, seam.end, None)
        for seam in lost_step(played, schedule_offsets(stimulus.clicks, played))
    ]
    matched, _ = across_seams(match_clicks(played, heard), seams)
    delays = matched.delays_ms()
    if not delays:
        raise BenchError("no click came through the rig (microphone → speaker copy)")
    figures = summary(delays)
    assert figures is not None
    return {**figures, "min": round(min(delays), 2), "clicks": len(delays)}


async def rig_openings(
    pipewire: PipeWire, work: Path, count: int, seconds: float, into: list[dict[str, Any]]
) -> None:
    """``count`` more openings of the rig, each noted in ``into`` (or why it failed)."""
    for _ in range(count):
        number = len(into) + 1
        work.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a local directory: instant)
        try:
            opening = await rig_opening(pipewire, work / f"rig-{number}.raw", seconds)
        except (BenchError, GraphError, AudioError) as exc:
            into.append({"error": str(exc)})
            progress.print(f"  [red]rig opening {number} failed:[/] {exc}")
            continue
        into.append(opening)
        progress.print(
            f"  rig opening {number}: {opening['median']:.2f} ms "
            f"(p95 {opening['p95']:.2f}, {opening['clicks']} clicks)"
        )


def rig_figures(openings: list[dict[str, Any]]) -> dict[str, Any]:
    """The rig's latency: the median of its openings' medians. Each opening of the two streams
    settles on its own buffer fill (see bench/README.md), so the spread is reported beside it."""
    medians = [o["median"] for o in openings if "median" in o]
    if not medians:
        raise BenchError(
            "the rig could not be measured: " + "; ".join(o.get("error", "?") for o in openings[:3])
        )
    return {
        "rig_ms": round(float(np.median(medians)), 2),
        "openings": openings,
        "min_ms": min(medians),
        "max_ms": max(medians),
    }


# --- one condition, one profile -----------------------------------------------------------------


@dataclass
class Proxy:
    port: int
    stats: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def proxy_process(upstream_port: int, faults: Faults, seed: int) -> Iterator[Proxy]:
    """``bench.udp_proxy`` as its own process (its timers then never wait for this one)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.udp_proxy",
            f"--upstream=127.0.0.1:{upstream_port}",
            f"--loss={faults.loss}",
            f"--delay-ms={1000 * faults.delay}",
            f"--jitter-ms={1000 * faults.jitter}",
            f"--seed={seed}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # Ctrl-C reaches it through our cleanup, not twice
    )
    proxy: Proxy | None = None
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            raise BenchError("the UDP proxy did not start")
        proxy = Proxy(port=int(line[1]))
        yield proxy
    finally:
        process.terminate()
        try:
            out, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        if proxy is not None:
            with contextlib.suppress(ValueError, IndexError):
                proxy.stats = json.loads(out.strip().splitlines()[-1])


@dataclass
class Window:
    """What was recorded while both boxes were live and settled."""

    path_frames: tuple[int, int]  # recorder frames: the measured window (rooms)
    ear: Recording
    seconds: float
    cpu: dict[str, float]
    cpu_split: dict[str, dict[str, float]]  # per box: event loop vs other threads, % of a core
    route: dict[str, str]
    stimuli: dict[str, Stimulus]
    proxy: dict[str, Any]
    load: float = 0.0  # the machine's 1-minute load average as the window closed


def session_start(settings: ServerSettings) -> tuple[datetime, str]:
    """Now (by the real clock: TURN credentials expire by it) and a session start, in the
    server's local time, five minutes on: its window is open, START goes live."""
    now = datetime.now(UTC).replace(microsecond=0)
    starts = now + timedelta(minutes=5)
    local = starts.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%dT%H:%M")
    return now, local


def link_route(box: BoxProcess) -> str:
    """The route the box's link came up on ('direct', 'relay'), from its log."""
    for _, line in reversed(list(box.lines)):
        if "link up" in line:
            found = re.search(r"route='(\w+)'", line)
            if found:
                return found.group(1)
    return "unknown"


@contextlib.asynccontextmanager
async def live_boxes(
    pipewire: PipeWire,
    work: Path,
    faults: Faults | None,
    cards: dict[PartyKind, Box],
    *,
    env: dict[str, str] | None = None,
    midi: dict[PartyKind, MidiSettings] | None = None,
) -> AsyncIterator[tuple[BoxProcess, BoxProcess, Proxy | None]]:
    """The server (and coturn behind a proxy with ``faults``, relay only), both box processes
    (with ``env`` added to their environment and ``midi`` their MIDI settings), in a live
    session."""
    with contextlib.ExitStack() as stack:
        proxy: Proxy | None = None
        extra: dict[str, Any] = {}
        env = rig_environment(pipewire) | (env or {})
        if faults is not None:
            turn = stack.enter_context(running_coturn(work / "coturn"))
            turn_port = int(turn.url.split(":")[2].split("?")[0])
            proxy = stack.enter_context(proxy_process(turn_port, faults, seed=secrets.randbits(32)))
            extra = {
                "turn_urls": [f"turn:127.0.0.1:{proxy.port}?transport=udp"],
                "turn_secret": SecretStr(turn.secret),
            }
            env["TWM_DEVICE_LINK__RELAY_ONLY"] = "true"
        settings = ServerSettings(data_dir=work / "server", admin_token=ADMIN_TOKEN, **extra)
        now, local = session_start(settings)
        server = stack.enter_context(serving(settings, RunningClock(now)))
        pair = await asyncio.to_thread(
            seed_pair,
            server.url,
            server.admin_headers,
            starts_local=local,
            duration_minutes=120,
        )
        configs = {
            kind: write_config(
                work / kind.value,
                server_ws=server.ws_url,
                token=token,
                role=kind,
                audio=cards[kind].settings,
                host_addresses=["127.0.0.1"],
                keyboard=True,
                midi=None if midi is None else midi[kind],
            )
            for kind, token in (
                (PartyKind.CARE_HOME, pair.care_home_token),
                (PartyKind.SCHOOL, pair.school_device_token),
            )
        }
        home, school = (
            stack.enter_context(
                box_process(configs[kind], runtime_dir=work / kind.value / "run", env=env)
            )
            for kind in (PartyKind.CARE_HOME, PartyKind.SCHOOL)
        )
        await home.until_state(State.SESSION_SOON, seconds=WAIT)
        await school.until_state(State.SESSION_SOON, seconds=WAIT)
        school.press("s")
        await school.until_state(State.WAITING, seconds=WAIT)
        home.press("s")
        await home.until_state(State.LIVE, seconds=WAIT)
        await school.until_state(State.LIVE, seconds=WAIT)
        yield home, school, proxy


async def run_once(pipewire: PipeWire, work: Path, condition: Condition, profile: str) -> Window:
    """Both boxes live under ``condition`` with ``profile``; clicks both ways, recorded."""
    work.mkdir(parents=True)  # noqa: ASYNC240 (a local directory: instant)
    tag = secrets.token_hex(3)
    stimuli = {
        "care_home_to_school": Stimulus(seed=secrets.randbits(32)),
        "school_to_care_home": Stimulus(seed=secrets.randbits(32)),
    }
    proxy: Proxy | None = None
    with (
        pipewire.box(f"lat_home_{tag}") as home_card,
        pipewire.box(f"lat_school_{tag}") as school_card,
        playing(pipewire, home_card.room, stimuli["care_home_to_school"]),
        playing(pipewire, school_card.room, stimuli["school_to_care_home"]),
        # Recording from before the boxes open their cards: the recorder's driver then drives
        # the graph from the start, rather than taking over under streams already running.
        recording(
            pipewire,
            [
                monitor(home_card.room),
                monitor(school_card.speaker),
                monitor(school_card.room),
                monitor(home_card.speaker),
            ],
            work / "ear.raw",
        ) as ear,
    ):
        async with live_boxes(
            pipewire,
            work,
            condition.faults,
            {PartyKind.CARE_HOME: home_card, PartyKind.SCHOOL: school_card},
            env={"TWM_DEVICE_AUDIO__PROFILE": PROFILES[profile]},
        ) as (
            home,
            school,
            proxy,
        ):
            for channel, arrow in ((1, "care home → school"), (3, "school → care home")):
                await until(
                    lambda channel=channel: flowing(ear, channel),
                    f"sound {arrow} (both boxes are live)",
                    FLOW_WAIT,
                )
            await asyncio.sleep(SETTLE_SECONDS)
            boxes = {"care_home": home, "school": school}
            cpu_before = {name: cpu_seconds(b.process.pid) for name, b in boxes.items()}
            split_before = {name: thread_cpu_seconds(b.process.pid) for name, b in boxes.items()}
            started, start = time.monotonic(), ear.frames
            await hold(condition.seconds, f"{condition.name}, {profile}", [home, school])
            end = ear.frames
            elapsed = time.monotonic() - started
            load = os.getloadavg()[0]
            cpu = {
                name: round(100 * (cpu_seconds(b.process.pid) - cpu_before[name]) / elapsed, 2)
                for name, b in boxes.items()
            }
            cpu_split = {}
            for name, b in boxes.items():
                after = thread_cpu_seconds(b.process.pid)
                cpu_split[name] = {
                    part: round(100 * (after[part] - split_before[name][part]) / elapsed, 2)
                    for part in after
                }
            await asyncio.sleep(TAIL_SECONDS)
            route = {name: link_route(b) for name, b in boxes.items()}
    return Window(
        path_frames=(start, end),
        ear=ear,
        seconds=(end - start) / RATE,
        cpu=cpu,
        cpu_split=cpu_split,
        route=route,
        stimuli=stimuli,
        proxy=proxy.stats if proxy is not None else {},
        load=round(load, 2),
    )


@dataclass(frozen=True)
class Heard:
    """One direction of one run: each heard click's latency (ms) and when it was played (s)."""

    latency: list[float]
    seconds: list[float]
    played: int
    missing: int
    excluded: int  # in flight across a seam of the recording: left out (see analyse)
    gaps: Dropouts  # at the speaker


@dataclass(frozen=True)
class Run:
    condition: Condition
    window: Window
    heard: dict[str, Heard]
    seams: int  # stretches where the recording lost samples (both rooms lost step)


def analyse(window: Window, condition: Condition) -> Run:
    """Find the clicks in the recording: both directions, end to end (the rig not yet taken).

    On a busy machine the recorder now and then misses a graph cycle (see bench/graph.py):
    those samples are gone from every channel at once. The rooms' channels show where and how
    many (they must keep step with their stimuli, which are known to the sample): a click in
    flight across such a seam has them put back, or is left out where that cannot be done
    surely; a gap in the tone at a seam is not the box's glitch."""
    start, end = window.path_frames
    tail = round(TAIL_SECONDS * RATE)
    rooms = {
        name: window.ear.channel(channel, start, end)
        for name, channel in zip(DIRECTIONS, (0, 2), strict=True)
    }
    played = {name: find_clicks(room) for name, room in rooms.items()}
    steps = [
        lost_step(played[name], schedule_offsets(window.stimuli[name].clicks, played[name]))
        for name in DIRECTIONS
    ]
    joint = joint_zones(*(jump_zones(room) for room in rooms.values()))
    seams = locate(shared_seams(*steps), joint)
    seam_blocks = sorted({b for lo, hi in joint for b in range(lo // BLOCK, hi // BLOCK + 1)})
    heard: dict[str, Heard] = {}
    for name, out_channel in zip(DIRECTIONS, (1, 3), strict=True):
        out = window.ear.channel(out_channel, start, end + tail)
        matched, excluded = across_seams(match_clicks(played[name], find_clicks(out)), seams)
        heard[name] = Heard(
            latency=matched.delays_ms(),
            seconds=matched.seconds(),
            played=len(played[name]),
            missing=matched.missing,
            excluded=excluded,
            gaps=dropouts(out[: end - start], ignore=seam_blocks),
        )
    return Run(condition=condition, window=window, heard=heard, seams=len(seams))


def figures(run: Run, rig_ms: float) -> dict[str, Any]:
    """The run's figures, added latency = end to end - ``rig_ms``."""
    directions: dict[str, Any] = {}
    every: list[float] = []
    every_seconds: list[float] = []
    for name, heard in run.heard.items():
        added = [value - rig_ms for value in heard.latency]
        every.extend(added)
        every_seconds.extend(heard.seconds)
        directions[name] = {
            "added_ms": summary(added),
            "latency_ms": summary(heard.latency),
            "clicks_played": heard.played,
            "clicks_heard": len(heard.latency),
            "clicks_missing": heard.missing,
            "glitches": heard.gaps.events,
            "dropout_ms": round(heard.gaps.milliseconds, 1),
            "tone_level": round(heard.gaps.level, 4),
            "clicks_excluded": heard.excluded,
            "timeline_ms": timeline(heard.seconds, added),
        }
        if run.condition.drift:
            found = drift(heard.seconds, added)
            directions[name]["drift"] = asdict(found) if found is not None else None
    glitches = sum(heard.gaps.events for heard in run.heard.values())
    minutes = run.window.seconds / 60
    result: dict[str, Any] = {
        "added_ms": summary(every),
        "glitches": glitches,
        "glitches_per_min": round(glitches / minutes, 2) if minutes else None,
        "cpu_pct": run.window.cpu,
        "cpu_split_pct": run.window.cpu_split,
        "seconds": round(run.window.seconds, 1),
        "route": run.window.route,
        "path_delay_ms": run.condition.path_delay_ms,
        "load_avg": run.window.load,
        "recording_seams": run.seams,  # see analyse(); their clicks are left out
        "directions": directions,
    }
    if run.condition.drift:
        found = drift(every_seconds, every)
        result["drift"] = asdict(found) if found is not None else None
    if run.window.proxy:
        result["proxy"] = run.window.proxy
    return result


def timeline(seconds: Sequence[float], values: Sequence[float]) -> list[float | None]:
    """The median of each ``TIMELINE_SECONDS`` of the window (None where nothing was heard)."""
    if not seconds:
        return []
    t = np.asarray(seconds) - seconds[0]
    v = np.asarray(values)
    count = int(t[-1] // TIMELINE_SECONDS) + 1
    out: list[float | None] = []
    for k in range(count):
        inside = v[(t >= k * TIMELINE_SECONDS) & (t < (k + 1) * TIMELINE_SECONDS)]
        out.append(round(float(np.median(inside)), 2) if len(inside) else None)
    return out


def check(run: Run) -> None:
    """Refuse figures that cannot be right: no click came through, or the route was not the
    one the condition is about (a relay condition whose media went direct measured nothing)."""
    for name, heard in run.heard.items():
        if not heard.latency:
            raise BenchError(
                f"no click came through {ARROWS[name]} in {run.window.seconds:.0f} s "
                f"({heard.played} played)"
            )
    wanted = Route.RELAY.value if run.condition.faults is not None else Route.DIRECT.value
    routes = set(run.window.route.values())
    if routes != {wanted}:
        raise BenchError(f"the link's route was {sorted(routes)}, not {wanted}")


# --- the whole run ------------------------------------------------------------------------------


async def measure(
    quick: bool,
    seconds: float,
    drift_minutes: float,
    profiles: Sequence[str],
    keep: Path | None,
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    pipewire = PipeWire.start()
    try:
        with contextlib.ExitStack() as stack:
            if keep is None:
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="twm-lat-")))
            else:
                work = keep
                work.mkdir(parents=True, exist_ok=True)
            return await _measure(pipewire, work, quick, seconds, drift_minutes, profiles, only)
    finally:
        pipewire.stop()


async def _measure(
    pipewire: PipeWire,
    work: Path,
    quick: bool,
    seconds: float,
    drift_minutes: float,
    profiles: Sequence[str],
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    openings: list[dict[str, Any]] = []
    progress.print("the rig on its own (the box's card code, microphone → speaker, no network)")
    first, rig_seconds = (
        (QUICK_RIG_OPENINGS, QUICK_RIG_SECONDS) if quick else (RIG_OPENINGS, RIG_SECONDS)
    )
    await rig_openings(pipewire, work / "rig", first, rig_seconds, openings)
    runs: dict[str, dict[str, Run | str]] = {}
    for condition in conditions(quick and only is None, seconds, drift_minutes):
        if only is not None and condition.name not in only:
            continue
        progress.print(f"{condition.name}: {condition.description}")
        runs[condition.name] = {}
        for profile in profiles:
            # One more opening of the rig before every run: its figure is then measured across
            # the whole invocation, under the same load as the runs.
            await rig_openings(pipewire, work / "rig", 1, rig_seconds, openings)
            runs[condition.name][profile] = await _one(pipewire, work, condition, profile)
    rig = rig_figures(openings)
    results: dict[str, Any] = {"rig_ms": rig["rig_ms"], "rig": rig, "conditions": {}}
    for name, by_profile in runs.items():
        results["conditions"][name] = {
            profile: {"error": run} if isinstance(run, str) else figures(run, rig["rig_ms"])
            for profile, run in by_profile.items()
        }
    return results


async def _one(pipewire: PipeWire, work: Path, condition: Condition, profile: str) -> Run | str:
    """One run, or why it failed (the others still run)."""
    where = work / f"{condition.name}-{profile}"
    try:
        run = analyse(await run_once(pipewire, where, condition, profile), condition)
        check(run)
    except Exception as exc:  # one run that fails must not lose the others' figures
        setting = PROFILES[profile]
        message = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
        progress.print(
            f"  [red]{profile} (TWM_DEVICE_AUDIO__PROFILE={setting}) failed:[/] "
            f"{message.splitlines()[0] if message else type(exc).__name__}"
        )
        if profile == "tuned":
            message += (
                f"\n(the tuned profile is TWM_DEVICE_AUDIO__PROFILE={setting}, the music path; "
                "if it is unfinished, run --profiles stock)"
            )
        return message
    parts = []
    for name, heard in run.heard.items():
        median = float(np.median(heard.latency))
        parts.append(f"{ARROWS[name]} {median:.1f} ms")
    cpu = run.window.cpu
    glitches = sum(heard.gaps.events for heard in run.heard.values())
    progress.print(
        f"  {profile}: end to end (median) {', '.join(parts)}; {glitches} glitches; "
        f"CPU {cpu['care_home']:.1f}% / {cpu['school']:.1f}%"
    )
    return run


# --- the table ----------------------------------------------------------------------------------


def _figures(values: dict[str, float] | None) -> tuple[str, str, str]:
    if values is None:
        return ("-", "-", "-")
    return (f"{values['median']:.1f}", f"{values['p95']:.1f}", f"{values['max']:.1f}")


def verdict(condition: str, profile: str, result: dict[str, Any]) -> str:
    """The condition's target beside the combined row, met or not (judged on tuned only)."""
    goal = TARGETS.get(condition, {})
    added = result["added_ms"]
    parts: list[str] = []
    met = True
    if condition == "drift10min":
        found = result.get("drift") or {}
        slope = found.get("slope_ms_per_min", 0.0)
        first, last = found.get("first_minute_ms", 0.0), found.get("last_minute_ms", 0.0)
        parts.append(f"drift {slope:+.2f} ms/min, 1st min {first:.1f} → last {last:.1f}")
        met = (
            slope <= goal["slope_ms_per_min"] and last - first <= goal["last_minus_first_minute_ms"]
        )
        parts.append("target: no upward drift")
    else:
        for key, limit in goal.items():
            parts.append(f"{key} ≤ {limit:g}")
            met = met and added[key] <= limit
    cpu = result["cpu_pct"]
    parts.append(f"CPU ≤ {TARGETS['cpu_pct']:g}%")
    met = met and max(cpu.values()) <= TARGETS["cpu_pct"]
    text = ", ".join(parts)
    if profile == "tuned":
        text += ": " + ("met" if met else "[bold]MISSED[/]")
    return text


def table(results: dict[str, Any]) -> Table:
    out = Table(
        title=(
            f"added one-way latency, ms: end to end - the rig's {results['rig_ms']:.1f} ms "
            f"(its openings: {results['rig']['min_ms']:.1f} to {results['rig']['max_ms']:.1f}); "
            "stock = aiortc as shipped, tuned = the music path"
        )
    )
    for name, justify in (
        ("condition", "left"),
        ("profile", "left"),
        ("direction", "left"),
        ("median", "right"),
        ("p95", "right"),
        ("max", "right"),
        ("clicks", "right"),
        ("lost", "right"),
        ("glitches", "right"),
        ("CPU % home / school", "right"),
        ("targets (DESIGN.md)", "left"),
    ):
        out.add_column(name, justify=justify)
    for condition, profiles in results["conditions"].items():
        for profile, result in profiles.items():
            if "error" in result:
                lines = result["error"].splitlines()
                first = lines[0] if lines else "failed"
                if len(lines) > 1 and lines[-1].startswith("(the tuned profile"):
                    first += " " + lines[-1]
                blank = [""] * 8
                out.add_row(condition, profile, *blank, f"[red]failed:[/] {first}")
                continue
            for name in DIRECTIONS:
                direction = result["directions"][name]
                out.add_row(
                    condition,
                    profile,
                    ARROWS[name],
                    *_figures(direction["added_ms"]),
                    f"{direction['clicks_heard']}/{direction['clicks_played']}",
                    str(direction["clicks_missing"]),
                    str(direction["glitches"]),
                    "",
                    "",
                )
            cpu = result["cpu_pct"]
            note = verdict(condition, profile, result)
            if result["path_delay_ms"]:
                note += f" (includes the proxy's {result['path_delay_ms']:g} ms mean delay)"
            if result.get("load_avg", 0) > (os.cpu_count() or 1):
                note += f" [yellow](machine busy: load {result['load_avg']:.1f})[/]"
            excluded = sum(d["clicks_excluded"] for d in result["directions"].values())
            if excluded:
                note += f" ({excluded} clicks across recording seams left out)"
            out.add_row(
                condition,
                profile,
                "both",
                *_figures(result["added_ms"]),
                "",
                "",
                str(result["glitches"]),
                f"{cpu['care_home']:.1f} / {cpu['school']:.1f}",
                note,
                end_section=True,
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--quick", action="store_true", help=f"the clean condition only, {QUICK_SECONDS:g} s each"
    )
    parser.add_argument("--seconds", type=float, help="seconds measured per condition and profile")
    parser.add_argument("--drift-minutes", type=float, default=DRIFT_MINUTES)
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the recordings in DIR (raw s16 48 kHz: rooms and speakers interleaved)",
    )
    parser.add_argument(
        "--profiles",
        default="stock,tuned",
        help="which profiles, in order (default stock,tuned)",
    )
    parser.add_argument(
        "--conditions",
        help="only these conditions, comma-separated (clean, loss2, jitter10, drift10min)",
    )
    args = parser.parse_args(argv)
    seconds = args.seconds or (QUICK_SECONDS if args.quick else FULL_SECONDS)
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    if seconds <= 0 or args.drift_minutes <= 0:
        parser.error("--seconds and --drift-minutes must be more than 0")
    if not profiles or any(p not in PROFILES for p in profiles):
        parser.error(f"--profiles: a comma-separated list of {', '.join(PROFILES)}")
    known = [c.name for c in conditions(False, seconds, args.drift_minutes)]
    only = None
    if args.conditions is not None:
        only = [c.strip() for c in args.conditions.split(",") if c.strip()]
        if not only or any(c not in known for c in only):
            parser.error(f"--conditions: a comma-separated list of {', '.join(known)}")
    quiet_logs()
    stop_on_sigterm()
    try:
        # A failing box prints its last lines (tests/box_process.py): to stderr, not the JSON.
        with contextlib.redirect_stdout(sys.stderr):
            results = asyncio.run(
                measure(args.quick, seconds, args.drift_minutes, profiles, args.keep, only)
            )
    except (BenchError, GraphError) as exc:
        progress.print(f"[red]the benchmark could not finish:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        progress.print("[red]interrupted[/]: everything it started has been stopped")
        return 130
    results["targets"] = TARGETS
    results["machine"] = machine(tone_hz=TONE_HZ)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        Console(highlight=False, width=WIDTH).print(table(results))
    failed = any(
        "error" in result
        for profiles in results["conditions"].values()
        for result in profiles.values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
