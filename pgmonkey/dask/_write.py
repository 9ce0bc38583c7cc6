"""Dask DataFrame -> table, all or nothing.

1. The caller creates a staging table (columns typed from the frame's meta, as
   :func:`pgmonkey.to_sql` types them) and a ledger table beside it, both committed.
2. Each partition, in a task on its worker, in one transaction on its own connection: a row
   for its number in the ledger, then its rows into the staging table through
   :func:`pgmonkey.to_sql`'s COPY. The ledger's primary key makes a retried partition (its
   worker died after committing, before reporting) a no-op instead of a second copy, and
   makes a late duplicate wait for the first attempt to finish.
3. The caller, in one transaction: the ledger is checked, then the staging table is renamed
   to the target (``fail``, ``replace``: the old table dropped first; ``append`` to a
   missing table) or its rows inserted into the target (``append``); both tables dropped.

Any failure (a partition raising, a worker killed, an interrupt) drops both tables and leaves
the target as it was. Only a caller killed mid-call leaves them behind: their names start
with ``_pgmonkey_stage_``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from pgmonkey import frames
from pgmonkey.errors import TransferError
from pgmonkey.transfer._sql import parse_table

from ._source import Source

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    from dask.delayed import Delayed

IF_EXISTS: Final = ("fail", "append", "replace")
STAGE_PREFIX: Final = "_pgmonkey_stage_"
SAMPLE_ROWS: Final = 1000


@dataclass(frozen=True)
class Target:
    """The target table and the two tables of one call beside it."""

    schema: str | None
    table: str
    stage: str  # the staging table's name (unqualified)

    @classmethod
    def of(cls, table: str, schema: str | None) -> Target:
        if not table:
            raise TransferError("table name is empty")
        if schema is None:
            parsed = parse_table(table)  # as pgmonkey.to_sql and CSV import read it
            schema, table = parsed.schema, parsed.name
        return cls(schema, table, f"{STAGE_PREFIX}{uuid.uuid4().hex[:16]}")

    def ident(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name) if self.schema else sql.Identifier(name)

    @property
    def target(self) -> sql.Identifier:
        return self.ident(self.table)

    @property
    def staging(self) -> sql.Identifier:
        return self.ident(self.stage)

    @property
    def ledger(self) -> sql.Identifier:
        return self.ident(self.stage + "_done")

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table


@dataclass(frozen=True)
class WritePart:
    """What a partition's task needs: where to connect and which tables to write."""

    source: Source
    target: Target


def to_sql(
    ddf: dd.DataFrame,
    table: str,
    config: Any,
    *,
    if_exists: str = "fail",
    schema: str | None = None,
    resolve_env: bool = False,
) -> int:
    """Write ``ddf`` to ``table``, partitions in parallel, visible all at once; the row count.

    ``if_exists``: ``'fail'`` (the default: raise :class:`~pgmonkey.errors.TransferError`
    if the table exists), ``'replace'`` (swap it, in one transaction) or ``'append'``
    (created if missing). Column types come from the dtypes, as :func:`pgmonkey.to_sql`
    gives them (an object column by its first value in the first partition's first
    1000 rows, which are computed once more for this).
    ``config`` is a config path or a dict whose secrets are references; every task opens its
    own connection from it. If anything fails, the target is as it was and no staging table
    is left behind.
    """
    import dask

    if if_exists not in IF_EXISTS:
        raise TransferError(f"if_exists must be one of {', '.join(IF_EXISTS)}, not {if_exists!r}")
    target = Target.of(table, schema)
    source = Source.of(config, resolve_env=resolve_env)
    meta: pd.DataFrame = ddf._meta
    tasks = write_tasks(ddf, source, target)
    # pgmonkey.to_sql types an object column (dicts, Decimals, UUIDs, ...) by its first
    # value; the meta holds none, so the first rows of the first partition are looked at.
    sample = _first_rows(ddf) if _has_objects(meta) else meta
    with source.connect() as conn:
        exists = _exists(conn, target.target)
        if exists and if_exists == "fail":
            raise TransferError(f"table {target.name!r} already exists (if_exists='fail')")
        if exists and if_exists == "append":
            # A missing column fails now, before any partition is written.
            conn.execute(sql.SQL("SELECT {} FROM {} LIMIT 0").format(_columns(meta), target.target))
            conn.rollback()
        _create(conn, sample, target)
    try:
        counts = dask.compute(*tasks)
        with source.connect() as conn, conn.transaction():
            _finish(conn, target, if_exists, len(tasks), meta)
    except BaseException as exc:
        try:
            _drop(source, target)
        except Exception as cleanup:
            exc.add_note(
                f"the staging tables {target.stage!r} and {target.stage + '_done'!r} could "
                f"not be dropped: {type(cleanup).__name__}: {cleanup}"
            )
        raise
    return int(sum(counts))


def write_tasks(ddf: dd.DataFrame, source: Source, target: Target) -> list[Delayed]:
    """One task per partition (their graph holds the source, never a secret)."""
    import dask

    part = WritePart(source, target)
    write = dask.delayed(write_partition, pure=False)
    return [write(p, part, i) for i, p in enumerate(ddf.to_delayed())]


def write_partition(frame: pd.DataFrame, part: WritePart, number: int) -> int:
    """The task: this partition's rows into the staging table, once, in one transaction."""
    target = part.target
    with part.source.connect() as conn:
        try:
            with conn.transaction():
                conn.execute(
                    sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(target.ledger),
                    (number, len(frame)),
                )
                frames.to_sql(frame, target.stage, conn, "append", schema=target.schema)
        except pg_errors.UniqueViolation:
            pass  # an earlier attempt of this partition committed: its rows are there
    return len(frame)


def _first_rows(ddf: dd.DataFrame) -> pd.DataFrame:
    # Not ddf.head(): it warns when the partition is shorter than asked.
    first = ddf.partitions[0].map_partitions(_head, SAMPLE_ROWS, meta=ddf._meta)
    frame: pd.DataFrame = first.compute()
    return frame


def _head(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    return frame.head(rows)


def _has_objects(meta: pd.DataFrame) -> bool:
    return any(str(dtype) == "object" for dtype in meta.dtypes)


def _exists(conn: psycopg.Connection[Any], ident: sql.Identifier) -> bool:
    row = conn.execute(
        "SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (ident.as_string(conn),)
    ).fetchone()
    return bool(row and row[0])


def _columns(meta: pd.DataFrame) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(str(c)) for c in meta.columns)


def _create(conn: psycopg.Connection[Any], sample: pd.DataFrame, target: Target) -> None:
    # One transaction (also under autocommit: true): both tables, or neither.
    with conn.transaction():
        # Created by pgmonkey.to_sql itself, so the types are its own; the sample rows go.
        frames.to_sql(sample, target.stage, conn, "fail", schema=target.schema)
        if len(sample):
            conn.execute(sql.SQL("TRUNCATE {}").format(target.staging))
        conn.execute(
            sql.SQL("CREATE TABLE {} (part int4 PRIMARY KEY, rows int8 NOT NULL)").format(
                target.ledger
            )
        )
    conn.commit()


def _finish(
    conn: psycopg.Connection[Any], target: Target, if_exists: str, parts: int, meta: pd.DataFrame
) -> None:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target.ledger)).fetchone()
    if row is None or row[0] != parts:
        raise TransferError(
            f"{row[0] if row else 0} of {parts} partitions reached the staging table"
        )
    if if_exists == "replace":
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target.target))
    if _exists(conn, target.target):
        if if_exists == "fail":  # created by someone else while the partitions were written
            raise TransferError(f"table {target.name!r} already exists (if_exists='fail')")
        cols = _columns(meta)
        conn.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                target.target, cols, cols, target.staging
            )
        )
        conn.execute(sql.SQL("DROP TABLE {}, {}").format(target.ledger, target.staging))
    else:
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                target.staging, sql.Identifier(target.table)
            )
        )
        conn.execute(sql.SQL("DROP TABLE {}").format(target.ledger))


def _drop(source: Source, target: Target) -> None:
    """Drop the call's tables. The ledger first: a partition still running locks it first,
    so the two never wait for each other."""
    with source.connect() as conn:
        conn.autocommit = True
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(target.ledger, target.staging))
