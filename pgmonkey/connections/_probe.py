"""What a connection reached: the facts ``pgconfig test`` prints and the magics show.

One query on the connection (server version, user, database, TLS protocol and cipher from
``pg_stat_ssl``) plus, when asked, the best of a few ``SELECT 1`` round trips. Never the
password: nothing here reads it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import psycopg

__all__ = ["ConnectionFacts", "bounded_connect", "probe", "probe_async"]

# A probe must answer "no" in bounded time: libpq waits for ever without connect_timeout
# (a server that accepts the TCP connection and never answers hung `pgconfig test`).
DEFAULT_CONNECT_TIMEOUT: Final = 10
TIMEOUT_ENV: Final = "PGCONNECT_TIMEOUT"

_SQL: Final = (
    "SELECT current_setting('server_version'), current_user, current_database(),"
    " (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()),"
    " (SELECT cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid())"
)


@dataclass(frozen=True)
class ConnectionFacts:
    """Where a connection went and how."""

    version: str
    user: str
    database: str
    host: str
    port: str
    ssl: bool
    protocol: str | None
    cipher: str | None
    rtt: float | None  # seconds, the best of the SELECT 1 rounds; None when not measured

    @property
    def where(self) -> str:
        """``host:port``, or the socket directory alone for a Unix-socket connection."""
        return self.host if self.host.startswith("/") else f"{self.host}:{self.port}"

    @property
    def ssl_text(self) -> str:
        if not self.ssl:
            return "off"
        detail = ", ".join(x for x in (self.protocol, self.cipher) if x)
        return f"on ({detail})" if detail else "on"


def _facts(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
    row: Any,
    rtt: float | None,
) -> ConnectionFacts:
    return ConnectionFacts(
        version=str(row[0]),
        user=str(row[1]),
        database=str(row[2]),
        host=str(conn.info.host),
        port=str(conn.info.port),
        ssl=bool(conn.pgconn.ssl_in_use),
        protocol=row[3],
        cipher=row[4],
        rtt=rtt,
    )


def probe(conn: psycopg.Connection[Any], rounds: int = 0) -> ConnectionFacts:
    """The facts of *conn*; with *rounds*, the best round trip of that many ``SELECT 1``."""
    rtt = None
    for _ in range(rounds):  # the best of several: the first may pay for a cold cache
        t0 = time.perf_counter()
        conn.execute("SELECT 1").fetchone()
        spent = time.perf_counter() - t0
        rtt = spent if rtt is None else min(rtt, spent)
    return _facts(conn, conn.execute(_SQL).fetchone(), rtt)


async def probe_async(conn: psycopg.AsyncConnection[Any], rounds: int = 0) -> ConnectionFacts:
    """The async twin of :func:`probe`."""
    rtt = None
    for _ in range(rounds):
        t0 = time.perf_counter()
        await (await conn.execute("SELECT 1")).fetchone()
        spent = time.perf_counter() - t0
        rtt = spent if rtt is None else min(rtt, spent)
    return _facts(conn, await (await conn.execute(_SQL)).fetchone(), rtt)


@contextmanager
def bounded_connect() -> Iterator[None]:
    """Connections opened inside get a ``connect_timeout`` unless they set their own.

    Through ``PGCONNECT_TIMEOUT``, the variable libpq and psycopg read when the conninfo has
    no ``connect_timeout``: the config is used as written (and validated once), and a
    ``connect_timeout`` in it, or a ``PGCONNECT_TIMEOUT`` already set, still wins.
    """
    if os.environ.get(TIMEOUT_ENV):
        yield
        return
    os.environ[TIMEOUT_ENV] = str(DEFAULT_CONNECT_TIMEOUT)
    try:
        yield
    finally:
        os.environ.pop(TIMEOUT_ENV, None)
