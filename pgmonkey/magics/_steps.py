"""Commands written as a generator of queries, run by one sync and one async driver.

A command that needs several round trips (catalog, then aggregates) writes its logic once,
as a generator that yields ``(query, params)`` and receives the rows of each query
(``None`` for the first ``send``); its return value is the command's result. The two
drivers below are twins that differ only in ``await``. Queries are bound client-side, as
the magics bind ``:name`` parameters everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from ._magic import PgMonkeyMagics

Query = sql.SQL | sql.Composed | str
_T = TypeVar("_T")


def drive(
    magics: PgMonkeyMagics, conn_name: str | None, steps: Callable[[], Generator[Any, Any, _T]]
) -> _T:
    """Run the generator made by *steps* on the connection named *conn_name*."""

    def sync(conn: psycopg.Connection[Any]) -> _T:
        gen = steps()
        rows: Any = None
        with psycopg.ClientCursor(conn) as cur:
            while True:
                try:
                    query, params = gen.send(rows)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                cur.execute(query, params)
                rows = cur.fetchall()

    async def async_(conn: psycopg.AsyncConnection[Any]) -> _T:
        gen = steps()
        rows: Any = None
        async with psycopg.AsyncClientCursor(conn) as cur:
            while True:
                try:
                    query, params = gen.send(rows)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                await cur.execute(query, params)
                rows = await cur.fetchall()

    return magics.using(magics.entry(conn_name), sync, async_)  # type: ignore[no-any-return]
