"""device.net.ice: the explicit RTCConfiguration, the host-address option and the route.

The host-address option and the route both reach into aioice (it offers neither); these tests
fail if an aioice upgrade moves what they rely on, rather than letting links silently connect to
nothing on loopback or report an unknown route.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aioice.ice
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from device.net.ice import host_addresses, parse_candidate, route_of, rtc_configuration
from device.net.link_settings import LinkSettings
from session_server.protocol import IceServer, Route
from session_server.turn import turn_credential
from tests.net_support import eventually, negotiate_on_loopback, running_coturn
from tests.standin_device import ToneTrack


def test_the_configuration_holds_exactly_the_servers_handed_out() -> None:
    servers = [
        IceServer(urls=["stun:stun.example.org:3478"]),
        IceServer(urls=["turn:turn.example.org:3478"], username="u", credential="p"),
    ]
    config = rtc_configuration(servers)
    assert config.iceServers is not None
    assert [(s.urls, s.username, s.credential) for s in config.iceServers] == [
        (["stun:stun.example.org:3478"], None, None),
        (["turn:turn.example.org:3478"], "u", "p"),
    ]
    assert config.iceTransportPolicy is RTCIceTransportPolicy.ALL
    # An empty list stays empty: aiortc's default (a public STUN host) must never creep in.
    assert rtc_configuration([]).iceServers == []
    assert rtc_configuration([], relay_only=True).iceTransportPolicy is RTCIceTransportPolicy.RELAY


def test_aioice_still_leaves_loopback_out_and_looks_addresses_up_where_we_hook_in() -> None:
    """Why the option exists, and the one function it relies on."""
    lookup = aioice.ice.get_host_addresses
    assert list(inspect.signature(lookup).parameters) == ["use_ipv4", "use_ipv6"]
    assert "127.0.0.1" not in lookup(True, True)
    assert "::1" not in lookup(True, True)
    assert "get_host_addresses(" in inspect.getsource(aioice.ice.Connection.gather_candidates)


async def _offer_candidates(pc: RTCPeerConnection) -> list[str]:
    pc.addTrack(ToneTrack())
    await pc.setLocalDescription(await pc.createOffer())
    assert pc.localDescription is not None
    return [
        line.split()[4]
        for line in pc.localDescription.sdp.splitlines()
        if line.startswith("a=candidate:")
    ]


async def test_host_candidates_are_exactly_the_chosen_addresses_and_only_where_asked() -> None:
    inside = RTCPeerConnection(rtc_configuration([]))
    outside = RTCPeerConnection(rtc_configuration([]))
    try:
        with host_addresses(("127.0.0.1",)):
            chosen = await _offer_candidates(inside)
        default = await _offer_candidates(outside)
    finally:
        await inside.close()
        await outside.close()
    assert chosen and set(chosen) == {"127.0.0.1"}
    # Everyone else in the process gets aioice's own choice.
    assert "127.0.0.1" not in default
    assert sorted(set(default)) == sorted(set(aioice.ice.get_host_addresses(True, True)))


def test_the_chosen_addresses_respect_the_ip_versions_aioice_asks_for() -> None:
    with host_addresses(("127.0.0.1", "::1")):
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(False, True) == ["::1"]
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
    with host_addresses(()):  # nothing chosen: aioice decides
        assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, True)


def test_a_host_address_setting_must_be_an_ip_address() -> None:
    assert LinkSettings(host_addresses=("127.0.0.1", "::1")).host_addresses == ("127.0.0.1", "::1")
    with pytest.raises(ValueError, match="not an IP address"):
        LinkSettings(host_addresses=("localhost",))


async def _connect(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    offerer.addTrack(ToneTrack())
    answerer.addTrack(ToneTrack())
    offerer.createDataChannel("twm")
    await negotiate_on_loopback(offerer, answerer)
    await eventually(
        lambda: offerer.connectionState == answerer.connectionState == "connected",
        "both peer connections to connect",
    )


@pytest.fixture
async def pcs() -> AsyncIterator[list[RTCPeerConnection]]:
    made: list[RTCPeerConnection] = []
    yield made
    await asyncio.gather(*(pc.close() for pc in made))


async def test_a_loopback_connection_is_reported_direct(pcs: list[RTCPeerConnection]) -> None:
    offerer = RTCPeerConnection(rtc_configuration([]))
    answerer = RTCPeerConnection(rtc_configuration([]))
    pcs += [offerer, answerer]
    assert route_of(offerer) is Route.UNKNOWN  # nothing selected yet
    await _connect(offerer, answerer)
    await eventually(lambda: route_of(answerer) is Route.DIRECT, "the answerer's route")
    assert route_of(offerer) is Route.DIRECT


async def test_a_connection_through_turn_is_reported_relay(
    tmp_path: Path, pcs: list[RTCPeerConnection]
) -> None:
    with running_coturn(tmp_path / "coturn") as turn:
        expires = datetime.now(UTC) + timedelta(hours=1)
        username, password = turn_credential(turn.secret, "care_home-1", expires)
        servers = [IceServer(urls=[turn.url], username=username, credential=password)]
        offerer = RTCPeerConnection(rtc_configuration(servers, relay_only=True))
        answerer = RTCPeerConnection(rtc_configuration([]))
        pcs += [offerer, answerer]
        await _connect(offerer, answerer)
        assert route_of(offerer) is Route.RELAY
        await eventually(lambda: route_of(answerer) is Route.RELAY, "the answerer's route")
        await asyncio.gather(*(pc.close() for pc in pcs))


@pytest.mark.parametrize(
    "line",
    [
        "candidate:garbage",
        "",
        "candidate:1 1 udp 2122260223 127.0.0.1 9 host",  # no "typ"
        "candidate:1 1 udp x 127.0.0.1 9 typ host",
        "candidate:1 one udp 1 127.0.0.1 9 typ host",
        "candidate:1 1 udp 1 127.0.0.1 9 typ srflx raddr 0.0.0.0 rport nine",
    ],
)
def test_an_unreadable_trickled_candidate_is_none_not_an_exception(line: str) -> None:
    assert parse_candidate(line) is None


def test_a_trickled_candidate_is_read_as_aiortc_does() -> None:
    candidate = parse_candidate(
        "candidate:842163049 1 udp 1677729535 192.0.2.7 54400 typ srflx "
        "raddr 10.0.0.2 rport 54400 generation 0"
    )
    assert candidate is not None
    assert (candidate.ip, candidate.port, candidate.type, candidate.relatedAddress) == (
        "192.0.2.7",
        54400,
        "srflx",
        "10.0.0.2",
    )
