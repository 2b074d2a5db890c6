"""MIDI note-on latency and timing jitter between two boxes, beside the music path's audio latency.

    python -m bench.midi              # every condition, and the audio beside it (~6 minutes)
    python -m bench.midi --quick      # clean loopback only (and the audio)
    python -m bench.midi --no-audio   # MIDI only
    python -m bench.midi --json       # one JSON object on stdout (progress goes to stderr)
         # --notes 200  --seed 6  --conditions clean,jitter10  --playouts 0,20

Two whole boxes, the care home's and the school's, each its own ``twm-device run`` process with
its own virtual sound card, meet through the real session server on loopback, as in
tests/test_midi_e2e.py. Their MIDI is a private JACK server (``midi.backend = "jack"``; this
machine has no ALSA sequencer): the benchmark owns an instrument port ("Keys"), which the care
home's box opens as its input, and a synth port ("Synth"), which the school's box opens as its
output. It plays a rhythm of note-ons (each with its note-off) into Keys at irregular, seeded
intervals (60-400 ms: a player, not a flood) and notes, on JACK's thread, when each note-on comes
out of Synth. Both ends are in this process: one clock (``time.monotonic()``), no sync needed.

The figures (see bench/README.md):
  note_on_ms         heard - played for each note-on: median, p95, max (and min)
  jitter_ms          the standard deviation of those latencies (population, ms): how far notes
                     move off the beat, whatever their common delay
  interval_error_ms  for consecutive notes both heard: |heard interval - played interval|
                     (median, p95, max): the rhythm as a listener hears it
  lost               note-ons played that never came out (a box's playout drops a note-on more
                     than 150 ms late on purpose: those count here)

Runs, in one invocation, all with the same rhythm:
  rig       JACK on its own: Keys → a relay in this process (JACK's thread → another thread →
            an output, as a box's ports do) → Synth. No link: JACK's own two hops, the floor.
  clean     both boxes on loopback, host candidates; ``midi.playout_ms`` 0 (played on arrival)
            and the default 20
  jitter10  both boxes relay-only through coturn behind ``bench/udp_proxy.py`` delaying each
            datagram 10 ms ± 10 ms (bench/latency.py's condition); playout 0 and 20
  audio     bench/latency.py's clean condition with the music profile (``--quick``'s path):
            the audio link's added latency, beside the notes'

The top level of the JSON holds the default box's figures (clean, playout 20):
``{"note_on_ms": {"median", "p95", ...}, "jitter_ms", ...}``. A run in which most notes were lost
gives no figures, only the reason. Everything it starts it stops, however it ends (Ctrl-C and
SIGTERM included). Needs what scripts/bootstrap installs (jackd2, PipeWire, coturn); run as root
(JACK runs real-time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import random
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import mido
import numpy as np
import pytest
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from bench import latency
from bench.clicks import summary
from bench.graph import GraphError
from bench.latency import BenchError, Proxy, link_route
from bench.logs import quiet_logs
from bench.machine import machine, stop_on_sigterm
from bench.udp_proxy import Faults
from device.audio.virtual import PipeWire
from device.errors import AudioError
from device.settings import MidiSettings
from session_server.protocol import PartyKind, Route
from tests.box_process import BoxProcess
from tests.jack import Jack, _end_portaudio, start_jack
from tests.midi_rig import Synth

NOTES = 200
MAX_NOTES = 5_000  # each note-on is told apart by its (note, velocity): see note_on()
GAP_MS = (60.0, 400.0)  # between note-ons: a player's rhythm, never a burst
SEED = 6
RIG_NOTES = 100
RIG_GAP_MS = (20.0, 60.0)  # JACK alone: no link to spare, so a quicker rhythm
DEFAULT_PLAYOUT_MS = MidiSettings().playout_ms  # the box as configured by default
LOWEST_NOTE, NOTE_SPAN, LOWEST_VELOCITY = 36, 60, 40

WAIT = 60.0  # failsafes for a box (or a port) that never gets somewhere; never measurements
PROBE_EVERY = 0.25
SETTLE_SECONDS = 2.0  # after the first probe is heard: the live cue, the links' start-up
TAIL_SECONDS = 2.0  # after the last note-on: past the largest playout (200 ms) and late drops

WIDTH = 160  # rich wraps at 80 columns when not on a terminal: too narrow for the table
NOT_RUN = "the clean run with the default playout was left out (--conditions, --playouts)"
progress = Console(stderr=True, highlight=False, width=WIDTH)


@dataclass(frozen=True)
class Network:
    name: str
    description: str
    faults: Faults | None  # None: the boxes meet directly; else relay-only behind the proxy


NETWORKS = (
    Network("clean", "loopback, direct (host candidates)", None),
    Network("jitter10", "relay-only via proxy, 10 ± 10 ms", Faults(delay=0.010, jitter=0.010)),
)


def playout_key(playout_ms: float) -> str:
    return f"playout_{playout_ms:g}ms"


# --- the notes ----------------------------------------------------------------------------------


def rhythm(count: int, seed: int, gap_ms: tuple[float, float] = GAP_MS) -> list[float]:
    """The gap before each note-on, in ms: uniform in ``gap_ms``, the same for the same seed."""
    chooser = random.Random(seed)  # a rhythm, not a secret
    return [round(chooser.uniform(*gap_ms), 3) for _ in range(count)]


def note_on(index: int) -> mido.Message:
    """The ``index``-th note-on: its (note, velocity) differs from every other's below
    ``MAX_NOTES``, so a note that came out is known without any clock or counter."""
    return mido.Message(
        "note_on",
        note=LOWEST_NOTE + index % NOTE_SPAN,
        velocity=LOWEST_VELOCITY + (index // NOTE_SPAN) % (128 - LOWEST_VELOCITY),
    )


def note_off(on: mido.Message) -> mido.Message:
    """The note-off that ends ``on`` (a player's release velocity)."""
    return mido.Message("note_off", channel=on.channel, note=on.note, velocity=64)


def key(message: mido.Message) -> tuple[int, int, int] | None:
    """A note-on's identity (channel, note, velocity); None for anything else."""
    if message.type == "note_on" and message.velocity > 0:
        return (message.channel, message.note, message.velocity)
    return None


@dataclass(frozen=True)
class Sample:
    """One run's note-ons: when each was played and when it first came out (monotonic s)."""

    played: list[float]
    heard: list[float | None]  # None: it never came out
    duplicates: int = 0  # note-ons that came out again after their first time
    strays: int = 0  # note-ons that came out but were never played
    reordered: int = 0  # note-ons that came out after one played later than them


def collate(
    played: Sequence[tuple[float, mido.Message]], heard: Sequence[tuple[float, mido.Message]]
) -> Sample:
    """Match what came out to what was played, note-on by note-on."""
    index = {key(message): i for i, (_, message) in enumerate(played)}
    first: list[float | None] = [None] * len(played)
    duplicates = strays = reordered = 0
    latest = -1
    for at, message in heard:
        found = key(message)
        if found is None:
            continue  # note-offs, the probe's controllers
        i = index.get(found)
        if i is None:
            strays += 1
        elif first[i] is not None:
            duplicates += 1
        else:
            first[i] = at
            if i < latest:
                reordered += 1
            latest = max(latest, i)
    return Sample([at for at, _ in played], first, duplicates, strays, reordered)


def note_figures(sample: Sample) -> dict[str, Any]:
    """The figures of one run (see the module docstring); ``BenchError`` when most note-ons
    were lost: then the few that came through say nothing about the link's timing."""
    played = len(sample.played)
    pairs = [(p, h) for p, h in zip(sample.played, sample.heard, strict=True) if h is not None]
    if not pairs or 2 * (played - len(pairs)) > played:
        raise BenchError(
            f"only {len(pairs)} of {played} note-ons came out of the far synth port: "
            "no figures (most were lost)"
        )
    delays = [1000 * (h - p) for p, h in pairs]
    errors = [
        1000 * abs((h2 - h1) - (p2 - p1))
        for (p1, h1), (p2, h2) in zip(
            zip(sample.played, sample.heard, strict=True),
            zip(sample.played[1:], sample.heard[1:], strict=True),
            strict=False,
        )
        if h1 is not None and h2 is not None
    ]
    figures = summary(delays)
    assert figures is not None  # pairs is not empty
    return {
        "note_on_ms": {**figures, "min": round(min(delays), 2)},
        "jitter_ms": round(float(np.std(delays)), 2),
        "interval_error_ms": summary(errors),
        "played": played,
        "heard": len(pairs),
        "lost": played - len(pairs),
        "duplicates": sample.duplicates,
        "strays": sample.strays,
        "reordered": sample.reordered,
    }


# --- ports --------------------------------------------------------------------------------------


def heard(synth: Synth) -> list[tuple[float, mido.Message]]:
    """What came out of ``synth`` so far, each stamped on JACK's thread as it was handed over."""
    with synth.lock:
        return list(synth.heard)


class Relay:
    """The rig's stand-in for a box without its link: a JACK input that hands each message to
    a thread of its own, which writes it to a JACK output (a box's ports do the same: rtmidi's
    thread → the event loop → the ports' worker thread)."""

    def __init__(self, jack: Jack, source: str, target: str) -> None:
        self._queue: queue.Queue[mido.Message | None] = queue.Queue()
        self._out = jack.backend.open_output(_listed(jack.backend.get_output_names(), target))
        self._in = jack.backend.open_input(
            _listed(jack.backend.get_input_names(), source), callback=self._queue.put
        )
        self._thread = threading.Thread(target=self._run, name="midi-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (message := self._queue.get()) is not None:
            self._out.send(message)

    def close(self) -> None:
        self._in.close()
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._out.close()


def _listed(names: Sequence[str], wanted: str) -> str:
    """The JACK port name (``client:port``) of the port this process made as ``wanted``."""
    for name in names:
        if wanted in name:
            return name
    raise BenchError(f"JACK does not list the port {wanted!r} (it lists {list(names)})")


@contextlib.contextmanager
def running_jack() -> Iterator[Jack]:
    """A private JACK server (tests/jack.py), stopped and the environment put back on the way
    out. The boxes find it by ``JACK_DEFAULT_SERVER``, which ``start_jack`` sets."""
    try:
        jack, saved = start_jack()
    except pytest.fail.Exception as exc:  # its failures are a test's, here the bench's
        raise BenchError(str(exc)) from None
    try:
        yield jack
    finally:
        # See tests/jack.py: PortAudio (sounddevice, imported by bench.latency) may have joined
        # this server as a client, and must be ended before it. It is started again afterwards,
        # without JACK: the box's card code (the audio run's rig) restarts it expecting it up.
        sd = sys.modules.get("sounddevice")
        was_up = sd is not None and sd._initialized > 0
        _end_portaudio()
        jack.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if sd is not None and was_up:
            sd._initialize()


# --- playing ------------------------------------------------------------------------------------


def still_running(boxes: Sequence[BoxProcess]) -> None:
    for box in boxes:
        if not box.running():
            raise BenchError(
                f"a box exited during the measurement ({box.process.returncode}):\n{box.tail(20)}"
            )


async def perform(
    keys: Any,
    synth: Synth,
    gaps_ms: Sequence[float],
    what: str,
    boxes: Sequence[BoxProcess] = (),
) -> Sample:
    """Play a note-on after each gap into ``keys`` (its note-off half-way to the next), then
    wait for the stragglers; what came out of ``synth``, note by note."""
    loop = asyncio.get_running_loop()
    played: list[tuple[float, mido.Message]] = []
    with Progress(
        TextColumn(f"  {what}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=progress,
        transient=True,
        disable=not progress.is_terminal,  # a log (stderr to a file) gets the summary lines only
    ) as bar:
        task = bar.add_task(what, total=len(gaps_ms))
        target = loop.time()
        for index, gap in enumerate(gaps_ms):
            # Deadlines from one start, so that sleeping late never adds up; each note's
            # real moment is read just before it is written.
            target += gap / 2000
            await asyncio.sleep(max(0.0, target - loop.time()))
            if played:
                keys.send(note_off(played[-1][1]))
            target += gap / 2000
            await asyncio.sleep(max(0.0, target - loop.time()))
            message = note_on(index)
            played.append((time.monotonic(), message))
            keys.send(message)
            bar.update(task, completed=index + 1)
            still_running(boxes)
        await asyncio.sleep(GAP_MS[0] / 2000)
        if played:
            keys.send(note_off(played[-1][1]))
    deadline = loop.time() + TAIL_SECONDS
    while loop.time() < deadline:
        if sum(1 for _, m in heard(synth) if key(m) is not None) >= len(played):
            break
        await asyncio.sleep(0.05)
    return collate(played, heard(synth))


async def probe(keys: Any, synth: Synth, boxes: Sequence[BoxProcess]) -> None:
    """Play a controller every so often until it comes out of ``synth``: the boxes open their
    ports by polling (once a second), and JACK makes a connection real at its next cycle."""
    message = mido.Message("control_change", control=20, value=secrets.randbelow(128))
    deadline = time.monotonic() + WAIT
    while not any(m == message for _, m in heard(synth)):
        if time.monotonic() > deadline:
            raise BenchError(f"waited {WAIT:g} s for a probe to come out of {synth.port.name}")
        still_running(boxes)
        keys.send(message)
        await asyncio.sleep(PROBE_EVERY)


# --- the rig ------------------------------------------------------------------------------------


async def rig_run(jack: Jack, notes: int, seed: int) -> dict[str, Any]:
    """JACK on its own (see the module docstring): the floor under every run's figures."""
    tag = secrets.token_hex(3)
    keys_name, synth_name = f"RigKeys-{tag}", f"RigSynth-{tag}"
    with contextlib.ExitStack() as stack:
        keys = jack.backend.open_output(keys_name, virtual=True, client_name=keys_name)
        stack.callback(keys.close)
        synth = Synth(jack, synth_name)
        stack.callback(synth.port.close)
        relay = Relay(jack, keys_name, synth_name)
        stack.callback(relay.close)
        await probe(keys, synth, ())
        sample = await perform(keys, synth, rhythm(notes, seed, RIG_GAP_MS), "rig")
    result = note_figures(sample)
    result["load_avg"] = round(os.getloadavg()[0], 2)
    return result


# --- two boxes ----------------------------------------------------------------------------------


async def session_run(
    jack: Jack,
    pipewire: PipeWire,
    work: Path,
    network: Network,
    playout_ms: float,
    gaps_ms: Sequence[float],
) -> dict[str, Any]:
    """One session with both boxes at ``playout_ms``: the rhythm from the care home's
    instrument to the school's synth, and its figures."""
    work.mkdir(parents=True)  # noqa: ASYNC240 (a local directory: instant)
    tag = secrets.token_hex(3)
    keys_name, synth_name = f"HomeKeys-{tag}", f"SchoolSynth-{tag}"
    midi = {
        PartyKind.CARE_HOME: MidiSettings(
            inputs=[keys_name], backend="jack", playout_ms=playout_ms
        ),
        PartyKind.SCHOOL: MidiSettings(outputs=[synth_name], backend="jack", playout_ms=playout_ms),
    }
    proxy: Proxy | None = None
    with contextlib.ExitStack() as stack:
        keys = jack.backend.open_output(keys_name, virtual=True, client_name=keys_name)
        stack.callback(keys.close)
        synth = Synth(jack, synth_name)
        stack.callback(synth.port.close)
        cards = {
            PartyKind.CARE_HOME: stack.enter_context(pipewire.box(f"midi_home_{tag}")),
            PartyKind.SCHOOL: stack.enter_context(pipewire.box(f"midi_school_{tag}")),
        }
        # The boxes' MIDI is this JACK, never a default server they would start.
        env = {"JACK_DEFAULT_SERVER": jack.name, "JACK_NO_START_SERVER": "1"}
        async with latency.live_boxes(
            pipewire, work, network.faults, cards, env=env, midi=midi
        ) as (home, school, proxy):
            await probe(keys, synth, [home, school])
            await asyncio.sleep(SETTLE_SECONDS)
            started = time.monotonic()
            what = f"{network.name}, playout {playout_ms:g} ms"
            sample = await perform(keys, synth, gaps_ms, what, [home, school])
            seconds = time.monotonic() - started
            load = os.getloadavg()[0]
            route = {"care_home": link_route(home), "school": link_route(school)}
    wanted = Route.RELAY.value if network.faults is not None else Route.DIRECT.value
    if set(route.values()) != {wanted}:
        raise BenchError(f"the link's route was {sorted(set(route.values()))}, not {wanted}")
    result = note_figures(sample)
    result.update(
        playout_ms=playout_ms,
        seconds=round(seconds, 1),
        route=route,
        load_avg=round(load, 2),
    )
    if proxy is not None and proxy.stats:
        result["proxy"] = proxy.stats
    return result


# --- the whole run ------------------------------------------------------------------------------


async def measure_midi(
    jack: Jack,
    pipewire: PipeWire,
    work: Path,
    *,
    notes: int,
    seed: int,
    networks: Sequence[Network],
    playouts: Sequence[float],
) -> dict[str, Any]:
    """The rig, then each network with each playout; a run that fails is noted with its reason
    and the others still run."""
    gaps = rhythm(notes, seed)
    results: dict[str, Any] = {
        "rhythm": {"notes": notes, "gap_ms": list(GAP_MS), "seed": seed},
        "runs": {},
    }
    progress.print("rig: JACK on its own (two hops through a relay, no link)")
    try:
        results["rig"] = await rig_run(jack, min(notes, RIG_NOTES), seed)
        progress.print(f"  rig: {_said(results['rig'])}")
    except Exception as exc:  # the runs' figures still mean something without it
        results["rig"] = {"error": _reason(exc)}
        progress.print(f"  [red]rig failed:[/] {_first(results['rig']['error'])}")
    for network in networks:
        progress.print(f"{network.name}: {network.description}")
        runs: dict[str, Any] = results["runs"].setdefault(network.name, {})
        for playout_ms in playouts:
            name = playout_key(playout_ms)
            where = work / f"{network.name}-{name}"
            try:
                runs[name] = await session_run(jack, pipewire, where, network, playout_ms, gaps)
            except Exception as exc:  # one run that fails must not lose the others' figures
                message = _reason(exc)
                runs[name] = {"error": message, "playout_ms": playout_ms}
                progress.print(f"  [red]playout {playout_ms:g} ms failed:[/] {_first(message)}")
                continue
            progress.print(f"  playout {playout_ms:g} ms: {_said(runs[name])}")
    rig = results["rig"]
    if "note_on_ms" in rig:
        for runs in results["runs"].values():
            for run in runs.values():
                if "note_on_ms" in run:
                    beyond = run["note_on_ms"]["median"] - rig["note_on_ms"]["median"]
                    run["beyond_rig_ms"] = round(beyond, 2)
    return results


def _reason(exc: Exception) -> str:
    """Why a run failed: ours say it in words, anything else by its type as well."""
    return str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"


def _first(message: str) -> str:
    lines = message.splitlines()
    return lines[0] if lines else "failed"


def _said(result: dict[str, Any]) -> str:
    on = result["note_on_ms"]
    return (
        f"median {on['median']:.1f} ms, p95 {on['p95']:.1f}, jitter {result['jitter_ms']:.1f}; "
        f"{result['heard']}/{result['played']} heard"
    )


async def measure_audio() -> dict[str, Any]:
    """bench/latency.py's clean condition, music profile (its ``--quick`` path), in brief."""
    progress.print("audio: bench.latency --quick --profiles tuned (the music path, clean)")
    try:
        found = await latency.measure(
            quick=True,
            seconds=latency.QUICK_SECONDS,
            drift_minutes=latency.DRIFT_MINUTES,
            profiles=["tuned"],
            keep=None,
        )
    except (BenchError, GraphError, AudioError) as exc:
        return {"error": str(exc)}
    run = found["conditions"]["clean"]["tuned"]
    if "error" in run:
        return {"error": run["error"]}
    return {
        "profile": latency.PROFILES["tuned"],
        "condition": "clean",
        "added_ms": run["added_ms"],
        "rig_ms": found["rig_ms"],
        "seconds": run["seconds"],
        "load_avg": run["load_avg"],
        "directions": {
            name: {
                "added_ms": direction["added_ms"],
                "clicks_heard": direction["clicks_heard"],
                "clicks_played": direction["clicks_played"],
            }
            for name, direction in run["directions"].items()
        },
    }


async def measure(
    *,
    notes: int,
    seed: int,
    networks: Sequence[Network],
    playouts: Sequence[float],
    audio: bool,
) -> dict[str, Any]:
    """Everything, with everything it starts stopped again however it ends."""
    with tempfile.TemporaryDirectory(prefix="twm-midi-") as work, running_jack() as jack:
        pipewire = PipeWire.start()
        try:
            results = await measure_midi(
                jack,
                pipewire,
                Path(work),
                notes=notes,
                seed=seed,
                networks=networks,
                playouts=playouts,
            )
        finally:
            pipewire.stop()
    # After JACK is gone: the audio benchmark's own PortAudio (in this process) must not join it.
    results["audio"] = await measure_audio() if audio else None
    return headline(results)


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The default box's figures (clean, default playout) at the top level, as the issue asks;
    null when that run failed or was not run."""
    default = results["runs"].get("clean", {}).get(playout_key(DEFAULT_PLAYOUT_MS), {})
    ok = "note_on_ms" in default
    return {
        "note_on_ms": default["note_on_ms"] if ok else None,
        "jitter_ms": default["jitter_ms"] if ok else None,
        "interval_error_ms": default["interval_error_ms"] if ok else None,
        "lost": default["lost"] if ok else None,
        "playout_ms": DEFAULT_PLAYOUT_MS,
        **({} if ok else {"error": default.get("error", NOT_RUN)}),
        **results,
    }


# --- the table ----------------------------------------------------------------------------------


def _ms(values: dict[str, float] | None, name: str) -> str:
    return "-" if values is None else f"{values[name]:.1f}"


def table(results: dict[str, Any]) -> Table:
    rhythm_ = results["rhythm"]
    low, high = rhythm_["gap_ms"]
    out = Table(
        title=(
            f"MIDI note-on latency, ms: the care home's instrument port → the school's synth "
            f"port; {rhythm_['notes']} notes {low:g}-{high:g} ms apart (seed {rhythm_['seed']})"
        )
    )
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("run", "left"),
        ("playout", "right"),
        ("median", "right"),
        ("p95", "right"),
        ("max", "right"),
        ("jitter (sd)", "right"),
        ("interval err p95", "right"),
        ("heard", "right"),
        ("lost", "right"),
        ("median - rig", "right"),
        ("", "left"),
    )
    for name, justify in columns:
        out.add_column(name, justify=justify)

    def row(name: str, playout: str, result: dict[str, Any], note: str, **kw: Any) -> None:
        if "error" in result:
            out.add_row(
                name, playout, *[""] * 8, f"[red]failed:[/] {_first(result['error'])}", **kw
            )
            return
        on = result["note_on_ms"]
        beyond = result.get("beyond_rig_ms")
        if result.get("load_avg", 0) > (os.cpu_count() or 1):
            note += f" [yellow](busy: load {result['load_avg']:.1f})[/]"
        out.add_row(
            name,
            playout,
            _ms(on, "median"),
            _ms(on, "p95"),
            _ms(on, "max"),
            f"{result['jitter_ms']:.1f}",
            _ms(result["interval_error_ms"], "p95"),
            f"{result['heard']}/{result['played']}",
            str(result["lost"]),
            "" if beyond is None else f"{beyond:.1f}",
            note,
            **kw,
        )

    rig = results.get("rig")
    if rig is not None:
        row("rig", "", rig, "JACK alone: two hops, no link", end_section=True)
    for network, runs in results["runs"].items():
        for name, result in runs.items():
            playout_ms = result["playout_ms"]
            notes = []
            if playout_ms == DEFAULT_PLAYOUT_MS and network == "clean":
                notes.append("[bold]the box as configured[/]")
            if playout_ms == 0:
                notes.append("on arrival")
            if network != "clean":
                notes.append("relay, proxy 10 ± 10 ms")
            last = name == list(runs)[-1]
            row(network, f"{playout_ms:g} ms", result, "; ".join(notes), end_section=last)
    audio = results.get("audio")
    if audio is not None:
        if "error" in audio:
            out.add_row("audio", "", *[""] * 8, f"[red]failed:[/] {_first(audio['error'])}")
        else:
            added = audio["added_ms"]
            out.add_row(
                "audio (music)",
                "",
                _ms(added, "median"),
                _ms(added, "p95"),
                _ms(added, "max"),
                "",
                "",
                "",
                "",
                _ms(added, "median"),
                f"end to end - rig {audio['rig_ms']:.1f} ms",
            )
    return out


def failed(results: dict[str, Any]) -> bool:
    parts = [results.get("rig") or {}, results.get("audio") or {}]
    parts += [run for runs in results["runs"].values() for run in runs.values()]
    return any("error" in part for part in parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.midi",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="the clean condition only")
    parser.add_argument("--no-audio", action="store_true", help="skip the audio latency")
    parser.add_argument("--notes", type=int, default=NOTES, help=f"note-ons per run ({NOTES})")
    parser.add_argument("--seed", type=int, default=SEED, help="the rhythm's seed")
    names = [network.name for network in NETWORKS]
    parser.add_argument("--conditions", help=f"only these, comma-separated ({', '.join(names)})")
    parser.add_argument(
        "--playouts",
        default=f"0,{DEFAULT_PLAYOUT_MS:g}",
        help="midi.playout_ms values, comma-separated (default: 0 and the box's default)",
    )
    args = parser.parse_args(argv)
    if not 2 <= args.notes <= MAX_NOTES:
        parser.error(f"--notes: from 2 to {MAX_NOTES}")
    wanted = ["clean"] if args.quick else names
    if args.conditions is not None:
        wanted = [c.strip() for c in args.conditions.split(",") if c.strip()]
        if not wanted or any(c not in names for c in wanted):
            parser.error(f"--conditions: a comma-separated list of {', '.join(names)}")
    try:
        playouts = [float(p) for p in args.playouts.split(",") if p.strip()]
        for playout in playouts:
            MidiSettings(playout_ms=playout)
    except ValueError:  # pydantic's ValidationError is one
        parser.error("--playouts: milliseconds from 0 to 200, comma-separated")
    if not playouts:
        parser.error("--playouts: at least one")
    quiet_logs()
    stop_on_sigterm()
    try:
        # A failing box prints its last lines (tests/box_process.py): to stderr, not the JSON.
        with contextlib.redirect_stdout(sys.stderr):
            results = asyncio.run(
                measure(
                    notes=args.notes,
                    seed=args.seed,
                    networks=[network for network in NETWORKS if network.name in wanted],
                    playouts=playouts,
                    audio=not args.no_audio,
                )
            )
    except (BenchError, AudioError) as exc:
        progress.print(f"[red]the benchmark could not finish:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        progress.print("[red]interrupted[/]: everything it started has been stopped")
        return 130
    results["machine"] = machine()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        Console(highlight=False, width=WIDTH).print(table(results))
        if results["note_on_ms"] is None:
            progress.print(f"[red]no figures for the box as configured:[/] {results['error']}")
    return 1 if failed(results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
