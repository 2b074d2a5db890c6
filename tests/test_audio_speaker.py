"""The speaker side: the remote track's frames, resampled to mono, land in the playout buffer,
and detaching ends the receiving task cleanly."""

from __future__ import annotations

import asyncio

import numpy as np

from device.audio.format import SAMPLE_RATE
from device.audio.playout import PlayoutBuffer
from device.audio.selftest import level_at
from device.audio.speaker import Speaker
from tests.audio_support import SilentForeverTrack, ToneTrack, until


async def test_a_remote_track_that_ends_ends_the_task_and_takes_its_leftovers() -> None:
    playout = PlayoutBuffer(maximum=SAMPLE_RATE)
    speaker = Speaker(playout)
    track = ToneTrack(1000, 0.5, paced=False, frames=20)
    speaker.attach(track)
    await until(lambda: not speaker.attached, "not speaker.attached")
    assert speaker.frames_received == 20
    assert playout.fill == 0  # nothing stale plays when the next track arrives


async def test_received_audio_waits_in_the_playout_buffer_for_the_card() -> None:
    playout = PlayoutBuffer(maximum=SAMPLE_RATE)
    speaker = Speaker(playout)
    track = ToneTrack(1000, 0.5, paced=False)
    speaker.attach(track)
    await until(lambda: playout.fill >= SAMPLE_RATE // 2, "playout.fill >= SAMPLE_RATE // 2")
    await speaker.detach()
    assert not speaker.attached
    assert playout.fill == 0


async def test_the_resampled_samples_carry_the_tone_at_its_level() -> None:
    playout = PlayoutBuffer(maximum=SAMPLE_RATE)
    speaker = Speaker(playout)
    speaker.attach(ToneTrack(1000, 0.5, paced=False))
    await until(lambda: playout.fill >= 9600, "playout.fill >= 9600")
    samples = np.concatenate([playout.pull() for _ in range(20)]).astype(np.float64) / 32768
    await speaker.detach()
    # A 0.5 sine: RMS 0.354. Mono from identical channels keeps the level.
    assert abs(level_at(samples, 1000) - 0.354) < 0.02
    assert abs(level_at(samples, 1500)) < 0.01


async def test_detaching_a_track_that_never_delivers_ends_its_task() -> None:
    speaker = Speaker(PlayoutBuffer())
    speaker.attach(SilentForeverTrack())
    await asyncio.sleep(0)
    assert speaker.attached
    await asyncio.wait_for(speaker.detach(), timeout=5)
    assert not speaker.attached
    await speaker.detach()  # twice is harmless


async def test_attaching_a_new_track_replaces_the_old_one() -> None:
    playout = PlayoutBuffer(maximum=SAMPLE_RATE)
    speaker = Speaker(playout)
    first = ToneTrack(500, 0.5)
    speaker.attach(first)
    await until(lambda: first.sent > 0, "first.sent > 0")
    second = ToneTrack(1000, 0.5, paced=False)
    speaker.attach(second)
    await until(lambda: playout.fill >= 9600, "playout.fill >= 9600")
    samples = np.concatenate([playout.pull() for _ in range(20)]).astype(np.float64) / 32768
    assert level_at(samples, 1000) > 0.3
    assert level_at(samples, 500) < 0.01
    sent_by_first = first.sent
    await asyncio.sleep(0.1)
    assert first.sent == sent_by_first  # nobody asks the old track any more
    await speaker.detach()
