"""Bounded waiting: poll a condition until it holds, or fail saying what never happened.

Tests wait for behaviour, never assert how long it took; the bound only stops a broken test from
hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def until(check: Callable[[], Any], what: str = "", seconds: float = 10.0) -> Any:
    """``check()``'s first truthy result, polled on the loop; AssertionError after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result = check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"waited {seconds:g} s for: {what or 'a condition'}")
        await asyncio.sleep(0.01)
