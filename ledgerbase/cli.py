"""The ``ledgerbase`` command: serve, migrate, keys, ledger verify / witness."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape

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
        f"  Realtime:     ws://{host}:{port}/realtime/v1/websocket",
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
    from ledgerbase.realtime.transport import SERVER_OPTIONS

    if workers > 1:
        from ledgerbase.workers import serve_workers

        options = {"log_config": None, "access_log": False, "lifespan": "on",
                   "proxy_headers": settings.proxy_headers, **SERVER_OPTIONS}
        try:
            serve_workers(workers, host, port, options, settings.log_level)
        except OSError as error:
            console.print(f"[red]error:[/red] cannot listen on {host}:{port}: {error.strerror or error}"
                          " (another server there? choose another --port)")
            raise typer.Exit(1) from None
    else:
        from ledgerbase.app import app_from_env

        uvicorn.run(app_from_env(), host=host, port=port, log_config=None, access_log=False,
                    lifespan="on", proxy_headers=settings.proxy_headers, **SERVER_OPTIONS)


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


events_app = typer.Typer(help="Follow the stream of committed changes.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("tail")
def events_tail(
    table: Annotated[str | None, typer.Option(help="Only changes of this table (e.g. todos, auth.users).")] = None,
    database: Annotated[str | None, typer.Option(help="sqlite:///path or postgresql://... URL.")] = None,
) -> None:
    """Print each change committed from now on as one JSON line (the event message), until Ctrl-C."""
    from ledgerbase.events.tail import tail

    url = database or Settings().resolved_database_url()

    def write(line: bytes) -> None:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()

    try:
        asyncio.run(tail(url, write, table=table))
    except KeyboardInterrupt:
        pass
    except LedgerbaseError as error:
        console.print(f"[red]error:[/red] {error.message}")
        raise typer.Exit(1) from None


ledger_app = typer.Typer(help="Audit the verifiable ledger, and witness it.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr for logs of more than a few tiles (a callback taking done, total)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, transient=True)
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        if total >= 64 and not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        bar.stop()


def _fail(message: str) -> NoReturn:
    console.print(f"[red]FAILED:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


@ledger_app.command("verify")
def ledger_verify(
    url: Annotated[str | None, typer.Option(help="Audit the server at this URL (its /ledger/v1).")] = None,
    database: Annotated[str | None, typer.Option(
        help="Audit the ledger tables of this sqlite:/// or postgresql:// database, and its rows for drift.")] = None,
    state: Annotated[Path | None, typer.Option(
        help="JSON file keeping the log key and the last checkpoint verified (--url).")] = None,
    key: Annotated[str | None, typer.Option(help="The log's verifier key (default: trust on first use).")] = None,
    concurrency: Annotated[int, typer.Option(help="Downloads at a time.", min=1, max=64)] = 8,
) -> None:
    """Verify every tile and entry of the ledger against its signed checkpoint.

    With --url: the key (trust on first use, kept in --state), the checkpoint's signature,
    every tile and entry bundle, and consistency with the checkpoint in --state, which is
    updated on success. With --database: the ledger tables, and every live row against
    its latest ledger entry (rows inserted, changed or deleted behind Ledgerbase's back).
    Exits 0 only if everything verifies.
    """
    from ledgerbase.ledger.verify import LogState, VerifyError, verify_database, verify_url

    if (url is None) == (database is None):
        console.print("[red]error:[/red] give exactly one of --url or --database")
        raise typer.Exit(2)
    try:
        if url is not None:
            kept = LogState.load(state) if state is not None else None
            with _progress("verifying") as progress:
                report = asyncio.run(verify_url(url, state=kept, key=key, concurrency=concurrency,
                                                progress=progress))
            checkpoint = report.checkpoint
            sys.stdout.write(f"ok: {checkpoint.origin} size {checkpoint.size} root "
                             f"{base64.b64encode(checkpoint.root).decode()}\n"
                             f"  {report.audit.bundles} entry bundles and {report.audit.tiles} tiles verified\n")
            if report.earlier is not None:
                sys.stdout.write(f"  consistent with the checkpoint of size {report.earlier.size} in {state}\n")
            if state is not None:
                LogState(report.key, report.signed).save(state)
            return
        assert database is not None
        with _progress("verifying") as progress:
            found = asyncio.run(verify_database(database, key=key, concurrency=concurrency, progress=progress))
    except VerifyError as error:
        _fail(error.message)
    checkpoint = found.checkpoint
    sys.stdout.write(f"ledger ok: size {checkpoint.size} root {base64.b64encode(checkpoint.root).decode()}, "
                     f"{found.audit.bundles} entry bundles and {found.audit.tiles} tiles verified\n")
    if found.drift:
        for drift in found.drift:
            sys.stdout.write(f"drift: {drift.line()}\n")
        _fail(f"{len(found.drift)} of {found.rows} rows changed behind Ledgerbase's back "
              "(inserted, changed or deleted without the ledger)")
    sys.stdout.write(f"rows ok: {found.rows} live rows match the ledger\n")


@ledger_app.command("witness")
def ledger_witness(
    url: Annotated[str, typer.Option(help="The log's server URL.")],
    state: Annotated[Path, typer.Option(help="JSON file keeping the log key and the last checkpoint cosigned.")],
    key: Annotated[Path | None, typer.Option(
        help="The witness's signer key file (created, mode 0600, on first use; default: STATE.key).")] = None,
    name: Annotated[str | None, typer.Option(help="Name of a new witness key (default: <hostname>/witness).")] = None,
    log_key: Annotated[str | None, typer.Option(help="The log's verifier key (default: trust on first use).")] = None,
) -> None:
    """Cosign the log's checkpoint after checking it extends the last one cosigned, and post the cosignature.

    Refuses (exit 1) a checkpoint with a bad signature, a smaller tree, another origin or
    no valid consistency proof. The log takes cosignatures only from the keys in its
    LEDGERBASE_LEDGER_WITNESSES setting: give it the verifier key printed here.
    """
    from ledgerbase.ledger.verify import LogState, VerifyError
    from ledgerbase.ledger.witness import load_or_create_witness_key, witness_once

    key_file = key or state.with_name(state.name + ".key")
    try:
        signer, created = load_or_create_witness_key(key_file, name)
        verifier_key = signer.verifier().key()
        console.print(f"{'created witness key' if created else 'witness key'} {key_file}: {verifier_key}",
                      soft_wrap=True, highlight=False)
        witnessed, new_state = asyncio.run(witness_once(url, signer, state=LogState.load(state), log_key=log_key))
    except VerifyError as error:
        _fail(error.message)
    new_state.save(state)
    checkpoint = witnessed.checkpoint
    since = f" (consistent with size {witnessed.earlier.size})" if witnessed.earlier is not None else ""
    sys.stdout.write(f"cosigned {checkpoint.origin} size {checkpoint.size}{since}\n")
    if not witnessed.accepted:
        _fail(f"the log refused the cosignature: {witnessed.reply.strip()} "
              f"(is {verifier_key} in its LEDGERBASE_LEDGER_WITNESSES?)")
    sys.stdout.write("the log took the cosignature\n")


if __name__ == "__main__":  # pragma: no cover
    app()
