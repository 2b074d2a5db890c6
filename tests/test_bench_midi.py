"""The MIDI benchmark's instruments (bench/midi.py): notes played are told apart and matched to
what came out, the figures are the ones its docstring defines, a run that lost most of its notes
gives none, and a short real run prints the JSON the issue asks for with every note heard once.
The benchmark itself measures; these check only its instruments, never a time."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import mido
import pytest
from rich.console import Console

from bench.latency import BenchError
from bench.midi import (
    DEFAULT_PLAYOUT_MS,
    GAP_MS,
    MAX_NOTES,
    Sample,
    collate,
    headline,
    key,
    note_figures,
    note_on,
    playout_key,
    rhythm,
    table,
)

REPO = Path(__file__).resolve().parent.parent
RUN_SECONDS = 240.0  # a failsafe for a run that hangs on a busy machine; never a measurement


def heard_after(played: list[float], latencies_ms: list[float | None]) -> list[float | None]:
    return [
        None if latency is None else at + latency / 1000
        for at, latency in zip(played, latencies_ms, strict=True)
    ]


# --- the notes ----------------------------------------------------------------------------------


def test_every_note_on_the_benchmark_can_play_is_told_apart_from_every_other() -> None:
    keys = {key(note_on(index)) for index in range(MAX_NOTES)}
    assert None not in keys and len(keys) == MAX_NOTES
    assert key(mido.Message("note_off", note=60)) is None
    assert key(mido.Message("note_on", note=60, velocity=0)) is None  # a note-off by another name
    assert key(mido.Message("control_change", control=20, value=3)) is None


def test_the_rhythm_is_irregular_within_its_bounds_and_the_same_for_the_same_seed() -> None:
    gaps = rhythm(500, seed=6)
    assert gaps == rhythm(500, seed=6)
    assert gaps != rhythm(500, seed=7)
    assert all(GAP_MS[0] <= gap <= GAP_MS[1] for gap in gaps)
    assert len(set(gaps)) > 490  # a rhythm, not a metronome


# --- matching what came out to what was played --------------------------------------------------


def test_what_came_out_is_matched_note_by_note_with_the_lost_doubled_strayed_and_reordered() -> (
    None
):
    played = [(float(index), note_on(index)) for index in range(4)]
    stray = mido.Message("note_on", note=note_on(0).note, velocity=note_on(0).velocity + 1)
    heard = [
        (0.01, note_on(0)),
        (0.02, mido.Message("control_change", control=20, value=5)),  # the probe: not a note
        (0.50, mido.Message("note_off", note=note_on(0).note, velocity=64)),
        (2.03, note_on(2)),
        (2.04, note_on(1)),  # after a note played later than it
        (2.05, note_on(2)),  # again
        (2.06, stray),  # never played
    ]
    sample = collate(played, heard)
    assert sample.played == [0.0, 1.0, 2.0, 3.0]
    assert sample.heard == [0.01, 2.04, 2.03, None]
    assert (sample.duplicates, sample.strays, sample.reordered) == (1, 1, 1)


# --- the figures --------------------------------------------------------------------------------


def test_the_figures_are_latency_its_spread_the_rhythm_as_heard_and_the_lost() -> None:
    played = [0.0, 0.2, 0.5, 0.7, 1.0]
    sample = Sample(played, heard_after(played, [10.0, 16.0, None, 11.0, 14.0]))
    figures = note_figures(sample)
    assert figures["note_on_ms"] == pytest.approx(
        {"median": 12.5, "p95": 15.7, "max": 16.0, "min": 10.0}
    )
    # The population standard deviation of 10, 16, 11, 14 (mean 12.75).
    assert figures["jitter_ms"] == pytest.approx(2.38)
    # Only the pairs of consecutive notes both heard: |16 - 10| and |14 - 11|.
    assert figures["interval_error_ms"] == pytest.approx({"median": 4.5, "p95": 5.85, "max": 6.0})
    assert (figures["played"], figures["heard"], figures["lost"]) == (5, 4, 1)
    assert json.loads(json.dumps(figures)) == figures


def test_a_steady_delay_is_no_jitter() -> None:
    played = [0.0, 0.3, 0.4, 0.9]
    figures = note_figures(Sample(played, heard_after(played, [25.0] * 4)))
    assert figures["jitter_ms"] == pytest.approx(0.0, abs=1e-9)
    assert figures["interval_error_ms"]["max"] == pytest.approx(0.0, abs=1e-9)


def test_a_run_that_lost_most_of_its_notes_gives_no_figures() -> None:
    played = [0.0, 0.2, 0.4, 0.6, 0.8]
    with pytest.raises(BenchError, match="only 2 of 5"):
        note_figures(Sample(played, heard_after(played, [10.0, None, None, 12.0, None])))
    with pytest.raises(BenchError, match="only 0 of 5"):
        note_figures(Sample(played, [None] * 5))
    # Half lost is not most: figures, with the loss beside them.
    assert note_figures(Sample(played[:4], heard_after(played[:4], [10.0, None, 11.0, None])))


# --- the report ---------------------------------------------------------------------------------


def _run(median: float, playout_ms: float) -> dict[str, Any]:
    played = [0.0, 0.25, 0.5]
    figures = note_figures(Sample(played, heard_after(played, [median - 1, median, median + 1])))
    return {**figures, "playout_ms": playout_ms, "route": {"care_home": "direct"}, "load_avg": 0.5}


def test_the_top_level_holds_the_default_box_and_the_table_every_run_side_by_side() -> None:
    default = playout_key(DEFAULT_PLAYOUT_MS)
    results = headline(
        {
            "rhythm": {"notes": 3, "gap_ms": list(GAP_MS), "seed": 6},
            "rig": _run(9.0, 0.0),
            "runs": {
                "clean": {"playout_0ms": _run(9.5, 0.0), default: _run(30.0, DEFAULT_PLAYOUT_MS)},
                "jitter10": {
                    "playout_0ms": {
                        "error": "the link's route was ['direct'], not relay",
                        "playout_ms": 0.0,
                    },
                },
            },
            "audio": {"added_ms": {"median": 3.0, "p95": 9.0, "max": 12.0}, "rig_ms": 35.0},
        }
    )
    parsed = json.loads(json.dumps(results))
    assert parsed["note_on_ms"]["median"] == 30.0 and "p95" in parsed["note_on_ms"]
    assert parsed["jitter_ms"] == pytest.approx(0.82)
    assert parsed["playout_ms"] == DEFAULT_PLAYOUT_MS and "error" not in parsed
    printed = io.StringIO()
    Console(file=printed, width=250).print(table(parsed))
    text = printed.getvalue()
    assert "the box as configured" in text and "on arrival" in text
    assert "not relay" in text and "audio (music)" in text


def test_without_the_default_run_the_top_level_says_why_instead_of_figures() -> None:
    failed = {"error": "only 1 of 200 note-ons came out", "playout_ms": DEFAULT_PLAYOUT_MS}
    results = headline(
        {"rhythm": {}, "runs": {"clean": {playout_key(DEFAULT_PLAYOUT_MS): failed}}, "audio": None}
    )
    assert results["note_on_ms"] is None and results["jitter_ms"] is None
    assert results["error"] == failed["error"]


# --- a real run ---------------------------------------------------------------------------------


def test_a_short_real_run_prints_the_json_and_hears_every_note_once(tmp_path: Path) -> None:
    """``python -m bench.midi --json`` as the issue runs it: the rig and the two boxes live on
    clean loopback, a handful of notes at the default playout, no audio."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.midi",
            "--json",
            "--notes=8",
            "--conditions=clean",
            f"--playouts={DEFAULT_PLAYOUT_MS:g}",
            "--no-audio",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        out, err = process.communicate(timeout=RUN_SECONDS)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # it stops everything it started, then exits
        out, err = process.communicate(timeout=60)
        pytest.fail(f"the benchmark did not finish:\n{err[-3000:]}")
    assert process.returncode == 0, err[-3000:]
    results = json.loads(out)
    assert set(results["note_on_ms"]) >= {"median", "p95"}
    assert isinstance(results["jitter_ms"], float)
    assert results["playout_ms"] == DEFAULT_PLAYOUT_MS and results["audio"] is None
    run = results["runs"]["clean"][playout_key(DEFAULT_PLAYOUT_MS)]
    assert run["route"] == {"care_home": "direct", "school": "direct"}
    rig = results["rig"]
    for what in (run, rig):
        assert what["played"] == 8 and what["heard"] == 8, what
        assert (what["lost"], what["duplicates"], what["strays"], what["reordered"]) == (0, 0, 0, 0)
    assert run["note_on_ms"] == results["note_on_ms"]
