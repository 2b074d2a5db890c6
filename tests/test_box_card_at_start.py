"""A box switched on before its speakerphone is plugged in: ``twm-device run`` (as systemd starts
it) does not exit, shows its fault, and heals by itself when the card appears."""

from __future__ import annotations

from pathlib import Path

from device.lifecycle.states import State
from device.settings import AudioSettings
from tests.box_process import box_process, rig_environment, write_config
from tests.conftest import free_port
from tests.pipewire import PipeWire
from tests.pipewire import pipewire_fixture as pipewire_fixture

CARD_RETURN_SECONDS = 30.0  # a bound: the box looks for its card every few seconds


async def test_a_box_started_without_its_card_shows_a_fault_and_heals_when_it_is_plugged_in(
    pipewire: PipeWire, tmp_path: Path
) -> None:
    # The card's ALSA device does not exist yet: the file that will declare it is empty, as
    # the list of USB cards is before one is plugged in.
    slot = tmp_path / "usb-slot.conf"
    slot.write_text("# nothing plugged in\n")
    env = rig_environment(pipewire)
    env["ALSA_CONFIG_PATH"] += f":{slot}"
    config = write_config(
        tmp_path / "home",
        # No server listens here: the box is offline once its card works, which is enough.
        server_ws=f"ws://127.0.0.1:{free_port()}/ws",
        token="a-token-nobody-checks",
        audio=AudioSettings(input="late_card_mic", output="late_card_speaker"),
        host_addresses=["127.0.0.1"],
    )
    with box_process(config, runtime_dir=tmp_path / "home" / "run", env=env) as box:
        await box.until_state(State.FAULT)
        status = box.status
        assert status is not None and status.fault is not None
        assert "late_card_mic" in status.fault, status.fault  # names the card it looks for
        assert "starting anyway" in box.tail()

        # Plugged in: the card's nodes appear, and ALSA lists its device.
        with pipewire.box("late_card") as card:
            assert card.alsa_file is not None
            slot.write_text(card.alsa_file.read_text())

            await box.until_state(State.OFFLINE, seconds=CARD_RETURN_SECONDS)
            assert box.running()
