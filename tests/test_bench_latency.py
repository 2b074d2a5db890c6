"""The latency benchmark's harness (bench/latency.py and its parts): the clicks are found to the
sample, the glitch counter counts gaps in the tone and nothing else, the recorder keeps sinks on
one timeline, the UDP proxy loses and delays what it is told to, and the figures come out in the
shape the issue asks for. The benchmark itself measures; these only check its instruments."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame
from av import AudioFrame
from rich.console import Console

from bench.clicks import (
    BLOCK,
    RATE,
    Seam,
    Stimulus,
    across_seams,
    click_template,
    drift,
    dropouts,
    find_clicks,
    joint_zones,
    jump_zones,
    locate,
    lost_step,
    match_clicks,
    phase_jumps,
    schedule_offsets,
    shared_seams,
    summary,
)
from bench.graph import Recording, _Copy, monitor, recording
from bench.latency import (
    Condition,
    Heard,
    Run,
    Window,
    cpu_seconds,
    figures,
    table,
)
from bench.udp_proxy import Faults, UdpProxy
from tests.pipewire import PipeWire, pipewire_fixture  # noqa: F401  (provides ``pipewire``)
from tests.waiting import until

SECONDS = 10


def played_clicks(stimulus: Stimulus, length: int) -> np.ndarray:
    """The clicks the stimulus put whole into its first ``length`` samples."""
    size = len(click_template())
    return np.asarray([c for c in stimulus.clicks if c + size <= length], dtype=np.int64)


def delayed(signal: np.ndarray, delay: int, gain: float, noise: float = 1e-3) -> np.ndarray:
    """``signal`` heard ``delay`` samples later, quieter, over a little noise."""
    out = np.zeros(len(signal) + delay)
    out[delay:] = gain * signal
    return out + noise * np.random.default_rng(5).standard_normal(len(out))


# --- clicks ---------------------------------------------------------------------------------


def test_a_delayed_copy_of_the_clicks_is_found_to_the_sample() -> None:
    stimulus = Stimulus(seed=11)
    signal = stimulus.next(SECONDS * RATE)
    played = find_clicks(signal)
    assert np.array_equal(played, played_clicks(stimulus, len(signal)))
    heard = find_clicks(delayed(signal, 7_777, gain=0.2))
    matched = match_clicks(played, heard)
    assert set(matched.delay.tolist()) == {7_777}
    assert len(matched.delay) == len(played) and matched.missing == 0


def test_a_delay_longer_than_the_gap_between_clicks_is_not_taken_for_a_shorter_one() -> None:
    # 450 ms: a neighbouring click is always nearer than the true copy's distance, so only the
    # irregular gaps can tell which heard click is which.
    stimulus = Stimulus(seed=12)
    signal = stimulus.next(SECONDS * RATE)
    matched = match_clicks(find_clicks(signal), find_clicks(delayed(signal, 21_600, gain=0.5)))
    assert set(matched.delay.tolist()) == {21_600}


def test_each_click_keeps_its_own_delay_when_the_delay_wanders() -> None:
    """Jitter: every click arrives with its own delay (20 ms ± 10 ms), each found exactly."""
    stimulus = Stimulus(seed=13)
    signal = stimulus.next(SECONDS * RATE)
    played = played_clicks(stimulus, len(signal))
    rng = np.random.default_rng(1)
    delays = rng.integers(480, 1441, size=len(played))
    out = 0.05 * np.sin(2 * np.pi * 500 * np.arange(len(signal) + 2000) / RATE)
    template = 0.3 * click_template()
    for at, delay in zip(played, delays, strict=True):
        out[at + delay : at + delay + len(template)] += template
    matched = match_clicks(find_clicks(signal), find_clicks(out))
    assert matched.missing == 0
    assert np.array_equal(matched.delay, delays)


def test_clicks_come_through_stock_opus_at_one_delay() -> None:
    """Through aiortc's own Opus encoder and decoder (20 ms, voip, 96 kbit/s): every click is
    found, each at the codec's one fixed delay."""
    stimulus = Stimulus(seed=14)
    signal = stimulus.next_int16(5 * RATE)
    encoder, decoder = OpusEncoder(), OpusDecoder()
    decoded: list[np.ndarray] = []
    for start in range(0, len(signal), 960):
        frame = AudioFrame.from_ndarray(
            signal[start : start + 960].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        frame.pts = start
        payloads, timestamp = encoder.encode(frame)
        for payload in payloads:
            for out in decoder.decode(JitterFrame(payload, timestamp)):
                decoded.append(out.to_ndarray().reshape(-1, 2)[:, 0])
    heard = np.concatenate(decoded)
    played = find_clicks(signal)
    matched = match_clicks(played, find_clicks(heard))
    assert len(matched.delay) >= len(played) - 1  # the last may still be in the codec
    assert np.ptp(matched.delay) <= 1
    assert 0 <= matched.delay[0] < 960


def test_a_click_that_never_came_counts_as_missing() -> None:
    stimulus = Stimulus(seed=15)
    signal = stimulus.next(SECONDS * RATE)
    played = find_clicks(signal)
    heard = find_clicks(delayed(signal, 3_000, gain=0.3))
    gone = heard[[5, 6, 20]]
    matched = match_clicks(played, np.setdiff1d(heard, gone))
    assert matched.missing == 3
    assert set(matched.delay.tolist()) == {3_000}
    assert not set((gone - 3_000).tolist()) & set(matched.played.tolist())


def test_the_tone_alone_and_silence_hold_no_clicks() -> None:
    tone = Stimulus(seed=16)
    tone.clicks = [10 * RATE]  # scheduled after the end: the tone only
    assert len(find_clicks(tone.next(5 * RATE))) == 0
    assert len(find_clicks(np.zeros(RATE))) == 0


# --- glitches -------------------------------------------------------------------------------


def test_each_gap_in_the_tone_counts_once_and_the_clicks_are_no_gap() -> None:
    signal = Stimulus(seed=17).next(3 * RATE)
    assert dropouts(signal).events == 0
    broken = signal.copy()
    broken[10 * BLOCK : 13 * BLOCK] = 0  # 30 ms of nothing: one glitch of three blocks
    broken[50 * BLOCK : 51 * BLOCK] = 0  # 10 ms: another
    gaps = dropouts(broken)
    assert (gaps.events, gaps.blocks, gaps.starts) == (2, 4, [10, 50])
    assert gaps.milliseconds == 40


def test_a_quieter_tone_is_not_a_glitch_but_a_vanished_one_is() -> None:
    signal = Stimulus(seed=18).next(2 * RATE)
    quieter = signal * 0.7  # -3 dB: still there
    assert dropouts(quieter, level=0.1).events == 0
    faint = signal.copy()
    faint[20 * BLOCK : 22 * BLOCK] *= 0.1  # -20 dB for 20 ms: gone, as far as a listener knows
    assert dropouts(faint).blocks == 2


def test_a_gap_at_a_seam_of_the_recording_is_not_counted() -> None:
    signal = Stimulus(seed=19).next(2 * RATE)
    signal[30 * BLOCK : 32 * BLOCK] = 0
    assert dropouts(signal).events == 1
    assert dropouts(signal, ignore=[31]).events == 0
    assert dropouts(signal, ignore=[80]).events == 1


# --- keeping step with the stimulus ---------------------------------------------------------


def _lose(signal: np.ndarray, at: int, count: int) -> np.ndarray:
    return np.delete(signal, np.s_[at : at + count])


def _seams_of(stimuli: list[Stimulus], rooms: list[np.ndarray]) -> list[Seam]:
    """What analyse() does with two rooms' channels."""
    steps = []
    for stimulus, room in zip(stimuli, rooms, strict=True):
        found = find_clicks(room)
        steps.append(lost_step(found, schedule_offsets(stimulus.clicks, found)))
    return locate(shared_seams(*steps), joint_zones(*(jump_zones(room) for room in rooms)))


def test_a_graph_cycle_the_recorder_missed_is_found_and_put_back() -> None:
    """256 samples gone from every channel while a click was on its way to the speaker: the
    rooms show where and how many, and the click's delay comes out whole."""
    first, second = Stimulus(seed=20), Stimulus(seed=23)
    signal = first.next(SECONDS * RATE)
    other = second.next(SECONDS * RATE)
    loss_at, lost = first.clicks[16] + 1_000, 256
    room = _lose(signal, loss_at, lost)
    found = find_clicks(room)
    offsets = schedule_offsets(first.clicks, found)
    assert offsets[0] == 0 and offsets[-1] == lost
    step = lost_step(found, offsets)
    assert len(step) == 1  # between the two clicks either side of the loss, no wider
    assert step[0].start < loss_at < step[0].end and step[0].lost == lost
    seams = _seams_of([first, second], [room, _lose(other, loss_at, lost)])
    assert len(seams) == 1 and seams[0].lost == lost
    assert seams[0].start <= loss_at < seams[0].end
    assert seams[0].end - seams[0].start <= 3 * BLOCK
    speaker = _lose(delayed(signal, 2_400, gain=0.3), loss_at, lost)
    matched = match_clicks(found, find_clicks(speaker))
    assert set(matched.delay.tolist()) == {2_400, 2_400 - lost}  # one seems early…
    kept, left_out = across_seams(matched, seams)
    assert set(kept.delay.tolist()) == {2_400} and left_out == 0  # …and is put right


def test_a_seam_that_cannot_be_placed_leaves_its_clicks_out() -> None:
    """Three graph cycles (768 samples, whole cycles of the tone) leave no jump in its phase:
    the click across them cannot be put right, so it is left out, and only it."""
    first, second = Stimulus(seed=24), Stimulus(seed=25)
    signal, other = first.next(SECONDS * RATE), second.next(SECONDS * RATE)
    loss_at, lost = first.clicks[10] + 1_000, 768
    room = _lose(signal, loss_at, lost)
    assert len(phase_jumps(room)) == 0
    seams = _seams_of([first, second], [room, _lose(other, loss_at, lost)])
    assert seams and all(seam.lost is None for seam in seams)
    speaker = _lose(delayed(signal, 2_400, gain=0.3), loss_at, lost)
    matched = match_clicks(find_clicks(room), find_clicks(speaker))
    kept, left_out = across_seams(matched, seams)
    assert set(kept.delay.tolist()) == {2_400} and left_out == 1


def test_a_player_that_ran_dry_is_no_seam() -> None:
    """Samples skipped in one room only (its player ran dry): what the room's channel holds is
    what was played, so nothing is lost from the measurement."""
    first, second = Stimulus(seed=26), Stimulus(seed=27)
    room = _lose(first.next(SECONDS * RATE), first.clicks[12] + 500, 300)
    assert _seams_of([first, second], [room, second.next(SECONDS * RATE)]) == []


def test_a_recording_in_step_has_no_seams() -> None:
    stimulus = Stimulus(seed=21)
    signal = stimulus.next(SECONDS * RATE)
    found = find_clicks(signal[RATE:])  # begun a second late: the offset is steady, not zero
    offsets = schedule_offsets(stimulus.clicks, found)
    assert set(offsets) == {RATE}
    assert lost_step(found, offsets) == []
    assert len(phase_jumps(signal)) == 0


# --- figures --------------------------------------------------------------------------------


def test_drift_is_the_slope_and_the_first_and_last_minutes() -> None:
    seconds = np.arange(0, 600, 0.25)
    latency = 10 + 0.5 * seconds / 60  # creeping up half a millisecond a minute
    found = drift(seconds.tolist(), latency.tolist())
    assert found is not None
    assert found.slope_ms_per_min == pytest.approx(0.5, abs=1e-6)
    assert found.first_minute_ms == pytest.approx(10.25, abs=0.01)
    assert found.last_minute_ms == pytest.approx(14.75, abs=0.01)
    flat = drift(seconds.tolist(), [12.0] * len(seconds))
    assert flat is not None and flat.slope_ms_per_min == pytest.approx(0, abs=1e-9)


def test_summary_is_median_p95_and_max() -> None:
    assert summary(list(range(1, 101))) == {"median": 50.5, "p95": 95.05, "max": 100}
    assert summary([]) is None


def _heard(latency: list[float]) -> Heard:
    return Heard(
        latency=latency,
        seconds=[0.25 * k for k in range(len(latency))],
        played=len(latency) + 1,
        missing=1,
        excluded=0,
        gaps=dropouts(np.zeros(0)),
    )


def test_the_json_holds_the_figures_the_issue_asks_for(tmp_path: Path) -> None:
    window = Window(
        path_frames=(0, 60 * RATE),
        ear=Recording(path=tmp_path / "unused.raw", channels=5),  # figures() reads only Heard
        seconds=60.0,
        cpu={"care_home": 4.0, "school": 5.0},
        cpu_split={
            "care_home": {"event_loop": 3.0, "other_threads": 1.0},
            "school": {"event_loop": 3.5, "other_threads": 1.5},
        },
        route={"care_home": "direct", "school": "direct"},
        stimuli={},
        proxy={},
    )
    run = Run(
        condition=Condition("clean", "loopback", None, 60.0),
        window=window,
        heard={
            "care_home_to_school": _heard([40.0, 42.0, 44.0]),
            "school_to_care_home": _heard([41.0, 43.0]),
        },
        seams=0,
    )
    clean = figures(run, rig_ms=30.0)
    results = {
        "rig_ms": 30.0,
        "rig": {"rig_ms": 30.0, "openings": [], "min_ms": 29.0, "max_ms": 31.0},
        "conditions": {"clean": {"stock": clean, "tuned": {"error": "the music path failed"}}},
    }
    parsed = json.loads(json.dumps(results))
    stock = parsed["conditions"]["clean"]["stock"]
    assert stock["added_ms"] == {"median": 12.0, "p95": 13.8, "max": 14.0}
    assert stock["glitches"] == 0 and stock["cpu_pct"] == {"care_home": 4.0, "school": 5.0}
    assert stock["directions"]["school_to_care_home"]["added_ms"]["median"] == 12.0
    assert stock["directions"]["care_home_to_school"]["clicks_missing"] == 1
    printed = io.StringIO()
    Console(file=printed, width=200).print(table(parsed))
    assert "home → school" in printed.getvalue() and "the music path failed" in printed.getvalue()


def test_cpu_seconds_grow_with_work() -> None:
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert cpu_seconds(os.getpid()) > before


# --- the rig's copy -------------------------------------------------------------------------


def test_the_rig_copy_sheds_blocks_that_piled_up_while_it_started() -> None:
    copy = _Copy()
    out = np.zeros(BLOCK, dtype=np.float32)
    blocks = iter(range(10_000))

    def feed() -> None:
        copy.on_input(np.full(BLOCK, next(blocks), dtype=np.int16))

    for _ in range(5):  # the microphone started first: five blocks wait
        feed()
    behind = []
    for _ in range(120):  # then one in, one out, for 1.2 s
        feed()
        copy.on_output(out)
        behind.append(len(copy._blocks))
    assert behind[0] == 5
    assert behind[-1] == 0  # at the speaker's call, the newest block is the one it plays
    assert copy.trimmed == 5 and copy.underruns == 0


# --- the recorder ---------------------------------------------------------------------------


def test_the_recorder_keeps_different_sinks_on_one_timeline(
    pipewire: PipeWire, tmp_path: Path
) -> None:
    """One player's samples into two rooms at once (its port linked to both): the click is at
    the same sample in both rooms' channels, whichever of them the player was linked to first
    (a null sink that drives the graph would hand its monitor the previous cycle)."""
    signal = Stimulus(seed=22).next_int16(2 * RATE)
    node = f"bench_twin_{random.randrange(1 << 30)}"
    with pipewire.box("bench_twin_a") as first, pipewire.box("bench_twin_b") as second:
        player = subprocess.Popen(
            [
                "pacat",
                "--playback",
                f"--device={first.room}",
                "--raw",
                "--format=s16le",
                f"--rate={RATE}",
                "--channels=1",
                f"--property=node.name={node}",
            ],
            stdin=subprocess.PIPE,
            env=pipewire.env,
        )
        try:
            ports = [monitor(first.room), monitor(second.room)]
            with recording(pipewire, ports, tmp_path / "twin.raw") as ear:
                port = f"{node}:output_MONO"
                _poll(lambda: port in _outputs(pipewire), "the player's port")
                subprocess.run(
                    ["pw-link", port, f"{second.room}:playback_MONO"],
                    env=pipewire.env,
                    check=True,
                )
                player.communicate(signal.tobytes(), timeout=30)
                clicks = len(find_clicks(signal))
                _poll(
                    lambda: len(find_clicks(ear.channel(1, 0, ear.frames))) >= clicks,
                    "every click in the second room",
                )
                frames = ear.frames
                a, b = ear.channel(0, 0, frames), ear.channel(1, 0, frames)
        finally:
            player.kill()
            player.wait()
    clicks_a, clicks_b = find_clicks(a), find_clicks(b)
    assert len(clicks_a) == clicks
    assert np.array_equal(clicks_a, clicks_b)


def _poll(check: Callable[[], object], what: str, seconds: float = 15.0) -> None:
    """Wait for ``check`` (a bound, never a measurement)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:g} s for {what}")
        time.sleep(0.05)


def _outputs(pipewire: PipeWire) -> set[str]:
    listed = subprocess.run(
        ["pw-link", "-o"], env=pipewire.env, capture_output=True, text=True, check=True
    )
    return set(listed.stdout.split())


# --- the UDP proxy --------------------------------------------------------------------------


class _Echo(asyncio.DatagramProtocol):
    """The upstream: sends every datagram back, and notes who it came from."""

    def __init__(self) -> None:
        self.senders: set[tuple[str, int]] = set()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # In 3.11 the selector loop's datagram transport is not a DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.senders.add(addr)
        assert self.transport is not None
        self.transport.sendto(data, addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[int] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(int.from_bytes(data[:4], "big"))


async def _echo() -> tuple[asyncio.DatagramTransport, _Echo, int]:
    loop = asyncio.get_running_loop()
    echo = _Echo()
    transport, _ = await loop.create_datagram_endpoint(lambda: echo, local_addr=("127.0.0.1", 0))
    return transport, echo, transport.get_extra_info("sockname")[1]


async def _client(port: int) -> tuple[asyncio.DatagramTransport, _Client]:
    loop = asyncio.get_running_loop()
    client = _Client()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: client, remote_addr=("127.0.0.1", port)
    )
    return transport, client


async def test_the_proxy_drops_the_share_it_is_told_and_passes_every_answer_back() -> None:
    upstream, _, echo_port = await _echo()
    proxy = UdpProxy(("127.0.0.1", echo_port), Faults(loss=0.02), rng=random.Random(3))
    port = await proxy.start()
    sender, client = await _client(port)
    try:
        for number in range(2000):
            sender.sendto(number.to_bytes(4, "big") + bytes(60))
            # Paced, as media is: the loop reads one datagram per turn, and a socket's buffer
            # holds a few hundred; a burst of thousands would be lost in the kernel instead.
            await asyncio.sleep(0)
        await until(
            lambda: (
                proxy.stats.upstream == 2000 and len(client.received) == 2000 - proxy.stats.dropped
            ),
            "every datagram through, but the dropped",
        )
        assert 20 <= proxy.stats.dropped <= 60  # 2% of 2000 is 40; a seeded draw near it
        assert proxy.stats.downstream == len(client.received)  # answers are never dropped
        assert len(set(client.received)) == len(client.received)
    finally:
        sender.close()
        proxy.close()
        upstream.close()


async def test_jitter_delays_each_datagram_within_its_bounds_and_lets_them_overtake() -> None:
    upstream, _, echo_port = await _echo()
    proxy = UdpProxy(
        ("127.0.0.1", echo_port),
        Faults(delay=0.010, jitter=0.010),
        rng=random.Random(4),
        keep_delays=True,
    )
    port = await proxy.start()
    sender, client = await _client(port)
    try:
        for number in range(300):
            sender.sendto(number.to_bytes(4, "big"))
            await asyncio.sleep(0)
        await until(lambda: len(client.received) == 300, "all 300 back")
        delays = proxy.stats.delays
        assert len(delays) == 300
        assert min(delays) >= 0 and max(delays) <= 0.020
        assert sum(delays) / len(delays) == pytest.approx(0.010, abs=0.0015)
        assert client.received != sorted(client.received)  # some overtook others
        assert sorted(client.received) == list(range(300))
        assert proxy.stats.dropped == 0
    finally:
        sender.close()
        proxy.close()
        upstream.close()


async def test_each_client_gets_its_own_socket_towards_the_upstream() -> None:
    upstream, echo, echo_port = await _echo()
    proxy = UdpProxy(("127.0.0.1", echo_port))
    port = await proxy.start()
    (one, first), (two, second) = await _client(port), await _client(port)
    try:
        one.sendto((1).to_bytes(4, "big"))
        two.sendto((2).to_bytes(4, "big"))
        await until(lambda: first.received and second.received, "both answered")
        assert (first.received, second.received) == ([1], [2])
        assert len(echo.senders) == 2 and proxy.stats.clients == 2
    finally:
        one.close()
        two.close()
        proxy.close()
        upstream.close()


def test_faults_refuse_impossible_settings() -> None:
    with pytest.raises(ValueError, match="loss"):
        Faults(loss=1.5)
    with pytest.raises(ValueError, match="negative"):
        Faults(jitter=-0.01)
