"""Which box, reached how: an SSH address, port and login user.

Target(host="10.0.0.7")                  # pi@10.0.0.7, port 22
str(Target(host="127.0.0.1", port=2222)) # 'pi@127.0.0.1:2222'
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


def _host(value: str) -> str:
    # Never starting with "-", so it can never be read as an option by anything it is handed to.
    if not value or value.startswith("-") or any(ch.isspace() for ch in value) or len(value) > 253:
        raise ValueError("a host name or address, without spaces, not starting with '-'")
    return value


def _user(value: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
        raise ValueError("a login name (lower-case letters, digits, '-' and '_')")
    return value


Host = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_host)]
User = Annotated[str, AfterValidator(_user)]


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Host
    port: int = Field(default=22, ge=1, le=65535)
    user: User = "pi"

    def __str__(self) -> str:
        where = self.host if self.port == 22 else f"{self.host}:{self.port}"
        return f"{self.user}@{where}"
