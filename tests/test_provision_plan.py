"""Steps check before they change; a dry run changes nothing; the first failure stops the run;
and the one-sentence summary says what happened."""

from __future__ import annotations

from dataclasses import dataclass, field

from provisioning.errors import RemoteFailed
from provisioning.plan import (
    Done,
    Outcome,
    State,
    Step,
    StepResult,
    run_steps,
    summarize,
)


@dataclass
class Thing:
    """Something a step sets up, and a record of what the steps did to it."""

    name: str
    present: bool = False
    calls: list[str] = field(default_factory=list)

    async def check(self) -> State:
        self.calls.append("check")
        return State(self.present, f"{self.name} {'there' if self.present else 'missing'}")

    async def apply(self) -> Done:
        self.calls.append("apply")
        self.present = True
        return Done(f"made {self.name}")

    def step(self) -> Step:
        return Step(self.name, self.apply, self.check)


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def started(self, step: str) -> None:
        self.lines.append(f"start {step}")

    def finished(self, result: StepResult) -> None:
        self.lines.append(f"{result.outcome.value} {result.name}")


async def test_a_missing_thing_is_made_and_a_present_one_left_alone() -> None:
    there, missing = Thing("settings", present=True), Thing("unit")

    results = await run_steps([there.step(), missing.step()], Recorder(), dry_run=False)

    assert [r.outcome for r in results] == [Outcome.OK, Outcome.CHANGED]
    assert there.calls == ["check"]
    assert missing.calls == ["check", "apply"]
    assert summarize(results, dry_run=False) == "changed 1 step: unit"


async def test_a_second_run_has_nothing_to_change() -> None:
    things = [Thing("settings"), Thing("unit")]
    await run_steps([t.step() for t in things], Recorder(), dry_run=False)

    again = await run_steps([t.step() for t in things], Recorder(), dry_run=False)

    assert summarize(again, dry_run=False) == "nothing to change"


async def test_a_dry_run_only_checks_and_says_what_would_change() -> None:
    missing = Thing("unit")
    verified: list[str] = []

    async def verify() -> Done:
        verified.append("ran")
        return Done("online", Outcome.OK)

    async def look() -> Done:
        return Done("a Pi", Outcome.OK)

    steps = [
        Step("box", look, read_only=True),
        missing.step(),
        Step("online", verify),
    ]
    results = await run_steps(steps, Recorder(), dry_run=True)

    assert [(r.name, r.outcome) for r in results] == [
        ("box", Outcome.OK),
        ("unit", Outcome.WOULD_CHANGE),
        ("online", Outcome.SKIPPED),
    ]
    assert results[1].detail == "unit missing"
    assert missing.calls == ["check"] and not missing.present
    assert verified == []
    assert summarize(results, dry_run=True) == "dry run: 1 step would change: unit"


async def test_a_dry_run_of_a_finished_box_would_change_nothing() -> None:
    results = await run_steps([Thing("unit", present=True).step()], Recorder(), dry_run=True)

    assert summarize(results, dry_run=True) == "dry run: nothing would change"


async def test_the_first_failure_stops_the_run_and_is_the_summary() -> None:
    later = Thing("later")

    async def broken() -> Done:
        raise RemoteFailed("on pi@box: 'apt-get install' failed (exit 100): no network")

    async def needed() -> State:
        return State(False, "would install")

    reporter = Recorder()
    results = await run_steps(
        [Thing("first").step(), Step("packages", broken, needed), later.step()],
        reporter,
        dry_run=False,
    )

    assert [r.outcome for r in results] == [Outcome.CHANGED, Outcome.FAILED]
    assert later.calls == []
    assert reporter.lines == [
        "start first",
        "changed first",
        "start packages",
        "failed packages",
    ]
    assert summarize(results, dry_run=False) == (
        "packages failed: on pi@box: 'apt-get install' failed (exit 100): no network"
    )


async def test_warnings_are_named_in_the_summary() -> None:
    async def no_card() -> Done:
        return Done("no working sound card: …", Outcome.WARNING)

    results = await run_steps([Step("audio test", no_card)], Recorder(), dry_run=False)

    assert summarize(results, dry_run=False) == "nothing to change; look at: audio test"
