"""PipeWire's echo canceller (``audio.echo_cancel = "pipewire"``) on the virtual sound card: the
box opens its card as it always does, the canceller is loaded, reused and unloaded around it, and
what the far end would hear keeps the room but not the box's own speaker."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from device.audio.cards import Direction
from device.audio.echo import (
    AEC_ARGS,
    SINK_PREFIX,
    SOURCE_PREFIX,
    EchoCanceller,
    LoadedModule,
    Node,
    pipewire_node,
)
from device.audio.engine import AudioEngine
from device.audio.format import SAMPLE_RATE
from device.audio.soundcard import SoundDeviceCard, sounddevice_card
from device.errors import AudioError
from device.settings import AudioSettings
from tests.pipewire import Box, PipeWire, pipewire_fixture  # noqa: F401
from tests.waiting import until

R = SAMPLE_RATE
WAIT = 30.0  # generous: only a failsafe, never a measurement

_boxes = iter(range(1_000_000))


@pytest.fixture
def box(pipewire: PipeWire) -> Iterator[Box]:
    with pipewire.box(f"echo{next(_boxes)}") as made:
        yield made


def echo_settings(box: Box) -> AudioSettings:
    return AudioSettings(input=box.mic, output=box.speaker, echo_cancel="pipewire")


def ours(box: Box) -> list[LoadedModule]:
    """The cancellers loaded for this box's microphone."""
    return [
        module
        for module in EchoCanceller(echo_settings(box)).loaded_modules()
        if module.arguments["source_name"] == SOURCE_PREFIX + box.mic
    ]


# --- signals and measures ---------------------------------------------------------------------


def far_end(seconds: float, seed: int = 4) -> npt.NDArray[np.float32]:
    """Music and speech from the other room: 250 ms notes of a harmonic instrument (plucked
    envelope) over bursts of speech-band noise (300-3400 Hz, a syllable rhythm)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * R)
    out = np.zeros(n)
    note = round(0.25 * R)
    for start in range(0, n, note):
        t = np.arange(min(note, n - start)) / R
        f0 = rng.choice([196.0, 220.0, 247.0, 262.0, 294.0, 330.0, 392.0, 440.0, 494.0, 523.0])
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-6.0 * t)
        out[start : start + len(t)] = envelope * sum(
            0.6**h * np.sin(2 * np.pi * f0 * (h + 1) * t) for h in range(5)
        )
    spectrum = np.fft.rfft(rng.standard_normal(n))
    hz = np.fft.rfftfreq(n, 1 / R)
    spectrum[(hz < 300) | (hz > 3400)] = 0
    speech = np.fft.irfft(spectrum, n)
    syllables = (np.arange(n) / R) % 0.6 < 0.3
    out += 0.25 * speech / speech.std() * syllables
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def near_end(seconds: float) -> npt.NDArray[np.int16]:
    """Someone in the room: a voice-like buzz (harmonics of a gliding 150 Hz) at 4 syllables/s."""
    t = np.arange(round(seconds * R)) / R
    phase = 2 * np.pi * np.cumsum(150.0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))) / R
    voice = sum(0.7**h * np.sin((h + 1) * phase) for h in range(8))
    voice *= 0.5 * (1 - np.cos(2 * np.pi * 4 * t))
    return (0.3 * 32767 * voice / np.abs(voice).max()).astype(np.int16)


def dbfs(samples: npt.NDArray[np.float64]) -> float:
    return float(10 * np.log10(np.mean(samples**2) + 1e-20))


def locate(recording: npt.NDArray[np.float64], reference: npt.NDArray[np.float64]) -> int:
    """Where ``reference`` starts in ``recording`` (the peak of their cross-correlation)."""
    size = 1 << (len(recording) + len(reference)).bit_length()
    correlation = np.fft.irfft(
        np.fft.rfft(recording, size) * np.conj(np.fft.rfft(reference, size)), size
    )
    return int(np.argmax(correlation[: len(recording)]))


def band_dbfs(samples: npt.NDArray[np.float64], centre: float) -> float:
    """The level within 15 % of ``centre`` Hz."""
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    hz = np.fft.rfftfreq(len(samples), 1 / R)
    band = (hz > 0.85 * centre) & (hz < 1.15 * centre)
    return float(10 * np.log10(spectrum[band].sum() / len(samples) ** 2 + 1e-20))


class FarEnd:
    """The box's card handler in a call: plays the far end, keeps what would be sent back."""

    def __init__(
        self, signal: npt.NDArray[np.float32], lead: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._signal = signal
        self._lead = lead
        self._loop = loop
        self.played = 0
        self.sent: list[npt.NDArray[np.int16]] = []
        self.problems: list[str] = []
        self._marks: list[tuple[int, asyncio.Event]] = []

    def on_input(self, block: npt.NDArray[np.int16]) -> None:
        self.sent.append(block.copy())

    def on_output(self, out: npt.NDArray[np.float32]) -> None:
        start = self.played - self._lead
        out.fill(0.0)
        if start + len(out) > 0 and start < len(self._signal):
            chunk = self._signal[max(0, start) : start + len(out)]
            at = max(0, -start)
            out[at : at + len(chunk)] = chunk
        self.played += len(out)
        for mark, event in self._marks:
            if self.played >= mark:
                self._loop.call_soon_threadsafe(event.set)

    def on_error(self, message: str) -> None:
        self.problems.append(message)

    async def played_until(self, sample: int) -> None:
        event = asyncio.Event()
        self._marks.append((sample, event))
        await asyncio.wait_for(event.wait(), timeout=sample / R + WAIT)


# --- what the far end hears ---------------------------------------------------------------------

FAR_SECONDS = 12.0  # the WebRTC canceller converges in a few seconds; measured over the last 6
NEAR_SECONDS = 3.0
LEAD = round(0.5 * R)


async def test_the_far_end_gets_the_room_but_not_its_own_echo(box: Box) -> None:
    loop = asyncio.get_running_loop()
    far = far_end(FAR_SECONDS)
    near = near_end(NEAR_SECONDS)
    player = FarEnd(far, LEAD, loop)
    # The room hears the speaker 30 ms late (plus the graph's delay) and 6 dB down.
    with box.hearing_own_speaker(latency_msec=30, gain_db=-6.0):
        card = sounddevice_card(echo_settings(box))  # as the box opens it
        assert isinstance(card, SoundDeviceCard) and card.canceller is not None
        heard = asyncio.ensure_future(box.record_microphone(FAR_SECONDS + NEAR_SECONDS + 4.0))
        card.start(player)
        try:
            # Someone in the room speaks once the far end has been quiet for a second.
            await player.played_until(LEAD + len(far) + R)
            await box.play_into_room(near)
            raw = (await heard).astype(np.float64) / 32768
        finally:
            card.stop()
    assert player.problems == []
    sent = np.concatenate(player.sent).astype(np.float64) / 32768

    # Line the two recordings up by the near-end voice, which both hold.
    near_ref = near.astype(np.float64) / 32768
    near_raw, near_sent = locate(raw, near_ref), locate(sent, near_ref)
    echo_raw = locate(raw, far.astype(np.float64))
    converged = slice(echo_raw + round(6.0 * R), echo_raw + len(far) - round(0.2 * R))
    shifted = slice(converged.start + near_sent - near_raw, converged.stop + near_sent - near_raw)
    echo_dbfs = dbfs(raw[converged])
    residual_dbfs = dbfs(sent[shifted])
    erle = echo_dbfs - residual_dbfs
    first_second = slice(echo_raw, echo_raw + R)
    first_erle = dbfs(raw[first_second]) - dbfs(
        sent[first_second.start + near_sent - near_raw : first_second.stop + near_sent - near_raw]
    )

    voice_in = raw[near_raw : near_raw + len(near)]
    voice_out = sent[near_sent : near_sent + len(near)]
    passed_db = dbfs(voice_out) - dbfs(voice_in)
    # The voice itself, harmonic by harmonic (its waveform is not kept: the canceller's
    # high-pass filter turns the phase of the low harmonics).
    harmonics_db = [
        band_dbfs(voice_out, 150.0 * h) - band_dbfs(voice_in, 150.0 * h) for h in range(1, 9)
    ]
    print(
        f"\necho in the microphone {echo_dbfs:.1f} dBFS, sent {residual_dbfs:.1f} dBFS: "
        f"ERLE {erle:.1f} dB (first second {first_erle:.1f} dB); near end "
        f"{dbfs(voice_in):.1f} dBFS in, {dbfs(voice_out):.1f} dBFS out ({passed_db:+.1f} dB), "
        f"harmonics {' '.join(f'{d:+.1f}' for d in harmonics_db)} dB; {card.glitches} late "
        f"blocks, real-time callbacks: {all(card.realtime.values())}"
    )
    assert echo_dbfs > -30  # the microphone heard a loud echo: not a measure of silence
    assert erle >= 20.0
    assert abs(passed_db) <= 3.0
    assert max(abs(d) for d in harmonics_db) <= 3.0


# --- loading, reusing, unloading ----------------------------------------------------------------


def test_one_canceller_is_shared_in_a_process_and_unloaded_when_the_last_user_stops(
    box: Box,
) -> None:
    first, second = EchoCanceller(echo_settings(box)), EchoCanceller(echo_settings(box))
    first.start()
    try:
        second.start()
        assert second.module == first.module
        assert [module.index for module in ours(box)] == [first.module]
        (loaded,) = ours(box)
        assert loaded.arguments["source_master"] == box.mic
        assert loaded.arguments["sink_master"] == box.speaker
        assert loaded.arguments["aec_args"] == AEC_ARGS
        first.stop()
        assert len(ours(box)) == 1  # the second still uses it
    finally:
        first.stop()
        second.stop()
    assert ours(box) == []


def leftover(pipewire: PipeWire, box: Box, *, pid: int, sink: str) -> int:
    """A canceller as a box loads it, left loaded by process ``pid``."""
    return pipewire.load_module(
        "module-echo-cancel",
        source_name=SOURCE_PREFIX + box.mic,
        sink_name=SINK_PREFIX + sink,
        source_master=box.mic,
        sink_master=sink,
        rate=R,
        channels=1,
        aec_args=f'"{AEC_ARGS}"',
        source_properties=f"twm.pid={pid}",
    )


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_canceller_left_by_a_box_that_died_is_reused_then_unloaded(
    pipewire: PipeWire, box: Box
) -> None:
    left = leftover(pipewire, box, pid=dead_pid(), sink=box.speaker)
    canceller = EchoCanceller(echo_settings(box))
    canceller.start()
    try:
        assert canceller.module == left
        assert [module.index for module in ours(box)] == [left]
    finally:
        canceller.stop()
    assert ours(box) == []


def test_a_leftover_on_other_cards_is_replaced(pipewire: PipeWire, box: Box) -> None:
    leftover(pipewire, box, pid=dead_pid(), sink=box.room)
    canceller = EchoCanceller(echo_settings(box))
    canceller.start()
    try:
        (loaded,) = ours(box)
        assert loaded.index == canceller.module
        assert loaded.arguments["sink_master"] == box.speaker
    finally:
        canceller.stop()
    assert ours(box) == []


def test_a_canceller_another_live_box_uses_is_shared_and_left_loaded(
    pipewire: PipeWire, box: Box
) -> None:
    other = subprocess.Popen(["sleep", "60"])
    try:
        left = leftover(pipewire, box, pid=other.pid, sink=box.speaker)
        canceller = EchoCanceller(echo_settings(box))
        canceller.start()
        assert canceller.module == left
        canceller.stop()
        assert [module.index for module in ours(box)] == [left]  # the other box's to unload
        pipewire.unload_module(left)
    finally:
        other.kill()
        other.wait()


# --- which nodes the settings mean --------------------------------------------------------------


def test_the_settings_name_pipewire_nodes_as_they_name_cards(pipewire: PipeWire, box: Box) -> None:
    def masters(input: str, output: str) -> tuple[str | None, str | None]:
        canceller = EchoCanceller(AudioSettings(input=input, output=output, echo_cancel="pipewire"))
        canceller.start()
        canceller.stop()
        return canceller.source_master, canceller.sink_master

    assert masters(box.mic.upper(), box.speaker) == (box.mic, box.speaker)
    pipewire.pactl("set-default-source", box.mic)
    pipewire.pactl("set-default-sink", box.speaker)
    assert masters("default", "default") == (box.mic, box.speaker)
    with pytest.raises(AudioError) as caught:
        masters("Jabra", box.speaker)
    message = str(caught.value)
    assert message.startswith("no microphone named 'Jabra' in PipeWire for the echo canceller")
    assert box.mic in message and "TWM_DEVICE_AUDIO__INPUT" in message
    assert f"{box.room}.monitor" not in message  # a sink's monitor is no microphone
    assert ours(box) == []


USB = Node(
    "alsa_input.usb-0b0e_Jabra_SPEAK_410_USB_50C2ED1B8A0Ex011200-00.mono-fallback",
    "Jabra SPEAK 410 USB Mono",
    {"alsa.card": "1", "alsa.device": "0", "alsa.card_name": "Jabra SPEAK 410 USB"},
)
HDMI_IN = Node("alsa_input.platform-hdmi", "Built-in Audio", {"alsa.card": "0", "alsa.device": "3"})


def test_portaudio_names_of_alsa_cards_find_their_pipewire_nodes() -> None:
    nodes = [HDMI_IN, USB]
    # What PortAudio lists for the card, as the setting may hold it.
    assert pipewire_node("Jabra SPEAK 410 USB: Audio (hw:1,0)", Direction.INPUT, nodes, None) == (
        USB.name
    )
    assert pipewire_node("hw:1", Direction.INPUT, nodes, None) == USB.name
    assert pipewire_node("jabra", Direction.INPUT, nodes, None) == USB.name
    assert pipewire_node("Jabra SPEAK 410 USB: Audio", Direction.INPUT, nodes, None) == USB.name
    assert pipewire_node("default", Direction.INPUT, nodes, HDMI_IN.name) == HDMI_IN.name
    with pytest.raises(AudioError, match="no default microphone"):
        pipewire_node("default", Direction.INPUT, nodes, None)
    with pytest.raises(AudioError, match="no speaker named 'hw:2,0'"):
        pipewire_node("hw:2,0", Direction.OUTPUT, nodes, None)


# --- what the box says when it cannot ----------------------------------------------------------


def test_without_pipewire_the_error_says_what_to_do(box: Box) -> None:
    settings = echo_settings(box)
    elsewhere = {**os.environ, "PULSE_SERVER": "unix:/nonexistent/pulse/native"}
    with pytest.raises(AudioError) as caught:
        EchoCanceller(settings, environ=elsewhere).start()
    assert "cannot reach PipeWire's Pulse server (pipewire-pulse)" in str(caught.value)
    assert "scripts/bootstrap" in str(caught.value)

    no_pactl = {**os.environ, "PATH": "/nonexistent"}
    with pytest.raises(AudioError, match=r"pactl not found.*scripts/bootstrap"):
        EchoCanceller(settings, environ=no_pactl).start()


def test_a_canceller_pipewire_does_not_have_is_a_clear_error(box: Box) -> None:
    # As an older pipewire-pulse, or one without its modules, answers.
    with pytest.raises(AudioError) as caught:
        EchoCanceller(echo_settings(box), module_name="module-echo-cancel-nowhere").start()
    assert "PipeWire could not load its echo canceller" in str(caught.value)
    assert "libspa-0.2-modules" in str(caught.value)
    assert ours(box) == []


# --- the card behind it vanishing ---------------------------------------------------------------


async def test_a_card_vanishing_behind_the_canceller_is_a_fault_and_its_return_a_recovery(
    box: Box,
) -> None:
    failed: list[str] = []
    restored: list[bool] = []
    engine = AudioEngine(
        echo_settings(box), sounddevice_card, failed.append, lambda: restored.append(True)
    )
    await engine.start()
    try:
        await until(lambda: engine.cards_description().running, "the card running", WAIT)
        assert engine.cards_description().input == f"{box.mic} (echo-cancelled by PipeWire)"
        assert len(ours(box)) == 1

        box.vanish()
        await until(lambda: failed, "the engine to notice", WAIT)
        assert failed[0] == f"the microphone ({box.mic}) is gone: was the sound card unplugged?"
        await until(lambda: not ours(box), "the canceller to be unloaded", WAIT)

        box.restore()
        await until(lambda: restored, "the card to come back", WAIT)
        assert len(failed) == 1
        assert len(ours(box)) == 1
    finally:
        await engine.close()
    assert ours(box) == []
