"""The school page end to end: Debian's headless Chromium on the real page, against the real
server, with an aiortc stand-in for the care-home box on the other side of the room.

What it proves: a teacher signs in with the access code, sees today's session with the care
home's name, joins, and audio flows both ways (the browser's own getStats, frames and sound at
aiortc); reactions cross each way over the data channel; Leave tells the care home and returns to
the list. Either side may join first (the page offers, or it answers). A refused join, a wrong
access code and an expired ticket each show the server's reason.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect

from session_server.protocol import PartyKind, ReactionKind, room_id
from tests.conftest import RunningServer
from tests.seed import seed_pair
from tests.standin_device import StandinDevice

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("loopback_only")]

CARE_HOME = "Rosewood"
SCHOOL = "Hillside"
STARTS_AT = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)  # 14:00 London winter time
WAIT_SECONDS = 20.0
WAIT_MS = WAIT_SECONDS * 1000


@dataclass(frozen=True)
class Seeded:
    room: str
    device_token: str
    access_code: str


@pytest.fixture
def seeded(server: RunningServer) -> Seeded:
    """Rosewood (a care home with a box) and Hillside (a school with an access code), with a
    session today at 14:00; the server's clock stands at 13:50, inside the window."""
    pair = seed_pair(server.url, server.admin_headers)
    return Seeded(
        room=room_id(pair.session_id, STARTS_AT),
        device_token=pair.care_home_token,
        access_code=pair.access_code,
    )


async def open_page(browser: BrowserContext, server: RunningServer, problems: list[str]) -> Page:
    page = browser.pages[0] if browser.pages else await browser.new_page()
    page.on("pageerror", lambda error: problems.append(str(error)))
    await page.goto(server.url)
    return page


async def sign_in(page: Page, code: str) -> None:
    await page.fill("#access-code", code)
    await page.click("#sign-in-button")


async def signalling_connected(page: Page) -> None:
    await eventually(
        lambda: page.evaluate("window.twm.signalling() === 'connected'"),
        "the page's signalling connection",
    )


async def eventually(check: Callable[[], Any], what: str) -> Any:
    """Poll until ``check`` (sync or async) gives something truthy; fail after WAIT_SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    last: Any = None
    while loop.time() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}; last seen: {last!r}")


def page_stats(page: Page) -> Awaitable[dict[str, Any] | None]:
    return page.evaluate("window.twm.stats()")


async def audio_flows_both_ways(page: Page, device: StandinDevice) -> None:
    await eventually(lambda: _flowing(page), "browser getStats to count audio packets both ways")
    await eventually(lambda: device.frames_heard > 0, "aiortc to receive the page's audio frames")
    # Chromium's fake microphone beeps: real sound, not just packets of silence, reaches aiortc.
    await eventually(lambda: device.loudest_heard > 1000, "aiortc to hear the page's beep")
    levels = await eventually(lambda: _both_meters_move(page), "both level meters to show sound")
    assert levels["local"] > 0 and levels["remote"] > 0


async def _states_since(page: Page, start: int, expected: list[str]) -> bool:
    """The call's states after ``start`` end with ``expected`` (the page keeps its history, so
    a short "Reconnecting…" cannot slip between two polls)."""
    states: list[str] = await page.evaluate("window.twm.states()")
    return states[start:][-len(expected) :] == expected


async def _audit(server: RunningServer, event: str, *, actor_prefix: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.url, headers=server.admin_headers) as admin:
        response = await admin.get("/api/audit", params={"event": event})
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()
    return [e for e in entries if e["actor"].startswith(actor_prefix)]


async def _flowing(page: Page) -> dict[str, Any] | None:
    stats = await page_stats(page)
    # totalAudioEnergy > 0: the care home's tone, not packets of silence, reached the browser.
    if (
        stats
        and stats["packetsReceived"] > 0
        and stats["packetsSent"] > 0
        and stats["audioEnergyReceived"] > 0
    ):
        return stats
    return None


async def _both_meters_move(page: Page) -> dict[str, float] | None:
    levels: dict[str, float] = await page.evaluate("window.twm.levels()")
    return levels if levels["local"] > 0 and levels["remote"] > 0 else None


async def test_teacher_joins_the_waiting_care_home_and_they_hear_and_react_to_each_other(
    server: RunningServer, seeded: Seeded, browser: BrowserContext, problems: list[str]
) -> None:
    device = StandinDevice(server.ws_url, seeded.device_token)
    try:
        await device.connect()
        joined = await device.join(seeded.room)
        assert not joined.peer_present  # the care home is first: the page must offer

        page = await open_page(browser, server, problems)
        await sign_in(page, seeded.access_code)
        card = page.locator(f'li.session[data-room="{seeded.room}"]')
        await expect(card).to_contain_text(CARE_HOME, timeout=WAIT_MS)
        await expect(card).to_contain_text("14:00")
        await expect(page.locator("#school-name")).to_have_text(SCHOOL)

        await card.get_by_role("button", name="Join").click()
        await expect(page.locator("#call-state-words")).to_have_text("Live", timeout=WAIT_MS)
        await audio_flows_both_ways(page, device)
        stats = await page_stats(page)
        assert stats is not None and stats["route"] == "direct"
        # The page reported its link to the audit log, with the route from its getStats.
        link_ups = await eventually(
            lambda: _audit(server, "link_up", actor_prefix="school-page:"),
            "the page's link-up report in the audit log",
        )
        assert link_ups[0]["room"] == seeded.room
        assert link_ups[0]["detail"]["route"] == "direct"

        # Page → care home: the clap button sends a protocol Reaction on the data channel.
        await page.click('button.reaction[data-kind="clap"]')
        await eventually(
            lambda: ReactionKind.CLAP in device.reactions, "the clap to reach the care home"
        )
        await eventually(lambda: device.heartbeats_heard > 0, "the page's heartbeats")

        # Care home → page: a heart is shown large, with who sent it.
        await device.send_reaction(ReactionKind.HEART)
        shown = page.locator("#incoming-reaction")
        await expect(shown).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#incoming-emoji")).to_have_text("❤️")
        await expect(page.locator("#incoming-words")).to_contain_text(CARE_HOME)

        # The link breaks without any signalling: the page, which offered, notices and builds
        # a new connection by itself; the care home answers and the sound is back.
        before = len(await page.evaluate("window.twm.states()"))
        await device.lose_link()
        heard = device.frames_heard
        await eventually(
            lambda: _states_since(page, before, ["reconnecting", "live"]),
            "the page to show Reconnecting…, then Live again",
        )
        await expect(page.locator("#call-state-words")).to_have_text("Live")
        await eventually(lambda: device.frames_heard > heard, "audio after the reconnection")

        # Leave: the care home is told, the page is back at the list.
        await page.click("#leave")
        await eventually(
            lambda: any(
                p.party.kind is PartyKind.SCHOOL and not p.present for p in device.presence
            ),
            "the care home to hear that the school left",
        )
        await expect(page.locator("#screen-sessions")).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#screen-call")).to_be_hidden()
        assert await page_stats(page) is None
        assert device.problems == []
        assert problems == []
    finally:
        await device.close()


async def test_page_waits_for_the_care_home_answers_its_offer_and_takes_it_back_after_it_left(
    server: RunningServer, seeded: Seeded, browser: BrowserContext, problems: list[str]
) -> None:
    page = await open_page(browser, server, problems)
    await sign_in(page, seeded.access_code)
    await (
        page.locator(f'li.session[data-room="{seeded.room}"]')
        .get_by_role("button", name="Join")
        .click()
    )
    state = page.locator("#call-state-words")
    await expect(state).to_have_text(f"Waiting for {CARE_HOME}…", timeout=WAIT_MS)

    device = StandinDevice(server.ws_url, seeded.device_token)
    try:
        await device.connect()
        joined = await device.join(seeded.room)
        assert joined.peer_present  # the page is first: the care home offers, the page answers
        await expect(state).to_have_text("Live", timeout=WAIT_MS)
        await audio_flows_both_ways(page, device)

        # The teacher turns echo cancellation off: the microphone is opened again without it
        # and the sound keeps going to the care home.
        await page.click("label.switch")
        await eventually(
            lambda: page.evaluate("window.twm.microphone()?.echoCancellation === false"),
            "the microphone to be reopened without echo cancellation",
        )
        heard = device.frames_heard
        await eventually(lambda: device.frames_heard > heard + 50, "audio after the switch")

        await device.leave()
        await expect(state).to_have_text("The care home has left", timeout=WAIT_MS)

        # The box comes back: it joins second, so it offers again, and the page answers.
        heard = device.frames_heard
        joined = await device.join(seeded.room)
        assert joined.peer_present
        await expect(state).to_have_text("Live", timeout=WAIT_MS)
        await eventually(lambda: device.frames_heard > heard, "audio again after the rejoin")
        await device.send_reaction(ReactionKind.WAVE)
        await expect(page.locator("#incoming-emoji")).to_have_text("👋", timeout=WAIT_MS)
        assert device.problems == []
        assert problems == []
    finally:
        await device.close()


async def test_a_refused_join_says_when_the_session_opens(
    server: RunningServer, seeded: Seeded, browser: BrowserContext, problems: list[str]
) -> None:
    page = await open_page(browser, server, problems)
    await sign_in(page, seeded.access_code)
    join = page.locator(f'li.session[data-room="{seeded.room}"]').get_by_role("button", name="Join")
    await expect(join).to_be_enabled(timeout=WAIT_MS)
    await signalling_connected(page)

    # The list was fetched inside the window; by the time Join is pressed the server's clock
    # says it is not open, so the server refuses the join and the page shows its reason.
    server.clock.set(datetime(2026, 11, 24, 13, 0, tzinfo=UTC))
    await join.click()
    await expect(page.locator("#sessions-message")).to_contain_text(
        "opens at 13:45", ignore_case=True, timeout=WAIT_MS
    )
    await expect(page.locator("#screen-call")).to_be_hidden()

    # Freshly loaded, the list itself says why Join is not offered.
    await page.reload()
    card = page.locator(f'li.session[data-room="{seeded.room}"]')
    await expect(card.locator(".why")).to_contain_text(
        "opens at 13:45", ignore_case=True, timeout=WAIT_MS
    )
    await expect(card.get_by_role("button", name="Join")).to_be_disabled()
    assert problems == []


async def test_a_wrong_access_code_shows_the_servers_reason(
    server: RunningServer, seeded: Seeded, browser: BrowserContext, problems: list[str]
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        refused = await client.post("/api/school/sign-in", json={"code": "AAAA-BBBB-CCCC"})
    assert refused.status_code == 401
    reason: str = refused.json()["detail"]

    page = await open_page(browser, server, problems)
    await sign_in(page, "AAAA-BBBB-CCCC")
    await expect(page.locator("#sign-in-message")).to_have_text(reason, timeout=WAIT_MS)
    await expect(page.locator("#screen-sessions")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0
    assert problems == []


async def test_an_expired_ticket_sends_the_teacher_back_to_sign_in(
    server: RunningServer, seeded: Seeded, browser: BrowserContext, problems: list[str]
) -> None:
    page = await open_page(browser, server, problems)
    await sign_in(page, seeded.access_code)
    # The list and the signalling hello used the ticket while it was good (the clock must not
    # move before they have).
    await expect(page.locator(f'li.session[data-room="{seeded.room}"]')).to_be_visible(
        timeout=WAIT_MS
    )
    await signalling_connected(page)

    server.clock.advance(timedelta(minutes=server.settings.ticket_minutes + 1))
    await page.reload()  # the kept ticket is tried again, and the server says it has expired
    await expect(page.locator("#screen-sign-in")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#sign-in-message")).to_contain_text(
        "expired", ignore_case=True, timeout=WAIT_MS
    )
    assert await page.evaluate("sessionStorage.length") == 0
    assert problems == []
