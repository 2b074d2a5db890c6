"""What the technician sees while a command runs: one line per step as it finishes (✓ ok,
● changed, ○ would change, · skipped, ! warning, ✗ failed) with a spinner on the step in hand;
for a fleet, one line per box; and the summary tables at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn
from rich.status import Status
from rich.table import Table
from rich.text import Text

from provisioning.plan import Outcome, StepResult

MARKS = {
    Outcome.OK: ("✓", "green"),
    Outcome.CHANGED: ("●", "cyan"),
    Outcome.WOULD_CHANGE: ("○", "yellow"),
    Outcome.SKIPPED: ("·", "dim"),
    Outcome.WARNING: ("!", "yellow"),
    Outcome.FAILED: ("✗", "red"),
}


def mark(outcome: Outcome) -> Text:
    symbol, style = MARKS[outcome]
    return Text(f"{symbol} {outcome.value}", style=style)


class StepLines:
    """Single-box reporter: a line per finished step."""

    def __init__(self, console: Console, box: str = "") -> None:
        self._console = console
        self._box = box
        self._status: Status | None = None

    def started(self, step: str) -> None:
        prefix = f"{self._box}: " if self._box else ""
        self._status = self._console.status(f"{prefix}{step} …")
        self._status.start()

    def finished(self, result: StepResult) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        symbol, style = MARKS[result.outcome]
        line = Text(f"{symbol} ", style=style)
        line.append(f"{result.name:<16}", style="bold")
        line.append(f" {result.outcome.value:<13}", style=style)
        line.append(result.detail)
        self._console.print(line)


class BoxLine:
    """One box's line in a fleet run's progress display."""

    def __init__(self, progress: Progress, task: TaskID, name: str) -> None:
        self._progress = progress
        self._task = task
        self._name = name

    def started(self, step: str) -> None:
        self._progress.update(self._task, description=f"{self._name}: {step} …")

    def finished(self, result: StepResult) -> None:
        if result.outcome is Outcome.FAILED:
            self._progress.update(self._task, description=f"{self._name}: ✗ {result.name} failed")


def fleet_progress(console: Console) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console)


def steps_table(results: Sequence[StepResult], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("Step", style="bold")
    table.add_column("Result")
    table.add_column("Detail", overflow="fold")
    for result in results:
        table.add_row(result.name, mark(result.outcome), result.detail)
    return table
