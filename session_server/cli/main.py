"""``twm-server``: run the session server, try it with demo data, or manage it as a coordinator.

twm-server serve --host 127.0.0.1 --port 8000       # settings also from TWM_SERVER_… variables
twm-server demo                                      # SQLite in ./.demo, a session open now
twm-server admin --help                              # the coordinators' commands
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console

from session_server import logs
from session_server.app import create_app
from session_server.cli import admin
from session_server.cli.demo import DemoError, demo_settings, serve_demo
from session_server.settings import ServerSettings

app = typer.Typer(
    help="The Together with Music session server.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a traceback must never print a token
)
app.add_typer(admin.app, name="admin")

log = structlog.get_logger("twm.server")


def _settings(**overrides: Any) -> ServerSettings:
    """Settings from the environment, with the command line's options on top."""
    try:
        return ServerSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise typer.BadParameter(problems) from None


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: 8000].")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="SQLAlchemy async URL, e.g. postgresql+asyncpg://twm@/twm "
            "[default: SQLite in the data directory]."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the SQLite file and the ticket key live.")
    ] = None,
    proxy_headers: Annotated[
        bool,
        typer.Option(
            help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a TLS proxy)."
        ),
    ] = False,
    forwarded_allow_ips: Annotated[
        str, typer.Option(help="Proxies whose forwarded headers are trusted.")
    ] = "127.0.0.1",
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run the server (applies database migrations on start)."""
    settings = _settings(host=host, port=port, database_url=database_url, data_dir=data_dir)
    logs.configure(log_level.upper())
    if settings.admin_token is None:
        log.warning("admin_api_off", hint="set TWM_SERVER_ADMIN_TOKEN to manage the server")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        log_config=None,  # logs.configure() already set up logging: one format for everything
        log_level=log_level.lower(),
    )


@app.command()
def demo(
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo keeps its database and tokens.")
    ] = Path(".demo"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run the server with a demo care home, school and a session open now."""
    console = Console(highlight=False)
    settings = demo_settings(data_dir.resolve(), host, port)
    logs.configure("WARNING")
    try:
        asyncio.run(serve_demo(settings, console))
    except DemoError as exc:
        console.print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
    console.print("Demo stopped. Run it again to reuse the same data.")


if __name__ == "__main__":
    app()
