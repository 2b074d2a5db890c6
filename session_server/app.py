"""The session server as an ASGI app: ``create_app(settings)``.

uvicorn.run(create_app(ServerSettings()), host="127.0.0.1", port=8000)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from session_server.api import admin, health, school
from session_server.clock import Clock, SystemClock
from session_server.context import ServerContext
from session_server.db.engine import create_engine, migrate, session_factory
from session_server.settings import ServerSettings
from session_server.signalling import endpoint
from session_server.signalling.hub import Hub

STATIC = Path(__file__).parent / "static"


def create_app(settings: ServerSettings, clock: Clock | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.resolved_database_url())
        await migrate(engine)
        context = ServerContext(
            settings=settings,
            engine=engine,
            db=session_factory(engine),
            clock=clock or SystemClock(),
            ticket_key=settings.resolved_ticket_secret(),
        )
        hub = Hub(context)
        app.state.context = context
        app.state.hub = hub
        await hub.start()
        try:
            yield
        finally:
            await hub.close()
            await engine.dispose()

    app = FastAPI(
        title="Together with Music session server",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(health.router)
    app.include_router(admin.router, prefix="/api")
    app.include_router(school.router, prefix="/api/school")
    app.include_router(endpoint.router)
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="school-page")
    return app


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """One readable sentence, naming the fields; never the submitted values (they may be codes)."""
    assert isinstance(exc, RequestValidationError)  # registered for this type only
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"] if part != "body") or "request"
        problems.append(f"{where}: {error['msg']}")
    return JSONResponse(
        {"detail": "; ".join(problems)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
    )
