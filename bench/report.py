"""Render one run's measurements as bench/RESULTS.md: tables, ratios and target marks.

Each run keeps its figures in bench/out/run-*/results.json; to render a run again
(after a change to this file, say), keeping any section written by hand:

    .venv/bin/python bench/report.py bench/out/run-20261123-100414 --output bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness import (
    CORE_WORKLOADS,
    LEDGER_WORKLOADS,
    READ_WORKLOADS,
    RLS_PAIRS,
    SIGN_IN,
    USER_WORKLOADS,
    WORKLOAD_TITLES,
    Check,
    Measurement,
)

# Ratio of Ledgerbase (SQLite, one worker) to the hand-written sqlite3 app, per workload.
TARGET_RATIOS = {"get_by_id": 0.6, "filtered_list": 0.6, "embed": 0.5, "insert": 0.5}
# Ledgerbase on SQLite: req/s of a query on the table with row-level security as a ratio
# to the same query (same rows answered) on the table without it.
TARGET_RLS = 0.8
PAIR_TITLES = {"rls_get_by_id": "get by id as a user", "rls_list": "list of 20 as a user"}
TARGET_P99_MS = 50.0
TARGET_P99_CONNECTIONS = 64
# Cores used by other programs during a measurement above which its latency says little.
DISTURBED_CPU = 0.2
# --workers 2 on PostgreSQL counts as scaling reads when it serves this much more.
TARGET_SCALING = 1.2
# The ledger: writes with it on as a ratio to the same server with it off; integrator
# leaves per second on one core; the oldest unpublished change's age under the write load;
# proof latency (p99, one request at a time) on the large log; `ledger verify --url` time.
TARGET_LEDGER_RATIO = 0.85
TARGET_LEAVES_PER_S = 20_000
TARGET_LAG_S = 2.0
TARGET_PROOF_MS = 5.0
TARGET_PROOF_SIZE = 1_000_000
TARGET_VERIFY_S = 120.0

FIXED = "fixed"
HANDWRITTEN = "handwritten"
OURS_SQLITE = "ledgerbase-sqlite"
OURS_SQLITE_OFF = "ledgerbase-sqlite-off"
OURS_PG_OFF = "ledgerbase-pg-off"
POSTGREST = "postgrest"


@dataclass(slots=True)
class Report:
    """Everything RESULTS.md says about one run."""

    started: str
    commit: str
    command: str
    machine: dict[str, str]
    settings: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)  # server name -> table label
    server_notes: dict[str, str] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sqlite_servers: list[str] = field(default_factory=list)
    postgres_servers: list[str] = field(default_factory=list)
    # workloads timed at other connection counts than the run's (sign-in: the lowest)
    connections_of: dict[str, list[int]] = field(default_factory=dict)
    # (ledger on, ledger off, database) servers timed on the ledger workloads
    ledger_pairs: list[tuple[str, str, str]] = field(default_factory=list)
    # bench/ledger.py's figures: "builds", "proofs", "verify" (lists of dicts)
    ledger: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def paired_ratio(self, server: str, base: str, workload: str, connections: int) -> float | None:
        """The median over rounds of ``server``'s req/s divided by ``base``'s in the same round
        (timed back to back, so a busier moment of the machine hits both), or None."""
        bases = {m.round: m for m in self.measurements
                 if (m.server, m.workload, m.connections) == (base, workload, connections) and m.rps}
        ratios = [m.rps / bases[m.round].rps for m in self.measurements
                  if (m.server, m.workload, m.connections) == (server, workload, connections) and m.round in bases]
        return statistics.median(ratios) if ratios else None

    def find(self, server: str, workload: str, connections: int) -> Measurement | None:
        """The measurement of the median round (by req/s), or None."""
        found = sorted((m for m in self.measurements
                        if (m.server, m.workload, m.connections) == (server, workload, connections)),
                       key=lambda m: m.rps)
        return found[(len(found) - 1) // 2] if found else None


def ratio(ours: Measurement | None, base: Measurement | None) -> float | None:
    if ours is None or base is None or not base.rps:
        return None
    return ours.rps / base.rps


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def mark(passed: bool | None) -> str:
    return "n/a" if passed is None else ("pass" if passed else "**FAIL**")


def table(report: Report, servers: Iterable[str], connections: list[int],
          against_postgrest: bool) -> list[str]:
    head = ["server", "workload", "conns", "req/s", "p50 ms", "p99 ms", "errors", "other CPU",
            "× fixed JSON", "× hand-written sqlite3"]
    if against_postgrest:
        head.append("× PostgREST")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for server in servers:
        for workload in (*CORE_WORKLOADS, *USER_WORKLOADS):
            for conns in connections:
                m = report.find(server, workload, conns)
                if m is None:
                    continue
                title = WORKLOAD_TITLES[workload]
                if server == FIXED:
                    title = f"fixed JSON, timed beside “{title}”"
                row = [report.labels.get(server, server), title, str(conns),
                       f"{m.rps:,.0f}", f"{m.p50_ms:.2f}", f"{m.p99_ms:.2f}", str(m.errors),
                       f"{m.other_cpu:.2f}",
                       fmt_ratio(ratio(m, report.find(FIXED, workload, conns))),
                       fmt_ratio(ratio(m, report.find(HANDWRITTEN, workload, conns)))]
                if against_postgrest:
                    row.append(fmt_ratio(ratio(m, report.find(POSTGREST, workload, conns))))
                lines.append("| " + " | ".join(row) + " |")
    return lines


def targets(report: Report, connections: list[int], scaling_pair: tuple[str, str] | None,
            ) -> list[str]:
    """Target rows of the workloads this run timed (bench/run.sh --workloads leaves some out)."""
    timed = {m.workload for m in report.measurements}
    lines = ["| target | conns | measured | result |", "|---|---|---|---|"]
    for workload, wanted in TARGET_RATIOS.items():
        if workload not in timed:
            continue
        for conns in connections:
            got = ratio(report.find(OURS_SQLITE, workload, conns),
                        report.find(HANDWRITTEN, workload, conns))
            lines.append(f"| {WORKLOAD_TITLES[workload]}: ≥ {wanted} × hand-written | {conns} "
                         f"| {fmt_ratio(got)} | {mark(None if got is None else got >= wanted)} |")
    for without, with_rls in RLS_PAIRS:
        if not {without, with_rls} & timed:
            continue
        for conns in connections:
            got = ratio(report.find(OURS_SQLITE, with_rls, conns),
                        report.find(OURS_SQLITE, without, conns))
            lines.append(f"| {PAIR_TITLES[with_rls]}: RLS ≥ {TARGET_RLS} × no RLS | {conns} "
                         f"| {fmt_ratio(got)} | {mark(None if got is None else got >= TARGET_RLS)} |")
    for workload in (w for w in CORE_WORKLOADS if w in timed):
        m = report.find(OURS_SQLITE, workload, TARGET_P99_CONNECTIONS)
        got_ms = None if m is None else m.p99_ms
        measured = "n/a" if m is None else f"{m.p99_ms:.1f} ms"
        if m is not None and m.other_cpu > DISTURBED_CPU:
            measured += f" (disturbed: other programs used {m.other_cpu:.2f} cores)"
        lines.append(f"| {WORKLOAD_TITLES[workload]}: p99 < {TARGET_P99_MS:.0f} ms "
                     f"| {TARGET_P99_CONNECTIONS} | {measured} "
                     f"| {mark(None if got_ms is None else got_ms < TARGET_P99_MS)} |")
    if scaling_pair is not None:
        one, more = scaling_pair
        for workload in (w for w in READ_WORKLOADS if w in timed):
            for conns in connections:
                got = ratio(report.find(more, workload, conns), report.find(one, workload, conns))
                passed = None if got is None else got >= TARGET_SCALING
                lines.append(
                    f"| PostgreSQL {WORKLOAD_TITLES[workload]}: {more.rsplit('-w', 1)[-1]} "
                    f"workers ≥ {TARGET_SCALING} × 1 worker | {conns} "
                    f"| {fmt_ratio(got)} | {mark(passed)} |")
    return lines + ledger_targets(report, connections)


def ledger_targets(report: Report, connections: list[int]) -> list[str]:
    """Target rows of the ledger (none when the run did not time it)."""
    lines = []
    for on, off, database in report.ledger_pairs:
        for workload in LEDGER_WORKLOADS:
            for conns in connections:
                got = report.paired_ratio(on, off, workload, conns)
                if got is None:
                    continue
                lines.append(f"| {database} {WORKLOAD_TITLES[workload]}: ledger on ≥ "
                             f"{TARGET_LEDGER_RATIO} × ledger off | {conns} | {fmt_ratio(got)} "
                             f"| {mark(got >= TARGET_LEDGER_RATIO)} |")
    for on, _off, database in report.ledger_pairs:
        lags = [m for m in report.measurements if m.server == on and m.lag_max_s is not None]
        if lags:
            worst = max(lags, key=lambda m: m.lag_max_s or 0.0)
            lag = worst.lag_max_s or 0.0
            lines.append(f"| {database} integrator lag < {TARGET_LAG_S:g} s at the API's write rate "
                         f"(max over the ledger workloads) | {worst.connections} | {lag:.2f} s "
                         f"({WORKLOAD_TITLES[worst.workload]}) | {mark(lag < TARGET_LAG_S)} |")
    for built in report.ledger.get("builds", []):
        lines.append(f"| {db_label(built['database'])} integrator ≥ {TARGET_LEAVES_PER_S:,} leaves/s "
                     f"on one core | - | {built['leaves_per_second']:,.0f} "
                     f"| {mark(built['leaves_per_second'] >= TARGET_LEAVES_PER_S)} |")
    for proof in report.ledger.get("proofs", []):
        # judged on the server's own time (its histogram): the client's adds this shared
        # machine's scheduling of the client process, which the server does not control
        bound = proof.get("server_p99_bound_ms")
        served = bound if bound is not None else proof["p99_ms"]
        passed = served <= TARGET_PROOF_MS and proof["size"] >= TARGET_PROOF_SIZE
        server = f"server ≤ {bound:g} ms, " if bound is not None else ""
        lines.append(f"| {db_label(proof['database'])} {proof['proof']} proof p99 < "
                     f"{TARGET_PROOF_MS:g} ms at {TARGET_PROOF_SIZE:,} entries | 1 "
                     f"| {server}client {proof['p99_ms']:.2f} ms at {proof['size']:,} "
                     f"| {mark(passed) if proof['size'] >= TARGET_PROOF_SIZE else 'n/a (smaller log)'} |")
    for verify in report.ledger.get("verify", []):
        seconds = verify.get("seconds")
        measured = "not timed" if seconds is None else f"{seconds:.1f} s at {verify['size']:,}"
        passed = None if seconds is None else bool(verify.get("ok")) and seconds < TARGET_VERIFY_S
        lines.append(f"| {db_label(verify['database'])} `ledgerbase ledger verify --url` < "
                     f"{TARGET_VERIFY_S / 60:g} min | - | {measured} | {mark(passed)} |")
    return lines


def fmt_rps(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def db_label(name: str) -> str:
    return {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(name, name)


def _bound(ms: float | None) -> str:
    return "n/a" if ms is None else f"≤ {ms:g}"


def ledger_section(report: Report, connections: list[int]) -> list[str]:
    """The Ledger section: writes with the ledger on and off, lag, integrator, proofs."""
    if not report.ledger_pairs and not report.ledger:
        return []
    out = ["", "## Ledger", "",
           "Every write through the API is captured into the ledger's changes table in its "
           "transaction; the integrator turns changes into entries, tiles and a signed "
           "checkpoint (at most one per second). *lag max*: the largest age, sampled every "
           "0.1 s from the tables, of the oldest change committed but not yet in a published "
           "checkpoint, during the load and until the ledger caught up; *caught up*: seconds "
           "after the load ended until every change was published. *on ÷ off*: the median over "
           "rounds of each round's ratio (the two servers are timed back to back, so a busy "
           "moment of the shared machine hits both); the req/s columns are each server's median "
           "round. *CPU µs/write*: the server process's CPU time per answered write in that "
           "round (on PostgreSQL, PostgreSQL's own processes are not counted).", ""]
    rows = []
    for on, off, database in report.ledger_pairs:
        for workload in LEDGER_WORKLOADS:
            for conns in connections:
                a, b = report.find(on, workload, conns), report.find(off, workload, conns)
                if a is None and b is None:
                    continue
                rows.append(
                    f"| {database} | {WORKLOAD_TITLES[workload]} | {conns} "
                    f"| {'n/a' if a is None else f'{a.rps:,.0f}'} "
                    f"| {'n/a' if b is None else f'{b.rps:,.0f}'} "
                    f"| {fmt_ratio(report.paired_ratio(on, off, workload, conns))} "
                    f"| {'n/a' if a is None else f'{a.cpu_ms_per_request * 1000:.0f}'} "
                    f"| {'n/a' if b is None else f'{b.cpu_ms_per_request * 1000:.0f}'} "
                    f"| {'n/a' if a is None else f'{a.p99_ms:.1f}'} "
                    f"| {'n/a' if b is None else f'{b.p99_ms:.1f}'} "
                    f"| {'n/a' if a is None or a.lag_max_s is None else f'{a.lag_max_s:.2f}'} "
                    f"| {'n/a' if a is None or a.lag_drain_s is None else f'{a.lag_drain_s:.1f}'} "
                    f"| {max(a.other_cpu if a else 0, b.other_cpu if b else 0):.2f} |")
    if rows:
        out += ["| database | workload | conns | ledger on req/s | ledger off req/s | on ÷ off "
                "| on CPU µs/write | off CPU µs/write | on p99 ms | off p99 ms | lag max s | caught up s "
                "| other CPU |",
                "|" + "---|" * 13, *rows]
    if builds := report.ledger.get("builds"):
        out += ["", "The integrator alone (bench/ledger.py): N changes shaped like captured "
                "`posts` inserts written into the changes table with SQL, then "
                "`Ledger.integrate` called until all are in the tree (batches of 10,000: "
                "read changes, canonical JSON entries and row digests, leaf hashes, tiles, "
                "entry bundles, signed checkpoint, one write transaction each), the process "
                "pinned to one core (PostgreSQL's own processes not pinned).", "",
                "| database | entries | fill with SQL s | integrate s | leaves/s | batch p50 ms "
                "| batch max ms | cores |", "|" + "---|" * 8]
        out += [f"| {db_label(b['database'])} | {b['entries']:,} | {b['fill_seconds']:.1f} "
                f"| {b['integrate_seconds']:.1f} | {b['leaves_per_second']:,.0f} "
                f"| {b['batch_ms_p50']:.0f} | {b['batch_ms_max']:.0f} | {b['cpus']} |"
                for b in builds]
    if proofs := report.ledger.get("proofs"):
        out += ["", "Proofs served by `ledgerbase serve` on that log: random arguments "
                "(inclusion: a tree size up to the log's and an index below it; consistency: "
                "two sizes), asked one at a time with httpx (the client's latency, "
                "loopback HTTP included), then with wrk at 16 connections. *server p99*: the "
                "smallest bucket of the server's own request-duration histogram (`/metrics`, "
                "from the request's arrival to the end of its response) holding 99% of those "
                "requests; the target is judged on it.", "",
                "| database | proof | log size | requests | server p99 ms | client p50 ms | client p99 ms "
                "| client max ms | errors | wrk -c16 req/s | wrk p99 ms |", "|" + "---|" * 11]
        out += [f"| {db_label(p['database'])} | {p['proof']} | {p['size']:,} | {p['requests']} "
                f"| {_bound(p.get('server_p99_bound_ms'))} "
                f"| {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | {p['max_ms']:.2f} | {p['errors']} "
                f"| {fmt_rps(p.get('rps'))} "
                f"| {p.get('wrk_p99_ms', 0):.1f} |" for p in proofs]
    if report.ledger.get("verify"):
        out.append("")
    for verify in report.ledger.get("verify", []):
        seconds = verify.get("seconds")
        out.append(f"- `ledgerbase ledger verify --url` on the {db_label(verify['database'])} "
                   f"log of {verify['size']:,}: "
                   + (verify["detail"] if seconds is None else
                      f"{seconds:.1f} s, {'ok' if verify.get('ok') else 'failed'}: "
                      f"`{verify['detail']}`"))
    return out


def merge_ledger(old_text: str, report: Report, connections: list[int]) -> str:
    """``old_text`` (an earlier run's RESULTS.md) with its Ledger section replaced by this run's,
    which then carries its own run facts and target rows."""
    section_lines = ledger_section(report, connections)
    if not section_lines:
        return old_text
    facts = [f"Measured in a separate run, `{report.command}` ({report.started}, commit "
             f"`{report.commit}`, {report.machine.get('background load', '')}), not in the run "
             "above; its targets:", "", "| target | conns | measured | result |",
             "|---|---|---|---|", *ledger_targets(report, connections), ""]
    section_lines = section_lines[:3] + facts + section_lines[3:]
    body = "\n".join(section_lines).strip() + "\n"
    if not old_text.strip():
        return "# Benchmark results\n\n" + body
    if section(old_text, "Ledger"):
        return re.sub(r"^## Ledger\n.*?(?=^## |\Z)", lambda _: body + "\n", old_text,
                      count=1, flags=re.MULTILINE | re.DOTALL)
    # before the Servers section, where a full run renders it
    match = re.search(r"^## (Servers|Answer checks)\n", old_text, re.MULTILINE)
    if match is None:
        return old_text.rstrip() + "\n\n" + body
    return old_text[:match.start()] + body + "\n" + old_text[match.start():]


def rls_table(report: Report, connections: list[int]) -> list[str]:
    """Each server's req/s on the same query without and with row-level security."""
    lines = ["| server | query | conns | no RLS req/s | RLS req/s | RLS ÷ no RLS "
             "| no RLS p99 ms | RLS p99 ms |", "|" + "---|" * 8]
    for server in (OURS_SQLITE, *report.postgres_servers):
        for without, with_rls in RLS_PAIRS:
            for conns in connections:
                plain, rls = report.find(server, without, conns), report.find(server, with_rls, conns)
                if plain is None and rls is None:
                    continue
                lines.append(
                    f"| {report.labels.get(server, server)} | {PAIR_TITLES[with_rls]} | {conns} "
                    f"| {'n/a' if plain is None else f'{plain.rps:,.0f}'} "
                    f"| {'n/a' if rls is None else f'{rls.rps:,.0f}'} "
                    f"| {fmt_ratio(ratio(rls, plain))} "
                    f"| {'n/a' if plain is None else f'{plain.p99_ms:.2f}'} "
                    f"| {'n/a' if rls is None else f'{rls.p99_ms:.2f}'} |")
    return lines if len(lines) > 2 else []


def sign_in_section(report: Report, connections: list[int]) -> list[str]:
    """Sign-in figures, or why there are none; nothing when the run did not include it."""
    checks = [c for c in report.checks if c.workload == SIGN_IN]
    if not checks:
        return []
    out = ["", "## Sign-in", "",
           "`POST /auth/v1/token?grant_type=password` with email and password, accounts "
           "rotating; each verifies an argon2id hash with the server's default (OWASP) "
           "parameters, so it is slow by design: figures, no target. *CPU ms per sign-in*: "
           "the server's CPU time divided by the sign-ins answered.", ""]
    rows = []
    for server in (OURS_SQLITE, *report.postgres_servers):
        for conns in report.connections_of.get(SIGN_IN, connections):
            m = report.find(server, SIGN_IN, conns)
            if m is not None:
                rows.append(f"| {report.labels.get(server, server)} | {conns} | {m.rps:,.1f} "
                            f"| {m.p50_ms:.1f} | {m.p99_ms:.1f} | {m.cpu_ms_per_request:.1f} "
                            f"| {m.errors} | {m.other_cpu:.2f} |")
    if rows:
        out += ["| server | conns | sign-ins/s | p50 ms | p99 ms | CPU ms per sign-in | errors "
                "| other CPU |", "|" + "---|" * 8, *rows]
    for c in checks:
        if not c.ok:
            why = c.detail if c.skipped else "its answer check failed (see Answer checks)"
            out.append(f"- {report.labels.get(c.server, c.server)}: not timed: {why}")
    return out


def render(report: Report, connections: list[int],
           scaling_pair: tuple[str, str] | None, extra: str = "") -> str:
    """The whole RESULTS.md text; ``extra`` (sections written by hand) goes at the end."""
    out = ["# Benchmark results", "",
           "Written by `bench/run.sh` (see bench/README.md). Absolute figures depend on the "
           "machine and its neighbours; only the ratios between servers measured in this one "
           "run mean anything.", "",
           f"- date: {report.started}", f"- commit: `{report.commit}`",
           f"- command: `{report.command}`"]
    out += [f"- {key}: {value}" for key, value in report.machine.items()]
    out += [f"- {key}: {value}" for key, value in report.settings.items()]
    out += ["", "## Targets", "",
            "Ledgerbase on SQLite with one worker, req/s as a ratio to the hand-written sqlite3 "
            f"app on the same workload; the same query as a user on the table with row-level "
            "security as a ratio to the table without it; p99 at "
            f"{TARGET_P99_CONNECTIONS} connections; on PostgreSQL, reads with more workers as a "
            "ratio to one worker. The ledger (when timed): writes with it on as a ratio to the same "
            "server with it off, per database; integrator lag, integrator leaves per second and "
            "proof latency (see Ledger).", ""]
    out += targets(report, connections, scaling_pair)
    out += ["", "## SQLite", "",
            "Same data and core for every server. Ratios: this server's req/s divided by the "
            "fixed-JSON baseline's (timed just before it, same connections) and by the "
            "hand-written sqlite3 app's (same workload and connections). *other CPU*: cores "
            "kept busy meanwhile by anything but the servers and wrk (other programs on a "
            "shared machine; on PostgreSQL rows also PostgreSQL itself); above about 0.1 the "
            "figure is disturbed.", ""]
    out += table(report, [FIXED, *report.sqlite_servers], connections, against_postgrest=False)
    if report.postgres_servers:
        out += ["", "## PostgreSQL", "",
                "Same data loaded into a scratch PostgreSQL database. The baselines are the "
                "SQLite ones above (same run, same core), so the hand-written ratio here "
                "compares across databases.", ""]
        out += table(report, report.postgres_servers, connections, against_postgrest=True)
    if rls := rls_table(report, connections):
        out += ["", "## Row-level security", "",
                "The same query as an authenticated user (the owner's token) on `posts` (no "
                "row-level security; the list filters `user_id=eq.<user>` itself) and on "
                "`private_posts` (same rows and indexes, policy `user_id = auth.uid()` for "
                "select; the list has no filter): both answer the same rows. Each pair is timed "
                "back to back per connection count. On SQLite Ledgerbase compiles the policy "
                "into its SQL; on PostgreSQL it applies natively (Ledgerbase and PostgREST run "
                "the request as role `authenticated` with the claims set).", "", *rls]
    out += sign_in_section(report, connections)
    out += ledger_section(report, connections)
    described = [f"- {report.labels.get(name, name)}: {text}"
                 for name, text in report.server_notes.items() if text]
    if described:
        out += ["", "## Servers", "", *described]
    failed = [c for c in report.checks if not c.ok and not c.skipped]
    skipped = [c for c in report.checks if c.skipped]
    out += ["", "## Answer checks", "",
            "Before timing a workload each server gets its request once; a workload whose "
            "answer is wrong is not timed.", ""]
    if failed:
        out += [f"- {report.labels.get(c.server, c.server)} / {WORKLOAD_TITLES[c.workload]}: "
                f"`{c.detail}`" for c in failed]
    else:
        out.append(f"- all {len(report.checks) - len(skipped)} checks answered as expected")
    out += [f"- skipped: {report.labels.get(c.server, c.server)} / "
            f"{WORKLOAD_TITLES[c.workload]}: `{c.detail}`" for c in skipped]
    if report.notes:
        out += ["", "## Notes", "", *[f"- {note}" for note in report.notes]]
    if extra.strip():
        out += ["", extra.strip()]
    return "\n".join(out) + "\n"


# -- results.json: keep a run, render it again -------------------------------------------

GENERATED_SECTIONS = {"Targets", "SQLite", "PostgreSQL", "Row-level security", "Sign-in",
                      "Ledger", "Servers", "Answer checks", "Notes"}
MACHINE_KEYS = {"machine", "software", "PostgreSQL", "PostgREST", "background load"}


def to_json(report: Report, connections: list[int], scaling: tuple[str, str] | None,
            ) -> dict[str, Any]:
    data = asdict(report)
    data["measurements"] = [asdict(m) | {"rps": m.rps} for m in report.measurements]
    return {"report": data, "connections": connections, "scaling": scaling}


def from_json(data: dict[str, Any], old_text: str = "",
              ) -> tuple[Report, list[int], tuple[str, str] | None]:
    """A report saved by to_json; older results.json files (figures only) take the
    run's facts from its RESULTS.md text."""
    names = {f.name for f in fields(Measurement)}
    saved = data.get("report") or legacy_report(data, old_text)
    measurements = [Measurement(**{k: v for k, v in m.items() if k in names})
                    for m in saved["measurements"]]
    report = Report(**(saved | {"measurements": measurements,
                                "checks": [Check(**c) for c in saved["checks"]]}))
    connections = data.get("connections") or sorted({m.connections for m in measurements})
    scaling = data.get("scaling", legacy_scaling(report))
    return report, connections, tuple(scaling) if scaling else None


def default_label(name: str) -> str:
    if name.startswith("ledgerbase-pg-w"):
        workers = int(name.rsplit("w", 1)[1])
        return f"ledgerbase serve (PostgreSQL, {workers} worker{'s' if workers > 1 else ''})"
    return {FIXED: "fixed-JSON uvicorn app", HANDWRITTEN: "hand-written sqlite3 app",
            OURS_SQLITE: "ledgerbase serve (SQLite)", POSTGREST: "PostgREST"}.get(name, name)


def legacy_report(data: dict[str, Any], text: str) -> dict[str, Any]:
    header = text.split("\n## ", 1)[0]
    facts = dict(re.findall(r"^- ([^:\n]+): (.*)$", header, re.MULTILINE))
    servers = list(dict.fromkeys(m["server"] for m in data["measurements"]))
    labels = {name: default_label(name) for name in servers}
    notes_section = section(text, "Servers")
    server_notes = {name: note for name in servers
                    for label, note in re.findall(r"^- ([^:\n]+): (.*)$", notes_section,
                                                  re.MULTILINE) if label == labels[name]}
    return {
        "started": facts.pop("date", ""), "commit": facts.pop("commit", "").strip("`"),
        "command": facts.pop("command", "").strip("`"),
        "machine": {k: v for k, v in facts.items() if k in MACHINE_KEYS},
        "settings": {k: v for k, v in facts.items() if k not in MACHINE_KEYS},
        "labels": labels, "server_notes": server_notes, "measurements": data["measurements"],
        "checks": data["checks"], "notes": data["notes"],
        "sqlite_servers": [n for n in (HANDWRITTEN, OURS_SQLITE) if n in servers],
        "postgres_servers": sorted((n for n in servers if n.startswith("ledgerbase-pg-w")),
                                   key=lambda n: int(n.rsplit("w", 1)[1]))
        + ([POSTGREST] if POSTGREST in servers else []),
    }


def legacy_scaling(report: Report) -> tuple[str, str] | None:
    workers = [int(n.rsplit("w", 1)[1]) for n in report.postgres_servers
               if n.startswith("ledgerbase-pg-w")]
    if 1 in workers and len(workers) > 1:
        return "ledgerbase-pg-w1", f"ledgerbase-pg-w{max(workers)}"
    return None


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


def hand_written_sections(text: str) -> str:
    """The sections of a RESULTS.md that render() does not write (added by hand)."""
    parts = re.split(r"^(?=## )", text, flags=re.MULTILINE)[1:]
    return "".join(part for part in parts
                   if part.splitlines()[0].removeprefix("## ").strip() not in GENERATED_SECTIONS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render a run's RESULTS.md again.")
    parser.add_argument("run_dir", type=Path, help="bench/out/run-...")
    parser.add_argument("--output", type=Path, help="default: RUN_DIR/RESULTS.md")
    parser.add_argument("--merge-ledger", action="store_true",
                        help="write only the run's Ledger section into OUTPUT, keeping the rest")
    args = parser.parse_args(argv)
    output = args.output or args.run_dir / "RESULTS.md"
    old_run_text = (args.run_dir / "RESULTS.md").read_text() \
        if (args.run_dir / "RESULTS.md").exists() else ""
    old_output_text = output.read_text() if output.exists() else ""
    data = json.loads((args.run_dir / "results.json").read_text())
    report, connections, scaling = from_json(data, old_run_text or old_output_text)
    if args.merge_ledger:
        output.write_text(merge_ledger(old_output_text, report, connections))
        print(f"wrote the Ledger section into {output}")
        return
    output.write_text(render(report, connections, scaling,
                             extra=hand_written_sections(old_output_text)))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
