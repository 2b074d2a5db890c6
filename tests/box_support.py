"""Running whole boxes (the real Agent) in a test: settings, button presses, waiting for states."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from device.agent import Agent
from device.audio.soundcard import CardFactory
from device.controls.pins import pin_factory
from device.lifecycle import actions as act
from device.lifecycle.states import State
from device.settings import DeviceSettings, load
from session_server.protocol import PartyKind

WAIT_SECONDS = 20.0
HOLD_SECONDS = 0.3


def box_settings(
    tmp: Path,
    name: str,
    *,
    server_ws: str,
    token: str,
    role: PartyKind = PartyKind.CARE_HOME,
    audio_input: str = "default",
    audio_output: str = "default",
) -> DeviceSettings:
    """A box's settings file, written as a technician's tool would, and loaded the real way."""
    home = tmp / name
    home.mkdir(parents=True, exist_ok=True)
    token_file = home / "device.token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    config = home / "device.toml"
    config.write_text(
        f'server_url = "{server_ws}"\n'
        f'role = "{role.value}"\n'
        f'token_file = "{token_file}"\n'
        f'runtime_dir = "{home / "run"}"\n'
        "[audio]\n"
        f'input = "{audio_input}"\n'
        f'output = "{audio_output}"\n'
        "[pins]\n"
        'factory = "mock"\n'
        f"hold_seconds = {HOLD_SECONDS}\n"
        "[link]\n"
        'host_addresses = ["127.0.0.1"]\n',
        encoding="utf-8",
    )
    return load(config)


@dataclass
class RunningBox:
    agent: Agent
    settings: DeviceSettings
    pins: MockFactory
    actions: list[act.Action] = field(default_factory=list)

    @property
    def state(self) -> State:
        return self.agent.machine.state

    def pin(self, name: str) -> Any:
        return self.pins.pin(getattr(self.settings.pins, name))

    def press(self, name: str) -> None:
        pin = self.pin(name)
        pin.drive_low()
        pin.drive_high()

    async def hold_start(self) -> None:
        pin = self.pin("start")
        pin.drive_low()
        await asyncio.sleep(HOLD_SECONDS * 2)
        pin.drive_high()

    def cues(self) -> list[str]:
        return [a.cue.value for a in self.actions if isinstance(a, act.PlayCue)]

    async def until_state(self, *states: State) -> None:
        await until(lambda: self.state in states, f"box in {', '.join(s.value for s in states)}")


async def until(check: Callable[[], Any], what: str, seconds: float = WAIT_SECONDS) -> Any:
    """Poll ``check`` until it is truthy; fail naming ``what`` after ``seconds`` (bounded wait)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result = check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"waited {seconds:g} s for: {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_box(
    settings: DeviceSettings, card_factory: CardFactory
) -> AsyncIterator[RunningBox]:
    factory = pin_factory(settings.pins)
    assert isinstance(factory, MockFactory)
    box = RunningBox(agent=None, settings=settings, pins=factory)  # type: ignore[arg-type]
    box.agent = Agent(
        settings, card_factory=card_factory, pin_factory=factory, on_action=box.actions.append
    )
    task = asyncio.create_task(box.agent.run())
    try:
        await until(lambda: box.agent.started or task.done(), "box started")
        if task.done():
            task.result()
        yield box
    finally:
        box.agent.stop()
        await asyncio.wait_for(task, 15)
        factory.close()
