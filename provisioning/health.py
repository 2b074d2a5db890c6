"""Is the box healthy: its service running (and not restarting), and the box online at the
server. Used after enroll starts the service and while ``update`` watches a new release.

    await wait_online(server, device_id, seen_before=None, limit=180)
    await watch(box, server, device_id, seconds=60)   # raises HealthFailed saying what failed
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from provisioning.errors import HealthFailed, ServerFailed
from provisioning.remote import Remote
from provisioning.server import DeviceRecord, ServerClient
from provisioning.service import service_state

POLL_SECONDS = 2.0


def is_online(record: DeviceRecord, seen_before: datetime | None) -> bool:
    """Connected since ``seen_before`` (None: connected at all). A server that says whether the
    box is online now is believed when it says no; ``last_seen_at`` (set as the box connects)
    tells a new connection from the one a restarted box had before, which a server may still
    count as online for a moment."""
    if record.online is False:
        return False
    if seen_before is None:
        return record.online is True or record.last_seen_at is not None
    return record.last_seen_at is not None and record.last_seen_at > seen_before


async def _record(server: ServerClient, device_id: int) -> DeviceRecord:
    record = await server.device(device_id)
    if record is None:
        raise ServerFailed(f"device #{device_id} is not registered at the server any more")
    if record.revoked_at is not None:
        raise ServerFailed(
            f"device #{device_id} ({record.name}) has been revoked at the server: "
            "register the box again (revoked devices cannot connect)"
        )
    return record


async def last_seen(server: ServerClient, device_id: int) -> datetime | None:
    return (await _record(server, device_id)).last_seen_at


async def wait_online(
    server: ServerClient, device_id: int, *, seen_before: datetime | None, limit: float
) -> DeviceRecord:
    deadline = time.monotonic() + limit
    while True:
        record = await _record(server, device_id)
        if is_online(record, seen_before):
            return record
        if time.monotonic() >= deadline:
            raise HealthFailed(
                f"the box did not come online at the server within {limit:.0f} s: run "
                "'twm-provision check' on it (is server_url right, and reachable from the box?)"
            )
        await asyncio.sleep(POLL_SECONDS)


async def watch(
    box: Remote,
    server: ServerClient | None,
    device_id: int | None,
    *,
    seconds: float,
    seen_before: datetime | None,
) -> str:
    """Watches for ``seconds``: the service must stay active without restarting, and the box
    must come online at the server (when one is given). Returns what was seen."""
    first = await service_state(box)
    baseline = first.n_restarts
    online = server is None or device_id is None
    deadline = time.monotonic() + seconds
    while True:
        state = await service_state(box)
        if state.n_restarts > baseline:
            raise HealthFailed(
                f"the service crashed and was restarted {state.n_restarts - baseline} time(s) "
                f"while being watched ({state.describe()})"
            )
        if not state.healthy:
            raise HealthFailed(f"the service is {state.describe()}")
        if not online and server is not None and device_id is not None:
            online = is_online(await _record(server, device_id), seen_before)
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    if not online:
        raise HealthFailed(f"the box did not come online at the server within {seconds:.0f} s")
    return f"running for {seconds:.0f} s without a restart" + (
        ", online at the server" if server is not None and device_id is not None else ""
    )
