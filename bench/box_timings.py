"""How long the boxes take, on this machine: START → audio, and the rebuild after a cut link.

    python -m bench.box_timings            # a table
    python -m bench.box_timings --json     # one JSON object (progress goes to stderr)

Two whole boxes through a real session server, each with a virtual sound card on a private
PipeWire: the care home's box is its own process (``twm-device run``, keys on a pseudo-terminal,
as in the demo), the school's box runs in this process. A tone plays in the care home's room and
an ear listens to the school's speaker (see tests/room_sound.py).

(a) START → audio: the school's box is already waiting in the room; START is pressed on the care
    home's box; the time until the first 10 ms of the tone comes out of the school's speaker.
    Then START is held (leave) and it is done again. Measured on loopback (the DESIGN.md target's
    setting) and across a veth into a network namespace.
(b) The cut: the care home's box in a network namespace, live; the veth is taken down for
    ``--cut-seconds`` and put back. Measured: from the cut until each box shows reconnecting,
    and from the link's return until each box is live again and until the tone comes out of the
    school's speaker again.

Needs root (network namespaces) and the packages scripts/bootstrap installs. Everything it starts
(the rig, the server, the namespace, the box's process) it stops, however it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.logs import quiet_logs
from bench.machine import machine
from device.audio.soundcard import sounddevice_card
from device.audio.virtual import PipeWire
from device.controls.keyboard import HOLD_MARGIN_SECONDS
from device.lifecycle.states import State
from device.net.link_settings import LinkSettings
from device.settings import load
from session_server.protocol import PartyKind
from session_server.settings import ServerSettings
from tests.box_process import (
    HOLD_SECONDS,
    BoxProcess,
    box_process,
    rig_environment,
    state_line,
    write_config,
)
from tests.box_support import RunningBox, running_box
from tests.conftest import ADMIN_TOKEN, RunningServer, serving
from tests.netns import Namespace, namespace
from tests.room_sound import HEARD, TONE_HZ, Ear, ear_on, tone_in_room
from tests.running_clock import RunningClock
from tests.seed import seed_pair

TARGET_START_TO_AUDIO = 2.0  # DESIGN.md: START with the other side waiting → audio within 2 s
LAB_RECONNECT = 1.5  # LAB.md: aiortc, a new peer connection after a loss, connected again
WAIT = 60.0  # a failsafe for a box that never gets there
POLL = 0.005
SESSION_MOMENT = datetime(2026, 11, 24, 13, 50, tzinfo=UTC)  # inside the seeded window

WIDTH = 120  # rich wraps at 80 columns when not on a terminal: too narrow for the table
progress = Console(stderr=True, highlight=False, width=WIDTH)


class BenchError(Exception):
    """Something did not happen that the measurement waits for."""


# --- waiting ------------------------------------------------------------------------------------


async def until(check: Callable[[], Any], what: str, seconds: float = WAIT) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise BenchError(f"waited {seconds:g} s for {what}")
        await asyncio.sleep(POLL)


async def school_reaches(school: RunningBox, state: State) -> float:
    """When (monotonic) the in-process school box is in ``state``, polled every 5 ms."""
    await until(lambda: school.state is state, f"the school box {state.value}")
    return time.monotonic()


async def home_logs(home: BoxProcess, state: State, after: float) -> float:
    """When the care home's box logged entering ``state`` after ``after``: the line's arrival."""
    found = await until(
        lambda: home.first_line(after, state_line(state)), f"the care-home box {state.value}"
    )
    return float(found)


# --- one setting: server, boxes, sound ----------------------------------------------------------


@dataclass
class Rig:
    server: RunningServer
    home: BoxProcess
    school: RunningBox
    ear: Ear
    ns: Namespace | None


@contextlib.asynccontextmanager
async def boxes(
    pipewire: PipeWire, work: Path, *, ns: Namespace | None, name: str
) -> AsyncIterator[Rig]:
    """The server, both boxes (the care home's in ``ns`` if given) and the room sound."""
    host = ns.host_ip if ns is not None else "127.0.0.1"
    home_address = ns.ns_ip if ns is not None else "127.0.0.1"
    settings = ServerSettings(data_dir=work / name / "server", admin_token=ADMIN_TOKEN)
    tag = secrets.token_hex(3)
    with (
        serving(settings, RunningClock(SESSION_MOMENT), host=host) as server,
        pipewire.box(f"bench_home_{tag}") as home_card,
        pipewire.box(f"bench_school_{tag}") as school_card,
    ):
        pair = seed_pair(server.url, server.admin_headers)
        home_config = write_config(
            work / name / "home",
            server_ws=server.ws_url,
            token=pair.care_home_token,
            audio=home_card.settings,
            host_addresses=[home_address],
            allow_insecure=ns is not None,
            keyboard=True,
        )
        school_config = write_config(
            work / name / "school",
            server_ws=server.ws_url,
            token=pair.school_device_token,
            role=PartyKind.SCHOOL,
            audio=school_card.settings,
            host_addresses=[host],
            allow_insecure=ns is not None,
        )
        with (
            tone_in_room(pipewire, home_card.room),
            ear_on(pipewire, school_card.speaker) as ear,
            box_process(
                home_config,
                runtime_dir=work / name / "home" / "run",
                prefix=ns.exec() if ns is not None else (),
                env=rig_environment(pipewire),
            ) as home,
        ):
            async with running_box(load(school_config), sounddevice_card) as school:
                await home.until_state(State.SESSION_SOON, seconds=WAIT)
                await until(lambda: school.state is State.SESSION_SOON, "the school box ready")
                school.press("start")
                await school_reaches(school, State.WAITING)
                yield Rig(server, home, school, ear, ns)


# --- (a) START → audio --------------------------------------------------------------------------


@dataclass
class StartSample:
    start_to_home_live: float
    start_to_school_live: float
    start_to_audio: float
    tone_rms: float = 0.0  # the tone's level at the school's speaker once flowing (HEARD: 0.005)


async def start_to_audio(rig: Rig) -> StartSample:
    """START on the care home's box, the school waiting: until the tone is heard at the school.
    Leaves again (hold START) so that the next sample starts from the same place."""
    await until(lambda: rig.ear.silent(), "silence at the school's speaker")
    await rig.home.until_state(State.SESSION_SOON, State.ENDED, seconds=WAIT)
    await school_reaches(rig.school, State.WAITING)
    pressed = rig.home.press("s")
    heard = await until(lambda: rig.ear.first_heard(pressed), "the tone at the school")
    school_live = await school_reaches(rig.school, State.LIVE)  # already there: when seen
    home_live = await home_logs(rig.home, State.LIVE, pressed)
    sample = StartSample(
        start_to_home_live=home_live - pressed,
        start_to_school_live=school_live - pressed,
        start_to_audio=heard - pressed,
    )
    await until(rig.ear.flowing, "the tone flowing at the school")
    sample.tone_rms = statistics.median(rig.ear.recent(0.5))
    left = rig.home.press("S")  # hold START: leave
    await school_reaches(rig.school, State.WAITING)
    await rig.home.until_state(State.ENDED, seconds=WAIT)
    # The key holds START down a little longer than hold_seconds; a press before it is let go
    # is ignored (START is already down), as on a real box.
    await asyncio.sleep(
        max(0.0, left + HOLD_SECONDS + HOLD_MARGIN_SECONDS + 0.2 - time.monotonic())
    )
    return sample


# --- (b) the cut --------------------------------------------------------------------------------


@dataclass
class CutSample:
    cut_to_school_reconnecting: float
    cut_to_home_reconnecting: float
    restore_to_home_live: float
    restore_to_school_live: float
    restore_to_audio: float
    # What each box went through from the cut until audio flowed again, and how often the care
    # home's box had to connect to the server again (its WebSocket may or may not outlive a cut).
    home_states: list[str] = field(default_factory=list)
    school_states: list[str] = field(default_factory=list)
    home_signalling_reconnects: int = 0


async def watch_school(school: RunningBox, seen: list[tuple[float, State]]) -> None:
    """Note every state the school box shows, with when it was first seen."""
    while True:
        state = school.state
        if not seen or seen[-1][1] is not state:
            seen.append((time.monotonic(), state))
        await asyncio.sleep(POLL)


def first_after(seen: Sequence[tuple[float, State]], state: State, after: float) -> float | None:
    for at, was in seen:
        if at >= after and was is state:
            return at
    return None


async def cut_and_restore(rig: Rig, cut_seconds: float) -> CutSample:
    ns = rig.ns
    assert ns is not None
    await until(rig.ear.flowing, "the tone flowing at the school before the cut")
    await rig.home.until_state(State.LIVE, seconds=WAIT)
    seen: list[tuple[float, State]] = []
    watcher = asyncio.create_task(watch_school(rig.school, seen))
    try:
        cut = time.monotonic()
        ns.cut()
        try:
            school_noticed = await until(
                lambda: first_after(seen, State.RECONNECTING, cut), "the school reconnecting"
            )
            home_noticed = await home_logs(rig.home, State.RECONNECTING, cut)
            await asyncio.sleep(max(0.0, cut + cut_seconds - time.monotonic()))
        finally:
            restored = time.monotonic()
            ns.restore()
        heard = await until(lambda: rig.ear.first_heard(restored), "the tone back at the school")
        school_live = await until(
            lambda: first_after(seen, State.LIVE, restored), "the school live again"
        )
        home_live = await home_logs(rig.home, State.LIVE, restored)
        await until(rig.ear.flowing, "the tone flowing at the school after the cut")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    after_cut = [line for at, line in list(rig.home.lines) if at >= cut]
    home_states = [
        line.split("state='")[1].split("'")[0] for line in after_cut if "event='state'" in line
    ]
    return CutSample(
        cut_to_school_reconnecting=school_noticed - cut,
        cut_to_home_reconnecting=home_noticed - cut,
        restore_to_home_live=home_live - restored,
        restore_to_school_live=school_live - restored,
        restore_to_audio=heard - restored,
        home_states=home_states,
        school_states=[state.value for at, state in seen if at > cut],
        home_signalling_reconnects=sum("event='signalling connected'" in x for x in after_cut),
    )


# --- the whole run ------------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "max": max(values),
        "min": min(values),
    }


async def measure(repeats: int, cuts: int, cut_seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    starts: dict[str, list[StartSample]] = {}
    cut_samples: list[CutSample] = []
    pipewire = PipeWire.start()
    try:
        with tempfile.TemporaryDirectory(prefix="twm-bench-") as tmp:
            work = Path(tmp)
            progress.print("loopback: both boxes on this machine's loopback")
            async with boxes(pipewire, work, ns=None, name="loopback") as rig:
                starts["loopback"] = await _starts(rig, repeats, "loopback")
            with namespace() as ns:
                progress.print(f"veth: the care home's box in namespace {ns.name}")
                async with boxes(pipewire, work, ns=ns, name="veth") as rig:
                    starts["veth"] = await _starts(rig, repeats, "veth")
                    rig.home.press("s")
                    await until(rig.ear.flowing, "the tone flowing at the school")
                    for number in range(1, cuts + 1):
                        sample = await cut_and_restore(rig, cut_seconds)
                        progress.print(
                            f"  cut {number}/{cuts}: noticed after "
                            f"{sample.cut_to_school_reconnecting:.2f} s (school), "
                            f"{sample.cut_to_home_reconnecting:.2f} s (care home); audio "
                            f"{sample.restore_to_audio:.2f} s after the link came back"
                        )
                        cut_samples.append(sample)
    finally:
        pipewire.stop()
    results["start_to_audio"] = {
        where: {
            "samples": [asdict(s) for s in samples],
            "start_to_audio": summary([s.start_to_audio for s in samples]),
            "start_to_home_live": summary([s.start_to_home_live for s in samples]),
            "target": TARGET_START_TO_AUDIO,
        }
        for where, samples in starts.items()
    }
    link = LinkSettings()
    results["cut"] = {
        "cut_seconds": cut_seconds,
        "samples": [asdict(s) for s in cut_samples],
        **{
            name: summary([getattr(s, name) for s in cut_samples])
            for name in (
                "cut_to_school_reconnecting",
                "cut_to_home_reconnecting",
                "restore_to_home_live",
                "restore_to_school_live",
                "restore_to_audio",
            )
        },
        "expected_notice": [
            link.silence_seconds - link.heartbeat_seconds,
            link.silence_seconds + link.heartbeat_seconds,
        ],
        "lab_reconnect": LAB_RECONNECT,
    }
    return results


async def _starts(rig: Rig, repeats: int, where: str) -> list[StartSample]:
    samples = []
    for number in range(1, repeats + 1):
        sample = await start_to_audio(rig)
        progress.print(
            f"  START {number}/{repeats}: live after {sample.start_to_home_live:.2f} s, "
            f"the tone at the school after {sample.start_to_audio:.2f} s"
        )
        samples.append(sample)
    return samples


def table(results: dict[str, Any]) -> Table:
    out = Table(title="twm boxes on this machine (seconds)")
    out.add_column("measure")
    out.add_column("where")
    out.add_column("median", justify="right")
    out.add_column("max", justify="right")
    out.add_column("n", justify="right")
    out.add_column("target / baseline")
    for where, figures in results["start_to_audio"].items():
        n = str(len(figures["samples"]))
        audio = figures["start_to_audio"]
        live = figures["start_to_home_live"]
        verdict = "met" if audio["max"] <= figures["target"] else "MISSED"
        out.add_row(
            "START → tone at the school's speaker",
            where,
            f"{audio['median']:.2f}",
            f"{audio['max']:.2f}",
            n,
            f"≤ {figures['target']:g} (DESIGN.md, loopback): {verdict}",
        )
        out.add_row(
            "START → care-home box live",
            where,
            f"{live['median']:.2f}",
            f"{live['max']:.2f}",
            n,
            "",
        )
    cut = results["cut"]
    n = str(len(cut["samples"]))
    rows = (
        ("cut → school box reconnecting", "cut_to_school_reconnecting", "notice"),
        ("cut → care-home box reconnecting", "cut_to_home_reconnecting", "notice"),
        ("link back → care-home box live", "restore_to_home_live", ""),
        ("link back → school box live", "restore_to_school_live", ""),
        ("link back → tone at the school's speaker", "restore_to_audio", "reconnect"),
    )
    for label, key, baseline in rows:
        figures = cut[key]
        note = ""
        if baseline == "notice":
            low, high = cut["expected_notice"]
            note = f"{low:g} to {high:g} by design (link.silence_seconds ± heartbeat_seconds)"
        elif baseline == "reconnect":
            note = f"~{cut['lab_reconnect']:g} (LAB.md: bare aiortc, new peer connection)"
        out.add_row(
            label,
            f"veth, {cut['cut_seconds']:g} s cut",
            f"{figures['median']:.2f}",
            f"{figures['max']:.2f}",
            n,
            note,
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.box_timings", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=5, help="START → audio samples per setting")
    parser.add_argument("--cuts", type=int, default=5, help="how many times the link is cut")
    parser.add_argument("--cut-seconds", type=float, default=10.0, help="how long each cut lasts")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.cuts < 1 or args.cut_seconds <= 0:
        parser.error("--repeats and --cuts must be at least 1, --cut-seconds more than 0")
    if os.geteuid() != 0:
        parser.error("needs root: it makes a network namespace (ip netns)")
    quiet_logs()
    try:
        results = asyncio.run(measure(args.repeats, args.cuts, args.cut_seconds))
    except BenchError as exc:
        progress.print(f"[red]the benchmark could not finish:[/] {exc}")
        return 1
    results["machine"] = machine(tone_hz=TONE_HZ, heard_threshold_rms=HEARD)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        Console(highlight=False, width=WIDTH).print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
