"""Opus for music: a small ctypes binding to Debian's libopus0 (``libopus.so.0``).

    encoder = OpusEncoder()                      # mono 48 kHz, 10 ms, 128 kbit/s CBR
    payload = encoder.encode(pcm)                # pcm: 480 int16 samples -> one RTP payload
    decoder = OpusDecoder()
    samples = decoder.decode(payload)            # 480 int16 samples
    lost = decoder.decode_fec(next_payload, 480)  # a lost frame, from the next packet (or PLC)
    gap = decoder.conceal(480)                   # a lost frame, by packet loss concealment

aiortc's own Opus encoder (PyAV's libopus) is fixed at 20 ms frames, ``voip`` and stereo. Here
the box calls libopus directly so it chooses the frame size, the application and FEC itself.

Why ``lowdelay`` (OPUS_APPLICATION_RESTRICTED_LOWDELAY, CELT only) is the default. Measured
with libopus 1.3.1 on a 20 s music-like signal (harmonic notes with attack and decay every
250 ms over a held chord), 10 ms frames, constant bitrate, 5% random single-packet loss; SNR
against the input delayed by the lookahead; "lost" is the SNR over a lost frame and the one
after it (silence would score 0 dB); "5% loss" is the SNR of the whole signal at that loss:

    encoder                    lookahead     mode    clean    lost: FEC / PLC   5% loss  encode
    lowdelay 128k              120 (2.5 ms)  CELT    31.7 dB   5.1 /  5.1 dB    14.1 dB   60 us
    audio    128k              312 (6.5 ms)  CELT    31.6 dB   5.2 /  5.2 dB    14.4 dB   58 us
    audio     32k              312 (6.5 ms)  CELT    20.6 dB   4.9 /  4.9 dB    13.0 dB   48 us
    audio    128k, hybrid (*)  312 (6.5 ms)  hybrid  16.6 dB  16.5 /  3.8 dB    15.3 dB  430-560 us

    encode: CPU per 10 ms frame on this machine (60 us = 0.6% of a core); decode: ~0.2%.
    (*) forced with the private ctl OPUS_SET_FORCE_MODE; no public setting reaches it.

- In-band FEC (LBRR) exists only in SILK and hybrid packets. ``lowdelay`` never uses SILK, and
  ``audio`` at 10 ms picked CELT for music at every bitrate tried (24-128 kbit/s), FEC flag
  and loss percentage notwithstanding. So at 10 ms the FEC flag carries nothing: for CELT
  packets ``decode_fec`` returns exactly what ``conceal`` does (sample for sample).
- Real FEC needs hybrid mode. It does rebuild a lost frame (16.5 dB against 3.8 dB for PLC),
  but every clean frame loses 15 dB (SILK models speech below 8 kHz), so even at 5% loss the
  whole signal gains only 1 dB; it costs 7-9 times the CPU (the whole box has 10% of a Pi
  core), adds 4 ms of lookahead, and helps only if the receiver holds one more frame (10 ms)
  so that the next packet is there when the lost one is due: against a 15 ms target.
- ``audio`` buys nothing over ``lowdelay`` at 128 kbit/s (same mode, same SNR) for 4 ms more.

So: ``lowdelay``, 128 kbit/s, constant bitrate (VBR: 32.0 dB, 0.3 dB better, with packets
that vary in size), complexity 10 (5 saves 13 us a frame and loses 1.5 dB). ``fec=True`` stays
set, as the SDP advertises; it costs nothing in CELT packets. ``expected_loss_percent`` does
matter to CELT: it leans less on the previous frame's energies, so the decoder recovers sooner
after a loss (0%: lost 3.8 dB, 5% loss 12.3 dB, clean 32.7 dB; 5%: 5.1, 14.1 and 31.7 dB; 20%:
5.3, 14.5 and 31.6 dB), hence 5 by default. Losses are carried by CELT's PLC, which repeats
the last pitch period: on a held note it is nearly the note (32 dB on a steady tone), at a
note's attack it is a blur. The receiver still calls ``decode_fec`` when the next packet is at
hand: a browser's stream can be hybrid with FEC (measured on 20 ms, 32 kbit/s ``voip`` Opus:
the rebuilt frame is 5-15 dB closer to the lost one than concealment).

``OpusEncoder``, ``OpusDecoder`` and ``packet_samples`` are the whole interface; neither object
is thread-safe (use each from one thread), and each frees its libopus state on ``close()`` or
when collected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from device.audio.format import MUSIC_FRAME_SAMPLES
from device.audio.format import SAMPLE_RATE as FORMAT_SAMPLE_RATE
from device.errors import AudioError

SAMPLE_RATE: Final = FORMAT_SAMPLE_RATE
CHANNELS: Final = 1
FRAME_SAMPLES: Final = MUSIC_FRAME_SAMPLES  # 10 ms at 48 kHz: the music frame
MAX_PACKET_BYTES: Final = 1500  # above libopus's 1275-byte frame limit; one packet fits an MTU
# Durations libopus can encode or conceal, in samples at 48 kHz: 2.5, 5, 10, 20, 40, 60 ms.
FRAME_SIZES: Final = (120, 240, 480, 960, 1920, 2880)
MAX_DECODE_SAMPLES: Final = 5760  # 120 ms: the longest packet Opus has

Application = Literal["lowdelay", "audio"]

# opus_defines.h (stable across libopus 1.x).
_APPLICATIONS: Final = {"audio": 2049, "lowdelay": 2051}
_OPUS_OK: Final = 0
_SET_BITRATE: Final = 4002
_SET_VBR: Final = 4006
_SET_COMPLEXITY: Final = 4010
_SET_INBAND_FEC: Final = 4012
_SET_PACKET_LOSS_PERC: Final = 4014
_SET_DTX: Final = 4016
_SET_SIGNAL: Final = 4024
_GET_LOOKAHEAD: Final = 4027
_SIGNAL_MUSIC: Final = 3002


def _load() -> ctypes.CDLL:
    name = ctypes.util.find_library("opus") or "libopus.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise AudioError(
            f"the Opus library ({name}) cannot be loaded: {exc}; "
            "run scripts/bootstrap as root (it installs libopus0)"
        ) from exc
    c_int, c_int32, c_void_p = ctypes.c_int, ctypes.c_int32, ctypes.c_void_p
    error_out = ctypes.POINTER(c_int)
    lib.opus_encoder_create.argtypes = [c_int32, c_int, c_int, error_out]
    lib.opus_encoder_create.restype = c_void_p
    lib.opus_encoder_destroy.argtypes = [c_void_p]
    lib.opus_encoder_destroy.restype = None
    lib.opus_encode.argtypes = [c_void_p, c_void_p, c_int, c_void_p, c_int32]
    lib.opus_encode.restype = c_int32
    lib.opus_decoder_create.argtypes = [c_int32, c_int, error_out]
    lib.opus_decoder_create.restype = c_void_p
    lib.opus_decoder_destroy.argtypes = [c_void_p]
    lib.opus_decoder_destroy.restype = None
    lib.opus_decode.argtypes = [c_void_p, c_void_p, c_int32, c_void_p, c_int, c_int]
    lib.opus_decode.restype = c_int
    lib.opus_packet_get_nb_samples.argtypes = [c_void_p, c_int32, c_int32]
    lib.opus_packet_get_nb_samples.restype = c_int
    # The ctl functions are variadic: only the fixed arguments get argtypes, and every extra
    # argument is passed explicitly as c_int32 or a pointer to one (what the C macros expand to).
    lib.opus_encoder_ctl.argtypes = [c_void_p, c_int]
    lib.opus_encoder_ctl.restype = c_int
    lib.opus_decoder_ctl.argtypes = [c_void_p, c_int]
    lib.opus_decoder_ctl.restype = c_int
    lib.opus_strerror.argtypes = [c_int]
    lib.opus_strerror.restype = ctypes.c_char_p
    lib.opus_get_version_string.argtypes = []
    lib.opus_get_version_string.restype = ctypes.c_char_p
    return lib


_lib: ctypes.CDLL | None = None


def _opus() -> ctypes.CDLL:
    """The library, loaded on first use so importing this module never fails."""
    global _lib
    if _lib is None:
        _lib = _load()
    return _lib


def _message(code: int) -> str:
    text: bytes = _opus().opus_strerror(code)
    return text.decode()


def version() -> str:
    """libopus's own version string, e.g. ``libopus 1.3.1``."""
    text: bytes = _opus().opus_get_version_string()
    return text.decode()


def packet_samples(payload: bytes) -> int:
    """How many samples (at 48 kHz) this packet decodes to; ValueError if it is not Opus."""
    if not payload:
        raise ValueError("an empty Opus packet")
    count: int = _opus().opus_packet_get_nb_samples(payload, len(payload), SAMPLE_RATE)
    if count < 0:
        raise ValueError(f"not a valid Opus packet ({_message(count)})")
    return count


class OpusEncoder:
    """Mono 48 kHz Opus for music: fixed frame size, constant bitrate, no DTX.

    ``encode`` takes exactly ``frame_samples`` int16 samples and returns one packet (an RTP
    payload). The encoder always sends: digital silence becomes full packets, never a gap.
    ``application="lowdelay"`` (2.5 ms lookahead, CELT only) or ``"audio"`` (6.5 ms, may use
    SILK/hybrid, and so FEC, at speech-like bitrates); the module docstring says why lowdelay.
    ``fec`` turns on libopus's in-band FEC (it exists only in SILK/hybrid packets);
    ``expected_loss_percent`` is the loss libopus plans for (CELT too: it predicts less from
    the previous frame, so a stream recovers sooner after a loss).
    """

    def __init__(
        self,
        *,
        bitrate: int = 128_000,
        frame_samples: int = FRAME_SAMPLES,
        fec: bool = True,
        expected_loss_percent: int = 5,
        application: Application = "lowdelay",
        complexity: int = 10,
    ) -> None:
        if frame_samples not in FRAME_SIZES:
            raise ValueError(f"frame_samples must be one of {FRAME_SIZES}, not {frame_samples}")
        if not 6_000 <= bitrate <= 510_000:
            raise ValueError(f"bitrate must be 6000..510000 bit/s, not {bitrate}")
        if not 0 <= expected_loss_percent <= 100:
            raise ValueError(f"expected_loss_percent must be 0..100, not {expected_loss_percent}")
        if not 0 <= complexity <= 10:
            raise ValueError(f"complexity must be 0..10, not {complexity}")
        lib = _opus()
        error = ctypes.c_int(0)
        state = lib.opus_encoder_create(
            SAMPLE_RATE, CHANNELS, _APPLICATIONS[application], ctypes.byref(error)
        )
        if error.value != _OPUS_OK or not state:
            raise AudioError(f"libopus could not create an encoder: {_message(error.value)}")
        self._state: int | None = state
        self.frame_samples = frame_samples
        self.application: Application = application
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)
        self._ctl(_SET_BITRATE, bitrate)
        # Constant bitrate: every 10 ms packet is the same size, so loss of one costs the same as
        # any other and the network sees a steady stream.
        self._ctl(_SET_VBR, 0)
        self._ctl(_SET_COMPLEXITY, complexity)
        self._ctl(_SET_SIGNAL, _SIGNAL_MUSIC)
        self._ctl(_SET_INBAND_FEC, int(fec))
        self._ctl(_SET_PACKET_LOSS_PERC, expected_loss_percent)
        self._ctl(_SET_DTX, 0)  # DTX stops sending in quiet passages and clips held notes

    @property
    def lookahead(self) -> int:
        """The encoder's algorithmic delay, in samples at 48 kHz (OPUS_GET_LOOKAHEAD)."""
        value = ctypes.c_int32(0)
        self._ctl_get(_GET_LOOKAHEAD, value)
        return value.value

    def encode(self, pcm: npt.NDArray[np.int16]) -> bytes:
        """One frame of mono int16 samples in, one Opus packet out."""
        if pcm.dtype != np.int16 or pcm.shape != (self.frame_samples,):
            raise ValueError(
                f"expected {self.frame_samples} mono int16 samples, got {pcm.dtype} {pcm.shape}"
            )
        samples = np.ascontiguousarray(pcm)
        size = _opus().opus_encode(
            self._live(),
            samples.ctypes.data,
            self.frame_samples,
            self._out,
            MAX_PACKET_BYTES,
        )
        if size < 0:
            raise AudioError(f"libopus could not encode a frame: {_message(size)}")
        return self._out.raw[:size]

    def close(self) -> None:
        """Free the native encoder (also done when the object is collected)."""
        state, self._state = getattr(self, "_state", None), None
        if state and _lib is not None:  # a state exists only if the library was loaded
            _lib.opus_encoder_destroy(state)

    def __del__(self) -> None:
        self.close()

    def _live(self) -> int:
        if self._state is None:
            raise ValueError("the Opus encoder is closed")
        return self._state

    def _ctl(self, request: int, value: int) -> None:
        code = _opus().opus_encoder_ctl(self._live(), request, ctypes.c_int32(value))
        if code != _OPUS_OK:
            raise AudioError(f"libopus refused setting {request}={value}: {_message(code)}")

    def _ctl_get(self, request: int, value: ctypes.c_int32) -> None:
        code = _opus().opus_encoder_ctl(self._live(), request, ctypes.byref(value))
        if code != _OPUS_OK:
            raise AudioError(f"libopus refused query {request}: {_message(code)}")


class OpusDecoder:
    """Mono 48 kHz Opus decoder (a stereo stream, e.g. from a browser, is downmixed by libopus).

    For a lost packet call ``decode_fec`` with the packet after it if that one has arrived (it
    rebuilds the lost frame from in-band FEC where the stream carries it, otherwise conceals),
    or ``conceal`` if nothing later is there yet.
    """

    def __init__(self) -> None:
        lib = _opus()
        error = ctypes.c_int(0)
        state = lib.opus_decoder_create(SAMPLE_RATE, CHANNELS, ctypes.byref(error))
        if error.value != _OPUS_OK or not state:
            raise AudioError(f"libopus could not create a decoder: {_message(error.value)}")
        self._state: int | None = state
        self._pcm = np.zeros(MAX_DECODE_SAMPLES, dtype=np.int16)

    def decode(self, payload: bytes) -> npt.NDArray[np.int16]:
        """A whole packet to its samples (a fresh array)."""
        if not payload:
            raise ValueError("an empty Opus packet")
        return self._decode(payload, MAX_DECODE_SAMPLES, fec=False)

    def decode_fec(self, next_payload: bytes, samples: int) -> npt.NDArray[np.int16]:
        """The lost frame of ``samples`` just before ``next_payload``, from its in-band FEC.

        libopus falls back to concealment when ``next_payload`` carries no FEC (CELT-only
        packets never do). ``samples`` may span several lost frames: libopus conceals all but
        the last, which it rebuilds. Decode ``next_payload`` itself afterwards as usual.
        """
        if not next_payload:
            raise ValueError("an empty Opus packet")
        return self._decode(next_payload, self._check_gap(samples), fec=True)

    def conceal(self, samples: int) -> npt.NDArray[np.int16]:
        """``samples`` of packet loss concealment, continuing what was decoded last."""
        return self._decode(None, self._check_gap(samples), fec=False)

    def close(self) -> None:
        """Free the native decoder (also done when the object is collected)."""
        state, self._state = getattr(self, "_state", None), None
        if state and _lib is not None:  # a state exists only if the library was loaded
            _lib.opus_decoder_destroy(state)

    def __del__(self) -> None:
        self.close()

    @staticmethod
    def _check_gap(samples: int) -> int:
        # libopus conceals in whole 2.5 ms steps; anything else is refused with BAD_ARG.
        if samples <= 0 or samples % 120 or samples > MAX_DECODE_SAMPLES:
            raise ValueError(
                f"a lost frame must be a multiple of 120 samples (2.5 ms) up to "
                f"{MAX_DECODE_SAMPLES}, not {samples}"
            )
        return samples

    def _decode(self, payload: bytes | None, room: int, *, fec: bool) -> npt.NDArray[np.int16]:
        if self._state is None:
            raise ValueError("the Opus decoder is closed")
        count: int = _opus().opus_decode(
            self._state,
            payload,
            len(payload) if payload is not None else 0,
            self._pcm.ctypes.data,
            room,
            int(fec),
        )
        if count < 0:
            raise ValueError(f"libopus could not decode the packet ({_message(count)})")
        return self._pcm[:count].copy()
