"""Device tokens and school access codes: made here, shown once, stored only as hashes.

Both are long random strings, so a plain SHA-256 is enough to make a stolen database useless
(a slow password hash protects guessable secrets; these are not guessable), and it lets the
server find the owner of a presented secret with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets

# No 0/O, 1/I/L: a teacher reads the code off a letter and types it on a projector keyboard.
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_CODE_GROUPS = 3
_CODE_GROUP_LENGTH = 4


def new_device_token() -> str:
    """A device's bearer token (256 bits)."""
    return "twmd_" + secrets.token_urlsafe(32)


def new_access_code() -> str:
    """An access code such as ``K7QM-3XWD-PA9T`` (about 59 bits; sign-in is rate-limited)."""
    groups = (
        "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_GROUP_LENGTH))
        for _ in range(_CODE_GROUPS)
    )
    return "-".join(groups)


def normalise_access_code(code: str) -> str:
    """What a person typed, as the code was issued: case, spaces and dashes do not matter."""
    letters = "".join(ch for ch in code.upper() if ch.isalnum())
    return "-".join(
        letters[i : i + _CODE_GROUP_LENGTH] for i in range(0, len(letters), _CODE_GROUP_LENGTH)
    )


def digest(secret: str) -> str:
    """The stored form of a token or code."""
    return hashlib.sha256(secret.encode()).hexdigest()
