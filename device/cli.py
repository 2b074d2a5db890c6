"""``twm-device``: the box's command line.

twm-device run [--config /etc/twm/device.toml]   # the box itself (systemd runs this)
twm-device status [--json]                       # for a technician: how is this box?
twm-device test-audio                            # play a tone, listen with the microphone
twm-device midi [--seconds 30]                   # the MIDI ports, and what each instrument sends
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from importlib.metadata import version as distribution_version
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import typer
from rich.console import Console
from rich.table import Table

from device import status as status_file
from device.audio.cards import Direction, default_index, list_cards, resolve
from device.controls.pins import pin_factory
from device.errors import AudioError, DeviceError
from device.settings import DeviceSettings, load
from session_server import logs

app = typer.Typer(
    name="twm-device",
    help="The Together with Music box.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a traceback must never print the token
)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Settings file [default: $TWM_DEVICE_CONFIG or /etc/twm/device.toml].",
    ),
]


def _settings(config: Path | None) -> DeviceSettings:
    try:
        return load(config)
    except DeviceError as exc:
        errors.print(str(exc), style="red", markup=False)
        raise typer.Exit(2) from None


def _check_cards(settings: DeviceSettings) -> None:
    """A named card that does not exist is a wrong setting: say which cards do exist."""
    cards = list_cards()
    for wanted, direction in (
        (settings.audio.input, Direction.INPUT),
        (settings.audio.output, Direction.OUTPUT),
    ):
        resolve(wanted, direction, cards, default_index(direction))


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the box: buttons, lights, sound and the link to the other site."""
    # aiortc and numpy are heavy (seconds on a slow box): only the commands that need them load
    # them, so `status` answers quickly.
    from device.agent import Agent
    from device.audio.soundcard import sounddevice_card

    settings = _settings(config)
    logs.configure("INFO")
    try:
        settings.read_token()
        factory = pin_factory(settings.pins)
    except DeviceError as exc:
        errors.print(str(exc), style="red", markup=False)
        raise typer.Exit(2) from None
    try:
        _check_cards(settings)
    except AudioError as exc:
        # No reason to stop: the speakerphone may be plugged in later. The box shows its fault
        # and looks for the card every few seconds (device/audio/engine.py); a service that
        # exited instead would be restarted until systemd gave up, with no light saying why.
        errors.print(
            f"{exc} (starting anyway: the box shows a fault until the card is there)",
            style="yellow",
            markup=False,
        )

    agent = Agent(settings, card_factory=sounddevice_card, pin_factory=factory)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, agent.stop)
        await agent.run()

    try:
        asyncio.run(main())
    except DeviceError as exc:
        errors.print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from None
    finally:
        factory.close()  # after the buttons and lights, which the agent has closed


def _health_url(server_url: str) -> str:
    parts = urlsplit(server_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "/healthz", "", ""))


def _server_reachable(settings: DeviceSettings) -> tuple[bool, str]:
    url = _health_url(settings.server_url)
    try:
        response = httpx.get(url, timeout=3.0)
    except httpx.HTTPError as exc:
        return False, f"{url}: {type(exc).__name__}"
    return response.status_code == 200, f"{url}: HTTP {response.status_code}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _status_age(settings: DeviceSettings) -> float | None:
    """Seconds since the box last wrote its status, by this machine's clock at both ends.

    Not from the file's ``updated_at``: that is the server's time (the box aligns to it because
    its own clock may be wrong: a Pi has no real-time clock), so subtracting it from this
    machine's clock would be off by however wrong that clock is.
    """
    try:
        written = (settings.runtime_dir / status_file.STATUS_FILE).stat().st_mtime
    except OSError:  # replaced between reading it and now
        return None
    return max(0.0, time.time() - written)


def _gather(settings: DeviceSettings) -> dict[str, Any]:
    reachable, detail = _server_reachable(settings)
    report: dict[str, Any] = {"server": {"reachable": reachable, "detail": detail}}
    try:
        cards = list_cards()
        report["cards"] = [
            {"name": c.name, "inputs": c.inputs, "outputs": c.outputs} for c in cards
        ]
        chosen: dict[str, str] = {}
        for wanted, direction in (
            (settings.audio.input, Direction.INPUT),
            (settings.audio.output, Direction.OUTPUT),
        ):
            try:
                chosen[direction.value] = resolve(
                    wanted, direction, cards, default_index(direction)
                ).name
            except DeviceError as exc:
                chosen[direction.value] = f"none: {exc}"
        report["chosen"] = chosen
    except DeviceError as exc:
        report["cards"] = []
        report["chosen"] = {"problem": str(exc)}
    box = status_file.read(settings.runtime_dir)
    running = box is not None and _pid_alive(box.pid)
    report["agent"] = {"running": running, "status": box.model_dump(mode="json") if box else None}
    return report


@app.command()
def status(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """How is this box? State, server, sound cards, microphone level, last errors."""
    settings = _settings(config)
    report = _gather(settings)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    agent = report["agent"]
    box = agent["status"]
    if not agent["running"]:
        table.add_row("Box", "[red]not running[/] (systemctl status twm-device)")
    else:
        age = _status_age(settings)
        updated = f"updated {age:.0f} s ago" if age is not None else "age unknown"
        table.add_row("Box", f"{box['state']} ({updated}, pid {box['pid']})")
        table.add_row("Room", box["room"] or "-")
        table.add_row(
            "On air", "yes" if box["on_air"] else "no" + (" (muted)" if box["muted"] else "")
        )
        table.add_row("Volume", f"{box['volume']}/10")
        if box["next_session"]:
            nxt = box["next_session"]
            table.add_row("Next session", f"{nxt['title']} at {nxt['starts_at']}")
        audio = box["audio"] or {}
        level = audio.get("input_dbfs")
        table.add_row("Input level", f"{level:.1f} dBFS" if level is not None else "-")
        receive = audio.get("receive")
        if receive:
            table.add_row("Receiving", _receive_line(receive))
        if box["fault"]:
            table.add_row("Fault", f"[red]{box['fault']}[/]")
    server = report["server"]
    table.add_row(
        "Server",
        ("[green]reachable[/] " if server["reachable"] else "[red]unreachable[/] ")
        + server["detail"],
    )
    table.add_row("Sound cards", ", ".join(c["name"] for c in report["cards"]) or "none found")
    for direction, name in report["chosen"].items():
        table.add_row(f"  {direction}", name)
    if box and box["errors"]:
        for error in box["errors"][-5:]:
            table.add_row("Last errors", f"{error['at']}: {error['message']}")
    console.print(table)


def _receive_line(receive: dict[str, Any]) -> str:
    """e.g. "music: 12 ms waiting (target 11 ms, jitter 0 ms); 0 underruns, 1 late, ..."."""
    jitter = receive.get("jitter_ms")
    aim = f"target {receive['target_ms']:.0f} ms" + (
        f", jitter {jitter:.0f} ms" if jitter is not None else ""
    )
    return (
        f"{receive['path']}: {receive['delay_ms']:.0f} ms waiting ({aim}); "
        f"{receive['underruns']} underruns, {receive['late']} late, "
        f"{receive['concealed']} concealed, {receive['dropped_ms']:.0f} ms dropped"
    )


@app.command("test-audio")
def test_audio(config: ConfigOption = None) -> None:
    """Play a tone on the speaker and report what the microphone heard."""
    settings = _settings(config)
    try:
        from device.audio.selftest import self_test  # numpy: see run()

        result = asyncio.run(self_test(settings.audio))
    except DeviceError as exc:
        errors.print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from None
    # Reported, not judged: a speakerphone's own echo canceller may rightly remove its tone.
    console.print(result.summary(), markup=False)


@app.command()
def midi(
    config: ConfigOption = None,
    seconds: Annotated[
        float, typer.Option(min=0, max=3600, help="How long to show what is played (0: list only).")
    ] = 30.0,
) -> None:
    """List the MIDI ports, which setting picks each, and show what each instrument sends: to
    fill in [midi] and map a pad in [midi.pad]."""
    from device.midi.errors import MidiError  # rtmidi and mido: only for this command
    from device.midi.monitor import describe, picked_by, watching
    from device.midi.ports import Backend, port_names

    settings = _settings(config)
    backend = Backend(settings.midi.backend)
    try:
        inputs, outputs = port_names(backend)
    except MidiError as exc:
        errors.print(f"{exc} (midi.backend is {backend.value!r})", style="red", markup=False)
        raise typer.Exit(1) from None
    picked = picked_by(settings.midi, inputs, outputs)
    table = Table("MIDI port", "kind", "picked by", title=f"MIDI ports ({backend.value})")
    for names, kind in ((inputs, "instrument (input)"), (outputs, "synth (output)")):
        for name in names:
            table.add_row(name, kind, picked.get(name, "-"))
    console.print(table)
    if not inputs or seconds == 0:
        if not inputs:
            console.print("No instrument is plugged in (or its USB cable is charge-only).")
        return

    def show(port: str, message: Any) -> None:  # on rtmidi's threads; Rich's console locks
        if message.is_realtime:  # a clock's 24 ticks a beat would bury the notes
            return
        console.print(f"{port}: {describe(message, port, settings.midi)}", markup=False)

    with watching(backend, inputs, show):
        console.print(
            f"Play each instrument, press each pad: what they send shows here for "
            f"{seconds:g} s (Ctrl-C stops)."
        )
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(seconds)


@app.command()
def version() -> None:
    """Print the installed version of the appliance software."""
    typer.echo(distribution_version("twm-appliance"))
