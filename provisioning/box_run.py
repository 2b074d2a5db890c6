"""One command's run against one box: the connection and the box's facts, which every command's
steps share, and their first two steps ("connect", "box").
"""

from __future__ import annotations

from provisioning.errors import ProvisionError
from provisioning.facts import Facts, ensure_suitable, gather
from provisioning.known_hosts import fingerprint
from provisioning.plan import Done, Outcome, Step
from provisioning.remote import Remote, SshOptions, connect
from provisioning.target import Target


class BoxRun:
    def __init__(self, target: Target, ssh: SshOptions) -> None:
        self.target = target
        self.ssh = ssh
        self._box: Remote | None = None
        self._facts: Facts | None = None

    @property
    def box(self) -> Remote:
        if self._box is None:
            raise ProvisionError("not connected to the box")  # a step ran before "connect"
        return self._box

    @property
    def facts(self) -> Facts:
        if self._facts is None:
            raise ProvisionError("the box's facts were not read")
        return self._facts

    def first_steps(self) -> list[Step]:
        return [
            Step("connect", self.connect, read_only=True),
            Step("box", self.check_box, read_only=True),
        ]

    async def close(self) -> None:
        if self._box is not None:
            await self._box.close()
            self._box = None

    async def connect(self) -> Done:
        target = self.target
        before = self.ssh.known_hosts.pinned(target.host, target.port)
        self._box = await connect(target, self.ssh)
        after = self.ssh.known_hosts.pinned(target.host, target.port)
        if before:
            return Done(f"{target}, host key as pinned", Outcome.OK)
        if not after:
            return Done(f"{target}, host key accepted for this dry run only", Outcome.OK)
        keys = ", ".join(fingerprint(key) for key in after)
        return Done(f"{target}, host key {keys} pinned", Outcome.CHANGED)

    async def check_box(self) -> Done:
        self._facts = await gather(self.box)
        ensure_suitable(self._facts)
        note = "" if self._facts.is_pi else " (not a Raspberry Pi: accepted as a test VM)"
        return Done(self._facts.describe() + note, Outcome.OK)
