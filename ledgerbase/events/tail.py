"""``ledgerbase events tail``: follow the change stream from now on, one JSON line per change."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ledgerbase.db.engine import open_database
from ledgerbase.errors import LedgerbaseError
from ledgerbase.events.message import event_json
from ledgerbase.realtime.changes import ChangeReader


async def tail(url: str, write: Callable[[bytes], None], *, table: str | None = None,
               poll_interval: float = 0.1) -> None:
    """Write each change committed from now on (of ``table`` if given) as it comes; runs until cancelled.

    Raises LedgerbaseError when the database cannot be opened or has no change feed.
    """
    database = open_database(url, readers=1, pool_size=1, capture=False)
    await database.start()
    try:
        reader = ChangeReader(database)
        cursor = await reader.head()
        while True:
            try:
                changes = await reader.after(cursor, 1000)
            except LedgerbaseError:  # the database went away: try again shortly
                await asyncio.sleep(1.0)
                continue
            for change in changes:
                if table is None or change.table == table:
                    write(event_json(change) + b"\n")
            if changes:
                cursor = changes[-1].seq
            else:
                await asyncio.sleep(poll_interval)
    finally:
        await database.close()
