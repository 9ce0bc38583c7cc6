"""Query -> Dask DataFrame: partitions planned on the caller, read by tasks on the workers.

The caller (one connection) learns the result's columns and dtypes from a ``LIMIT 0``
describe through :func:`pgmonkey.frames.read_sql`, then, in one scan, what the partitioning
and the dtypes still need: the bounds of the partition column and whether the integer and
boolean columns hold a NULL (``read_sql`` gives ``Int64``/``boolean`` only then, and every
partition must carry the dtypes of the whole result). Each task then opens its own
connection on its worker and reads its slice with :func:`pgmonkey.frames.read_sql`: the same
COPY path, the same parser.

A consistent read keeps the caller's connection in a ``REPEATABLE READ`` transaction that
exported its snapshot; every task imports it (``SET TRANSACTION SNAPSHOT``) before reading,
so all partitions see one state of the database. The transaction stays open while the Dask
DataFrame (or anything derived from it) is alive, and ends when it is garbage collected or
:func:`release` ends it. A scheduler in the caller's process (``Client()``, a
``LocalCluster``) keeps its recent messages, tasks included, for debugging
(``distributed.admin.low-level-log-length``): there only :func:`release`, called before the
last frame is dropped, ends it promptly.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import IsolationLevel, sql

from pgmonkey import frames
from pgmonkey.errors import TransferError
from pgmonkey.frames import _partition
from pgmonkey.frames._sqltext import bind

from ._source import Source

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

ROWS_PER_PARTITION: Final = 1_000_000  # default partition size of a column range read


@dataclass(frozen=True)
class Part:
    """One partition's task: where to connect, what to read, which snapshot, which dtypes."""

    source: Source
    query: str
    snapshot: Any  # the snapshot id (a str on a worker), or None
    meta: pd.DataFrame


class Snapshot:
    """An exported snapshot, held open by the caller's transaction until collected.

    Pickled (into a task) it is only its id: the connection never leaves the caller.
    """

    def __init__(self, conn: psycopg.Connection[Any], id: str) -> None:
        self.id = id
        self._release = weakref.finalize(self, _end, conn)

    def __str__(self) -> str:
        return self.id

    def __reduce__(self) -> tuple[Any, ...]:
        return (str, (self.id,))

    def __dask_tokenize__(self) -> str:
        return self.id

    def release(self) -> bool:
        """End the exporting transaction now (tasks that start later cannot import it).

        False if it had ended already.
        """
        alive = self._release.alive
        self._release()
        return alive


def read_sql(
    query: str,
    config: Any,
    *,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    partition_on: str | None = None,
    partitions: int | None = None,
    bounds: tuple[Any, Any] | None = None,
    meta: pd.DataFrame | None = None,
    consistent: bool = False,
    resolve_env: bool = False,
) -> dd.DataFrame:
    """A query's (or a table's) rows as a Dask DataFrame, read in parallel through ``COPY``.

    ``query`` is a ``SELECT`` (or any query :func:`pgmonkey.read_sql` takes) or a table name
    (``'table'``, ``'schema.table'``). ``config`` is a config path or a dict whose secrets are
    references (see :class:`~pgmonkey.dask._source.Source`): each task opens its own
    connection from it on its worker.

    Partitioning:

    - ``partition_on``: a numeric, date or timestamp column; ``partitions`` ranges of equal
      width between ``bounds`` (``(low, high)``; by default ``min``/``max`` of the column).
      Values below the first or above the last range, NULLs (first partition) and NaN (last)
      are read too: every row lands in exactly one partition.
    - a table name and no column: ranges of the table's blocks (TID range scans), so a table
      without an index splits evenly.
    - otherwise one partition.

    ``partitions`` defaults to one per million rows (column ranges) or per 64 MiB of table.
    A column range without an index on that column costs each partition a scan of the whole
    source; blocks never do. Rows come partition by partition, each partition's index
    starting at 0, as :func:`pgmonkey.read_sql`'s does (divisions are unknown).
    Dtypes are :func:`pgmonkey.read_sql`'s for the whole result; ``meta`` (an empty frame)
    overrides them and saves the planning scan's NULL checks. ``consistent=True``: every
    partition reads the same snapshot of the database, exported by a transaction held open
    until the frame and everything derived from it are gone, or :func:`release` ends it.
    ``persist()`` and ``client.compute()`` run the tasks later: keep the frame they were
    given until its results are in.
    ``resolve_env``: resolve the config's references (on the caller and on each worker).
    ``params`` are bound by psycopg on the caller (``%s`` / ``%(name)s``), so the tasks carry
    the bound text: never a secret there.
    """
    import dask
    import dask.dataframe as dd

    _partition.check_partitions(partitions)
    source = Source.of(config, resolve_env=resolve_env)
    conn = source.connect()
    snapshot: Snapshot | None = None
    try:
        if consistent:
            # The snapshot lives as long as this transaction (even with autocommit: true).
            conn.autocommit = False
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            row = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
            assert row is not None
            snapshot = Snapshot(conn, row[0])
            # A snapshot can only be imported on the server that exported it (with a
            # multi-host config, tasks could reach another).
            source = source.pinned(conn)
        if params is not None:
            query = bind(conn, query, params)
        queries, meta = _plan(conn, query, partition_on, partitions, bounds, meta)
    except BaseException:
        _end(conn)
        raise
    if snapshot is None:
        _end(conn)
    parts = [Part(source, q, snapshot, meta) for q in queries]
    # Dask would turn object columns (json, arrays, ...) into Arrow strings: the dtypes are
    # read_sql's, as they are.
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_map(
            read_partition,
            parts,
            meta=meta,
            divisions=None,
            label="pgmonkey-read_sql",
            enforce_metadata=False,
        )


def read_partition(part: Part) -> pd.DataFrame:
    """The task: read one partition on a fresh connection (in the snapshot, if any)."""
    with part.source.connect() as conn:
        if part.snapshot is None:
            frame = frames.read_sql(part.query, conn)
        else:
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():
                try:
                    conn.execute(
                        sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                            sql.Literal(str(part.snapshot))
                        )
                    )
                except (
                    psycopg.errors.InvalidParameterValue,  # no such snapshot
                    psycopg.errors.ObjectNotInPrerequisiteState,  # its exporter just ended
                ) as exc:
                    raise TransferError(
                        f"the snapshot {str(part.snapshot)!r} of this consistent read is gone "
                        "(released, or the frames built on the read were all dropped before "
                        f"this task ran): {exc}"
                    ) from exc
                frame = frames.read_sql(part.query, conn)
    return _conform(frame, part.meta)


def release(frame: Any) -> int:
    """End now the snapshot transactions of the consistent reads ``frame`` is built on.

    ``frame`` is a Dask DataFrame (or Series) from :func:`read_sql` with ``consistent=True``,
    or derived from one. Computing it afterwards raises :class:`TransferError`. Returns how
    many open snapshot transactions it ended (0 for a frame without a consistent read, or
    released already). A frame from ``persist()`` holds results, not the read: release the
    frame it was persisted from.
    """
    expr = getattr(frame, "expr", None)
    if expr is None or not hasattr(expr, "walk"):
        kind = f"{type(frame).__module__}.{type(frame).__qualname__}"
        raise TypeError(f"release() takes a Dask DataFrame or Series, not a {kind}")
    snapshots = {
        id(part.snapshot): part.snapshot
        for node in expr.walk()
        for part in _parts(node.operands)
        if isinstance(part.snapshot, Snapshot)
    }
    return sum(snapshot.release() for snapshot in snapshots.values())


def _end(conn: psycopg.Connection[Any]) -> None:
    """Close ``conn``, its transaction ended first: ``close()`` alone only asks the server to
    end the session, which a task importing the snapshot a moment later could still beat."""
    with contextlib.suppress(psycopg.Error):
        conn.rollback()
    conn.close()


def _parts(operands: Sequence[Any]) -> Iterator[Part]:
    """The :class:`Part` objects among an expression's operands (``from_map``'s iterables)."""
    for operand in operands:
        if isinstance(operand, Part):
            yield operand
        elif isinstance(operand, list | tuple):
            yield from _parts(operand)


def _conform(frame: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """The partition in the dtypes of the whole result (``Int64`` where NULLs occur)."""
    if len(frame.columns) != len(meta.columns):
        raise TransferError(
            f"a partition has {len(frame.columns)} columns, the result {len(meta.columns)}"
        )
    if all(a == b for a, b in zip(frame.dtypes, meta.dtypes, strict=True)):
        return frame
    columns = []
    for i, want in enumerate(meta.dtypes):
        series = frame.iloc[:, i]
        if series.dtype != want:
            if str(want) in ("int64", "bool") and series.isna().any():
                raise TransferError(
                    f"column {meta.columns[i]!r} holds NULLs that were not there when the "
                    "read was planned: read with consistent=True, or pass meta"
                )
            series = series.astype(want)
        columns.append(series)
    out = frame.__class__(dict(enumerate(columns)), index=frame.index)
    out.columns = meta.columns
    return out


def _plan(
    conn: psycopg.Connection[Any],
    query: str,
    partition_on: str | None,
    partitions: int | None,
    bounds: tuple[Any, Any] | None,
    meta: pd.DataFrame | None,
) -> tuple[list[str], pd.DataFrame]:
    """The partitions' queries and the result's meta, planned on the caller's connection."""
    body, table = _partition.source_body(conn, query)
    given_meta = meta is not None
    if meta is None:
        meta = frames.read_sql(f"SELECT * FROM (\n{body}\n) AS _q LIMIT 0", conn)
    names = [str(c) for c in meta.columns]
    # Integer and boolean columns: read_sql's dtype depends on whether a NULL occurs.
    maybe_null = [] if given_meta else [i for i, d in enumerate(meta.dtypes) if _narrow(d)]
    if table is not None and maybe_null:
        not_null = _partition.not_null_columns(conn, table)
        maybe_null = [i for i in maybe_null if names[i] not in not_null]

    key: int | None = None
    if partition_on is not None:
        key = _partition.key_index(names, partition_on)
        if not _rangeable(meta.dtypes.iloc[key]):
            raise TransferError(
                f"partition_on={partition_on!r} must be a numeric, date or timestamp column, "
                f"not {meta.dtypes.iloc[key]}"
            )
    elif table is None and partitions not in (None, 1):
        raise TransferError(
            "a query splits into partitions by a column: give partition_on (or read a table "
            "by its name to split it by blocks)"
        )

    want_bounds = key is not None and bounds is None
    want_count = key is not None and partitions is None
    count = 0
    if want_bounds or want_count or maybe_null:
        count, scanned, nulls = _partition.scan(
            conn,
            body,
            len(names),
            key if want_bounds else None,
            integer_key=key is not None and _is_int(meta.dtypes.iloc[key]),
            maybe_null=maybe_null,
        )
        if want_bounds:
            bounds = scanned
        widen = [i for i, null in zip(maybe_null, nulls, strict=True) if null]
        if widen:
            meta = meta.astype({names[i]: _nullable(meta.dtypes.iloc[i]) for i in widen})

    if key is not None:
        assert bounds is not None
        n = partitions or max(1, math.ceil(count / ROWS_PER_PARTITION))
        queries = _partition.range_queries(conn, body, names[key], bounds, n)
    elif table is not None:
        queries = _partition.block_queries(conn, table, partitions)
    else:
        queries = [body]
    return queries, meta


def _narrow(dtype: Any) -> bool:
    return str(dtype) in ("int64", "bool")


def _nullable(dtype: Any) -> str:
    return "Int64" if str(dtype) == "int64" else "boolean"


def _is_int(dtype: Any) -> bool:
    return str(dtype) in ("int64", "Int64")


def _rangeable(dtype: Any) -> bool:
    text = str(dtype)
    return text in ("int64", "Int64", "float64") or text.startswith("datetime64")
