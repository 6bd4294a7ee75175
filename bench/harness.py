"""Pieces of a benchmark run: servers pinned to a core, wrk runs and their parsed figures."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
WRK_DIR = BENCH_DIR / "wrk"

READ_WORKLOADS = ("get_by_id", "filtered_list", "embed")
# The data API workloads, which the baselines serve too (PostgREST: the reads).
CORE_WORKLOADS = (*READ_WORKLOADS, "insert")
# (without, with row-level security): the same query as an authenticated user, on posts
# and on private_posts; each pair is timed back to back (bench/users.py checks them).
RLS_PAIRS = (("user_get_by_id", "rls_get_by_id"), ("user_list", "rls_list"))
USER_WORKLOADS = tuple(workload for pair in RLS_PAIRS for workload in pair)
SIGN_IN = "sign_in"
# Writes timed on the same server with the ledger on and off (LEDGERBASE_LEDGER_ENABLED).
LEDGER_WORKLOADS = ("ledger_insert", "ledger_update")
WORKLOADS = (*CORE_WORKLOADS, *USER_WORKLOADS, *LEDGER_WORKLOADS, SIGN_IN)
# Workloads sent by another workload's wrk script (the default is the workload's own name).
WRK_SCRIPTS = {"ledger_insert": "insert", "ledger_update": "update"}
WORKLOAD_TITLES = {
    "fixed": "fixed JSON",
    "get_by_id": "get by id",
    "filtered_list": "filtered + ordered list of 20",
    "embed": "list of 20 with many-to-one embed",
    "insert": "single-row insert",
    "user_get_by_id": "get by id as a user, no RLS",
    "rls_get_by_id": "get by id as a user, RLS",
    "user_list": "list of 20 as a user, no RLS",
    "rls_list": "list of 20 as a user, RLS",
    SIGN_IN: "sign-in with a password",
    "ledger_insert": "single-row insert",
    "ledger_update": "single-row update by id",
    "ledger_proofs": "ledger proofs",
}
# Any server of the run answers this once it is up (PostgREST without the prefix).
READY_PATH = "/posts?select=id&limit=1"
# One request per workload, used to check each server's answer before timing it.
CHECK_REQUESTS: dict[str, tuple[str, str]] = {
    "fixed": ("GET", "/posts?select=id,title,score&limit=20"),
    "get_by_id": ("GET", "/posts?id=eq.4242&select=*"),
    "filtered_list": ("GET", "/posts?select=id,title,score&published=eq.true&score=gt.500"
                             "&order=score.desc&limit=20"),
    "embed": ("GET", "/posts?select=id,title,authors(name)&limit=20"),
    "insert": ("POST", "/posts"),
    "ledger_insert": ("POST", "/posts"),
    "ledger_update": ("PATCH", "/posts?id=eq.4242"),
}
INSERT_BODY = b'{"author_id":1,"title":"x","score":1}'
UPDATE_BODY = b'{"score":1}'
# The columns of posts and private_posts, as select=* answers them.
POST_COLUMNS = {"id", "author_id", "title", "score", "published", "created_at", "user_id"}


@dataclass(frozen=True, slots=True)
class Keys:
    """API keys sent by the wrk scripts: reads use ``read``, the insert uses ``write``."""

    read: str
    write: str


@dataclass(slots=True)
class Server:
    """A server under test: how to start it and what to send it."""

    name: str
    label: str
    database: str  # "sqlite" or "postgresql"
    command: list[str]
    workloads: tuple[str, ...]
    cpus: str
    keys: Keys
    prefix: str = "/rest/v1"
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""
    script: str | None = None  # one wrk script for every workload slot (the fixed baseline)
    ledger_url: str = ""  # its database, when its ledger's lag is sampled (ledger on)


@dataclass(frozen=True, slots=True)
class Measurement:
    """One wrk run's figures."""

    server: str
    workload: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors, timeouts and non-2xx/3xx answers
    other_cpu: float = 0.0  # cores busy with anything but the servers and wrk meanwhile
    round: int = 1
    server_cpu: float = 0.0  # cores the servers kept busy meanwhile (PostgreSQL not included)
    lag_max_s: float | None = None  # ledger on: the oldest unpublished change's largest age
    lag_drain_s: float | None = None  # ledger on: seconds after wrk until every change published

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        """Milliseconds of the servers' CPU per answered request."""
        return self.server_cpu * self.seconds * 1000 / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class Check:
    """The answer to one workload's request before it was timed."""

    server: str
    workload: str
    ok: bool
    status: int | None
    detail: str
    skipped: bool = False  # the server does not offer what the workload needs (not a failure)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Running:
    """A started server process (its own process group, pinned with taskset)."""

    def __init__(self, server: Server, port: int, log_path: Path) -> None:
        self.server = server
        self.port = port
        self.log_path = log_path
        self._log = log_path.open("wb")
        command = [part.replace("{port}", str(port)) for part in server.command]
        env = {key: value.replace("{port}", str(port)) for key, value in server.env.items()}
        self.process = subprocess.Popen(
            ["taskset", "-c", server.cpus, *command], stdout=self._log,
            stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=BENCH_DIR.parent,
            start_new_session=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Return once the server answers HTTP at all; raise RuntimeError if it died or hung."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"exited with code {self.process.returncode}: "
                                   f"{self.log_tail()}")
            try:
                response = httpx.get(self.base_url + self.server.prefix + READY_PATH, timeout=2.0,
                                     headers=auth_headers(self.server.keys.read))
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code != 503:  # 503: "try again"
                return
            time.sleep(0.2)
        raise RuntimeError(f"no answer within {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no output)"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def process_group_cpu(leaders: list[int]) -> float:
    """CPU seconds used so far by every process in the given process groups."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[2]) in leaders:  # fields[2] is the process group id
            ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def settle(running: list[Running], *, quiet: float = 0.03, window: float = 0.5,
           limit: float = 10.0) -> float:
    """Wait until the servers are idle (background work after a load done); seconds waited.

    Idle means below ``quiet`` of a core over ``window`` seconds; gives up after ``limit``.
    """
    leaders = [r.process.pid for r in running]
    started = time.monotonic()
    before = process_group_cpu(leaders)
    while time.monotonic() - started < limit:
        time.sleep(window)
        now = process_group_cpu(leaders)
        if now - before < quiet * window:
            break
        before = now
    return time.monotonic() - started


def auth_headers(key: str) -> dict[str, str]:
    return {"apikey": key, "Authorization": f"Bearer {key}"} if key else {}


def check(running: Running, workload: str) -> tuple[Check, Any]:
    """Send the workload's request once; the check and the decoded JSON answer (or None)."""
    server = running.server
    method, path = CHECK_REQUESTS[workload]
    url = running.base_url + server.prefix + path
    try:
        if method in ("POST", "PATCH"):
            response = httpx.request(
                method, url, content=INSERT_BODY if method == "POST" else UPDATE_BODY,
                timeout=10.0, headers={**auth_headers(server.keys.write),
                                       "Content-Type": "application/json",
                                       "Prefer": "return=minimal"})
        else:
            response = httpx.get(url, timeout=10.0, headers=auth_headers(server.keys.read))
    except httpx.HTTPError as error:
        return Check(server.name, workload, False, None, f"{method} {path}: {error!r}"), None
    expected = {"POST": 201, "PATCH": 204}.get(method, 200)
    body = response.text[:300].replace("\n", " ")
    detail = f"{method} {path} -> {response.status_code} {body}"
    if response.status_code != expected:
        return Check(server.name, workload, False, response.status_code, detail), None
    if method != "GET" or workload == "fixed":
        return Check(server.name, workload, True, response.status_code, detail), None
    try:
        answer = response.json()
    except ValueError:
        return Check(server.name, workload, False, response.status_code,
                     detail + " (not JSON)"), None
    problem = shape_problem(workload, answer)
    return Check(server.name, workload, not problem, response.status_code,
                 f"{detail} ({problem})" if problem else detail), answer


def shape_problem(workload: str, answer: Any) -> str:
    """What is wrong with a read answer's shape, or '' if it looks right."""
    if not isinstance(answer, list) or not all(isinstance(row, dict) for row in answer):
        return "expected a JSON array of objects"
    if workload == "get_by_id":
        if len(answer) != 1 or answer[0].get("id") != 4242:
            return "expected exactly the row with id 4242"
        return row_problem(answer[0])
    elif len(answer) != 20:
        return f"expected 20 rows, got {len(answer)}"
    elif workload == "filtered_list":
        scores = [row.get("score") for row in answer]
        if any(not isinstance(s, int) or s <= 500 for s in scores) or scores != sorted(
                scores, reverse=True):
            return "rows not filtered by score > 500 or not ordered by score desc"
    elif workload == "embed":
        if any(not isinstance(row.get("authors"), dict) or "name" not in row["authors"]
               for row in answer):
            return 'expected "authors": {"name": ...} in every row'
    return ""


def row_problem(row: dict[str, Any]) -> str:
    """What is wrong with a whole row of posts (or private_posts), or '' if it looks right."""
    if set(row) != POST_COLUMNS:
        return f"unexpected columns {sorted(row)}"
    if not isinstance(row["published"], bool):
        return "published is not a JSON boolean"
    return ""


def run_wrk(running: Running, workload: str, connections: int, seconds: float, *,
            cpus: str, threads: int, output: Path | None,
            others: list[Running] | None = None,
            env: dict[str, str] | None = None) -> Measurement:
    """One wrk run pinned to ``cpus``; raise RuntimeError if wrk printed no result.

    ``others`` are all servers of the run: CPU they and wrk did not use during the run
    was used by someone else (other programs, or PostgreSQL) and is reported as noise.
    ``env`` goes to the wrk script (the files of bench/users.py).
    """
    others = others or [running]
    server = running.server
    script = server.script or WRK_SCRIPTS.get(workload, workload)
    env = {**os.environ, **(env or {}), "LUA_PATH": f"{WRK_DIR}/?.lua;;",
           "BENCH_PREFIX": server.prefix, "BENCH_READ_KEY": server.keys.read,
           "BENCH_WRITE_KEY": server.keys.write}
    command = ["taskset", "-c", cpus, "wrk", f"-t{threads}", f"-c{connections}",
               f"-d{max(1, round(seconds))}s", "--timeout", "10s", "--latency",
               "-s", str(WRK_DIR / f"{script}.lua"), running.base_url]
    leaders = [r.process.pid for r in others]
    before = (busy_cpu(), process_group_cpu(leaders), children_cpu())
    done = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=seconds + 60)
    after = (busy_cpu(), process_group_cpu(leaders), children_cpu())
    busy, ours, wrk = (b - a for a, b in zip(before, after, strict=True))
    if output is not None:
        output.write_text(f"$ {' '.join(command[3:])}\n{done.stdout}{done.stderr}")
    result = parse_wrk(done.stdout)
    if result is None:
        raise RuntimeError(f"wrk printed no BENCH_RESULT line: {done.stdout[-500:]} "
                           f"{done.stderr[-500:]}")
    errors = result["errors"]
    seconds_run = max(result["duration_us"] / 1e6, 1e-9)
    return Measurement(
        server=server.name, workload=workload, connections=connections,
        requests=int(result["requests"]), seconds=result["duration_us"] / 1e6,
        p50_ms=result["latency_us"]["percentiles"]["50"] / 1000,
        p99_ms=result["latency_us"]["percentiles"]["99"] / 1000,
        errors=sum(int(errors[k]) for k in ("connect", "read", "write", "status", "timeout")),
        other_cpu=max(0.0, busy - ours - wrk) / seconds_run, server_cpu=ours / seconds_run)


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds used by this process's finished children (wrk, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_wrk(stdout: str) -> dict[str, Any] | None:
    """The JSON printed by bench/wrk/common.lua's done(), or None."""
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
            return parsed
    return None
