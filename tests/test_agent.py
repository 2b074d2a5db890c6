"""Two whole boxes (the real Agent: machine, buttons, lights, audio engine, signalling, link)
through a real server, on fake sound cards that the test clocks by hand."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from device import status
from device.audio.fake_card import FakeCardFactory
from device.audio.format import BLOCK_FRAMES, SAMPLE_RATE
from device.lifecycle import actions as act
from device.lifecycle.states import State
from session_server.protocol import PartyKind
from tests.box_process import technician_status
from tests.box_support import RunningBox, box_settings, running_box, until
from tests.conftest import RunningServer
from tests.seed import Pair, seed_pair


class Room:
    """A fake room for one box: plays a tone into its microphone, listens to its speaker."""

    def __init__(self, cards: FakeCardFactory, hz: float) -> None:
        self.cards = cards
        self.hz = hz
        self.heard_peak = 0.0
        self._phase = 0

    def block(self) -> np.ndarray:
        t = (np.arange(BLOCK_FRAMES) + self._phase) / SAMPLE_RATE
        self._phase += BLOCK_FRAMES
        return (np.sin(2 * np.pi * self.hz * t) * 8000).astype(np.int16)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(BLOCK_FRAMES / SAMPLE_RATE)
            card = self.cards.cards[-1] if self.cards.cards else None
            if card is None or not card.running:
                continue
            card.push_input(self.block())
            self.heard_peak = max(self.heard_peak, float(np.abs(card.pull_output()).max()))


@contextlib.asynccontextmanager
async def box_in_room(
    server: RunningServer, tmp: Path, name: str, token: str, role: PartyKind, hz: float
) -> AsyncIterator[tuple[RunningBox, Room]]:
    cards = FakeCardFactory()
    room = Room(cards, hz)
    settings = box_settings(tmp, name, server_ws=server.ws_url, token=token, role=role)
    async with running_box(settings, cards) as box:
        pump = asyncio.create_task(room.run())
        try:
            yield box, room
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump


@pytest.fixture
def pair(server: RunningServer) -> Pair:
    return seed_pair(server.url, server.admin_headers)


@pytest.mark.parametrize("profile", ["music", "stock"])
async def test_two_boxes_hold_a_session_through_the_server(
    server: RunningServer, pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: str
) -> None:
    monkeypatch.setenv("TWM_DEVICE_AUDIO__PROFILE", profile)
    async with (
        box_in_room(server, tmp_path, "home", pair.care_home_token, PartyKind.CARE_HOME, 440) as (
            home,
            home_room,
        ),
        box_in_room(
            server, tmp_path, "school", pair.school_device_token, PartyKind.SCHOOL, 660
        ) as (school, school_room),
    ):
        await home.until_state(State.SESSION_SOON)
        await school.until_state(State.SESSION_SOON)
        assert "session_soon" in home.cues()

        home.press("start")
        await home.until_state(State.WAITING)
        school.press("start")
        await home.until_state(State.LIVE)
        await school.until_state(State.LIVE)
        assert home.pin("on_air_light").state == 1 and school.pin("on_air_light").state == 1

        # Audio both ways: each room hears the other's tone from its speaker.
        await until(lambda: school_room.heard_peak > 0.05, "the school hears the care home")
        await until(lambda: home_room.heard_peak > 0.05, "the care home hears the school")
        # Each box receives the profile's way, and its status shows that buffer's figures.
        for box in (home, school):
            audio = box.agent.snapshot().audio
            assert audio is not None and audio.receive is not None
            assert audio.receive.path == profile
            if profile == "music":  # the jitter buffer: one frame, margin, measured jitter
                assert audio.receive.jitter_ms is not None
                expected = min(11 + audio.receive.jitter_ms, 100)  # capped at TARGET_MAX_MS
                assert audio.receive.target_ms == pytest.approx(expected, abs=0.02)
            else:  # the stock playout buffer's fixed target
                assert audio.receive.jitter_ms is None and audio.receive.target_ms == 40

        # The technician's view: the status file the box writes, as ``twm-device status`` prints.
        def receive_written() -> bool:
            written = status.read(school.settings.runtime_dir)
            return bool(written and written.audio and written.audio.receive)

        await until(receive_written, "the school's status file to show its receive path")
        report = await technician_status(tmp_path / "school" / "device.toml")
        pattern = rf"Receiving +{profile}: \d+ ms waiting \(target \d+ ms.*\); \d+ underruns"
        assert re.search(pattern, report), report

        home.press("clap")
        await until(lambda: "reaction" in school.cues(), "the school box chimes for the clap")
        assert "sent" in home.cues()

        home.press("mute")
        await until(lambda: home.pin("on_air_light").state == 0, "ON-AIR goes out on mute")
        assert act.SetOnAir(False) in home.actions and home.state is State.LIVE

        await home.hold_start()
        await home.until_state(State.ENDED)
        await school.until_state(State.WAITING)
        assert "ended" in home.cues()


async def test_a_press_that_means_nothing_says_not_now(
    server: RunningServer, pair: Pair, tmp_path: Path
) -> None:
    server.clock.set(server.clock.now().replace(hour=9))  # no window open
    async with box_in_room(
        server, tmp_path, "home", pair.care_home_token, PartyKind.CARE_HOME, 440
    ) as (home, _):
        await home.until_state(State.IDLE)
        home.press("start")
        await until(lambda: "not_now" in home.cues(), "not-now cue")


async def test_the_sound_card_failing_is_a_fault_and_its_return_recovers(
    server: RunningServer, pair: Pair, tmp_path: Path
) -> None:
    async with box_in_room(
        server, tmp_path, "home", pair.care_home_token, PartyKind.CARE_HOME, 440
    ) as (home, room):
        await home.until_state(State.SESSION_SOON)
        room.cards.unplugged = True
        room.cards.card.fail("USB device gone")
        await home.until_state(State.FAULT)
        assert "problem" in home.cues()
        room.cards.unplugged = False
        await home.until_state(State.SESSION_SOON)
