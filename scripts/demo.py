"""The whole demo: the server, a care-home box on a virtual sound card, and music in its room.

Run by ``scripts/demo`` (which installs what it needs first). It starts ``twm-server demo`` (a
care home, a school and a session open now), then, where this machine has no sound card, a
private PipeWire with a virtual microphone and speaker for the box, plays a little tune into the
box's room so that whoever opens the school page hears the "care home", and runs the box itself
(``twm-device run``) with its buttons on the keyboard. Ctrl+C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

from device.audio.virtual import Box, PipeWire

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RATE = 48_000
READY_SECONDS = 60.0

# "Twinkle, twinkle, little star": a tune residents and children both know (note, beats).
TUNE = [
    ("C4", 1), ("C4", 1), ("G4", 1), ("G4", 1), ("A4", 1), ("A4", 1), ("G4", 2),
    ("F4", 1), ("F4", 1), ("E4", 1), ("E4", 1), ("D4", 1), ("D4", 1), ("C4", 2),
]  # fmt: skip
SEMITONES = {"C": -9, "D": -7, "E": -5, "F": -4, "G": -2, "A": 0, "B": 2}


def frequency(note: str) -> float:
    return 440.0 * 2 ** ((SEMITONES[note[0]] + 12 * (int(note[1]) - 4)) / 12)


def tune(beat_seconds: float = 0.42) -> npt.NDArray[np.int16]:
    """The tune on a soft, bell-like voice: a few harmonics under a plucked envelope."""
    pieces = []
    for note, beats in TUNE:
        n = int(RATE * beat_seconds * beats)
        t = np.arange(n) / RATE
        f = frequency(note)
        voice = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)
        voice += 0.1 * np.sin(6 * np.pi * f * t)
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-3.0 * t / (beat_seconds * beats))
        pieces.append(voice * envelope)
    pieces.append(np.zeros(RATE))  # a breath before it starts again
    samples = np.concatenate(pieces)
    return (samples / np.abs(samples).max() * 0.3 * 32767).astype(np.int16)


def has_sound_card() -> bool:
    snd = Path("/dev/snd")
    return snd.is_dir() and any(p.name.startswith("pcm") for p in snd.iterdir())


def write_box_settings(data_dir: Path, port: int, box: Box | None) -> Path:
    home = data_dir / "box"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "device.toml"
    audio = (
        f'[audio]\ninput = "{box.settings.input}"\noutput = "{box.settings.output}"\n'
        if box is not None
        else ""
    )
    config.write_text(
        f'server_url = "ws://127.0.0.1:{port}/ws"\n'
        'role = "care_home"\n'
        f'token_file = "{data_dir / "care-home-device.token"}"\n'
        f'runtime_dir = "{home / "run"}"\n'
        "keyboard = true\n"
        f"{audio}"
        '[pins]\nfactory = "mock"\n',
        encoding="utf-8",
    )
    return config


async def wait_for_server(port: int, server: asyncio.subprocess.Process) -> None:
    url = f"http://127.0.0.1:{port}/healthz"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_SECONDS
    async with httpx.AsyncClient() as client:
        while loop.time() < deadline:
            if server.returncode is not None:
                raise SystemExit("the demo server stopped; see the message above")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url, timeout=1.0)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise SystemExit(f"the demo server did not answer at {url}")


async def play_music(box: Box) -> None:
    music = tune()
    while True:
        await box.play_into_room(music)


async def stop(process: asyncio.subprocess.Process | None) -> None:
    if process is None or process.returncode is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        await process.wait()


async def run(args: argparse.Namespace) -> int:
    data_dir = args.data_dir.resolve()
    server = await asyncio.create_subprocess_exec(
        BIN / "twm-server", "demo", "--data-dir", data_dir, "--port", str(args.port),
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    rig: PipeWire | None = None
    box: Box | None = None
    music: asyncio.Task[None] | None = None
    device: asyncio.subprocess.Process | None = None
    try:
        await wait_for_server(args.port, server)
        if args.virtual or not has_sound_card():
            print("==> no sound card here: starting a virtual one (PipeWire) for the box")
            rig = PipeWire.start()
            box = rig.box("carehome")
            music = asyncio.create_task(play_music(box))
            print("==> playing a little tune into the care home's room")
        config = write_box_settings(data_dir, args.port, box)
        print(f"==> starting the care-home box ({config})")
        # The box inherits this terminal: its buttons are keys typed here.
        device = await asyncio.create_subprocess_exec(BIN / "twm-device", "run", "--config", config)
        ended = [asyncio.create_task(device.wait()), asyncio.create_task(server.wait())]
        await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
        return device.returncode or 0
    finally:
        await stop(device)
        await stop(server)
        if music is not None:
            music.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await music
        if box is not None:
            box.remove()
        if rig is not None:
            rig.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".demo")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--virtual", action="store_true", help="use a virtual sound card even if a real one exists"
    )
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
