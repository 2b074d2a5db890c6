"""The latency benchmark's test signal, and finding it again: clicks over a quiet tone.

    stimulus = Stimulus(seed=1)
    samples = stimulus.next(4800)                 # what the harness plays into a room, in order
    found = find_clicks(recorded)                 # sample positions of every click in a recording
    matched = match_clicks(ref_clicks, out_clicks)   # each played click, its delay in samples
    dropouts(recorded)                            # 10 ms blocks where the tone vanished

The click is a 3 ms chirp from 1.5 to 9 kHz under a Hann window: its autocorrelation has one
sharp peak (a main lobe of a few samples), so a matched filter finds it to the sample even after
Opus has coded it, and it carries almost nothing at the tone's pitch. Clicks come at irregular
gaps of 200 to 300 ms (seeded), so that only the true delay lines up the played clicks with the
heard ones: a regular train would match at any whole number of periods.

The tone (500 Hz, -20 dBFS) plays without end under the clicks, so that a gap in what comes out
(a late or lost frame the receiver did not hide) shows as a 10 ms block without it. 500 Hz is
exactly five cycles in a 10 ms block, so its level in a block does not depend on where the block
starts.

Everything here is pure numpy on 48 kHz mono samples (floats in -1…1 or int16).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RATE = 48_000
BLOCK = 480  # 10 ms, the box's sound-card block
TONE_HZ = 500.0
TONE_AMPLITUDE = 0.1  # -20 dBFS: under the clicks, clear of silence
CLICK_AMPLITUDE = 0.6
CLICK_SECONDS = 0.003
CLICK_BAND_HZ = (1500.0, 9000.0)
GAP_SECONDS = (0.2, 0.3)
# A normalised correlation above this is a click. The tone alone scores about 0.01; a click
# through stock Opus about 0.9; a click partly hidden by concealment still well above this.
CLICK_THRESHOLD = 0.5
# Quieter than this (RMS over the click's length) is silence, not a click however it correlates.
CLICK_FLOOR = 1e-3
PHASE_JUMP = 0.3  # radians between blocks (5 samples): a seam; a click shifts it under 0.1
DROPOUT_SHARE = 0.5  # a block whose tone is under half (-6 dB) of its usual level is a dropout

Samples = npt.NDArray[np.float64]
Positions = npt.NDArray[np.int64]


def click_template() -> Samples:
    """The click, at amplitude 1."""
    frames = round(CLICK_SECONDS * RATE)
    t = np.arange(frames) / RATE
    low, high = CLICK_BAND_HZ
    sweep = (high - low) / CLICK_SECONDS
    chirp = np.sin(2 * np.pi * (low * t + 0.5 * sweep * t * t))
    return chirp * np.hanning(frames)


class Stimulus:
    """What the harness plays into one room: the tone, with a click at each scheduled moment.

    ``next(n)`` returns the next ``n`` samples; the tone runs on without a seam from one call to
    the next, and a click that straddles two calls is split between them. ``clicks`` lists the
    sample positions (from the first sample ever returned) of every click scheduled so far."""

    def __init__(self, seed: int, *, tone: bool = True) -> None:
        self._rng = np.random.default_rng(seed)
        self._template = CLICK_AMPLITUDE * click_template()
        self._tone = tone
        self._position = 0
        self.clicks: list[int] = [self._gap()]

    def _gap(self) -> int:
        low, high = GAP_SECONDS
        return round(self._rng.uniform(low, high) * RATE)

    def next(self, frames: int) -> Samples:
        start, end = self._position, self._position + frames
        out = np.zeros(frames)
        if self._tone:
            n = np.arange(start, end, dtype=np.int64)
            # The phase from the sample number modulo one period: exact however long it runs.
            period = round(RATE / TONE_HZ)
            out += TONE_AMPLITUDE * np.sin(2 * np.pi * (n % period) / period)
        while self.clicks[-1] < end:
            self.clicks.append(self.clicks[-1] + self._gap())
        length = len(self._template)
        for click in self.clicks:
            if click + length <= start or click >= end:
                continue
            lo, hi = max(click, start), min(click + length, end)
            out[lo - start : hi - start] += self._template[lo - click : hi - click]
        self._position = end
        return out

    def next_int16(self, frames: int) -> npt.NDArray[np.int16]:
        return np.round(self.next(frames) * 32767).astype(np.int16)


# --- finding clicks -----------------------------------------------------------------------------


def _as_float(samples: npt.ArrayLike) -> Samples:
    array = np.asarray(samples)
    if array.dtype == np.int16:
        return array.astype(np.float64) / 32768
    return array.astype(np.float64)


def correlate(samples: npt.ArrayLike, template: Samples, chunk: int = 1 << 16) -> Samples:
    """``out[k] = sum_j template[j] * samples[k + j]`` for every k where the template fits,
    by FFT in chunks (overlap-save), so a ten-minute recording needs little memory."""
    length = len(template)
    total = len(samples) - length + 1  # type: ignore[arg-type]
    if total <= 0:
        return np.zeros(0)
    size = 1 << int(np.ceil(np.log2(chunk + length - 1)))
    kernel = np.conj(np.fft.rfft(template, size))
    out = np.empty(total)
    for start in range(0, total, chunk):
        count = min(chunk, total - start)
        segment = _as_float(np.asarray(samples)[start : start + count + length - 1])
        out[start : start + count] = np.fft.irfft(np.fft.rfft(segment, size) * kernel, size)[:count]
    return out


def window_energy(samples: npt.ArrayLike, length: int) -> Samples:
    """``out[k] = sum of samples[k : k + length] ** 2``."""
    x = _as_float(samples)
    if len(x) < length:
        return np.zeros(0)
    running = np.concatenate(([0.0], np.cumsum(x * x)))
    energy: Samples = running[length:] - running[:-length]
    return np.maximum(energy, 0.0)  # cumsum's rounding can dip a hair below zero


def find_clicks(
    samples: npt.ArrayLike,
    *,
    threshold: float = CLICK_THRESHOLD,
    min_gap: int = round(0.1 * RATE),
) -> Positions:
    """Where each click starts in ``samples`` (its first sample), to the sample.

    A click is where the normalised correlation with the template passes ``threshold``; among
    the samples of one such stretch (closer than ``min_gap`` to each other) the one with the
    largest correlation is its position."""
    template = click_template()
    length = len(template)
    correlation = correlate(samples, template)
    energy = window_energy(samples, length)
    scale = np.linalg.norm(template) * np.sqrt(energy)
    loud = energy > length * CLICK_FLOOR**2
    normalised = np.zeros_like(correlation)
    np.divide(correlation, scale, out=normalised, where=loud)
    above = np.flatnonzero(normalised > threshold)
    if len(above) == 0:
        return np.zeros(0, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(above) > min_gap) + 1
    positions = [int(group[np.argmax(correlation[group])]) for group in np.split(above, breaks)]
    return np.asarray(positions, dtype=np.int64)


# --- matching played clicks with heard ones -----------------------------------------------------


@dataclass(frozen=True)
class Matched:
    """Each played click that was heard: where it was played, and its delay (both in samples)."""

    played: Positions
    delay: Positions
    missing: int  # played clicks with no heard click where one was due

    def delays_ms(self) -> list[float]:
        return [1000 * float(d) / RATE for d in self.delay]

    def seconds(self) -> list[float]:
        return [float(p) / RATE for p in self.played]


def likeliest_delay(played: Positions, heard: Positions, max_delay: int) -> int | None:
    """The delay (samples) that lines up the most played clicks with heard ones: the most common
    difference, in 1 ms bins, between each played click and the heard clicks after it."""
    differences: list[int] = []
    for position in played:
        lo, hi = np.searchsorted(heard, [position, position + max_delay], side="left")
        differences.extend(int(h - position) for h in heard[lo:hi])
    if not differences:
        return None
    bin_width = RATE // 1000
    bins = np.asarray(differences) // bin_width
    values, counts = np.unique(bins, return_counts=True)
    best = values[np.argmax(counts)]
    near = [d for d, b in zip(differences, bins, strict=True) if abs(int(b) - int(best)) <= 1]
    return round(statistics.median(near))


def match_clicks(
    played: Positions,
    heard: Positions,
    *,
    max_delay: int = RATE,
    search: int = round(0.09 * RATE),
    relock_after: int = 3,
) -> Matched:
    """Pair each played click with the heard click that is its copy.

    The delay is followed from click to click: the heard click nearest to where the last delay
    puts it, within ``search`` samples (under half the shortest gap, so never a neighbour). A
    delay that jumps further (a jitter buffer that grew or was reset) is found again from the
    next clicks after ``relock_after`` misses in a row."""
    played = np.asarray(played, dtype=np.int64)
    heard = np.asarray(heard, dtype=np.int64)
    out_played: list[int] = []
    out_delay: list[int] = []
    missing = 0
    misses = 0
    delay = likeliest_delay(played, heard, max_delay)
    for index, position in enumerate(played):
        if delay is None or misses >= relock_after:
            ahead = played[index : index + 16]
            relocked = likeliest_delay(ahead, heard, max_delay)
            if relocked is not None:
                delay, misses = relocked, 0
        if delay is None:
            missing += 1
            continue
        due = position + delay
        at = int(np.searchsorted(heard, due))
        # Never a heard click before the played one: nothing arrives before it is sent.
        candidates = [
            heard[i] for i in (at - 1, at) if 0 <= i < len(heard) and heard[i] >= position
        ]
        nearest = min(candidates, key=lambda h: abs(int(h) - due), default=None)
        if nearest is None or abs(int(nearest) - due) > search:
            missing += 1
            misses += 1
            continue
        delay = int(nearest) - int(position)
        misses = 0
        out_played.append(int(position))
        out_delay.append(delay)
    return Matched(
        played=np.asarray(out_played, dtype=np.int64),
        delay=np.asarray(out_delay, dtype=np.int64),
        missing=missing,
    )


# --- keeping time with the stimulus -------------------------------------------------------------


def schedule_offsets(schedule: Sequence[int], found: Positions) -> list[int | None]:
    """For each click found in a room's recording: the stimulus's sample position minus the
    recording's (None where it cannot be placed in the schedule).

    A room's channel is the stimulus itself, so the offset stays the same from click to click
    while the recording keeps step. It grows where samples were lost: by the recorder (a graph
    cycle it missed on a busy machine: then in every channel at once, and a click in flight
    across it would seem early) or by the player (the sound server skips what arrives late).
    A click is placed by the two gaps after it, or else the two before it: gaps are random to
    the sample, so a pair of them occurs once in a schedule, and a loss spoils only the gap it
    falls in."""
    played = np.asarray(schedule, dtype=np.int64)
    gaps = np.diff(played)
    where: dict[tuple[int, int], int] = {}
    for k in range(len(gaps) - 1):
        where.setdefault((int(gaps[k]), int(gaps[k + 1])), k)
    seen = [int(g) for g in np.diff(np.asarray(found, dtype=np.int64))]
    offsets: list[int | None] = []
    for i in range(len(found)):
        k: int | None = None
        if i + 2 < len(found):
            k = where.get((seen[i], seen[i + 1]))
        if k is None and i >= 2:
            before = where.get((seen[i - 2], seen[i - 1]))
            k = before + 2 if before is not None else None
        offsets.append(None if k is None else int(played[k]) - int(found[i]))
    return offsets


@dataclass(frozen=True)
class Seam:
    """Samples the recording lost: somewhere in [``start``, ``end``) (recorded sample numbers),
    ``lost`` of them (None where that is not known)."""

    start: int
    end: int
    lost: int | None


def lost_step(found: Positions, offsets: Sequence[int | None]) -> list[Seam]:
    """The stretches between two clicks of a room across which the recording did not keep step
    with the stimulus: the offset changed (by the samples lost), or a click could not be
    placed."""
    seams: list[Seam] = []
    for i in range(len(found) - 1):
        here, there = offsets[i], offsets[i + 1]
        if here is None or there is None or here != there:
            lost = there - here if here is not None and there is not None else None
            seams.append(Seam(int(found[i]), int(found[i + 1]), lost))
    return seams


def shared_seams(first: Sequence[Seam], second: Sequence[Seam]) -> list[Seam]:
    """Where a seam of one room overlaps one of the other: the part they share.

    The recorder's losses are in every channel at once, so both rooms lose step across the
    same moment, by the same count; a player that ran dry shows in its own room only, and costs
    the measurement nothing (the room's channel holds what was really played)."""
    shared: list[Seam] = []
    for one in first:
        for other in second:
            if one.start < other.end and other.start < one.end:
                lost = one.lost if one.lost == other.lost else None
                shared.append(Seam(max(one.start, other.start), min(one.end, other.end), lost))
    return shared


def phase_jumps(samples: npt.ArrayLike, hz: float = TONE_HZ, block: int = BLOCK) -> Positions:
    """The blocks at whose start the tone's phase jumps (samples lost or inserted just before
    or inside them). 500 Hz holds whole cycles in a block, so a steady tone has the same phase
    in every block; a loss of a whole number of cycles (96 samples) does not show."""
    x = _as_float(samples)
    count = len(x) // block
    if count < 2:
        return np.zeros(0, dtype=np.int64)
    t = np.arange(block) / RATE
    phase = np.angle(x[: count * block].reshape(count, block) @ np.exp(-2j * np.pi * hz * t))
    step = np.angle(np.exp(1j * np.diff(phase)))
    return np.flatnonzero(np.abs(step) > PHASE_JUMP).astype(np.int64) + 1


def jump_zones(samples: npt.ArrayLike, block: int = BLOCK) -> list[tuple[int, int]]:
    """Where the tone's phase jumps, as stretches of samples sure to hold the seam: a seam
    inside a block shifts the phase into and out of that block, one on a block's edge only
    into it."""
    jumps = phase_jumps(samples, block=block)
    zones: list[tuple[int, int]] = []
    for run in np.split(jumps, np.flatnonzero(np.diff(jumps) > 1) + 1):
        if len(run):
            zones.append(((int(run[0]) - 1) * block, (int(run[-1]) + 1) * block))
    return zones


def joint_zones(
    zones: Sequence[tuple[int, int]], others: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Where the phase jumped in both rooms at once: the recorder's seams (a player's are in
    its own room only)."""
    return [
        (max(lo, other_lo), min(hi, other_hi))
        for lo, hi in zones
        for other_lo, other_hi in others
        if lo < other_hi and other_lo < hi
    ]


def locate(seams: Sequence[Seam], joint: Sequence[tuple[int, int]]) -> list[Seam]:
    """Narrow each seam to where the tone's phase jumped in both rooms at once (``joint``), if
    it did so exactly once inside it; otherwise its count is dropped (clicks across it cannot
    be put right, only left out). A loss of whole cycles of the tone (96 samples: three
    256-sample graph cycles) leaves no jump, and stays wide."""
    located: list[Seam] = []
    for seam in seams:
        inside = [(lo, hi) for lo, hi in joint if lo < seam.end and seam.start < hi]
        if seam.lost is not None and len(inside) == 1:
            lo, hi = inside[0]
            located.append(Seam(max(lo, seam.start), min(hi, seam.end), seam.lost))
        else:
            located.append(Seam(seam.start, seam.end, None))
    return located


def across_seams(matched: Matched, seams: Sequence[Seam]) -> tuple[Matched, int]:
    """Each click's delay with the samples the recording lost during its flight put back; a
    click whose flight may or may not have crossed a seam, or crossed one of unknown size, is
    left out. Also returns how many were left out."""
    keep: list[int] = []
    delays: list[int] = []
    for index, (played, delay) in enumerate(zip(matched.played, matched.delay, strict=True)):
        heard = int(played + delay)
        added = 0
        sure = True
        for seam in seams:
            if heard <= seam.start or played >= seam.end:
                continue  # before it or after it: nothing lost in flight
            if seam.lost is not None and played < seam.start and heard >= seam.end:
                added += seam.lost
            else:
                sure = False
                break
        if sure:
            keep.append(index)
            delays.append(int(delay) + added)
    kept = Matched(
        played=matched.played[keep],
        delay=np.asarray(delays, dtype=np.int64),
        missing=matched.missing,
    )
    return kept, len(matched.played) - len(keep)


# --- dropouts -----------------------------------------------------------------------------------


def tone_levels(samples: npt.ArrayLike, hz: float = TONE_HZ, block: int = BLOCK) -> Samples:
    """The tone's amplitude in each whole ``block`` of ``samples`` (a projection onto the tone:
    exact when a block holds whole cycles, as 500 Hz in 10 ms does)."""
    x = _as_float(samples)
    count = len(x) // block
    if count == 0:
        return np.zeros(0)
    blocks = x[: count * block].reshape(count, block)
    t = np.arange(block) / RATE
    cos = np.cos(2 * np.pi * hz * t)
    sin = np.sin(2 * np.pi * hz * t)
    levels: Samples = (2 / block) * np.hypot(blocks @ cos, blocks @ sin)
    return levels


@dataclass(frozen=True)
class Dropouts:
    """Gaps in the tone: ``events`` separate gaps, ``blocks`` 10 ms blocks in all."""

    events: int
    blocks: int
    level: float  # the tone's usual amplitude (the median block)
    starts: list[int]  # the first block of each gap

    @property
    def milliseconds(self) -> float:
        return self.blocks * 1000 * BLOCK / RATE


def dropouts(
    samples: npt.ArrayLike,
    *,
    share: float = DROPOUT_SHARE,
    level: float | None = None,
    ignore: Sequence[int] = (),
) -> Dropouts:
    """The 10 ms blocks of ``samples`` in which the tone fell under ``share`` of its usual
    ``level`` (default: the median block's), and how many separate gaps they make. A gap
    touching one of the blocks in ``ignore`` (the recorder's own seams) is not counted."""
    levels = tone_levels(samples)
    if len(levels) == 0:
        return Dropouts(events=0, blocks=0, level=0.0, starts=[])
    usual = float(np.median(levels)) if level is None else level
    low = levels < share * usual
    edges = np.diff(np.concatenate(([0], low.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    seams = np.asarray(sorted(ignore), dtype=np.int64)
    kept_starts: list[int] = []
    blocks = 0
    for first, end in zip(starts, ends, strict=True):
        lo, hi = np.searchsorted(seams, [first - 1, end + 1])
        if hi > lo:
            continue  # a seam of the recording, not of the sound
        kept_starts.append(int(first))
        blocks += int(end - first)
    return Dropouts(events=len(kept_starts), blocks=blocks, level=usual, starts=kept_starts)


# --- figures ------------------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float] | None:
    """Median, 95th percentile and maximum, in the units given; None without values."""
    if not values:
        return None
    array = np.asarray(values, dtype=np.float64)
    return {
        "median": round(float(np.median(array)), 2),
        "p95": round(float(np.percentile(array, 95)), 2),
        "max": round(float(np.max(array)), 2),
    }


@dataclass(frozen=True)
class Drift:
    slope_ms_per_min: float
    first_minute_ms: float
    last_minute_ms: float


def drift(seconds: Sequence[float], values_ms: Sequence[float]) -> Drift | None:
    """A straight line through (time, latency): its slope in ms per minute, and the median of
    the first and of the last minute. None with fewer than two points."""
    if len(seconds) < 2:
        return None
    t = np.asarray(seconds, dtype=np.float64)
    y = np.asarray(values_ms, dtype=np.float64)
    if np.ptp(t) == 0:
        return None
    slope = float(np.polyfit(t, y, 1)[0]) * 60
    first = y[t <= t[0] + 60]
    last = y[t >= t[-1] - 60]
    return Drift(
        slope_ms_per_min=round(slope, 3),
        first_minute_ms=round(float(np.median(first)), 2),
        last_minute_ms=round(float(np.median(last)), 2),
    )
