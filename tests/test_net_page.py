"""The box's network side against the real school page in headless Chromium: the page's
call.js and the box's LinkManager build the link together whichever side offers, trade audio,
reactions and heartbeats, and rebuild a lost link the way each of them expects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, expect

from device.lifecycle.actions import OpenLink, SendReaction
from device.lifecycle.events import JoinAccepted, LinkUp, PeerJoined, ReactionArrived, ServerUp
from session_server.protocol import PartyKind, ReactionKind, room_id
from tests.conftest import RunningServer
from tests.net_support import Box, eventually, start_box
from tests.seed import Pair, seed_pair

pytestmark = pytest.mark.browser

STARTS_AT = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
WAIT_MS = 20_000


@pytest.fixture
def pair(server: RunningServer) -> Pair:
    return seed_pair(server.url, server.admin_headers)


@pytest.fixture
async def box(server: RunningServer, pair: Pair) -> AsyncIterator[Box]:
    started = start_box(server.ws_url, pair.care_home_token, PartyKind.CARE_HOME)
    await started.log.next(ServerUp)
    try:
        yield started
    finally:
        await started.close()


async def open_call(
    browser: BrowserContext, server: RunningServer, pair: Pair, problems: list[str]
) -> Page:
    page = browser.pages[0] if browser.pages else await browser.new_page()
    page.on("pageerror", lambda error: problems.append(str(error)))
    await page.goto(server.url)
    await page.fill("#access-code", pair.access_code)
    await page.click("#sign-in-button")
    room = room_id(pair.session_id, STARTS_AT)
    join = page.locator(f'li.session[data-room="{room}"]').get_by_role("button", name="Join")
    await expect(join).to_be_enabled(timeout=WAIT_MS)
    await join.click()
    return page


async def page_hears_and_sends(page: Page) -> dict[str, Any] | None:
    stats: dict[str, Any] | None = await page.evaluate("window.twm.stats()")
    if (
        stats
        and stats["packetsReceived"] > 0
        and stats["packetsSent"] > 0
        and stats["audioEnergyReceived"] > 0
    ):
        return stats
    return None


async def audio_both_ways(page: Page, box: Box) -> None:
    frames = box.ear.frames
    await eventually(lambda: page_hears_and_sends(page), "the page to hear the box's tone")
    await eventually(lambda: box.ear.frames > frames + 25, "the box to hear the page")
    await eventually(lambda: box.ear.loudest > 1000, "the page's beep at the box")


async def reactions_both_ways(page: Page, box: Box) -> None:
    mark = box.log.mark()
    await page.click('button.reaction[data-kind="clap"]')
    assert await box.log.next(ReactionArrived, since=mark) == ReactionArrived(ReactionKind.CLAP)
    box.links.perform(SendReaction(ReactionKind.HEART))
    await expect(page.locator("#incoming-emoji")).to_have_text("❤️", timeout=WAIT_MS)


async def test_the_page_offers_the_box_answers_and_a_link_lost_at_the_box_is_rebuilt_by_the_page(
    server: RunningServer, pair: Pair, box: Box, browser: BrowserContext
) -> None:
    problems: list[str] = []
    room = room_id(pair.session_id, STARTS_AT)
    box.client.join(room)
    assert await box.log.next(JoinAccepted) == JoinAccepted(room, peer_present=False)

    page = await open_call(browser, server, pair, problems)
    await box.log.next(PeerJoined)
    box.links.perform(OpenLink(room, offer=False))  # the lifecycle on PeerJoined
    await box.log.next(LinkUp)
    await expect(page.locator("#call-state-words")).to_have_text("Live", timeout=WAIT_MS)
    await audio_both_ways(page, box)
    await reactions_both_ways(page, box)
    link = box.links.link
    assert link is not None and not link.offerer and link.route.value == "direct"
    await eventually(lambda: link.heartbeats_heard >= 2, "the page's heartbeats at the box")

    # The box's peer connection dies under it. The page, which offered, rebuilds by offering
    # again; the box answers with a new link, and the sound is back.
    states_before = len(await page.evaluate("window.twm.states()"))
    await link.close()
    await eventually(
        lambda: box.links.link is not link and box.links.link is not None and box.links.link.alive,
        "the box's new link, answering the page's new offer",
    )
    states = await page.evaluate("window.twm.states()")
    assert states[states_before:][-2:] == ["reconnecting", "live"]
    await audio_both_ways(page, box)
    assert problems == []


async def test_the_box_offers_to_the_waiting_page_and_rebuilds_the_link_itself(
    server: RunningServer, pair: Pair, box: Box, browser: BrowserContext
) -> None:
    problems: list[str] = []
    room = room_id(pair.session_id, STARTS_AT)
    page = await open_call(browser, server, pair, problems)
    await expect(page.locator("#call-state-words")).to_contain_text("Waiting", timeout=WAIT_MS)

    box.client.join(room)
    assert await box.log.next(JoinAccepted) == JoinAccepted(room, peer_present=True)
    box.links.perform(OpenLink(room, offer=True))  # the lifecycle: joined second, so offer
    await box.log.next(LinkUp)
    await expect(page.locator("#call-state-words")).to_have_text("Live", timeout=WAIT_MS)
    await audio_both_ways(page, box)
    await reactions_both_ways(page, box)

    # As the lifecycle does after LinkDown when it made the last offer: a new link with a new
    # offer in place of the old one. The page answers it, replacing its own connection.
    mark = box.log.mark()
    old = box.links.link
    box.links.perform(OpenLink(room, offer=True))
    await box.log.next(LinkUp, since=mark)
    assert old is not None and old.closed and box.links.link is not old
    await expect(page.locator("#call-state-words")).to_have_text("Live", timeout=WAIT_MS)
    await audio_both_ways(page, box)
    assert problems == []
