"""The box's own command line (``twm-device``), run on the box as its service user: its status
report and its audio self-test.

    report = await status(box)          # parsed from `twm-device status --json`
    report.server.reachable, [c.name for c in report.cards]
    outcome, words = await self_test(box)

Run as ``twm-device`` (``runuser``), so they see the sound cards and files the service sees.
Neither needs the device token.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from provisioning.device_config import CONFIG_PATH
from provisioning.errors import RemoteFailed
from provisioning.installation import CURRENT
from provisioning.plan import Outcome
from provisioning.remote import Remote
from provisioning.service_user import USER

TWM_DEVICE = f"{CURRENT}/venv/bin/twm-device"
SELF_TEST_LIMIT = 300.0  # seconds; starting Python with numpy on a slow box takes a while
DETAIL_MAX = 400


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ServerCheck(_Lenient):
    reachable: bool
    detail: str = ""


class CardInfo(_Lenient):
    name: str
    inputs: int = 0
    outputs: int = 0


class AgentInfo(_Lenient):
    running: bool
    status: dict[str, Any] | None = None


class StatusReport(_Lenient):
    """``twm-device status --json``."""

    server: ServerCheck
    cards: list[CardInfo] = []
    chosen: dict[str, str] = {}
    agent: AgentInfo

    def in_use(self) -> dict[str, str]:
        """The cards the box uses: the running box's own word for it (a card it holds open is
        invisible to a second process on plain ALSA), else what the settings would choose."""
        audio = (self.agent.status or {}).get("audio") if self.agent.running else None
        if isinstance(audio, dict):
            found = {d: str(audio[d]) for d in ("input", "output") if audio.get(d)}
            if found:
                return found
        return dict(self.chosen)

    @property
    def state(self) -> str:
        status = self.agent.status or {}
        return str(status.get("state", "")) if self.agent.running else "not running"


def parse_status(text: str) -> StatusReport:
    try:
        return StatusReport.model_validate_json(text)
    except ValidationError:
        raise RemoteFailed("the box's 'twm-device status --json' was not understood") from None


def _as_service(*argv: str) -> list[str]:
    return ["runuser", "-u", USER, "--", *argv]


async def status(box: Remote) -> StatusReport:
    result = await box.run(
        _as_service(TWM_DEVICE, "status", "--json", "--config", CONFIG_PATH),
        root=True,
        check=False,
        limit=SELF_TEST_LIMIT,
    )
    if not result.ok:
        raise RemoteFailed(box.describe_failure(result))
    return parse_status(result.stdout)


def _words(text: str) -> str:
    return " ".join(text.split())[:DETAIL_MAX]


async def self_test(box: Remote) -> tuple[Outcome, str]:
    """Plays a tone and listens; a box with no sound card says so (a warning, not a crash).

    The result is reported, not judged: a speakerphone's own echo canceller may rightly remove
    its tone, so "NOT heard" alone is no failure.
    """
    result = await box.run(
        _as_service(TWM_DEVICE, "test-audio", "--config", CONFIG_PATH),
        root=True,
        check=False,
        limit=SELF_TEST_LIMIT,
    )
    if result.ok:
        words = _words(result.stdout)
        heard = "— heard" in words
        return (Outcome.OK if heard else Outcome.WARNING), words
    problem = _words(result.stderr or result.stdout) or f"exit {result.exit_status}"
    return Outcome.WARNING, f"no working sound card: {problem}"
