"""``twm-provision fleet``: one command over every box of an inventory, at most ``parallel`` at a
time. Each box is worked on its own: one that is unreachable (or fails) fails alone, and the
others carry on.

    results = await run_fleet(inventory.box, job, parallel=4, progress=progress)
    # one FleetResult per box, in inventory order
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from rich.progress import Progress

from provisioning.errors import ProvisionError
from provisioning.inventory import Box
from provisioning.plan import Reporter
from provisioning.progress import BoxLine


@dataclass(frozen=True)
class FleetResult:
    box: str
    ok: bool
    summary: str


# What to do to one box: returns (ok, one sentence), reporting its steps as it goes.
Job = Callable[[Box, Reporter], Awaitable[tuple[bool, str]]]


async def run_fleet(
    boxes: Sequence[Box], job: Job, *, parallel: int, progress: Progress
) -> list[FleetResult]:
    limit = asyncio.Semaphore(max(1, parallel))

    async def one(box: Box) -> FleetResult:
        task = progress.add_task(f"{box.name}: waiting", total=None)
        line = BoxLine(progress, task, box.name)
        async with limit:
            try:
                ok, summary = await job(box, line)
            except ProvisionError as exc:
                ok, summary = False, str(exc)
            except Exception as exc:  # a bug must not take the other boxes down with it
                ok, summary = False, f"unexpected {type(exc).__name__}: {exc}"
        mark = "✓" if ok else "✗"
        progress.update(task, description=f"{box.name}: {mark} {summary}", completed=1, total=1)
        return FleetResult(box.name, ok, summary)

    return list(await asyncio.gather(*(one(box) for box in boxes)))
