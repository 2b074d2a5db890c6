"""The microphone track: 20 ms s16 frames on the card's clock, silence when not sending, and a
queue that never grows."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from device.audio.format import BLOCK_FRAMES, FRAME_SAMPLES, SAMPLE_RATE, TIME_BASE
from device.audio.microphone import QUEUE_FRAMES, Microphone


def ramp(start: int, count: int = BLOCK_FRAMES) -> np.ndarray:
    """Recognisable samples: a counter that wraps inside int16."""
    return (np.arange(start, start + count) % 30000).astype(np.int16)


async def test_blocks_become_20ms_s16_mono_frames_with_sample_pts() -> None:
    track = Microphone(sending=True)
    for n in range(4):
        track.feed(ramp(n * BLOCK_FRAMES))
    first, second = await track.recv(), await track.recv()
    for frame, pts in ((first, 0), (second, FRAME_SAMPLES)):
        assert frame.format.name == "s16"
        assert frame.layout.name == "mono"
        assert frame.sample_rate == SAMPLE_RATE
        assert frame.samples == FRAME_SAMPLES
        assert frame.time_base == TIME_BASE
        assert frame.pts == pts
    assert np.array_equal(first.to_ndarray().reshape(-1), ramp(0, FRAME_SAMPLES))
    assert np.array_equal(second.to_ndarray().reshape(-1), ramp(FRAME_SAMPLES, FRAME_SAMPLES))
    assert track.kind == "audio"


async def test_a_track_not_sending_carries_digital_silence_on_the_same_clock() -> None:
    track = Microphone()
    assert not track.sending  # never on air by accident
    loud = np.full(BLOCK_FRAMES, 12000, dtype=np.int16)
    track.feed(loud)
    track.feed(loud)
    silent = await track.recv()
    assert not silent.to_ndarray().any()
    track.set_sending(True)
    track.feed(loud)
    track.feed(loud)
    sent = await track.recv()
    assert sent.pts == FRAME_SAMPLES
    assert np.all(sent.to_ndarray() == 12000)
    track.feed(loud)
    track.set_sending(False)  # muted half way through a frame: from that block on, silence
    track.feed(loud)
    muted = (await track.recv()).to_ndarray().reshape(-1)
    assert np.all(muted[:BLOCK_FRAMES] == 12000)
    assert not muted[BLOCK_FRAMES:].any()


async def test_unread_frames_are_dropped_oldest_first_and_the_queue_never_grows() -> None:
    track = Microphone(sending=True)
    frames_fed = 3 * QUEUE_FRAMES
    for n in range(frames_fed * 2):
        track.feed(ramp(n * BLOCK_FRAMES))
    assert track.dropped == frames_fed - QUEUE_FRAMES
    received = [await track.recv() for _ in range(QUEUE_FRAMES)]
    assert [f.pts for f in received] == [
        (frames_fed - QUEUE_FRAMES + i) * FRAME_SAMPLES for i in range(QUEUE_FRAMES)
    ]
    # The newest sound, and the gap shows in the pts like lost packets would.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(track.recv(), timeout=0.05)


async def test_recv_waits_for_the_card_and_ends_when_the_track_stops() -> None:
    track = Microphone(sending=True)
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    assert not waiting.done()
    track.feed(ramp(0, FRAME_SAMPLES))
    frame = await asyncio.wait_for(waiting, timeout=5)
    assert frame.pts == 0

    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, timeout=5)
    track.feed(ramp(0, FRAME_SAMPLES))  # fed after stop: ignored
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_stopping_a_track_tells_its_owner() -> None:
    stopped: list[Microphone] = []
    track = Microphone(on_stop=stopped.append)
    track.stop()
    track.stop()
    assert stopped == [track]
