"""A UDP proxy that loses and delays datagrams on purpose: the network faults of the latency
benchmark, since this kernel has no netem (see LAB.md, "Network faults").

    proxy = UdpProxy(("127.0.0.1", turn_port), Faults(loss=0.02, delay=0.010, jitter=0.010))
    port = await proxy.start()       # clients send to 127.0.0.1:port instead of the upstream
    ...
    proxy.stats                      # datagrams forwarded, dropped, in each direction
    proxy.close()

Or as a process of its own, so that its timers do not wait on the benchmark's work:

    python -m bench.udp_proxy --upstream 127.0.0.1:3478 --loss 0.02 --delay-ms 10 --jitter-ms 10
    # prints "listening PORT", runs until SIGTERM/SIGINT, then prints its stats as one JSON line

Each client address gets its own socket towards the upstream (as a NAT would), so the upstream
sees one client per client. The faults apply to datagrams going **upstream** only; the answers
come back untouched. In the benchmark the upstream is coturn and both boxes relay-only, so each
direction of media crosses the faulty leg exactly once: box A → proxy → coturn → relay → coturn
→ box B (the last hop is an answer, untouched). Each datagram is dropped with probability
``loss``, else sent after ``delay`` plus a uniform ±``jitter`` (never below zero), independently
of its neighbours, so datagrams may overtake each other: what netem's ``delay 10ms 10ms loss 2%``
does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

Address = tuple[str, int]


@dataclass(frozen=True)
class Faults:
    loss: float = 0.0  # the share of upstream datagrams dropped
    delay: float = 0.0  # seconds added to each upstream datagram…
    jitter: float = 0.0  # …plus or minus up to this many seconds (uniform)

    def __post_init__(self) -> None:
        if not 0 <= self.loss < 1:
            raise ValueError(f"loss must be in [0, 1), not {self.loss}")
        if self.delay < 0 or self.jitter < 0:
            raise ValueError("delay and jitter must not be negative")


@dataclass
class Stats:
    upstream: int = 0  # datagrams that arrived from clients
    dropped: int = 0  # of those, dropped on purpose
    downstream: int = 0  # answers passed back to clients
    clients: int = 0
    delays: list[float] = field(default_factory=list, repr=False)  # seconds, each sent datagram

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        delays = out.pop("delays")
        if delays:
            out["delay_ms"] = {
                "mean": round(1000 * sum(delays) / len(delays), 3),
                "min": round(1000 * min(delays), 3),
                "max": round(1000 * max(delays), 3),
            }
        return out


class _Upstream(asyncio.DatagramProtocol):
    """One client's socket towards the upstream: what comes back goes to that client."""

    def __init__(self, proxy: UdpProxy, client: Address) -> None:
        self._proxy = proxy
        self._client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # In 3.11 the selector loop's datagram transport is not a DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._proxy._answer(self._client, data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable and the like: UDP carries on, as the network would


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpProxy) -> None:
        self._proxy = proxy

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._proxy._from_client(addr, data)

    def error_received(self, exc: Exception) -> None:
        pass


class UdpProxy:
    def __init__(
        self,
        upstream: Address,
        faults: Faults = Faults(),
        *,
        listen: Address = ("127.0.0.1", 0),
        rng: random.Random | None = None,
        keep_delays: bool = False,
    ) -> None:
        self.upstream = upstream
        self.faults = faults
        self.stats = Stats()
        self._listen = listen
        self._rng = rng or random.Random()
        self._keep_delays = keep_delays
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.DatagramTransport | None = None
        self._clients: dict[Address, _Upstream] = {}
        self._pending: dict[Address, list[bytes]] = {}  # until the client's socket is open
        self._timers: set[asyncio.TimerHandle] = set()

    async def start(self) -> int:
        """Listen; returns the port clients send to."""
        self._loop = asyncio.get_running_loop()
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Listener(self), local_addr=self._listen
        )
        self._listener = transport
        port: int = transport.get_extra_info("sockname")[1]
        return port

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for client in self._clients.values():
            if client.transport is not None:
                client.transport.close()
        self._clients.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # --- the two directions ---------------------------------------------------------------

    def _from_client(self, client: Address, data: bytes) -> None:
        self.stats.upstream += 1
        if self.faults.loss and self._rng.random() < self.faults.loss:
            self.stats.dropped += 1
            return
        delay = self.faults.delay
        if self.faults.jitter:
            delay += self._rng.uniform(-self.faults.jitter, self.faults.jitter)
        delay = max(0.0, delay)
        if self._keep_delays:
            self.stats.delays.append(delay)
        if delay == 0:
            self._send_upstream(client, data)
            return
        assert self._loop is not None
        timer: asyncio.TimerHandle | None = None

        def send() -> None:
            if timer is not None:
                self._timers.discard(timer)
            self._send_upstream(client, data)

        timer = self._loop.call_later(delay, send)
        self._timers.add(timer)

    def _send_upstream(self, client: Address, data: bytes) -> None:
        upstream = self._clients.get(client)
        if upstream is not None and upstream.transport is not None:
            upstream.transport.sendto(data)
            return
        pending = self._pending.get(client)
        if pending is not None:
            pending.append(data)  # its socket is being opened
            return
        self._pending[client] = [data]
        assert self._loop is not None
        self._loop.create_task(self._open(client))

    async def _open(self, client: Address) -> None:
        assert self._loop is not None
        protocol = _Upstream(self, client)
        await self._loop.create_datagram_endpoint(
            lambda: protocol, remote_addr=self.upstream, local_addr=("127.0.0.1", 0)
        )
        self._clients[client] = protocol
        self.stats.clients += 1
        assert protocol.transport is not None
        for data in self._pending.pop(client, []):
            protocol.transport.sendto(data)

    def _answer(self, client: Address, data: bytes) -> None:
        if self._listener is not None:
            self.stats.downstream += 1
            self._listener.sendto(data, client)


# --- as a process ---------------------------------------------------------------------------


def _address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _serve(args: argparse.Namespace) -> dict[str, Any]:
    faults = Faults(loss=args.loss, delay=args.delay_ms / 1000, jitter=args.jitter_ms / 1000)
    proxy = UdpProxy(
        _address(args.upstream),
        faults,
        listen=_address(args.listen),
        rng=random.Random(args.seed),
        keep_delays=True,
    )
    port = await proxy.start()
    print(f"listening {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        proxy.close()
    return proxy.stats.summary()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.udp_proxy", description=__doc__)
    parser.add_argument("--upstream", required=True, help="HOST:PORT the datagrams go to")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (0: any free port)")
    parser.add_argument("--loss", type=float, default=0.0, help="share dropped, e.g. 0.02")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="± around the delay")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    stats = asyncio.run(_serve(args))
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
