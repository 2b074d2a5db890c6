"""How long a technician waits: a fresh enroll, an update, and an update that rolls back.

    sudo .venv/bin/python -m bench.provision            # a table (progress on stderr)
    sudo .venv/bin/python -m bench.provision --json     # one JSON object on stdout

Boots the test VM (tests/vm.py: Debian bookworm under qemu's software emulation, 2 vCPUs, a
sound card) from its clean image, starts the session server on this machine, and runs the real
``twm-provision`` against it as a technician would: ``enroll`` from nothing, ``enroll`` again,
``update`` to a healthy release, ``update`` to a broken release (which it rolls back). Each is
timed from the command's start to its end. The baseline beside each update is the fresh enroll:
what an update would cost if it installed the release from scratch.

Emulation makes everything several times slower than on a Pi 4 (and varies with the machine's
load); the figures compare the commands with each other, not with a Pi.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.logs import quiet_logs
from tests.provision_lab import BROKEN_RUN, Lab, copy_source, lab_for, words
from tests.vm import boot_vm, vm_image


def _timed(
    name: str, run: Callable[[], subprocess.CompletedProcess[str]], expect: int, err: Console
) -> float:
    err.print(f"[bold]{name}[/] …")
    began = time.monotonic()
    result = run()
    seconds = time.monotonic() - began
    if result.returncode != expect:
        raise SystemExit(f"{name}: exit {result.returncode}, expected {expect}: {words(result)}")
    err.print(f"[bold]{name}[/]: {seconds:.0f} s")
    return seconds


def measure(lab: Lab, err: Console) -> dict[str, float]:
    began = time.monotonic()
    # The tool's own step lines, each with the seconds since the bench began: where time goes.
    lab.echo = lambda line: err.print(f"{time.monotonic() - began:7.1f}  {line}", markup=False)
    healthy = copy_source(lab.workdir / "healthy", source=lab.source)
    broken = copy_source(lab.workdir / "broken", source=healthy, device_cli_change=BROKEN_RUN)
    return {
        "fresh_enroll_s": _timed("enroll from nothing", lab.enroll, 0, err),
        "enroll_again_s": _timed("enroll again (nothing to change)", lab.enroll, 0, err),
        "update_s": _timed("update to a healthy release", lambda: lab.update(healthy), 0, err),
        "update_rollback_s": _timed(
            "update to a broken release (rolled back)", lambda: lab.update(broken), 1, err
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()
    quiet_logs()
    err = Console(stderr=True, soft_wrap=True)  # the tool's lines as they are, unwrapped

    image = vm_image.ensure_image()
    with tempfile.TemporaryDirectory(prefix="twm-bench-provision-") as work:
        workdir = Path(work)
        began = time.monotonic()
        with boot_vm(image, workdir / "vm") as vm, lab_for(vm, workdir) as lab:
            boot = time.monotonic() - began
            err.print(f"VM booted in {boot:.0f} s")
            figures = {"vm_boot_s": boot, **measure(lab, err)}

    figures = {key: round(value, 1) for key, value in figures.items()}
    if args.json:
        json.dump(figures, sys.stdout, indent=2)
        print()
        return
    table = Table(title="twm-provision against the emulated VM (seconds)")
    for column in ("command", "time", "baseline: a fresh install"):
        table.add_column(column)
    fresh = figures["fresh_enroll_s"]
    table.add_row("enroll from nothing", f"{fresh:.0f}", "")
    table.add_row("enroll again (nothing to change)", f"{figures['enroll_again_s']:.0f}", "")
    table.add_row("update, healthy (watched 20 s)", f"{figures['update_s']:.0f}", f"{fresh:.0f}")
    table.add_row(
        "update, broken → rolled back (watched 20 s)",
        f"{figures['update_rollback_s']:.0f}",
        f"{fresh:.0f}",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
