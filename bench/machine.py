"""What every benchmark records about the machine it ran on, and how it stops on SIGTERM.

results["machine"] = machine(tone_hz=TONE_HZ)   # the base fields and the bench's own
stop_on_sigterm()                                # SIGTERM cleans up as Ctrl-C does
"""

from __future__ import annotations

import os
import platform
import signal
from datetime import UTC, datetime
from types import FrameType
from typing import Any


def machine(**extra: Any) -> dict[str, Any]:
    """Python, platform, cores, load and time of the run, then ``extra``."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


def stop_on_sigterm() -> None:
    """A SIGTERM (a CI timeout, ``kill``) raises KeyboardInterrupt, so that everything the
    benchmark started is stopped by the same ``finally`` blocks as after Ctrl-C."""
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
