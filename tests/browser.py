"""Debian's headless Chromium as the school's browser (never a downloaded one), as a fixture.

Flags from LAB.md: a fake microphone and permission prompt, no background traffic off the
machine, and loopback allowed in peer connections (required when only loopback exists).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aioice.ice
import pytest
from playwright.async_api import BrowserContext, async_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--allow-loopback-in-peer-connection",
    "--disable-quic",
]


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile", executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS,
        )  # fmt: skip
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiortc offers only 127.0.0.1, so the media between a page and an aiortc peer stays on
    loopback (aioice leaves loopback out by default, which would also fail in a namespace whose
    only interface is lo). Test modules use it with ``pytest.mark.usefixtures``."""

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(aioice.ice, "get_host_addresses", loopback)


@pytest.fixture
def problems() -> list[str]:
    """Uncaught errors and rejections in the page; each test ends by checking there were none."""
    return []
