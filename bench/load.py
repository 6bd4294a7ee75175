"""Load the benchmark data set (1,000 authors, 100,000 posts) into a migrated database.

Rows are generated from a seeded ``random.Random``, so every run loads the same data.
Each post belongs to one of 1,000 users (``user_id``, drawn from a random stream of
its own, so the other values are those of runs before owners existed); ``private_posts``
gets a copy of every post (the same query is timed with and without row-level security).
On SQLite values are stored as docs/sqlite-storage.md says (booleans 0/1, timestamptz
as UTC text ``YYYY-MM-DDTHH:MM:SS+00:00``); on PostgreSQL they go through asyncpg's
COPY. Ids are explicit (1..N), so the get-by-id workload knows its range; on
PostgreSQL the identity sequences are moved past them so inserts keep working.

    python bench/load.py --database sqlite:///bench/out/x/bench.db
    python bench/load.py --database postgresql://postgres@127.0.0.1:5432/lb_bench_x
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

BATCH = 10_000
SEED = 20240101
USERS = 1_000  # owners of the posts
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

FIRST_NAMES = ("Ada", "Alan", "Barbara", "Claude", "Donald", "Edsger", "Frances", "Grace",
               "Hedy", "Ivan", "John", "Katherine", "Leslie", "Margaret", "Niklaus", "Ole",
               "Peter", "Radia", "Shafi", "Tim", "Ursula", "Vint", "Whitfield", "Yukihiro")
LAST_NAMES = ("Lovelace", "Turing", "Liskov", "Shannon", "Knuth", "Dijkstra", "Allen",
              "Hopper", "Lamarr", "Sutherland", "Backus", "Johnson", "Lamport", "Hamilton",
              "Wirth", "Dahl", "Naur", "Perlman", "Goldwasser", "Berners-Lee", "Franklin",
              "Cerf", "Diffie", "Matsumoto")
COUNTRIES = ("DE", "FR", "GB", "US", "JP", "BR", "IN", "NG", "SE", "CA", None)
WORDS = ("ledger", "merkle", "proof", "tree", "row", "policy", "query", "index", "commit",
         "stream", "event", "schema", "table", "column", "snapshot", "audit", "tile",
         "checkpoint", "replica", "vector", "token", "secret", "backup", "restore", "notes",
         "latency", "throughput", "cache", "shard", "cursor", "batch", "signal")

SQLITE_FALLBACK_SCHEMA = """
create table authors (id integer primary key, name text not null, country text);
create table posts (
  id integer primary key,
  author_id bigint not null references authors(id),
  title text not null,
  score integer not null,
  published boolean not null default 0,
  created_at timestamptz not null
    default (rtrim(rtrim(strftime('%Y-%m-%dT%H:%M:%f','now'),'0'),'.') || '+00:00'),
  user_id text
);
create index posts_score_idx on posts (score);
create index posts_author_id_idx on posts (author_id);
create index posts_user_id_idx on posts (user_id, id);
create table private_posts (
  id integer primary key,
  author_id bigint not null references authors(id),
  title text not null,
  score integer not null,
  published boolean not null default 0,
  created_at timestamptz not null
    default (rtrim(rtrim(strftime('%Y-%m-%dT%H:%M:%f','now'),'0'),'.') || '+00:00'),
  user_id text
);
create index private_posts_score_idx on private_posts (score);
create index private_posts_author_id_idx on private_posts (author_id);
create index private_posts_user_id_idx on private_posts (user_id, id);
"""
POST_COLUMNS = ("id", "author_id", "title", "score", "published", "created_at", "user_id")
TABLES = ("authors", "posts", "private_posts")
COPY_TO_PRIVATE = (f"insert into private_posts ({', '.join(POST_COLUMNS)}) "
                   f"select {', '.join(POST_COLUMNS)} from posts order by id")


@dataclass(frozen=True, slots=True)
class Author:
    id: int
    name: str
    country: str | None


@dataclass(frozen=True, slots=True)
class Post:
    id: int
    author_id: int
    title: str
    score: int
    published: bool
    created_at: datetime
    user_id: str


def generate_authors(rng: random.Random, count: int) -> list[Author]:
    """``count`` authors with ids 1..count."""
    return [Author(i, f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)} {i}",
                   rng.choice(COUNTRIES)) for i in range(1, count + 1)]


def user_ids(seed: int, count: int) -> list[str]:
    """``count`` user ids: version-4 UUIDs, lower case (as auth.users ids look)."""
    rng = random.Random(f"users-{seed}")
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def post_owners(seed: int, posts: int, users: int) -> Iterator[str]:
    """The owner of each post, ids 1..posts in order (bench/run.py mints their tokens)."""
    ids = user_ids(seed, users)
    rng = random.Random(f"owners-{seed}")
    for _ in range(posts):
        yield ids[rng.randrange(users)]


def generate_posts(rng: random.Random, count: int, authors: int,
                   owners: Iterator[str]) -> Iterator[Post]:
    """``count`` posts with ids 1..count; about 60% published, scores 0..1000."""
    for i, owner in zip(range(1, count + 1), owners, strict=False):
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))).capitalize()
        yield Post(i, rng.randint(1, authors), title, rng.randint(0, 1000), rng.random() < 0.6,
                   EPOCH + timedelta(seconds=rng.randint(0, 365 * 86400)), owner)


def batched(rows: Iterator[Post], size: int) -> Iterator[list[Post]]:
    batch: list[Post] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def progress(done: int, total: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    line = f"  posts {done:>7,}/{total:,}  ({rate:,.0f} rows/s)"
    if sys.stderr.isatty():
        print(f"\r{line}", end="", file=sys.stderr, flush=True)
    elif done % (BATCH * 5) == 0 or done == total:
        print(line, file=sys.stderr, flush=True)


def end_progress() -> None:
    if sys.stderr.isatty():
        print(file=sys.stderr)


def sqlite_timestamptz(value: datetime) -> str:
    """UTC text as docs/sqlite-storage.md stores timestamptz (whole seconds here)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def load_sqlite(path: str, args: argparse.Namespace) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA foreign_keys=ON")
    if args.create_schema:
        connection.executescript(SQLITE_FALLBACK_SCHEMA)
    ensure_empty([connection.execute(f"select count(*) from {t}").fetchone()[0]
                  for t in TABLES])
    rng = random.Random(args.seed)
    connection.execute("begin")
    connection.executemany("insert into authors (id, name, country) values (?, ?, ?)",
                           [(a.id, a.name, a.country) for a in generate_authors(rng, args.authors)])
    started, done = time.perf_counter(), 0
    posts = generate_posts(rng, args.posts, args.authors,
                           post_owners(args.seed, args.posts, args.users))
    for batch in batched(posts, BATCH):
        connection.executemany(
            f"insert into posts ({', '.join(POST_COLUMNS)}) values (?, ?, ?, ?, ?, ?, ?)",
            [(p.id, p.author_id, p.title, p.score, int(p.published),
              sqlite_timestamptz(p.created_at), p.user_id) for p in batch])
        done += len(batch)
        progress(done, args.posts, started)
    connection.execute(COPY_TO_PRIVATE)
    connection.execute("commit")
    connection.execute("analyze")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    end_progress()


async def load_postgres(url: str, args: argparse.Namespace) -> None:
    import asyncpg  # only needed for PostgreSQL

    connection = await asyncpg.connect(url)
    try:
        ensure_empty([await connection.fetchval(f"select count(*) from {t}")
                      for t in TABLES])
        rng = random.Random(args.seed)
        authors = generate_authors(rng, args.authors)
        async with connection.transaction():
            await connection.copy_records_to_table(
                "authors", columns=["id", "name", "country"],
                records=[(a.id, a.name, a.country) for a in authors])
            started, done = time.perf_counter(), 0
            posts = generate_posts(rng, args.posts, args.authors,
                                   post_owners(args.seed, args.posts, args.users))
            for batch in batched(posts, BATCH):
                await connection.copy_records_to_table(
                    "posts", columns=list(POST_COLUMNS),
                    records=[(p.id, p.author_id, p.title, p.score, p.published, p.created_at,
                              uuid.UUID(p.user_id)) for p in batch])
                done += len(batch)
                progress(done, args.posts, started)
            # the loader owns the table, so row-level security does not hide rows from it
            await connection.execute(COPY_TO_PRIVATE)
            for table in TABLES:
                await connection.execute(
                    f"select setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(select max(id) from {table}))")
        for table in TABLES:
            await connection.execute(f"analyze {table}")
    finally:
        await connection.close()
    end_progress()


def ensure_empty(counts: list[int]) -> None:
    if any(counts):
        raise SystemExit("load.py: the tables already hold rows; load into a fresh database")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", required=True, help="sqlite:///path or postgresql://...")
    parser.add_argument("--authors", type=int, default=1_000)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=USERS, help="owners of the posts")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--create-schema", action="store_true",
                        help="SQLite only: create the tables here instead of relying on "
                             "`ledgerbase migrate` (for baseline-only runs)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"loading {args.authors:,} authors and {args.posts:,} posts of {args.users:,} users "
          "(twice: posts and private_posts)", file=sys.stderr)
    if args.database.startswith("sqlite:///"):
        load_sqlite(args.database.removeprefix("sqlite:///"), args)
    elif args.database.startswith(("postgresql://", "postgres://")):
        if args.create_schema:
            raise SystemExit("--create-schema is for SQLite; migrate PostgreSQL with ledgerbase")
        asyncio.run(load_postgres(args.database, args))
    else:
        raise SystemExit(f"unsupported database URL: {args.database}")
    print(f"loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
