"""Which card a name in the settings means, and what the error says when there is none."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.audio.cards import Card, Direction, resolve, sound_server_running
from device.errors import AudioError

CARDS = [
    Card(0, "Jabra SPEAK 410 USB: Audio (hw:1,0)", inputs=1, outputs=2, default_samplerate=48e3),
    Card(1, "HDMI 0 (hw:0,3)", inputs=0, outputs=8, default_samplerate=48e3),
    Card(2, "carehome_mic", inputs=64, outputs=64, default_samplerate=44.1e3),
    Card(3, "pipewire", inputs=64, outputs=64, default_samplerate=44.1e3),
    Card(4, "default", inputs=64, outputs=64, default_samplerate=44.1e3),
]


def test_a_part_of_the_name_in_any_case_finds_the_card() -> None:
    assert resolve("jabra", Direction.INPUT, CARDS).index == 0
    assert resolve("SPEAK 410", Direction.OUTPUT, CARDS).index == 0
    assert resolve("  Carehome_Mic ", Direction.INPUT, CARDS).index == 2


def test_an_exact_name_wins_over_a_partial_one() -> None:
    cards = [Card(0, "mic two", 1, 0, 48e3), Card(1, "mic", 1, 0, 48e3)]
    assert resolve("MIC", Direction.INPUT, cards).index == 1
    assert resolve("mi", Direction.INPUT, cards).index == 0  # otherwise: the first listed


def test_default_is_portaudio_s_default_for_that_direction() -> None:
    assert resolve("default", Direction.INPUT, CARDS, default=2, sound_server=True).index == 2
    assert resolve("Default", Direction.OUTPUT, CARDS, sound_server=True).name == "default"


def test_without_a_sound_server_default_is_the_first_hardware_card() -> None:
    # A system service has no PipeWire: ALSA's default (PipeWire's plugin) would not open.
    assert resolve("default", Direction.INPUT, CARDS, default=4, sound_server=False).index == 0
    assert resolve("default", Direction.OUTPUT, CARDS, default=3, sound_server=False).index == 0
    # A hardware default stays; with no hardware card at all, the plugin is still tried.
    assert resolve("default", Direction.OUTPUT, CARDS, default=1, sound_server=False).index == 1
    assert resolve("default", Direction.INPUT, CARDS[2:], default=4, sound_server=False).index == 4


def test_a_sound_server_is_seen_by_its_socket_in_the_runtime_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert not sound_server_running()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert not sound_server_running()
    (tmp_path / "pipewire-0").touch()
    assert sound_server_running()


def test_a_card_without_that_direction_does_not_count() -> None:
    with pytest.raises(AudioError) as caught:
        resolve("HDMI", Direction.INPUT, CARDS)
    assert "HDMI" not in str(caught.value).split("found:")[1]


def test_the_error_names_what_was_found_and_the_setting_to_change() -> None:
    with pytest.raises(AudioError) as caught:
        resolve("Jabra", Direction.INPUT, CARDS[2:])
    assert str(caught.value) == (
        "no microphone named 'Jabra' — found: carehome_mic, pipewire, default; "
        "set audio.input (TWM_DEVICE_AUDIO__INPUT)"
    )
    with pytest.raises(AudioError) as caught:
        resolve("Jabra", Direction.OUTPUT, [])
    assert str(caught.value) == (
        "no speaker named 'Jabra' — found: no sound card at all; "
        "set audio.output (TWM_DEVICE_AUDIO__OUTPUT)"
    )
    with pytest.raises(AudioError, match="no default microphone"):
        resolve("default", Direction.INPUT, CARDS[:2])
    assert isinstance(caught.value, OSError)  # AudioError subclasses the builtin it resembles
