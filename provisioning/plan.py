"""Steps that each check whether the box is already as wanted before changing it; the run of a
list of them; and what the run amounts to in one sentence.

    steps = [Step("settings", check=settings_written, apply=write_settings), …]
    results = await run_steps(steps, reporter, dry_run=False)
    summarize(results, dry_run=False)    # "nothing to change" on a box already as wanted

A step's ``check`` only reads. In a dry run no ``apply`` is called: each step that is not yet as
wanted reports what it would change. A step without a ``check`` is a verification (is the box
online? does its sound card work?): it always runs, except in a dry run, and changes nothing.
The first failure ends the run; every step before it stays done, so running again carries on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from provisioning.errors import ProvisionError


class Outcome(StrEnum):
    OK = "ok"  # already as wanted, or verified
    CHANGED = "changed"
    WOULD_CHANGE = "would change"  # a dry run
    SKIPPED = "skipped"
    WARNING = "warning"  # verified, with something the technician should look at
    FAILED = "failed"


@dataclass(frozen=True)
class State:
    """What ``check`` found: ``done`` (already as wanted) and a few words on what is or would be."""

    done: bool
    detail: str = ""
    skip: bool = False


@dataclass(frozen=True)
class Done:
    detail: str
    outcome: Outcome = Outcome.CHANGED


@dataclass(frozen=True)
class Step:
    name: str
    apply: Callable[[], Awaitable[Done]]
    check: Callable[[], Awaitable[State]] | None = None
    # A verification that only reads (connect, look at the box): runs in a dry run too.
    read_only: bool = False


@dataclass(frozen=True)
class StepResult:
    name: str
    outcome: Outcome
    detail: str = ""


class Reporter(Protocol):
    def started(self, step: str) -> None: ...

    def finished(self, result: StepResult) -> None: ...


class Quiet:
    """A reporter that shows nothing (tests, and fleet runs that draw their own lines)."""

    def started(self, step: str) -> None:
        pass

    def finished(self, result: StepResult) -> None:
        pass


async def _one(step: Step, dry_run: bool) -> StepResult:
    if step.check is None:
        if dry_run and not step.read_only:
            return StepResult(step.name, Outcome.SKIPPED, "not in a dry run")
        done = await step.apply()
        return StepResult(step.name, done.outcome, done.detail)
    state = await step.check()
    if state.skip:
        return StepResult(step.name, Outcome.SKIPPED, state.detail)
    if state.done:
        return StepResult(step.name, Outcome.OK, state.detail)
    if dry_run:
        return StepResult(step.name, Outcome.WOULD_CHANGE, state.detail)
    done = await step.apply()
    return StepResult(step.name, done.outcome, done.detail)


async def run_steps(
    steps: Sequence[Step], reporter: Reporter, *, dry_run: bool
) -> list[StepResult]:
    results = []
    for step in steps:
        reporter.started(step.name)
        try:
            result = await _one(step, dry_run)
        except ProvisionError as exc:
            result = StepResult(step.name, Outcome.FAILED, str(exc))
        reporter.finished(result)
        results.append(result)
        if result.outcome is Outcome.FAILED:
            break
    return results


def failed(results: Sequence[StepResult]) -> StepResult | None:
    return next((r for r in results if r.outcome is Outcome.FAILED), None)


def summarize(results: Sequence[StepResult], *, dry_run: bool) -> str:
    """One sentence: what failed, or what changed (would change), or that nothing did."""
    failure = failed(results)
    if failure is not None:
        return f"{failure.name} failed: {failure.detail}"
    if dry_run:
        would = [r.name for r in results if r.outcome is Outcome.WOULD_CHANGE]
        if not would:
            return "dry run: nothing would change"
        return f"dry run: {len(would)} step{'s' if len(would) != 1 else ''} would change: " + (
            ", ".join(would)
        )
    changed = [r.name for r in results if r.outcome is Outcome.CHANGED]
    warnings = [r.name for r in results if r.outcome is Outcome.WARNING]
    sentence = (
        "nothing to change"
        if not changed
        else f"changed {len(changed)} step{'s' if len(changed) != 1 else ''}: {', '.join(changed)}"
    )
    if warnings:
        sentence += f"; look at: {', '.join(warnings)}"
    return sentence
