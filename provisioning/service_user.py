"""The user the box's service runs as: ``twm-device``, a system user in the ``audio`` and
``gpio`` groups (sound cards and GPIO chips are reachable through those groups only).

Raspberry Pi OS has a ``gpio`` group (and udev rules giving it /dev/gpiochip*); plain Debian
does not, so it is created there.
"""

from __future__ import annotations

from provisioning.plan import Done, State
from provisioning.remote import Remote

USER = "twm-device"
GROUPS = ("audio", "gpio")


async def user_groups(box: Remote) -> set[str] | None:
    """The groups ``twm-device`` is in, or None when the user does not exist."""
    result = await box.run(["id", "-nG", USER], check=False)
    return set(result.stdout.split()) if result.ok else None


async def check(box: Remote) -> State:
    groups = await user_groups(box)
    if groups is None:
        return State(False, f"would create the system user {USER} (groups {', '.join(GROUPS)})")
    missing = [group for group in GROUPS if group not in groups]
    if missing:
        return State(False, f"would add {USER} to {', '.join(missing)}")
    return State(True, f"{USER} in {', '.join(GROUPS)}")


_CREATE = """set -eu
getent group gpio >/dev/null || groupadd --system gpio
if id -u "$1" >/dev/null 2>&1; then
    usermod -a -G "$2" "$1"
else
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --groups "$2" --comment "Together with Music box" "$1"
fi
"""


async def apply(box: Remote) -> Done:
    existed = await user_groups(box) is not None
    await box.script(_CREATE, USER, ",".join(GROUPS), root=True, name=f"create the user {USER}")
    verb = "added to its groups" if existed else "created"
    return Done(f"{USER} {verb} ({', '.join(GROUPS)})")
