"""``twm-device midi``, as a technician runs it to write ``[midi]`` and map a pad: the real
command, the settings file a box has, and instruments on the rig's JACK server."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import mido

from device.settings import AudioSettings, MidiSettings, PadSettings
from tests.box_process import TWM_DEVICE, write_config
from tests.jack import Jack, jack_fixture  # noqa: F401  (provides ``jack``)

WAIT_SECONDS = 30.0  # a failsafe for a line that never comes; never a measurement


def config_for(tmp_path: Path, midi: MidiSettings) -> Path:
    return write_config(
        tmp_path,
        server_ws="ws://127.0.0.1:9/ws",  # never contacted: the command is about MIDI only
        token="not-used-by-this-command",
        audio=AudioSettings(),
        host_addresses=["127.0.0.1"],
        allow_insecure=True,
        midi=midi,
    )


class Lines:
    """A running command's standard output, line by line, waited for."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        self._stdout = process.stdout
        self._reader = threading.Thread(target=self._read, args=(self._stdout,), daemon=True)
        self._reader.start()

    def _read(self, stdout: Any) -> None:
        for line in stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def done(self) -> None:
        """After the process ended: its output read to the end, and the pipe closed."""
        self._reader.join(WAIT_SECONDS)
        self._stdout.close()

    def until(self, text: str) -> str:
        while True:
            try:
                line = self._queue.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                raise AssertionError(f"never printed {text!r}; printed {self.seen}") from None
            if line is None:
                raise AssertionError(f"ended without printing {text!r}; printed {self.seen}")
            self.seen.append(line)
            if text in line:
                return line


def test_the_ports_are_listed_with_their_settings_and_what_each_sends_is_shown(
    jack: Jack, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    pad = jack.backend.open_output(f"Pad-{tag}", virtual=True, client_name=f"Pad-{tag}")
    keys = jack.backend.open_output(f"Keys-{tag}", virtual=True, client_name=f"Keys-{tag}")
    synth = jack.listen(f"Synth-{tag}", lambda message: None)
    midi = MidiSettings(
        inputs=[tag],  # matches the pad too: the pad is the pad's, as in the box
        outputs=[f"synth-{tag}"],
        backend="jack",
        pad=PadSettings(port=f"Pad-{tag}", clap="cc 21"),
    )
    process = subprocess.Popen(
        [str(TWM_DEVICE), "midi", "--config", str(config_for(tmp_path, midi)), "--seconds", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},  # one table row per line
    )
    lines = Lines(process)
    try:
        assert "midi.pad.port" in lines.until(f"Pad-{tag}")
        assert f"midi.inputs '{tag}'" in lines.until(f"Keys-{tag}")
        assert f"midi.outputs 'synth-{tag}'" in lines.until(f"Synth-{tag}")
        lines.until("Play each instrument")

        pad.send(mido.Message("note_on", note=36, velocity=100))
        assert lines.until("note 36").endswith("note 36 (down), channel 1: START on the pad")
        pad.send(mido.Message("control_change", control=21, value=127, channel=9))
        assert lines.until("cc 21").endswith("cc 21 (value 127), channel 10: CLAP on the pad")
        pad.send(mido.Message("clock"))  # a clock's ticks are not shown
        keys.send(mido.Message("note_on", note=36, velocity=90))  # not the pad: just a note
        line = lines.until(f"Keys-{tag}")
        assert line.endswith("note 36 (down), channel 1"), line
        assert not [seen for seen in lines.seen if "clock" in seen]
    finally:
        process.terminate()
        process.wait(timeout=WAIT_SECONDS)
        lines.done()
        for port in (pad, keys, synth):
            port.close()


def test_a_midi_system_that_is_not_there_is_said_plainly(tmp_path: Path) -> None:
    config = config_for(tmp_path, MidiSettings(backend="alsa"))  # no ALSA sequencer here
    done = subprocess.run(
        [str(TWM_DEVICE), "midi", "--config", str(config), "--seconds", "0"],
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=False,
    )
    assert done.returncode == 1
    assert "cannot list the alsa MIDI ports" in done.stderr
    assert "midi.backend is 'alsa'" in done.stderr
    assert "Traceback" not in done.stderr
