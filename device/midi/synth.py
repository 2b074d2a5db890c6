"""The box's built-in General MIDI synth: FluidSynth (Debian's libfluidsynth3, through ctypes)
with the GM SoundFont of fluid-soundfont-gm, rendered into the speaker's mixer.

    synth = FluidSynth()              # starts loading the SoundFont on its own thread
    synth.send(mido.Message("note_on", note=69, velocity=80))   # on the event loop; never blocks
    block = synth.render(480)         # on the speaker's audio thread: 480 float32 samples
    synth.close()

It plays what arrives from the other side when the box has no MIDI output port set: the
``Instrument`` of ``device.midi.instrument``, like ``MidiPorts``. ``device.audio.engine`` makes it
on demand (``AudioEngine.midi_synth``) and sums it into the speaker output at the call's volume.

FluidSynth runs with no audio driver of its own: the sound card's callback pulls blocks from
``render``, so the synth is clocked by the card like the rest of the speaker output. Everything
that touches the native synth happens on that audio thread (or under the lock ``render`` holds):
``send`` only converts the message and appends it to a short lock-protected list, which
``render`` takes and applies before each block. So notes start on the next block (10 ms).

Loading the SoundFont (148 MB) reads the whole file: 0.2 s from the page cache here, seconds from
a Pi's SD card. It happens on a thread of its own, because the factory is called on the event loop
(which also carries the audio link), and ``render`` must not call into FluidSynth meanwhile:
``fluid_synth_sfload`` holds FluidSynth's API lock, and a render waiting on it would stall the
speaker. Until the SoundFont is in, ``render`` returns silence and note-ons are dropped (counted):
playing them seconds late would be worse than missing the first notes of a session. Program and
controller changes are kept, so later notes sound as the player set them up. A SoundFont that
fails to load makes ``render`` raise ``MidiError``; the mixer then detaches the synth.

Output: FluidSynth renders stereo (the GM piano is panned across the keyboard); ``render`` mixes
it down to the box's one channel as the mean of left and right. FluidSynth's own default gain
(0.2) leaves room for sixteen busy channels and is far too quiet for one player next to the call:
an ``mf`` piano A4 (velocity 80) measured -43 dBFS RMS. ``DEFAULT_GAIN`` (1.0) puts that note
near -29 dBFS and a four-note ``f`` chord near -21 dBFS (peaks about 0.45), the level of music on
the call; harder playing is bent by the mixer's soft limiter rather than clipped. Reverb and
chorus stay on (GM piano without a room sounds boxy): with no notes sounding a 10 ms block costs
about 0.5% of a core here, and the engine makes the synth only when a session asks for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from pathlib import Path
from typing import Final

import mido
import numpy as np
import numpy.typing as npt
import structlog

from device.audio.format import SAMPLE_RATE
from device.midi.errors import MidiError

log = structlog.get_logger("twm.midi")

DEFAULT_SOUNDFONT: Final = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
DEFAULT_GAIN: Final = 1.0  # FluidSynth's synth.gain; see the module docstring
MAX_GAIN: Final = 4.0  # above this a single chord already drives the limiter hard
# One player's chords with the sustain pedal stay far below this; it bounds the CPU a runaway
# stream (or a stuck pedal) can take on a Pi, where FluidSynth's default is 256 voices.
POLYPHONY: Final = 64
# Messages waiting for the next block: far more than a player makes in 10 ms. Beyond it new ones
# are dropped (counted), because ``send`` must never wait.
MAX_PENDING: Final = 1_024
INSTALL_HINT: Final = (
    "run scripts/bootstrap as root (it installs libfluidsynth3 and fluid-soundfont-gm)"
)

_FLUID_OK: Final = 0
_FLUID_FAILED: Final = -1
_PITCH_CENTRE: Final = 8192  # mido's pitch is -8192..8191, FluidSynth's 0..16383

# A message as the audio thread applies it: (type, channel, first data value, second data value).
_Event = tuple[str, int, int, int]


def _load() -> ctypes.CDLL:
    name = ctypes.util.find_library("fluidsynth") or "libfluidsynth.so.3"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise MidiError(
            f"the FluidSynth library ({name}) cannot be loaded: {exc}; {INSTALL_HINT}"
        ) from exc
    c_int, c_void_p, c_char_p = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
    lib.new_fluid_settings.argtypes = []
    lib.new_fluid_settings.restype = c_void_p
    lib.delete_fluid_settings.argtypes = [c_void_p]
    lib.delete_fluid_settings.restype = None
    lib.fluid_settings_setnum.argtypes = [c_void_p, c_char_p, ctypes.c_double]
    lib.fluid_settings_setnum.restype = c_int
    lib.fluid_settings_setint.argtypes = [c_void_p, c_char_p, c_int]
    lib.fluid_settings_setint.restype = c_int
    lib.new_fluid_synth.argtypes = [c_void_p]
    lib.new_fluid_synth.restype = c_void_p
    lib.delete_fluid_synth.argtypes = [c_void_p]
    lib.delete_fluid_synth.restype = None
    lib.fluid_synth_sfload.argtypes = [c_void_p, c_char_p, c_int]
    lib.fluid_synth_sfload.restype = c_int
    for two in ("noteoff", "program_change", "pitch_bend", "channel_pressure"):
        function = getattr(lib, f"fluid_synth_{two}")
        function.argtypes = [c_void_p, c_int, c_int]
        function.restype = c_int
    for three in ("noteon", "cc", "key_pressure"):
        function = getattr(lib, f"fluid_synth_{three}")
        function.argtypes = [c_void_p, c_int, c_int, c_int]
        function.restype = c_int
    # (synth, frames, left buffer, left offset, left stride, right buffer, right offset, stride)
    lib.fluid_synth_write_float.argtypes = [c_void_p, c_int, c_void_p, c_int, c_int]
    lib.fluid_synth_write_float.argtypes += [c_void_p, c_int, c_int]
    lib.fluid_synth_write_float.restype = c_int
    lib.fluid_version_str.argtypes = []
    lib.fluid_version_str.restype = c_char_p
    return lib


_lib: ctypes.CDLL | None = None


def _fluidsynth() -> ctypes.CDLL:
    """The library, loaded on first use so importing this module never fails."""
    global _lib
    if _lib is None:
        _lib = _load()
    return _lib


def version() -> str:
    """libfluidsynth's version, e.g. ``2.3.1``."""
    text: bytes = _fluidsynth().fluid_version_str()
    return text.decode()


def check_soundfont(path: Path) -> Path:
    """``path`` if it is a readable SoundFont file, else ``MidiError`` saying what to do."""
    if not path.is_file():
        raise MidiError(
            f"no SoundFont at {path}; {INSTALL_HINT} for {DEFAULT_SOUNDFONT}, "
            "or give the path of another .sf2 file"
        )
    if not os.access(path, os.R_OK):
        raise MidiError(f"the SoundFont {path} is not readable by this user")
    with path.open("rb") as file:
        head = file.read(12)
    # A SoundFont 2 file is a RIFF file of form "sfbk"; FluidSynth's own check would only say
    # "failed to load" on its stderr.
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise MidiError(f"{path} is not a SoundFont 2 file (.sf2)")
    return path


def _event(message: mido.Message) -> _Event | None:
    """The audio thread's form of a channel-voice message; None for what a synth ignores."""
    kind = message.type
    if kind == "note_on":
        return (kind, message.channel, message.note, message.velocity)
    if kind == "note_off":
        return (kind, message.channel, message.note, 0)
    if kind == "control_change":
        return (kind, message.channel, message.control, message.value)
    if kind == "program_change":
        return (kind, message.channel, message.program, 0)
    if kind == "pitchwheel":
        return (kind, message.channel, message.pitch + _PITCH_CENTRE, 0)
    if kind == "aftertouch":
        return (kind, message.channel, message.value, 0)
    if kind == "polytouch":
        return (kind, message.channel, message.note, message.value)
    return None  # system messages (clock, sysex …): a GM synth has nothing to do with them


class FluidSynth:
    """A General MIDI synth rendered on demand, 48 kHz mono float32 (an ``Instrument``).

    ``soundfont``: a SoundFont 2 file (Debian's GM set by default). ``gain``: FluidSynth's
    master gain, 0 < gain <= ``MAX_GAIN``. Raises ``MidiError`` (with what to install) when the
    library or the SoundFont is missing; the SoundFont itself loads in the background
    (``loaded``, ``wait_loaded``).
    """

    def __init__(self, soundfont: Path = DEFAULT_SOUNDFONT, *, gain: float = DEFAULT_GAIN) -> None:
        if not 0.0 < gain <= MAX_GAIN:
            raise ValueError(f"gain must be above 0 and at most {MAX_GAIN}, not {gain}")
        self.soundfont = check_soundfont(soundfont)
        lib = _fluidsynth()
        settings = lib.new_fluid_settings()
        if not settings:
            raise MidiError("FluidSynth could not create its settings")
        self._settings: int | None = settings
        self._synth: int | None = None
        try:
            self._set_num(b"synth.sample-rate", float(SAMPLE_RATE))
            self._set_num(b"synth.gain", gain)
            self._set_int(b"synth.polyphony", POLYPHONY)
            synth = lib.new_fluid_synth(settings)
            if not synth:
                raise MidiError("FluidSynth could not create a synth")
        except BaseException:
            lib.delete_fluid_settings(settings)
            self._settings = None
            raise
        self._synth = synth
        self.gain = gain
        self.dropped = 0  # messages not played: the list was full, or note-ons while loading
        self._pending: list[_Event] = []
        self._pending_lock = threading.Lock()  # held only to append or swap: never for long
        self._lock = threading.Lock()  # the native synth: a render, or freeing it
        self._loading = True
        self._loaded = threading.Event()
        self._failure: str | None = None
        self._closed = False
        # Two channels side by side, grown if the card ever asks for a longer block.
        self._stereo = np.zeros((2, 0), dtype=np.float32)
        threading.Thread(target=self._load_soundfont, name="twm-synth-load", daemon=True).start()

    # --- on the event loop --------------------------------------------------------------

    def send(self, message: mido.Message) -> None:
        """Play ``message`` from the next block on (never blocks; see the module docstring)."""
        event = _event(message)
        if event is None:
            return
        with self._pending_lock:
            if len(self._pending) >= MAX_PENDING:
                self.dropped += 1
                return
            self._pending.append(event)

    @property
    def loaded(self) -> bool:
        """The SoundFont is in: notes sent from now on sound."""
        return self._loaded.is_set() and self._failure is None

    def wait_loaded(self, timeout: float) -> bool:
        """Block (off the loop) until the SoundFont has loaded or failed; whether it loaded."""
        self._loaded.wait(timeout)
        return self.loaded

    def close(self) -> None:
        """Free the native synth (also done when collected); it renders silence from then on."""
        with self._lock:
            self._closed = True
            if not self._loading:
                self._free()

    def __del__(self) -> None:
        if hasattr(self, "_lock"):
            self.close()
        else:  # __init__ failed before the synth existed
            settings, self._settings = getattr(self, "_settings", None), None
            if settings and _lib is not None:
                _lib.delete_fluid_settings(settings)

    # --- on the audio thread -------------------------------------------------------------

    def render(self, frames: int) -> npt.NDArray[np.float32]:
        """The next ``frames`` samples, after applying what ``send`` queued (a fresh array)."""
        if frames < 0:
            raise ValueError(f"cannot render {frames} frames")
        with self._pending_lock:
            events, self._pending = self._pending, []
        with self._lock:
            if self._closed:
                # Only a block the mixer began just before it let go of the synth gets here.
                return np.zeros(frames, dtype=np.float32)
            if self._failure is not None:
                raise MidiError(self._failure)
            if not self._loaded.is_set():
                self._keep_setup(events)
                return np.zeros(frames, dtype=np.float32)
            synth = self._live()
            for event in events:
                self._apply(synth, event)
            return self._write(synth, frames)

    def _keep_setup(self, events: list[_Event]) -> None:
        """While loading: put back all but the note-ons, which would sound seconds late."""
        setup = [event for event in events if event[0] != "note_on"]
        with self._pending_lock:  # also guards ``dropped``, which ``send`` counts too
            self.dropped += len(events) - len(setup)
            self._pending[:0] = setup

    @staticmethod
    def _apply(synth: int, event: _Event) -> None:
        # Return codes are not checked: FluidSynth answers FLUID_FAILED for harmless things,
        # such as a note-off for a note that already stopped or a program the font lacks.
        lib = _fluidsynth()
        kind, channel, first, second = event
        if kind == "note_on":
            lib.fluid_synth_noteon(synth, channel, first, second)
        elif kind == "note_off":
            lib.fluid_synth_noteoff(synth, channel, first)
        elif kind == "control_change":
            lib.fluid_synth_cc(synth, channel, first, second)
        elif kind == "program_change":
            lib.fluid_synth_program_change(synth, channel, first)
        elif kind == "pitchwheel":
            lib.fluid_synth_pitch_bend(synth, channel, first)
        elif kind == "aftertouch":
            lib.fluid_synth_channel_pressure(synth, channel, first)
        elif kind == "polytouch":
            lib.fluid_synth_key_pressure(synth, channel, first, second)

    def _write(self, synth: int, frames: int) -> npt.NDArray[np.float32]:
        if self._stereo.shape[1] < frames:
            self._stereo = np.zeros((2, frames), dtype=np.float32)
        left, right = self._stereo[0], self._stereo[1]
        code = _fluidsynth().fluid_synth_write_float(
            synth, frames, left.ctypes.data, 0, 1, right.ctypes.data, 0, 1
        )
        if code != _FLUID_OK:
            raise MidiError(f"FluidSynth could not render {frames} frames")
        mono: npt.NDArray[np.float32] = left[:frames] + right[:frames]
        mono *= 0.5
        return mono

    # --- the loader thread ---------------------------------------------------------------

    def _load_soundfont(self) -> None:
        # Safe without self._lock: nothing else calls into the synth until _loaded is set, and
        # close() leaves freeing it to this thread while _loading is True.
        synth = self._synth
        font = _fluidsynth().fluid_synth_sfload(synth, os.fsencode(self.soundfont), 1)
        with self._lock:
            self._loading = False
            if font == _FLUID_FAILED:
                self._failure = f"FluidSynth could not load the SoundFont {self.soundfont}"
                log.warning("the built-in synth has no sounds", problem=self._failure)
            if self._closed:
                self._free()
            self._loaded.set()

    # --- the native state ----------------------------------------------------------------

    def _live(self) -> int:
        if self._synth is None:
            raise MidiError("the synth is closed")
        return self._synth

    def _free(self) -> None:
        synth, self._synth = self._synth, None
        settings, self._settings = self._settings, None
        if _lib is not None:  # a synth exists only if the library was loaded
            if synth:
                _lib.delete_fluid_synth(synth)
            if settings:
                _lib.delete_fluid_settings(settings)

    def _set_num(self, name: bytes, value: float) -> None:
        if _fluidsynth().fluid_settings_setnum(self._settings, name, value) != _FLUID_OK:
            raise MidiError(f"FluidSynth refused the setting {name.decode()}={value}")

    def _set_int(self, name: bytes, value: int) -> None:
        if _fluidsynth().fluid_settings_setint(self._settings, name, value) != _FLUID_OK:
            raise MidiError(f"FluidSynth refused the setting {name.decode()}={value}")
