"""Receive-side timing, on a clock the test moves: the sender's rhythm survives bunched packets,
order is kept, and a note-off is never dropped."""

from __future__ import annotations

import asyncio
import itertools
import math

import mido
import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.midi.playout import MAX_PENDING, Playout
from device.midi.wire import now_ms

DELAY = 20.0
BASE_TRIP = 37.0  # the fastest trip, plus whatever lies between the two monotonic clocks
SENDER_START = 5_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def on(note: int, velocity: int = 100) -> mido.Message:
    return mido.Message("note_on", note=note, velocity=velocity)


def off(note: int) -> mido.Message:
    return mido.Message("note_off", note=note)


def simulate(
    playout: Playout, clock: FakeClock, arrivals: list[tuple[float, float, mido.Message]]
) -> list[tuple[float, mido.Message]]:
    """Deliver ``(arrival, sent, message)`` (arrival on the receiver's clock) and return
    ``(time played, message)``, moving the clock from one arrival or due time to the next."""
    pending = sorted(arrivals, key=lambda a: a[0])
    played: list[tuple[float, mido.Message]] = []
    while pending or playout.pending:
        next_due = playout.next_due_ms()
        clock.now = min(
            pending[0][0] if pending else math.inf, math.inf if next_due is None else next_due
        )
        while pending and pending[0][0] <= clock.now:
            _, sent, message = pending.pop(0)
            playout.receive(sent, message)
        played.extend((clock.now, message) for message in playout.due())
    return played


def test_packets_arriving_in_bunches_play_with_the_spacing_they_were_played_with() -> None:
    clock = FakeClock()
    playout = Playout(DELAY, clock=clock)
    sent = [SENDER_START + 10.0 * i for i in range(13)]  # a drum roll: a hit every 10 ms
    # The first comes on the fastest trip; then the network holds the packets and lets them go
    # three at a time, with the last of each three (so each is held up to 20 ms, the delay).
    arrivals = [(sent[0] - SENDER_START + BASE_TRIP, sent[0], on(0))]
    for group in range(1, 13, 3):
        burst = sent[group + 2] - SENDER_START + BASE_TRIP
        arrivals += [(burst, sent[i], on(i)) for i in range(group, group + 3)]
    played = simulate(playout, clock, arrivals)
    times = [t for t, _ in played]
    assert [m.note for _, m in played] == list(range(13))
    assert [b - a for a, b in itertools.pairwise(times)] == [10.0] * 12
    assert times[0] == BASE_TRIP + DELAY
    assert playout.played_late == 0 and playout.dropped_late == 0


@given(
    gaps=st.lists(st.integers(1, 300), min_size=1, max_size=40),
    extras=st.lists(st.integers(0, int(DELAY)), min_size=41, max_size=41),
)
def test_any_delay_variation_within_the_playout_delay_keeps_the_rhythm_exactly(
    gaps: list[int], extras: list[int]
) -> None:
    clock = FakeClock()
    playout = Playout(DELAY, clock=clock)
    sent = [SENDER_START]
    for gap in gaps:
        sent.append(sent[-1] + gap)
    arrivals: list[tuple[float, float, mido.Message]] = []
    last_arrival = 0.0
    for i, t in enumerate(sent):
        extra = 0 if i == 0 else extras[i]  # the first takes the fastest trip
        # The data channel is ordered: nothing overtakes what was sent before it.
        last_arrival = max(last_arrival, t - SENDER_START + BASE_TRIP + extra)
        arrivals.append((last_arrival, t, on(i % 128) if i % 2 == 0 else off((i - 1) % 128)))
    played = simulate(playout, clock, arrivals)
    assert [m for _, m in played] == [m for _, _, m in arrivals]
    # Each plays exactly the fastest trip plus the playout delay after it was played.
    assert {
        round(p - (s - SENDER_START), 6) for (p, _), (_, s, _) in zip(played, arrivals, strict=True)
    } == {BASE_TRIP + DELAY}


def test_after_an_outage_late_notes_are_dropped_but_every_note_off_and_controller_plays() -> None:
    clock = FakeClock()
    playout = Playout(DELAY, clock=clock, late_ms=100)
    arrivals = [
        (BASE_TRIP, SENDER_START, on(60)),
        # The link stalls for half a second; what was played meanwhile comes all at once.
        (BASE_TRIP + 600, SENDER_START + 100, off(60)),
        (BASE_TRIP + 600, SENDER_START + 200, on(62)),
        (BASE_TRIP + 600, SENDER_START + 250, mido.Message("control_change", control=64, value=0)),
        (BASE_TRIP + 600, SENDER_START + 300, off(62)),
        # Only a little late: played at once rather than dropped.
        (BASE_TRIP + 600, SENDER_START + 560, on(64)),
    ]
    played = simulate(playout, clock, arrivals)
    assert [m for _, m in played] == [
        on(60),
        off(60),
        mido.Message("control_change", control=64, value=0),
        off(62),
        on(64),
    ]
    assert playout.dropped_late == 1
    assert playout.played_late == 4
    # Those that came late all play the moment they arrive, still in order.
    assert {t for t, _ in played[1:]} == {BASE_TRIP + 600}


@given(
    st.lists(
        # Gaps below zero: a peer whose stamps are not in order (a page merging two
        # instruments' own timestamps); the order they arrived in is the order they play in.
        st.tuples(st.integers(-20, 50), st.integers(0, 400), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_whatever_the_network_does_order_is_kept_and_no_note_off_is_lost(
    steps: list[tuple[int, int, bool]],
) -> None:
    clock = FakeClock()
    playout = Playout(DELAY, clock=clock, late_ms=100)
    arrivals: list[tuple[float, float, mido.Message]] = []
    t, last_arrival = SENDER_START, 0.0
    for i, (gap, extra, note_on) in enumerate(steps):
        t += gap
        last_arrival = max(last_arrival, t - SENDER_START + BASE_TRIP + extra)
        message = on(i % 128) if note_on else off(i % 128)
        arrivals.append((last_arrival, t, message))
    played = [m for _, m in simulate(playout, clock, arrivals)]
    sent = [m for _, _, m in arrivals]
    # Played is the sent sequence with some note-ons left out, nothing reordered.
    remaining = iter(sent)
    assert all(any(m is candidate for candidate in remaining) for m in played)
    assert [m for m in sent if m.type == "note_off"] == [m for m in played if m.type == "note_off"]
    assert len(sent) - len(played) == playout.dropped_late


def test_a_slower_route_is_followed_within_two_windows_instead_of_making_every_note_late() -> None:
    clock = FakeClock()
    playout = Playout(DELAY, clock=clock, window_ms=1_000)
    arrivals: list[tuple[float, float, mido.Message]] = []
    for i in range(100):  # a note every 50 ms for 5 s; after 1 s the trip grows by 40 ms
        t = SENDER_START + 50 * i
        trip = BASE_TRIP + (40 if i >= 20 else 0)
        arrivals.append((t - SENDER_START + trip, t, on(i)))
    played = simulate(playout, clock, arrivals)
    assert len(played) == 100
    assert playout.offset_ms == BASE_TRIP + 40 - SENDER_START
    # Once the old minimum has left the window, notes are on time again, 50 ms apart.
    late_times = [p for p, _ in played[60:]]
    assert [b - a for a, b in itertools.pairwise(late_times)] == [50.0] * 39
    assert played[-1][0] == arrivals[-1][0] + DELAY


def test_a_flood_of_notes_is_held_only_up_to_the_bound() -> None:
    clock = FakeClock()
    playout = Playout(DELAY, clock=clock)
    flood = [on(i % 128) for i in range(MAX_PENDING + 10)]
    for message in flood:
        playout.receive(SENDER_START, message)
    # None is due yet, but the oldest ten go now rather than growing the queue.
    assert playout.due() == flood[:10]
    assert playout.pending == MAX_PENDING


def test_a_reset_forgets_the_held_notes_and_the_old_clock() -> None:
    clock = FakeClock()
    playout = Playout(DELAY, clock=clock)
    playout.receive(SENDER_START, on(60))
    assert playout.pending == 1 and playout.offset_ms == -SENDER_START
    playout.reset()
    assert playout.pending == 0 and playout.offset_ms is None
    clock.now = 10.0
    playout.receive(100.0, on(61))  # a new peer, a new clock
    assert playout.offset_ms == -90.0 and playout.next_due_ms() == 10.0 + DELAY


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="delay_ms"):
        Playout(-1.0)


async def test_run_plays_everything_in_order_on_the_event_loop() -> None:
    playout = Playout(delay_ms=2.0)  # the real monotonic clock: only the order is asserted
    played: list[mido.Message] = []
    done = asyncio.Event()

    def play(message: mido.Message) -> None:
        if message.type == "program_change":
            raise RuntimeError("a synth that fails on one message")
        played.append(message)
        if len(played) == 40:
            done.set()

    task = asyncio.create_task(playout.run(play))
    try:
        start = now_ms()
        for i in range(20):
            playout.receive(start + i, on(i))
            if i == 7:  # one message the synth fails on: the rest still play
                playout.receive(start + i, mido.Message("program_change", program=i))
            playout.receive(start + i + 0.5, off(i))
            await asyncio.sleep(0)
        await asyncio.wait_for(done.wait(), timeout=10)  # a failsafe, not a measurement
    finally:
        task.cancel()
    assert played == [m for i in range(20) for m in (on(i), off(i))]
