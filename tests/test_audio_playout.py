"""The playout buffer: starts at its target fill, pads an underrun with silence, never holds more
than its maximum, and sheds a slow build-up from clock drift."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from device.audio.format import BLOCK_FRAMES, ms_to_samples
from device.audio.playout import PlayoutBuffer

TARGET = ms_to_samples(40)
MAXIMUM = ms_to_samples(150)


def counting(start: int, count: int) -> np.ndarray:
    return (np.arange(start, start + count) % 30000 + 1).astype(np.int16)  # never 0


def test_defaults_are_40ms_target_and_150ms_maximum() -> None:
    buffer = PlayoutBuffer()
    assert (buffer.target, buffer.maximum) == (1920, 7200)
    with pytest.raises(ValueError):
        PlayoutBuffer(target=100, maximum=100)


def test_plays_nothing_until_the_target_fill_then_everything_in_order() -> None:
    buffer = PlayoutBuffer()
    buffer.push(counting(0, TARGET - 1))
    assert not buffer.pull().any()
    assert buffer.fill == TARGET - 1  # priming is waiting, not losing
    buffer.push(counting(TARGET - 1, 1))
    played = np.concatenate([buffer.pull() for _ in range(TARGET // BLOCK_FRAMES)])
    assert np.array_equal(played, counting(0, TARGET))
    assert buffer.stats().underruns == 0


def test_an_underrun_plays_what_is_left_then_silence_and_primes_again() -> None:
    buffer = PlayoutBuffer()
    buffer.push(counting(0, TARGET + 100))
    for _ in range(TARGET // BLOCK_FRAMES):
        buffer.pull()
    short = buffer.pull()
    assert np.array_equal(short[:100], counting(TARGET, 100))
    assert not short[100:].any()
    assert buffer.stats().underruns == 1
    buffer.push(counting(0, BLOCK_FRAMES))  # one block back is not enough to start again
    assert not buffer.pull().any()
    assert buffer.stats().underruns == 1  # waiting for the target is not another underrun


def test_a_burst_past_the_maximum_drops_the_oldest_down_to_the_target() -> None:
    buffer = PlayoutBuffer()
    total = 13 * 960  # past the maximum of 7.5 packets
    for start in range(0, total, 960):
        buffer.push(counting(start, 960))
        assert buffer.fill <= MAXIMUM
    stats = buffer.stats()
    assert stats.dropped > 0
    assert stats.fill + stats.dropped == total
    newest = buffer.pull()
    assert np.array_equal(newest, counting(total - stats.fill, BLOCK_FRAMES))


def test_one_push_bigger_than_the_buffer_keeps_only_its_newest_target() -> None:
    buffer = PlayoutBuffer()
    buffer.push(counting(0, 3 * MAXIMUM))
    assert buffer.fill == TARGET
    assert np.array_equal(buffer.pull(), counting(3 * MAXIMUM - TARGET, BLOCK_FRAMES))


def test_a_fill_that_stays_above_target_for_a_second_is_trimmed_back() -> None:
    buffer = PlayoutBuffer(drift_window=100)
    excess = ms_to_samples(30)
    buffer.push(counting(0, TARGET + excess))
    pushed = TARGET + excess
    lowest: list[int] = []
    for _ in range(200):  # two seconds: the sender's clock keeps pace, so the fill stays high
        buffer.pull()
        lowest.append(buffer.fill)  # the low point, just before the next packet arrives
        buffer.push(counting(pushed, BLOCK_FRAMES))
        pushed += BLOCK_FRAMES
    assert min(lowest[:99]) == TARGET + excess - BLOCK_FRAMES
    assert min(lowest[100:]) == TARGET  # trimmed once, at the end of the first second
    assert buffer.stats().dropped == excess - BLOCK_FRAMES
    assert buffer.stats().underruns == 0


def test_a_fill_near_the_target_is_left_alone() -> None:
    buffer = PlayoutBuffer(drift_window=100)
    buffer.push(counting(0, TARGET + ms_to_samples(5)))
    for _ in range(300):
        buffer.pull()
        buffer.push(counting(0, BLOCK_FRAMES))
    assert buffer.stats().dropped == 0


def test_clear_forgets_the_waiting_audio() -> None:
    buffer = PlayoutBuffer()
    buffer.push(counting(0, TARGET * 2))
    buffer.clear()
    assert buffer.fill == 0
    assert not buffer.pull().any()


def test_a_producer_and_a_consumer_thread_lose_nothing_unaccounted() -> None:
    buffer = PlayoutBuffer()
    chunks = 2000
    audible = 0  # counted as it plays: keeping every block would grow without bound on a slow CI
    done = threading.Event()

    def produce() -> None:
        for n in range(chunks):
            buffer.push(counting(n * 960, 960))
        done.set()

    def consume() -> None:
        nonlocal audible
        while not done.is_set() or buffer.fill >= BLOCK_FRAMES:
            audible += int(np.count_nonzero(buffer.pull()))
            time.sleep(0)  # let the producer run, as a real speaker callback would

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stats = buffer.stats()
    assert audible + stats.dropped + stats.fill == chunks * 960
    assert stats.fill <= MAXIMUM
