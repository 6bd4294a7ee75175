"""The ``ledgerbase`` command: serve, migrate, keys."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from ledgerbase import __version__
from ledgerbase.auth.keys import load_or_create_secret, make_api_key
from ledgerbase.config import Settings
from ledgerbase.errors import LedgerbaseError
from ledgerbase.observability import configure_logging

app = typer.Typer(help="Ledgerbase: a PostgREST-compatible back end on SQLite or PostgreSQL.",
                  no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


def _keys(settings: Settings) -> dict[str, str]:
    secret = load_or_create_secret(settings.data_dir, settings.jwt_secret)
    return {"anon": make_api_key(secret, "anon"), "service_role": make_api_key(secret, "service_role")}


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    database: Annotated[str | None, typer.Option(help="sqlite:///path or postgresql://... URL.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    demo: Annotated[bool, typer.Option(help="Create and serve the demo shop schema and data.")] = False,
) -> None:
    """Serve the API (REST at /rest/v1)."""
    import uvicorn

    if database:
        os.environ["LEDGERBASE_DATABASE_URL"] = database
    if demo:
        os.environ["LEDGERBASE_DEMO"] = "1"
    settings = Settings()
    keys = _keys(settings)
    base = f"http://{host}:{port}"
    lines = [
        f"Ledgerbase {__version__} on {settings.resolved_database_url()}",
        f"  REST API:     {base}/rest/v1/",
        f"  Auth:         {base}/auth/v1/",
        f"  Ledger:       {base}/ledger/v1/checkpoint",
        f"  Health:       {base}/health/ready",
        f"  Metrics:      {base}/metrics",
        f"  anon key:     {keys['anon']}",
        # the service_role key bypasses every policy: shown on a terminal, never into a log collector
        f"  service_role: {keys['service_role'] if sys.stderr.isatty() else '(not shown: ledgerbase keys)'}",
    ]
    if demo:
        lines.append(f"  Try:  curl '{base}/rest/v1/products?select=name,price&limit=3' "
                     f"-H 'apikey: {keys['anon']}'")
    sys.stderr.write("\n".join(lines) + "\n")
    configure_logging(settings.log_level)
    if workers > 1:
        uvicorn.run("ledgerbase.app:app_from_env", factory=True, host=host, port=port,
                    workers=workers, log_config=None, access_log=False, lifespan="on",
                    proxy_headers=settings.proxy_headers)
    else:
        from ledgerbase.app import app_from_env

        uvicorn.run(app_from_env(), host=host, port=port, log_config=None, access_log=False,
                    lifespan="on", proxy_headers=settings.proxy_headers)


@app.command()
def migrate(
    database: Annotated[str | None, typer.Option(help="sqlite:///path or postgresql://... URL.")] = None,
    dir: Annotated[Path, typer.Option("--dir", help="Directory of *.sql migrations.")] = Path("migrations"),
) -> None:
    """Apply the *.sql migrations of DIR that were not applied yet, in name order."""
    from ledgerbase.db.migrate import migrate as run_migrations

    url = database or Settings().resolved_database_url()
    if not dir.is_dir():
        console.print(f"[red]error:[/red] {dir} is not a directory of .sql migrations")
        raise typer.Exit(2)
    try:
        result = asyncio.run(run_migrations(url, dir))
    except LedgerbaseError as error:
        console.print(f"[red]error:[/red] {error.message}")
        raise typer.Exit(1) from None
    for name in result.applied:
        console.print(f"applied {name}")
    console.print(f"{len(result.applied)} applied, {len(result.skipped)} already applied")


@app.command()
def keys(json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print the anon and service_role API keys for the configured JWT secret."""
    found = _keys(Settings())
    if json:
        sys.stdout.write(orjson.dumps(found).decode() + "\n")
    else:
        sys.stdout.write(f"anon:         {found['anon']}\nservice_role: {found['service_role']}\n")


if __name__ == "__main__":  # pragma: no cover
    app()
