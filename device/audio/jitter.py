"""The music profile's jitter buffer: RTP packets in, the speaker's samples out, with as little
delay as the network's measured jitter allows.

    jitter = JitterBuffer(OpusCodec)
    jitter.put(sequence, timestamp, payload, time.monotonic())   # on the event loop, per packet
    block = jitter.pull(480)                                      # on the card's output thread
    jitter.stats()                                                # target_ms, fill_ms, late, ...

Everything is measured in time (RTP timestamps at 48 kHz, unwrapped past 32 bits), never in
packets: a sender may pack 10 ms (the box) or 20 ms (Chromium) and both are handled alike.

The card's output callback is the playout clock. Packets wait undecoded; ``pull`` decodes them in
timestamp order as the playout point reaches them, so a packet is *late* exactly when the point
has passed it (it is dropped and counted). At the playout point:

- the next packet is there: decode it;
- it is missing but a later one is there: it is lost. Its frame is rebuilt from the later
  packet's in-band FEC (``decode_fec``; libopus conceals when there is none) and any longer gap
  is concealed (PLC); the point moves on;
- nothing at all is there: conceal without moving the point, so the delay grows by what the
  network took and the late packet still plays when it comes. If instead the next packet to
  come is a later one (the awaited one was lost), the concealment already played stands in for
  the lost audio and the delay does not grow. After ``DRY_CONCEAL_FRAMES`` the concealment
  fades to silence and the buffer primes again.

Priming (at first, and after fading out) waits until the oldest packet has ``target`` of
headroom (below), and starts at the newest packet that has: older ones (a burst after a stall)
are dropped, so playing resumes at the target delay, not at the stall's.

With the headroom at its lowest a lost packet's turn comes before the packet after it has
arrived, so a loss is carried by concealment; ``decode_fec`` is used when that next packet is
already there (more jitter allowance, or 20 ms packets), which is where in-band FEC can help.

Time is the playout clock's: the samples the card has pulled (between two pulls, interpolated
by the system clock, at most one block on). Arrivals are read on it, so the sender's card, our
card and the network are compared in the only terms that matter here, and our card's rate
against the system clock does not count (a virtual card under load runs several per cent
slow). The sender's card against ours is drift, fitted out of the jitter (``_Jitter``) and
followed by the corrections below. If the card stops pulling for ``CLOCK_STALL_SECONDS`` the
measurements start afresh.

The target. A packet's *transit* is its arrival on that clock minus its timestamp; the fastest
transit over the last ``JITTER_WINDOW_SECONDS`` (along the fitted drift) is the network's best,
and how much later than that a packet comes is its *deviation*. The jitter allowance is the
``JITTER_QUANTILE`` quantile of the deviations in that window, and ``target = frame + allowance
+ MARGIN_MS`` (capped at ``TARGET_MAX_MS``): on a clean network it shrinks to one frame and a
millisecond, and it grows only as far as measured jitter needs. Packets that arrive together
count once (see ``_Jitter``).

The fill that is regulated is the *headroom*: ``frame + clock - fastest transit - playout
point``, in samples, i.e. the fill the buffer would have at this pull if every packet came by
the fastest path. A packet of deviation ``d`` plays in time exactly while the headroom is at
least ``frame + d``, so headroom is compared with the target directly, and unlike the actual
fill it does not swing with each packet's luck. Each ``CORRECTION_SECONDS`` of playing the
lowest headroom seen is judged against the target:

- a whole packet or more above it: the excess (in whole packets) is skipped, crossfaded over
  one frame (after a stall this gives back the delay it added; it also follows a sender's sound
  card running faster than ours, a packet at a time);
- below it: one frame is played twice, crossfaded (the target grew, or our card runs faster
  than the sender's).

Skipping whole packets keeps the playout point on the packets' grid, so the headroom keeps
meaning what it says. The pull's phase against the packets' arrivals is whatever it is, so the
headroom settles somewhere in ``[target, target + packet)``: on a clean network with 10 ms
packets, between one and two frames.

The actual fill never passes ``MAXIMUM_MS``: a burst that would overfill the buffer drops the
oldest packets down to the target. A timestamp that jumps by more than ``JUMP_SECONDS`` (a
restarted sender, a long outage) starts afresh.

Thread-safety: ``put`` and ``clear`` are called from one thread (the event loop), ``pull`` from
another (the card's); they share one lock, held for a packet's decode or a re-estimate of the
quantile at most (tens of microseconds).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from device.audio import opus
from device.audio.format import BLOCK_FRAMES, SAMPLE_RATE, ms_to_samples
from device.audio.opus import OpusDecoder

Samples = npt.NDArray[np.int16]

MAXIMUM_MS: Final = 120  # the most audio the buffer ever holds: the delay's hard bound
TARGET_MAX_MS: Final = 100  # leaves two frames under the maximum so a burst is not cut at once
INITIAL_ALLOWANCE_MS: Final = 10  # until the jitter is measured: one more 10 ms frame
JITTER_WINDOW_SECONDS: Final = 2.0  # long enough to see a recurring spike, short to forget one
JITTER_QUANTILE: Final = 0.98  # one packet in 50 may come later than the allowance
MIN_MEASUREMENTS: Final = 50  # arrivals in the window before its quantile is trusted
REESTIMATE_PACKETS: Final = 10  # the quantile is recomputed every this many packets
BURST_SECONDS: Final = 0.002  # packets arriving closer than this came together
MARGIN_MS: Final = 1  # on top of the allowance: timer noise and the drift within a window
CORRECTION_SECONDS: Final = 0.5  # how long the headroom must stay off target to be corrected
DRY_CONCEAL_FRAMES: Final = 5  # 50 ms of PLC bridges a network hiccup; longer fades out
JUMP_SECONDS: Final = 1.0  # a timestamp or transit change this big is a new stream
CLOCK_STALL_SECONDS: Final = 0.25  # no pull for this long: the card stopped, the clock with it
DRIFT_SPAN_SECONDS: Final = 1.0  # the window must span this before the cards' drift is fitted
# Beyond this the "drift" is a card losing blocks (an overloaded virtual card), not a clock: the
# fit stops there and the rest counts as jitter.
DRIFT_LIMIT: Final = 0.1 * SAMPLE_RATE  # samples of transit per second
CONCEAL_STEP: Final = 120  # libopus conceals in whole 2.5 ms steps
CONCEAL_MAX: Final = 5760  # and at most 120 ms at once
TIMESTAMP_MODULO: Final = 1 << 32


class Codec(Protocol):
    """What the buffer needs of a decoder (``device.audio.opus`` for real; a fake in tests).

    One codec object decodes one stream, in order, on the pull side; ``packet_samples`` is
    also called from ``put``'s thread, so it must only read the payload.
    """

    def packet_samples(self, payload: bytes) -> int:
        """Samples at 48 kHz the packet decodes to; ValueError if it is not a packet."""
        ...

    def decode(self, payload: bytes) -> Samples: ...

    def decode_fec(self, next_payload: bytes, samples: int) -> Samples:
        """The ``samples`` just before ``next_payload``, rebuilt from its FEC (or concealed)."""
        ...

    def conceal(self, samples: int) -> Samples: ...


class OpusCodec:
    """The real codec: libopus through ``device.audio.opus`` (mono 48 kHz; ``AudioError`` if
    libopus cannot be loaded)."""

    def __init__(self) -> None:
        self._decoder = OpusDecoder()

    def packet_samples(self, payload: bytes) -> int:
        return opus.packet_samples(payload)

    def decode(self, payload: bytes) -> Samples:
        return self._decoder.decode(payload)

    def decode_fec(self, next_payload: bytes, samples: int) -> Samples:
        return self._decoder.decode_fec(next_payload, samples)

    def conceal(self, samples: int) -> Samples:
        return self._decoder.conceal(samples)


@dataclass(frozen=True)
class JitterStats:
    """The buffer as ``status`` shows it. Times in ms; counts since the buffer was made."""

    target_ms: float  # the headroom the buffer steers for: frame + jitter allowance + margin
    fill_ms: float  # audio waiting ahead of the playout point now (gaps included)
    jitter_ms: float  # the allowance: the measured deviation quantile
    headroom_ms: float | None  # the lowest headroom of the last correction window
    playing: bool  # False while priming (silence until ``target`` has arrived)
    packets: int  # accepted packets
    late: int  # came after their playout point had passed: dropped
    duplicates: int
    invalid: int  # not packets of the codec, or did not decode
    concealed: int  # concealment (PLC) steps: lost packets and dry spells
    fec_recovered: int  # lost frames rebuilt from the next packet (FEC, or PLC inside libopus)
    underruns: int  # times packets came too late to play in turn: the delay grew, or faded out
    dropped_ms: float  # audio skipped to keep the delay down (bursts and drift)
    inserted_ms: float  # audio played twice to grow the delay (more jitter, or drift)
    restarts: int  # the stream jumped (a new sender, a long outage) and playback began afresh


@dataclass
class _Packet:
    payload: bytes
    samples: int


class _Jitter:
    """Transit times over a sliding window: the fastest path now, and the deviation quantile.

    Transits are in samples of the playout clock, arrivals (for the window, the grouping and
    the trend) in seconds.

    Packets that arrive together (within ``BURST_SECONDS``: a stall that let go, a busy event
    loop) are one sample, at the latest of their deviations: a stall is one event, however many
    packets it held, and the concealment and re-priming deal with it. Counted per packet, one
    300 ms stall would be 15 % of the window and hold the target at its cap for two seconds.

    The two cards' clocks drift apart: transits then slope, which is not jitter. The slope is
    fitted through the fastest transit of each quarter of the window (the network's best path,
    which jitter does not touch), deviations are measured from that line, and the fastest transit
    is projected along it to the moment asked (``fastest_at``). The drift controller in
    ``JitterBuffer`` follows it; the allowance stays what the network alone needs.
    """

    def __init__(self) -> None:
        # Per group: the arrival of its first packet, its latest and its fastest transit.
        self._arrivals: deque[float] = deque()
        self._latest: deque[float] = deque()
        self._fastests: deque[float] = deque()
        self._last_arrival: float | None = None
        self._since_estimate = 0
        self._origin = 0.0  # arrival the fit is anchored at
        self._slope = 0.0  # samples of transit per second of arrival
        self._fastest: float | None = None  # on the fitted line, at ``_origin``
        self.allowance: float | None = None  # samples; None until measured

    def fastest_at(self, moment: float) -> float | None:
        """The fastest transit (samples) as the fit has it at ``moment`` (seconds)."""
        if self._fastest is None:
            return None
        return self._fastest + self._slope * (moment - self._origin)

    def add(self, arrival: float, transit: float) -> None:
        last = self._last_arrival
        self._last_arrival = arrival
        if last is not None and self._arrivals and abs(arrival - last) < BURST_SECONDS:
            self._latest[-1] = max(self._latest[-1], transit)
            self._fastests[-1] = min(self._fastests[-1], transit)
        else:
            self._arrivals.append(arrival)
            self._latest.append(transit)
            self._fastests.append(transit)
        horizon = arrival - JITTER_WINDOW_SECONDS
        while self._arrivals[0] < horizon and len(self._arrivals) > 1:
            self._arrivals.popleft()
            self._latest.popleft()
            self._fastests.popleft()
        # A faster packet counts at once: it only ever means more headroom than thought.
        on_line = transit - self._slope * (arrival - self._origin)
        if self._fastest is None or on_line < self._fastest:
            self._fastest = on_line
        self._since_estimate += 1
        if self._since_estimate >= REESTIMATE_PACKETS:
            self._estimate()

    def _estimate(self) -> None:
        self._since_estimate = 0
        count = len(self._arrivals)
        self._origin = self._arrivals[0]
        moments = np.fromiter(self._arrivals, np.float64, count) - self._origin
        fastest = np.fromiter(self._fastests, np.float64, count)
        self._slope = _envelope_slope(moments, fastest)
        trend = self._slope * moments
        fastest -= trend
        self._fastest = float(fastest.min())
        if count >= MIN_MEASUREMENTS:
            latest = np.fromiter(self._latest, np.float64, count) - trend
            rank = min(int(JITTER_QUANTILE * count), count - 1)  # nearest rank, from above
            self.allowance = float(np.partition(latest, rank)[rank]) - self._fastest


def _envelope_slope(moments: npt.NDArray[np.float64], fastest: npt.NDArray[np.float64]) -> float:
    """The slope of the line through each quarter-window's fastest transit (0 before the window
    spans ``DRIFT_SPAN_SECONDS``), within ``DRIFT_LIMIT``."""
    span = float(moments[-1]) if len(moments) else 0.0
    if span < DRIFT_SPAN_SECONDS:
        return 0.0
    bounds = np.searchsorted(moments, np.arange(1, 4) * span / 4)
    xs, ys = [], []
    for part in np.split(np.arange(len(moments)), bounds):
        if len(part):
            best = part[np.argmin(fastest[part])]
            xs.append(float(moments[best]))
            ys.append(float(fastest[best]))
    if len(xs) < 2 or max(xs) - min(xs) < DRIFT_SPAN_SECONDS / 2:
        return 0.0
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)  # least squares, by hand: 2-4 points
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return max(-DRIFT_LIMIT, min(DRIFT_LIMIT, slope))


class JitterBuffer:
    # The stream's state, set afresh by ``_reset`` (all samples are counted in 48 kHz samples,
    # positions are unwrapped RTP timestamps).
    _codec: Codec
    _jitter: _Jitter
    _last_position: int | None  # the last packet put
    _newest_put: int | None
    _allowance: int
    _target: int
    _packets: dict[int, _Packet]  # waiting, undecoded, by position
    _order: list[int]  # their positions, oldest first
    _newest_end: int | None  # where the newest packet's audio ends
    _playing: bool  # False: priming
    _play_at: int  # the position of the next sample pull hands out
    _decoded: Samples  # decoded (or concealed) audio from _play_at on
    _decode_at: int | None  # where decoding goes on; a packet before it is late
    _packet: int  # the last decoded packet's duration
    _dry: int  # pulls concealed in a row with nothing to decode
    _dry_samples: int  # samples concealed in place since the last packet decoded
    _fade_in: bool
    _last: Samples  # the last block handed out
    _window_pulled: int  # samples pulled in this correction window
    _window_lowest: float | None  # its lowest headroom so far
    _headroom: float | None  # the last window's lowest, after its correction

    def __init__(
        self,
        new_codec: Callable[[], Codec],
        *,
        frame: int = BLOCK_FRAMES,
        maximum: int = ms_to_samples(MAXIMUM_MS),
        target_max: int = ms_to_samples(TARGET_MAX_MS),
        initial_allowance: int = ms_to_samples(INITIAL_ALLOWANCE_MS),
        margin: int = ms_to_samples(MARGIN_MS),
        correction: int = round(CORRECTION_SECONDS * SAMPLE_RATE),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``new_codec`` makes the decoder for each new stream; ``frame`` is the card's block
        (what ``pull`` is asked for); ``clock`` (seconds) must be the clock ``put``'s arrival
        times use."""
        if not 0 < frame < target_max < maximum:
            raise ValueError("need 0 < frame < target_max < maximum")
        self._new_codec = new_codec
        self._frame = frame
        self._maximum = maximum
        self._target_max = target_max
        self._initial_allowance = initial_allowance
        self._margin = margin
        self._correction = correction
        self._clock = clock
        self._lock = threading.Lock()
        # The playout clock: samples pulled so far, and when the last pull came. Not part of a
        # stream: it runs as long as the card does.
        self._pulled = 0
        self._pulled_at: float | None = None
        self._counts = dict.fromkeys(
            (
                "packets",
                "late",
                "duplicates",
                "invalid",
                "concealed",
                "fec_recovered",
                "underruns",
                "dropped",
                "inserted",
                "restarts",
            ),
            0,
        )
        self._reset()

    # --- the event loop's side --------------------------------------------------------------

    def put(self, sequence: int, timestamp: int, payload: bytes, arrival: float) -> None:
        """One RTP packet as it arrived (``arrival`` on the buffer's clock, in seconds).

        ``sequence`` is not needed: timestamps order the packets, tell duplicates apart and
        measure gaps in time. It is taken so the tap hands over the packet's identity whole.
        """
        del sequence
        try:
            samples = self._codec.packet_samples(payload)
        except ValueError:
            samples = 0
        with self._lock:
            if samples <= 0:
                self._counts["invalid"] += 1
                return
            position = self._unwrap(timestamp)
            reading = self._reading(arrival)
            if reading is not None and self._jumped(position, reading - position, arrival):
                self._counts["restarts"] += 1
                self._reset()
                position = self._unwrap(timestamp)
            self._newest_put = max(position, self._newest_put or position)
            if reading is not None:
                self._jitter.add(arrival, reading - position)
                allowance = self._jitter.allowance
                self._allowance = self._initial_allowance if allowance is None else round(allowance)
                self._target = min(self._frame + self._margin + self._allowance, self._target_max)
            if self._decode_at is not None and position < self._decode_at:
                self._counts["late"] += 1
                return
            if position in self._packets:
                self._counts["duplicates"] += 1
                return
            self._packets[position] = _Packet(payload, samples)
            bisect.insort(self._order, position)
            self._newest_end = max(self._newest_end or 0, position + samples)
            self._counts["packets"] += 1
            self._bound()

    def clear(self) -> None:
        """Forget the stream (the remote track went away): the next packet starts a new one."""
        with self._lock:
            self._reset()

    def stats(self) -> JitterStats:
        with self._lock:
            counts = self._counts
            return JitterStats(
                target_ms=_ms(self._target),
                fill_ms=_ms(self._fill()),
                jitter_ms=_ms(self._allowance),
                headroom_ms=None if self._headroom is None else _ms(self._headroom),
                playing=self._playing,
                packets=counts["packets"],
                late=counts["late"],
                duplicates=counts["duplicates"],
                invalid=counts["invalid"],
                concealed=counts["concealed"],
                fec_recovered=counts["fec_recovered"],
                underruns=counts["underruns"],
                dropped_ms=_ms(counts["dropped"]),
                inserted_ms=_ms(counts["inserted"]),
                restarts=counts["restarts"],
            )

    # --- the card's side ----------------------------------------------------------------------

    def pull(self, frames: int = BLOCK_FRAMES) -> Samples:
        """Exactly ``frames`` samples for the speaker: the stream, concealment, or silence."""
        with self._lock:
            now = self._clock()
            if self._pulled_at is not None and now - self._pulled_at > CLOCK_STALL_SECONDS:
                self._clock_stalled()
            self._pulled += frames
            self._pulled_at = now
            # From here the clock reads as at the end of this block: what arrived before this
            # pull reads at most this.
            if not self._playing and not self._start(now):
                return np.zeros(frames, dtype=np.int16)
            out = self._play(frames, now)
            if self._fade_in:
                self._fade_in = False
                out = _ramp(out, rising=True)
            self._last = out
            return out

    # --- inside the lock ----------------------------------------------------------------------

    def _reset(self) -> None:
        self._codec = self._new_codec()
        self._jitter = _Jitter()
        self._last_position = None
        self._newest_put = None
        self._allowance = self._initial_allowance
        self._target = min(self._frame + self._margin + self._initial_allowance, self._target_max)
        self._packets = {}
        self._order = []
        self._newest_end = None
        self._playing = False
        self._play_at = 0
        self._decoded = np.zeros(0, dtype=np.int16)
        self._decode_at = None
        self._packet = self._frame
        self._dry = 0
        self._dry_samples = 0
        self._fade_in = False
        self._last = np.zeros(0, dtype=np.int16)
        self._window_pulled = 0
        self._window_lowest = None
        self._headroom = None

    def _unwrap(self, timestamp: int) -> int:
        last = self._last_position
        if last is None:
            position = timestamp
        else:
            step = (timestamp - last) % TIMESTAMP_MODULO
            if step >= TIMESTAMP_MODULO // 2:
                step -= TIMESTAMP_MODULO
            position = last + step
        self._last_position = position
        return position

    def _reading(self, arrival: float) -> float | None:
        """The playout clock at ``arrival``: the samples pulled, plus the time since the last
        pull (at most one block: the next pull reads that). None while the card is not pulling."""
        if self._pulled_at is None or arrival - self._pulled_at > CLOCK_STALL_SECONDS:
            return None
        since = min(max(arrival - self._pulled_at, 0.0) * SAMPLE_RATE, self._frame)
        return self._pulled + since

    def _jumped(self, position: int, transit: float, arrival: float) -> bool:
        """A new stream: its timestamps or its timing far from the last packets'."""
        if self._newest_put is not None and abs(position - self._newest_put) > _JUMP:
            return True
        fastest = self._jitter.fastest_at(arrival)
        return fastest is not None and abs(transit - fastest) > _JUMP

    def _clock_stalled(self) -> None:
        """The card stopped pulling for a while (closed, failed, reopened): what was measured
        against its clock no longer holds. Prime again; the packets stay (bounded)."""
        self._jitter = _Jitter()
        self._playing = False
        self._decoded = np.zeros(0, dtype=np.int16)
        self._dry = self._dry_samples = 0
        self._window_pulled = 0
        self._window_lowest = None

    def _fill(self) -> int:
        if self._newest_end is None:
            return len(self._decoded) if self._playing else 0
        start = self._play_at if self._playing else self._order[0] if self._order else None
        if start is None:
            return len(self._decoded)
        return max(self._newest_end - start, len(self._decoded))

    def _bound(self) -> None:
        """Never hold more than the maximum: drop the oldest audio down to the target."""
        if self._fill() <= self._maximum:
            return
        assert self._newest_end is not None  # a packet was just stored
        start = self._play_at if self._playing else self._order[0]
        while len(self._order) > 1 and self._newest_end - self._order[0] > self._target:
            del self._packets[self._order.pop(0)]
        first = self._order[0]
        self._counts["dropped"] += first - start
        self._decoded = np.zeros(0, dtype=np.int16)
        if self._playing:
            self._play_at = self._decode_at = first

    def _start(self, now: float) -> bool:
        """Priming: start at the newest packet that already has ``target`` of headroom, and
        drop any older (a burst after a stall): what was silent may resume no later than that."""
        fastest = self._jitter.fastest_at(now)
        if not self._order or fastest is None:
            return False
        reach = self._frame + self._pulled - fastest - self._target
        ready = bisect.bisect_right(self._order, reach)
        if ready == 0:
            return False  # even the oldest packet is too fresh
        oldest = self._order[0]
        for position in self._order[: ready - 1]:
            del self._packets[position]
        del self._order[: ready - 1]
        self._counts["dropped"] += self._order[0] - oldest
        self._playing = True
        self._play_at = self._decode_at = self._order[0]
        self._decoded = np.zeros(0, dtype=np.int16)
        self._dry = 0
        self._dry_samples = 0
        self._fade_in = True
        self._window_pulled = 0
        self._window_lowest = None
        return True

    def _play(self, frames: int, now: float) -> Samples:
        skip, repeat = self._judge_headroom(frames, now)
        if skip > 0 and self._ensure(frames + skip):
            out = _crossfade(self._decoded[:frames], self._decoded[skip : skip + frames])
            self._consume(frames + skip)
            self._counts["dropped"] += skip
            self._headroom = None if self._headroom is None else self._headroom - skip
        elif repeat and len(self._last) == frames and self._ensure(frames):
            # From the stream into a repeat of the last block, which ends where the stream
            # resumes: the delay grows by one block and no edge is heard.
            out = _crossfade(self._decoded[:frames], self._last)
            self._counts["inserted"] += frames
            self._headroom = None if self._headroom is None else self._headroom + frames
        elif self._ensure(frames):
            out = self._decoded[:frames].copy()
            self._consume(frames)
        else:
            return self._run_dry(frames)
        self._dry = 0
        return out

    def _judge_headroom(self, frames: int, now: float) -> tuple[int, bool]:
        """At the end of each correction window: how much to skip, or whether to repeat."""
        fastest = self._jitter.fastest_at(now)
        if fastest is None:
            return 0, False
        headroom = self._frame + self._pulled - fastest - self._play_at
        if self._window_lowest is None or headroom < self._window_lowest:
            self._window_lowest = headroom
        self._window_pulled += frames
        if self._window_pulled < self._correction:
            return 0, False
        self._headroom = self._window_lowest
        excess = self._window_lowest - self._target
        self._window_pulled = 0
        self._window_lowest = None
        # Skips and repeats move the headroom in steps (a packet, a frame), and the pull's phase
        # against the packets' arrivals is fixed: the best reachable is the lowest headroom in
        # [target, target + packet). A step of hysteresis, so a skip never calls for a repeat.
        if excess >= self._packet:
            # All the excess at once, in whole packets, as far as the audio is already here.
            assert self._newest_end is not None  # playing, so packets came
            here = self._newest_end - self._play_at - frames
            skip = min(int(excess), here) // self._packet * self._packet
            return skip, False
        if excess < 0:
            return 0, True
        return 0, False

    def _ensure(self, count: int) -> bool:
        """Decode (or conceal gaps) until ``count`` samples wait; False if packets run out."""
        while len(self._decoded) < count:
            if not self._order:
                return False
            assert self._decode_at is not None  # set whenever playing
            position = self._order[0]
            packet = self._packets[position]
            if self._dry_samples:
                self._end_dry_spell(position)
            gap = position - self._decode_at
            if gap > 0:
                # Lost: its playout point has come and a later packet is here.
                rebuilt = min(gap, packet.samples)
                for step in _steps(gap - rebuilt):
                    self._append(self._safely(partial(self._codec.conceal, step), step))
                    self._counts["concealed"] += 1
                fec = partial(self._codec.decode_fec, packet.payload, rebuilt)
                self._append(self._safely(fec, rebuilt))
                self._counts["fec_recovered"] += 1
                self._decode_at = position
            del self._packets[position]
            self._order.pop(0)
            self._append(self._safely(partial(self._codec.decode, packet.payload), packet.samples))
            self._packet = packet.samples
            self._decode_at = position + packet.samples
        return True

    def _end_dry_spell(self, position: int) -> None:
        """Packets again after concealing in place. If the packets that were awaited turn out
        lost (the first one here is later), the concealment already played stands in for them:
        the point moves on by as much, and the delay did not grow. Otherwise it was late, the
        delay grew by the concealment, and that is an underrun."""
        assert self._decode_at is not None
        credit = 0
        if not len(self._decoded):
            credit = min(max(position - self._decode_at, 0), self._dry_samples)
            self._play_at += credit
            self._decode_at += credit
        if self._dry_samples > credit:
            self._counts["underruns"] += 1
        self._dry_samples = 0

    def _safely(self, decode: Callable[[], Samples], samples: int) -> Samples:
        """Exactly ``samples`` from ``decode``: a packet that fails to decode plays as silence
        of its length, so the playout point stays on the timestamps."""
        try:
            out = decode()
        except ValueError:
            self._counts["invalid"] += 1
            return np.zeros(samples, dtype=np.int16)
        if len(out) == samples:
            return out
        fitted = np.zeros(samples, dtype=np.int16)
        fitted[: min(samples, len(out))] = out[:samples]
        return fitted

    def _append(self, samples: Samples) -> None:
        self._decoded = np.concatenate((self._decoded, samples.astype(np.int16, copy=False)))

    def _consume(self, count: int) -> None:
        self._decoded = self._decoded[count:]
        self._play_at += count

    def _run_dry(self, frames: int) -> Samples:
        """Nothing to decode: what was decoded, then concealment; the point stays put."""
        out = np.zeros(frames, dtype=np.int16)
        have = len(self._decoded)
        out[:have] = self._decoded
        self._consume(have)
        if self._dry == 0:
            self._window_pulled = 0  # the delay is growing: judge afresh
            self._window_lowest = None
        self._dry += 1
        missing = frames - have
        concealed = self._safely(partial(self._codec.conceal, _whole_steps(missing)), missing)
        out[have:] = concealed[:missing]
        self._dry_samples += missing
        self._counts["concealed"] += 1
        if self._dry >= DRY_CONCEAL_FRAMES:
            # The stream has stopped for now: fade out and prime again.
            out = _ramp(out, rising=False)
            self._counts["underruns"] += 1
            self._playing = False
            self._dry_samples = 0
            self._decoded = np.zeros(0, dtype=np.int16)
        return out


_JUMP: Final = round(JUMP_SECONDS * SAMPLE_RATE)


def _steps(samples: int) -> list[int]:
    """A gap as concealment steps libopus accepts (at most ``CONCEAL_MAX`` each)."""
    steps = []
    while samples > 0:
        step = min(samples, CONCEAL_MAX)
        steps.append(step)
        samples -= step
    return steps


def _whole_steps(samples: int) -> int:
    """Rounded up to whole concealment steps (the excess is not played)."""
    return min(-(-samples // CONCEAL_STEP) * CONCEAL_STEP, CONCEAL_MAX)


def _crossfade(leaving: Samples, arriving: Samples) -> Samples:
    ramp = (np.arange(len(leaving), dtype=np.float32) + 0.5) / len(leaving)
    mixed = leaving * (1 - ramp) + arriving * ramp
    return np.round(mixed).astype(np.int16)


def _ramp(samples: Samples, *, rising: bool) -> Samples:
    ramp = (np.arange(len(samples), dtype=np.float32) + 0.5) / len(samples)
    if not rising:
        ramp = ramp[::-1]
    return np.round(samples * ramp).astype(np.int16)


def _ms(samples: float) -> float:
    return round(samples * 1000 / SAMPLE_RATE, 2)
