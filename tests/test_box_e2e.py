"""The real box end to end: the whole Agent (machine, buttons, lights, audio engine, signalling,
link) on virtual sound cards that sounddevice opens by name on a private PipeWire, exactly as a box
opens its USB speakerphone; mock pins pressed like buttons; the real server. On the other side is
either the school page in Debian's headless Chromium or a second real box in the school role.

Sound is measured where a person would hear it, on the PipeWire sinks: a tone is played into a
box's room (what its microphone hears), and the other side's speaker is recorded and looked at
for that tone's frequency. Every wait is bounded; no test measures how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect

from device.audio.cues import G4
from device.audio.format import SAMPLE_RATE
from device.audio.selftest import level_at
from device.audio.soundcard import sounddevice_card
from device.lifecycle import actions as act
from device.lifecycle.states import State
from session_server.protocol import PartyKind, ReactionKind, room_id
from tests.box_support import RunningBox, box_settings, running_box
from tests.browser import CHROMIUM_ARGS
from tests.conftest import RunningServer
from tests.pipewire import Box, PipeWire, pipewire_fixture  # noqa: F401
from tests.seed import Pair, seed_pair
from tests.test_school_page_e2e import CARE_HOME, STARTS_AT

WAIT_SECONDS = 60.0  # a failsafe for a loaded machine, never a measurement
WAIT_MS = WAIT_SECONDS * 1000
TONE_AMPLITUDE = 0.3
# The rooms' tones stay clear of every cue's notes (device.audio.cues; 660 Hz would be E5, in
# the "connected" chime), so no cue playing at a speaker passes for the other side's sound.
HOME_HZ = 440.0
SCHOOL_HZ = 700.0
# RMS of one frequency's component, full scale. A tone through a call arrives at ~0.02-0.05
# (0.3 amplitude at the box's default volume, -13 dB), through the page's loudspeaker at ~0.1;
# a speaker that plays nothing records exact zeros.
HEARD = 0.005
CUE_HEARD = 0.0005  # a cue's short notes, over a second and a half of recording


# --- waiting, playing and listening -----------------------------------------------------------


async def eventually(check: Callable[[], Any], what: str, seconds: float = WAIT_SECONDS) -> Any:
    """Poll ``check`` (sync or async) until it gives something truthy; bounded by ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    last: Any = None
    while True:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"waited {seconds:g} s for: {what}; last seen: {last!r}")
        await asyncio.sleep(0.05)


def level(samples: npt.NDArray[np.int16], hz: float) -> float:
    return level_at(samples.astype(np.float64) / 32768, hz)


def tone(hz: float, seconds: float) -> npt.NDArray[np.int16]:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    swing = TONE_AMPLITUDE * 32767 * np.sin(2 * np.pi * hz * t)
    return swing.astype(np.int16)


async def speaker_plays(card: Box, hz: float, what: str) -> npt.NDArray[np.int16]:
    """Record the box's speaker a second at a time until the tone at ``hz`` is in it."""

    async def heard() -> tuple[npt.NDArray[np.int16]] | None:
        samples = await card.record_speaker(seconds=1.0)
        return (samples,) if level(samples, hz) > HEARD else None

    found: tuple[npt.NDArray[np.int16]] = await eventually(heard, what)
    return found[0]


async def speaker_silent_at(card: Box, hz: float, what: str) -> None:
    """Record the box's speaker a second at a time until the tone at ``hz`` has gone from it."""

    async def silent() -> bool:
        return level(await card.record_speaker(seconds=1.0), hz) < HEARD / 10

    await eventually(silent, what)


class Tone:
    """A tone played into a box's room for as long as the block lasts: what its microphone hears.

    One second at a time (a whole number of periods), so that leaving the block waits for at
    most the second being played rather than cutting a player off."""

    def __init__(self, card: Box, hz: float) -> None:
        self.card = card
        self.second = tone(hz, 1.0)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _play(self) -> None:
        while not self._stopping.is_set():
            await self.card.play_into_room(self.second)

    async def __aenter__(self) -> Tone:
        self._task = asyncio.create_task(self._play(), name=f"tone into {self.card.room}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, WAIT_SECONDS)


def since(box: RunningBox, mark: int) -> list[act.Action]:
    """The box's actions after ``mark = len(box.actions)`` was taken."""
    return box.actions[mark:]


def cues_since(box: RunningBox, mark: int) -> list[str]:
    return [a.cue.value for a in since(box, mark) if isinstance(a, act.PlayCue)]


# --- boxes ------------------------------------------------------------------------------------


@pytest.fixture
def pair(server: RunningServer) -> Pair:
    return seed_pair(server.url, server.admin_headers)


_names = iter(range(1_000_000))


@contextlib.contextmanager
def sound_cards(pipewire: PipeWire, *roles: str) -> Iterator[list[Box]]:
    """A virtual card for each box, all made before any box opens one: PortAudio looks for new
    cards only while this process has no stream open (device.audio.cards)."""
    n = next(_names)
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(pipewire.box(f"e2e{n}_{role}")) for role in roles]


@contextlib.asynccontextmanager
async def real_box(
    server: RunningServer, tmp: Path, card: Box, token: str, role: PartyKind
) -> AsyncIterator[RunningBox]:
    settings = box_settings(
        tmp,
        card.name,
        server_ws=server.ws_url,
        token=token,
        role=role,
        audio_input=card.settings.input,
        audio_output=card.settings.output,
    )
    async with running_box(settings, sounddevice_card) as box:
        yield box


@contextlib.asynccontextmanager
async def two_boxes(
    server: RunningServer, pair: Pair, pipewire: PipeWire, tmp: Path
) -> AsyncIterator[tuple[RunningBox, Box, RunningBox, Box]]:
    """A care-home box and a school box, each on its own card with its own tone in its room."""
    with sound_cards(pipewire, "home", "school") as [home_card, school_card]:
        async with (
            real_box(server, tmp, home_card, pair.care_home_token, PartyKind.CARE_HOME) as home,
            real_box(
                server, tmp, school_card, pair.school_device_token, PartyKind.SCHOOL
            ) as school,
            Tone(home_card, HOME_HZ),
            Tone(school_card, SCHOOL_HZ),
        ):
            yield home, home_card, school, school_card


async def both_live(home: RunningBox, school: RunningBox) -> None:
    await home.until_state(State.SESSION_SOON)
    await school.until_state(State.SESSION_SOON)
    home.press("start")
    await home.until_state(State.WAITING)
    school.press("start")
    await home.until_state(State.LIVE)
    await school.until_state(State.LIVE)


# --- the school page ------------------------------------------------------------------------


@contextlib.contextmanager
def page_speaker(pipewire: PipeWire) -> Iterator[str]:
    """A sink of its own for the browser to play into: the classroom's loudspeakers."""
    name = f"e2e{next(_names)}_page_speaker"
    module = pipewire.load_module("module-null-sink", sink_name=name, rate=SAMPLE_RATE, channels=1)
    try:
        yield name
    finally:
        pipewire.unload_module(module)


def classroom_wav(path: Path) -> Path:
    """Two seconds of the school's tone, which Chromium's fake microphone plays in a loop."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(tone(SCHOOL_HZ, 2.0).astype("<i2").tobytes())
    return path


@contextlib.asynccontextmanager
async def chromium(pipewire: PipeWire, sink: str, tmp: Path) -> AsyncIterator[BrowserContext]:
    """Headless Chromium whose microphone hears the school's tone and whose speaker plays into
    ``sink``. The fake microphone plays a file: Chromium's own only blips twice a second, while
    a steady tone at a known pitch is told apart from the box's cues at its speaker. Playwright
    mutes Chromium by default; here the classroom's loudspeaker is under test too."""
    microphone = classroom_wav(tmp / "classroom.wav")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp / "chromium-profile",
            executable_path="/usr/bin/chromium",
            headless=True,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={microphone}"],
            ignore_default_args=["--mute-audio"],
            env={**pipewire.env, "PULSE_SINK": sink},
        )
        try:
            yield context
        finally:
            await context.close()


async def page_stats(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] | None = await page.evaluate("window.twm.stats()")
    assert stats is not None, "the page has no call"
    return stats


async def energy_per_packet(page: Page, packets: int) -> float:
    """The care home's audio energy the page took in over its next ``packets`` packets (packets
    keep coming whether the box sends its room or digital silence)."""
    start = await page_stats(page)

    async def later() -> dict[str, Any] | None:
        now = await page_stats(page)
        return now if now["packetsReceived"] >= start["packetsReceived"] + packets else None

    end: dict[str, Any] = await eventually(later, f"{packets} more packets at the page")
    received = int(end["packetsReceived"] - start["packetsReceived"])
    return float(end["audioEnergyReceived"] - start["audioEnergyReceived"]) / received


async def classroom_hears(pipewire: PipeWire, sink: str, hz: float) -> float | None:
    found = level(await pipewire.record(f"{sink}.monitor", 1.0), hz)
    return found if found > HEARD else None


@pytest.mark.browser
async def test_the_box_and_the_school_page_hold_a_whole_session(
    server: RunningServer, pair: Pair, pipewire: PipeWire, tmp_path: Path
) -> None:
    """The window opens, the box chimes and glows; START; the teacher joins; each side hears the
    other; reactions both ways; MUTE silences the room and the ON-AIR light; holding START
    leaves, and the page says so."""
    room = room_id(pair.session_id, STARTS_AT)
    problems: list[str] = []
    with sound_cards(pipewire, "home") as [card], page_speaker(pipewire) as classroom:
        async with (
            real_box(server, tmp_path, card, pair.care_home_token, PartyKind.CARE_HOME) as home,
            Tone(card, HOME_HZ),
            chromium(pipewire, classroom, tmp_path) as browser,
        ):
            # The window is open (13:50, for 14:00): the box chimes, and its status light glows
            # (the pattern plays: the PWM pin's brightness keeps changing).
            await home.until_state(State.SESSION_SOON)
            assert "session_soon" in home.cues()
            assert act.ShowState(State.SESSION_SOON) in home.actions
            status_light = home.pin("status_light")
            glow: set[float] = set()

            def glowing() -> bool:
                glow.add(round(float(status_light.state), 3))
                return len(glow) >= 3

            await eventually(glowing, "the status light to glow (its brightness changing)")
            assert home.pin("on_air_light").state == 0

            mark = len(home.actions)
            home.press("start")
            await home.until_state(State.WAITING)
            assert "joined" in cues_since(home, mark)

            # The teacher signs in and joins. Echo cancellation is off (the page's own switch,
            # remembered by the browser): Chromium's canceller chops a steady test tone, which
            # would say nothing about the box.
            page = browser.pages[0] if browser.pages else await browser.new_page()
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(server.url)
            await page.evaluate("localStorage.setItem('twm.echoCancellation', 'off')")
            await page.fill("#access-code", pair.access_code)
            await page.click("#sign-in-button")
            join = page.locator(f'li.session[data-room="{room}"]').get_by_role(
                "button", name="Join"
            )
            await join.click(timeout=WAIT_MS)
            await expect(page.locator("#call-state-words")).to_have_text("Live", timeout=WAIT_MS)
            await home.until_state(State.LIVE)
            assert "connected" in home.cues()
            assert home.pin("on_air_light").state == 1

            # The care home's room reaches the browser (its statistics) and the classroom's
            # loudspeakers (the tone, on the page's sink).
            live_energy = await energy_per_packet(page, 50)
            assert live_energy > 0
            await eventually(
                lambda: classroom_hears(pipewire, classroom, HOME_HZ),
                "the care home's tone from the classroom's loudspeakers",
            )
            # The classroom's microphone reaches the box's speaker.
            await speaker_plays(card, SCHOOL_HZ, "the classroom's tone from the box's speaker")

            # Box → page: a REACT press is shown large on the page, with who sent it.
            mark = len(home.actions)
            home.press("heart")
            await expect(page.locator("#incoming-emoji")).to_have_text("❤️", timeout=WAIT_MS)
            await expect(page.locator("#incoming-words")).to_have_text(f"{CARE_HOME} sent a heart")
            assert act.SendReaction(ReactionKind.HEART) in since(home, mark)
            assert "sent" in cues_since(home, mark)

            # Page → box: the reaction cue plays and the status light flashes.
            mark = len(home.actions)
            await page.click('button.reaction[data-kind="clap"]')
            await eventually(lambda: "reaction" in cues_since(home, mark), "the reaction cue")
            assert act.FlashReaction(ReactionKind.CLAP) in since(home, mark)

            # MUTE: the ON-AIR light goes out and the room's sound stops reaching the page,
            # while the call goes on (packets of digital silence keep coming).
            mark = len(home.actions)
            home.press("mute")
            await eventually(lambda: home.pin("on_air_light").state == 0, "ON-AIR out on mute")
            assert act.SetOnAir(False) in since(home, mark)
            assert "muted" in cues_since(home, mark)
            assert home.state is State.LIVE
            await eventually(
                lambda: _below(energy_per_packet(page, 50), live_energy / 100),
                "the page to stop receiving the care home's sound",
            )
            # MUTE again: back on air, and the room is heard again.
            mark = len(home.actions)
            home.press("mute")
            await eventually(lambda: home.pin("on_air_light").state == 1, "ON-AIR back on")
            assert act.SetOnAir(True) in since(home, mark)
            await eventually(
                lambda: _above(energy_per_packet(page, 50), live_energy / 10),
                "the page to receive the care home's sound again",
            )

            # Hold START: the box leaves, and the page says the care home has left.
            await home.hold_start()
            await home.until_state(State.ENDED)
            assert "ended" in home.cues()
            assert home.pin("on_air_light").state == 0
            await expect(page.locator("#call-state-words")).to_have_text(
                "The care home has left", timeout=WAIT_MS
            )
            # The box told the audit log its link went up, and down as it left.
            for event in ("link_up", "link_down"):
                await eventually(
                    functools.partial(_box_reported, server, event, room),
                    f"the box's {event} report in the audit log",
                )
    assert problems == []


async def _box_reported(server: RunningServer, event: str, room: str) -> bool:
    async with httpx.AsyncClient(base_url=server.url, headers=server.admin_headers) as admin:
        response = await admin.get("/api/audit", params={"event": event})
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()
    return any(e["actor"].startswith("device:") and e["room"] == room for e in entries)


async def _below(value: Awaitable[float], limit: float) -> bool:
    return await value < limit


async def _above(value: Awaitable[float], limit: float) -> bool:
    return await value > limit


# --- two boxes ----------------------------------------------------------------------------------


async def test_two_real_boxes_hear_each_other_through_the_server(
    server: RunningServer, pair: Pair, pipewire: PipeWire, tmp_path: Path
) -> None:
    """A care-home box and a school box, each on its own card: each speaker plays the other
    room's tone, and not its own."""
    async with two_boxes(server, pair, pipewire, tmp_path) as boxes:
        home, home_card, school, school_card = boxes
        await both_live(home, school)
        at_school = await speaker_plays(school_card, HOME_HZ, "the care home at the school")
        at_home = await speaker_plays(home_card, SCHOOL_HZ, "the school at the care home")
        assert level(at_school, SCHOOL_HZ) < level(at_school, HOME_HZ) / 10
        assert level(at_home, HOME_HZ) < level(at_home, SCHOOL_HZ) / 10

        await home.hold_start()
        await home.until_state(State.ENDED)
        await school.until_state(State.WAITING)
        await speaker_silent_at(school_card, HOME_HZ, "the care home's sound to stop")


# --- the sound card vanishing --------------------------------------------------------------------


async def test_the_sound_card_vanishing_mid_session_is_a_fault_that_heals_itself(
    server: RunningServer, pair: Pair, pipewire: PipeWire, tmp_path: Path
) -> None:
    """The care home's USB card is unplugged during a live session: the box goes to fault (the
    problem cue, ON-AIR out) and the school hears nothing from it; plugged back in, the box is
    live again by itself and the sound flows both ways again."""
    async with two_boxes(server, pair, pipewire, tmp_path) as boxes:
        home, home_card, school, school_card = boxes
        await both_live(home, school)
        await speaker_plays(school_card, HOME_HZ, "the care home at the school")

        mark, school_mark = len(home.actions), len(school.actions)
        home_card.vanish()
        await home.until_state(State.FAULT)
        assert "problem" in cues_since(home, mark)
        assert act.SetOnAir(False) in since(home, mark)
        assert home.pin("on_air_light").state == 0
        fault = home.agent.machine.fault
        assert fault is not None and home_card.mic in fault  # names the card that went
        await speaker_silent_at(school_card, HOME_HZ, "the school to hear nothing")

        mark = len(home.actions)
        home_card.restore()
        await home.until_state(State.LIVE)
        assert act.SetOnAir(True) in since(home, mark)
        assert home.pin("on_air_light").state == 1
        # The link held all along: the school box never left LIVE, and nobody pressed anything.
        assert not any(isinstance(a, act.ShowState) for a in since(school, school_mark))
        await speaker_plays(school_card, HOME_HZ, "the care home at the school again")
        await speaker_plays(home_card, SCHOOL_HZ, "the school at the care home again")


# --- a press that means nothing ----------------------------------------------------------------


async def test_a_reaction_pressed_while_waiting_says_not_now_out_loud(
    server: RunningServer, pair: Pair, pipewire: PipeWire, tmp_path: Path
) -> None:
    """Nobody is there to react to yet: the box plays "not now" (two low G4 notes, in no other
    cue) from its speaker, and sends nothing."""
    with sound_cards(pipewire, "home") as [card]:
        async with real_box(
            server, tmp_path, card, pair.care_home_token, PartyKind.CARE_HOME
        ) as home:
            await home.until_state(State.SESSION_SOON)
            home.press("start")
            await home.until_state(State.WAITING)
            mark = len(home.actions)

            async def press_and_listen() -> float | None:
                # The recorder is given a moment to start before the press; if it was slower
                # than that the cue is missed and the press is tried again.
                recording = asyncio.create_task(card.record_speaker(seconds=1.5))
                await asyncio.sleep(0.3)
                home.press("clap")
                found = level(await recording, G4)
                return found if found > CUE_HEARD else None

            await eventually(press_and_listen, "the not-now cue from the box's speaker")
            assert "not_now" in cues_since(home, mark)
            assert not any(isinstance(a, act.SendReaction) for a in since(home, mark))
            assert home.state is State.WAITING
