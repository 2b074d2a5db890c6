"""What the box needs from ICE that aiortc does not offer as an option.

- ``rtc_configuration``: the STUN/TURN servers the session server handed out, always explicit.
  With no ``iceServers`` aiortc asks a public STUN host, which a box must never do unasked.
- ``host_addresses``: which local addresses become host candidates. aioice offers every
  interface's address *except* loopback and has no setting for it, so a box in a network
  namespace whose only interface is ``lo`` (the tests) or a demo on one machine connects to
  nothing. ``LinkSettings.host_addresses`` names the addresses explicitly; this module makes
  aioice use them, for the negotiations of links that ask, and for no one else.
- ``route_of``: whether a connected link goes direct or through a TURN relay, for the audit log.
  aiortc has no getStats for the selected candidate pair; aioice keeps it in ``_nominated``.

The two uses of aioice internals live here and nowhere else; tests/test_net_ice.py fails if an
aioice upgrade moves them.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
from collections.abc import Callable, Iterator, Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

from session_server.protocol import IceServer, Route

HostAddresses = Callable[[bool, bool], list[str]]

# None: aioice's own choice. Set only around the negotiations of a link that asked.
_chosen: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "twm_ice_host_addresses", default=None
)
_aioice_choice: HostAddresses | None = None


def rtc_configuration(
    servers: Sequence[IceServer], *, relay_only: bool = False
) -> RTCConfiguration:
    """The RTCConfiguration for a link: exactly these servers (an empty list on loopback)."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in servers
        ],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
    )


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _chosen.get()
    if chosen is None:
        assert _aioice_choice is not None  # installed before this can be called
        return _aioice_choice(use_ipv4, use_ipv6)
    return [
        address
        for address in chosen
        if (use_ipv4 and ipaddress.ip_address(address).version == 4)
        or (use_ipv6 and ipaddress.ip_address(address).version == 6)
    ]


def _install() -> None:
    """Route aioice's address lookup through ``_host_addresses`` (idempotent).

    Outside a ``host_addresses`` block it answers exactly as aioice would, so other peer
    connections in the process are not affected.
    """
    global _aioice_choice
    current = aioice.ice.get_host_addresses
    if current is _host_addresses:
        return
    _aioice_choice = current
    aioice.ice.get_host_addresses = _host_addresses


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Gather host candidates on exactly these addresses inside the block (none given: aioice's
    default). aiortc gathers in ``setLocalDescription``, in tasks that inherit this context."""
    if not addresses:
        yield
        return
    _install()
    token = _chosen.set(tuple(addresses))
    try:
        yield
    finally:
        _chosen.reset(token)


def route_of(pc: RTCPeerConnection) -> Route:
    """RELAY if the selected candidate pair has a relay candidate at either end, else DIRECT;
    UNKNOWN before a pair is selected (or if aioice no longer keeps it where we look)."""
    transports = {t.receiver.transport.transport for t in pc.getTransceivers()}
    if pc.sctp is not None:
        transports.add(pc.sctp.transport.transport)
    found = False
    for transport in transports:
        nominated = getattr(getattr(transport, "_connection", None), "_nominated", None)
        if not isinstance(nominated, dict):
            continue
        for pair in nominated.values():
            found = True
            if "relay" in (pair.local_candidate.type, pair.remote_candidate.type):
                return Route.RELAY
    return Route.DIRECT if found else Route.UNKNOWN


def parse_candidate(text: str) -> RTCIceCandidate | None:
    """A trickled ``candidate:…`` line as aiortc's candidate, or None if it cannot be read.
    (aiortc's parser asserts on short lines: input from the other side must never reach an
    assert.)"""
    bits = text.removeprefix("candidate:").split()
    if len(bits) < 8 or bits[6] != "typ":
        return None
    try:
        return candidate_from_sdp(" ".join(bits))
    except (ValueError, IndexError, KeyError):
        return None
