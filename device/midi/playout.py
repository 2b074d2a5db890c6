"""The receiving side's timing: each message plays at its sender's time plus a small, steady delay.

    playout = Playout(delay_ms=settings.midi.playout_ms)
    for timed in wire.decode(data):             # as batches arrive, on the event loop
        playout.receive(timed.t_ms, timed.message)
    ...
    await playout.run(synth.send)                # a task: plays each message when it is due

Packets do not arrive as evenly as they were sent: the network bunches them. Playing each on
arrival would smear the rhythm, so the sender stamps every message with its own monotonic clock
and the receiver maps that clock onto its own. The mapping is the smallest ``arrival - send`` seen
lately: the fastest trip stands for the fixed part of the delay (plus the clocks' difference),
and a packet that took longer than that is only held less. Adding ``delay_ms`` on top gives
slower packets room to arrive before they are due, so everything plays at ``send + offset +
delay``: the sender's spacing exactly, as long as no packet took ``delay_ms`` longer than the
fastest.

The minimum is taken over a sliding window (one to two ``window_ms``), not for ever: two
crystals drift apart by up to ~100 ppm (6 ms a minute), and a route can change (direct to relayed)
mid-session; an all-time minimum would leave every note later and later until all were late.

Order is kept whatever happens: a message never plays before one that was sent before it.

A message later than its due time plays at once; a note-off, a controller or a pitch bend is
never dropped (a lost note-off is a stuck note; a lost controller leaves the synth in the wrong
state). A note-on more than ``late_ms`` late is dropped: after an outage a burst of stale notes
played all at once is a noise nobody played, and a drum hit a beat late misleads the players
more than a missing one. Its note-off still plays, which is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import mido
import structlog

from device.midi.wire import now_ms

log = structlog.get_logger("twm.midi")

DEFAULT_DELAY_MS = 20.0
LATE_NOTE_ON_MS = 150.0
OFFSET_WINDOW_MS = 5_000.0
# Messages held at most: a peer flooding us gets its oldest played early, not our memory.
MAX_PENDING = 2_048


@dataclass(frozen=True)
class Scheduled:
    due_ms: float  # on the receiver's clock
    message: mido.Message


class Playout:
    """Holds received messages until they are due. Call on the event loop only.

    ``clock`` returns the receiver's monotonic time in ms (tests pass a fake one).
    """

    def __init__(
        self,
        delay_ms: float = DEFAULT_DELAY_MS,
        *,
        clock: Callable[[], float] = now_ms,
        late_ms: float = LATE_NOTE_ON_MS,
        window_ms: float = OFFSET_WINDOW_MS,
    ) -> None:
        if delay_ms < 0 or late_ms < 0 or window_ms <= 0:
            raise ValueError("delay_ms and late_ms must be ≥ 0 and window_ms > 0")
        self.delay_ms = delay_ms
        self.late_ms = late_ms
        self._clock = clock
        self._window_ms = window_ms
        self._queue: deque[Scheduled] = deque()
        self._last_due = -math.inf
        self._window_start: float | None = None
        self._window_min = math.inf
        self._previous_min = math.inf
        self._arrived = asyncio.Event()
        self.dropped_late = 0  # note-ons dropped for being too late
        self.played_late = 0  # messages played at once because they came after their time

    # --- the pure part -------------------------------------------------------------------------

    @property
    def offset_ms(self) -> float | None:
        """Receiver time minus sender time of the fastest recent trip; None before any."""
        best = min(self._window_min, self._previous_min)
        return None if math.isinf(best) else best

    @property
    def pending(self) -> int:
        return len(self._queue)

    def receive(self, t_ms: float, message: mido.Message) -> None:
        """A message the sender played at ``t_ms`` (its clock) has arrived now."""
        now = self._clock()
        offset = self._observe(now, now - t_ms)
        on_time = t_ms + offset + self.delay_ms
        lateness = now - on_time
        if lateness > self.late_ms and _is_note_on(message):
            self.dropped_late += 1
            return
        if lateness > 0:
            self.played_late += 1
        due = max(on_time, self._last_due)
        self._last_due = due
        self._queue.append(Scheduled(due, message))
        self._arrived.set()

    def due(self) -> list[mido.Message]:
        """The messages due by now, in order (removed from the queue)."""
        now = self._clock()
        ready: list[mido.Message] = []
        while self._queue and (self._queue[0].due_ms <= now or len(self._queue) > MAX_PENDING):
            ready.append(self._queue.popleft().message)
        return ready

    def next_due_ms(self) -> float | None:
        """When the next message is due (receiver's clock), or None when none waits."""
        return self._queue[0].due_ms if self._queue else None

    def reset(self) -> None:
        """Forget everything: a new link may mean a new peer, with a clock of its own.

        Held messages are dropped; the notes already played are ``SoundingNotes``' to release.
        """
        self._queue.clear()
        self._last_due = -math.inf
        self._window_start = None
        self._window_min = self._previous_min = math.inf

    def _observe(self, now: float, trip_ms: float) -> float:
        if self._window_start is None or now - self._window_start >= self._window_ms:
            start = self._window_start
            recent = start is not None and now - start < 2 * self._window_ms
            self._previous_min = self._window_min if recent else math.inf
            self._window_start = now
            self._window_min = math.inf
        self._window_min = min(self._window_min, trip_ms)
        return min(self._window_min, self._previous_min)

    # --- on the event loop ---------------------------------------------------------------------

    async def run(self, play: Callable[[mido.Message], None]) -> None:
        """Play each message when it is due, until cancelled. ``play`` must not block: a MIDI
        output's ``send`` only queues (``device.midi.ports``)."""
        while True:
            for message in self.due():
                try:
                    play(message)
                except Exception:
                    # One failed message must not stop the music: the next ones still play.
                    log.exception("playing a MIDI message failed", type=message.type)
            self._arrived.clear()
            next_due = self.next_due_ms()
            if next_due is None:
                await self._arrived.wait()
                continue
            wait_s = max(0.0, next_due - self._clock()) / 1000.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=wait_s)


def _is_note_on(message: mido.Message) -> bool:
    return bool(message.type == "note_on" and message.velocity > 0)
