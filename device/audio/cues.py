"""The box's sound cues: short, friendly and distinct, made with numpy when first played.

    samples = cue_sound(Cue.CONNECTED)    # float32 mono 48 kHz, -1…1, read-only, cached

Nobody reads a screen on this box, so each cue has its own shape a care worker learns by ear:
rising for things starting (joined, connected, unmuted), falling for things ending (ended, muted),
a bell for something arriving (session soon, a reaction), low and soft for "not now" and
"problem", and tiny ticks for acknowledgements (sent, volume). Every note starts with a 5 ms
raised-cosine attack and dies away to exactly zero, so nothing clicks; each cue is under a
second and peaks at ``PEAK`` (about -9 dBFS), leaving room for the call audio it is mixed into.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from device.audio.format import SAMPLE_RATE
from device.lifecycle.states import Cue

PEAK = 0.35
ATTACK_S = 0.005

# Equal-tempered pitches, Hz.
C4, CS4, E4, G4 = 261.63, 277.18, 329.63, 392.00
C5, E5, G5, A5, C6 = 523.25, 659.26, 783.99, 880.00, 1046.50


@dataclass(frozen=True)
class Note:
    at: float  # seconds from the start of the cue
    hz: float
    seconds: float
    decay: float  # seconds for the note to fall to 1/e
    bell: float = 0.0  # weight of a bright partial (2.76x: a small bell) over the sine
    glide_to: float | None = None  # end pitch, for blips that sweep


@dataclass(frozen=True)
class Shape:
    notes: tuple[Note, ...]
    level: float = 1.0  # loudness relative to the other cues (ticks are quieter)


CUES: dict[Cue, Shape] = {
    # A gentle two-note chime, like a doorbell heard from another room.
    Cue.SESSION_SOON: Shape(
        (Note(0.0, E5, 0.45, 0.25, bell=0.25), Note(0.3, C5, 0.55, 0.3, bell=0.25))
    ),
    Cue.JOINED: Shape((Note(0.0, C5, 0.2, 0.12), Note(0.16, G5, 0.3, 0.15))),
    Cue.CONNECTED: Shape(
        (
            Note(0.0, C5, 0.2, 0.12, bell=0.1),
            Note(0.1, E5, 0.2, 0.12, bell=0.1),
            Note(0.2, G5, 0.2, 0.12, bell=0.1),
            Note(0.3, C6, 0.4, 0.2, bell=0.1),
        )
    ),
    Cue.REACTION: Shape((Note(0.0, A5, 0.5, 0.18, bell=0.35),)),
    Cue.SENT: Shape((Note(0.0, C6 * 2, 0.04, 0.012),), level=0.5),
    Cue.ENDED: Shape((Note(0.0, G5, 0.2, 0.12), Note(0.16, C5, 0.35, 0.18))),
    Cue.NOT_NOW: Shape((Note(0.0, G4, 0.08, 0.04), Note(0.14, G4, 0.08, 0.04)), level=0.8),
    Cue.PROBLEM: Shape((Note(0.0, E4, 0.28, 0.2), Note(0.26, CS4, 0.45, 0.25))),
    Cue.VOLUME: Shape((Note(0.0, C6, 0.035, 0.012),), level=0.7),
    Cue.MUTED: Shape((Note(0.0, G5, 0.14, 0.1, glide_to=C5),), level=0.8),
    Cue.UNMUTED: Shape((Note(0.0, C5, 0.14, 0.1, glide_to=G5),), level=0.8),
}


@cache
def cue_sound(cue: Cue) -> npt.NDArray[np.float32]:
    """The cue's samples (float32, mono, 48 kHz, peak at most ``PEAK``); cached, read-only."""
    shape = CUES[cue]
    notes = shape.notes
    length = round(max(note.at + note.seconds for note in notes) * SAMPLE_RATE)
    out = np.zeros(length, dtype=np.float64)
    for note in notes:
        samples = _render(note)
        start = round(note.at * SAMPLE_RATE)
        out[start : start + len(samples)] += samples
    out *= shape.level * PEAK / np.max(np.abs(out))
    sound = out.astype(np.float32)
    sound.flags.writeable = False
    return sound


def _render(note: Note) -> npt.NDArray[np.float64]:
    count = round(note.seconds * SAMPLE_RATE)
    t = np.arange(count) / SAMPLE_RATE
    if note.glide_to is None:
        phase = 2 * np.pi * note.hz * t
    else:
        # A glide in pitch (log-frequency), integrated so the phase never jumps.
        ratio = note.glide_to / note.hz
        rate = np.log(ratio) / note.seconds
        phase = 2 * np.pi * note.hz * np.expm1(rate * t) / rate
    tone = np.sin(phase) + note.bell * np.sin(2.76 * phase)
    attack = min(round(ATTACK_S * SAMPLE_RATE), count // 2)
    envelope = np.exp(-t / note.decay)
    envelope[:attack] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    # The tail is faded to exactly zero so a note never stops mid-swing.
    tail = min(round(0.3 * count), count)
    envelope[count - tail :] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(1, tail + 1) / tail)
    result: npt.NDArray[np.float64] = tone * envelope
    return result
