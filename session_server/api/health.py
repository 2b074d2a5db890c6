"""``GET /healthz``: the process answers and its database does too."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel
from sqlalchemy import text

from session_server.api.deps import Db, HubDep

router = APIRouter()


class Health(BaseModel):
    status: str
    database: str
    connections: int


@router.get("/healthz")
async def healthz(db: Db, hub: HubDep) -> Health:
    try:
        await db.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means the same thing to a load balancer
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "database unreachable") from exc
    return Health(status="ok", database="ok", connections=hub.connection_count)
