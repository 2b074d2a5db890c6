"""FastAPI dependencies: the shared context, a database session, and the two kinds of caller
(a coordinator with the admin token, a school page with a ticket)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from session_server.context import ServerContext
from session_server.db.engine import DbSession
from session_server.identity import school_from_ticket
from session_server.protocol import Party
from session_server.signalling.hub import Hub
from session_server.tickets import TicketError

_bearer = HTTPBearer(auto_error=False)


def get_context(request: Request) -> ServerContext:
    context: ServerContext = request.app.state.context
    return context


def get_hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def get_db(
    context: Annotated[ServerContext, Depends(get_context)],
) -> AsyncIterator[DbSession]:
    async with context.db() as session:
        yield session


Context = Annotated[ServerContext, Depends(get_context)]
Db = Annotated[DbSession, Depends(get_db)]
HubDep = Annotated[Hub, Depends(get_hub)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require_admin(context: Context, credentials: Credentials) -> str:
    """The caller is a coordinator holding the admin token; returns the actor name for the audit."""
    expected = context.settings.admin_token
    if expected is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the admin API is off: set TWM_SERVER_ADMIN_TOKEN and restart the server",
        )
    if credentials is None or not hmac.compare_digest(
        credentials.credentials.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "admin token missing or wrong: send 'Authorization: Bearer <TWM_SERVER_ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return "admin"


async def require_school(context: Context, db: Db, credentials: Credentials) -> Party:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "sign in with your school's access code first"
        )
    try:
        return (await school_from_ticket(context, db, credentials.credentials)).party
    except TicketError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from exc


Admin = Annotated[str, Depends(require_admin)]
SchoolParty = Annotated[Party, Depends(require_school)]
