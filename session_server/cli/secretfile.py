"""Files holding a secret (a device token, the demo's admin token), readable by the owner only."""

from __future__ import annotations

import os
from pathlib import Path


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` with mode 0600 from the first byte (no window where others
    could read it), replacing what was there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(secret + "\n")
    # O_CREAT's mode does not apply to a file that already existed.
    path.chmod(0o600)


def read_secret(path: Path) -> str | None:
    """The secret in ``path``, or None if there is no such file or it is empty."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return text or None
