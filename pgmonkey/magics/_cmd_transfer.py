"""``import``, ``export``, ``persist``: CSV files and DataFrames in and out of tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg

from pgmonkey.errors import MagicError

from . import _cmd_dask
from ._args import ArgumentParser, expander
from ._params import parse

if TYPE_CHECKING:
    from ._cmd_connections import Entry
    from ._magic import PgMonkeyMagics

IF_EXISTS = ("fail", "append", "replace")


def import_csv(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> None:
    p = ArgumentParser(prog="%pgmonkey import")
    expand = expander(magics.shell, ns)
    p.add_argument("csv", type=expand, help="CSV file to import")
    p.add_argument("--table", type=expand, required=True, help="target table, schema.table")
    p.add_argument("--if-exists", choices=IF_EXISTS, default=None)
    p.add_argument("--conn", help="connection name (default: the current one)")
    opts = p.parse_args(args)
    from pgmonkey.transfer import import_csv

    entry = magics.entry(opts.conn)
    result = import_csv(opts.csv, opts.table, sync_con(entry), if_exists=opts.if_exists)
    if magics.feedback:
        # On a review: the evidence behind each choice, the preview, then the next step.
        print(result.report())


def export_csv(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> None:
    p = ArgumentParser(prog="%pgmonkey export")
    p.add_argument(
        "targets",
        nargs="+",
        type=expander(magics.shell, ns),
        metavar="[TABLE] OUT",
        help="schema.table out.csv",
    )
    # SQL stays as written: no {expr}/$var expansion (use :name parameters instead)
    p.add_argument("--query", help="export the rows of this query instead of a table")
    p.add_argument(
        "--partitions",
        type=int,
        help="read the table in N ranges of its blocks on N connections at once",
    )
    p.add_argument("--conn", help="connection name (default: the current one)")
    opts = p.parse_args(args)
    if opts.query is not None and len(opts.targets) != 1:
        raise MagicError('%pgmonkey export: use export --query "SELECT ..." out.csv')
    if opts.query is None and len(opts.targets) != 2:
        raise MagicError("%pgmonkey export: use export schema.table out.csv")
    from pgmonkey.transfer import export_csv

    entry = magics.entry(opts.conn)
    if opts.query is not None:
        statements = parse(opts.query)
        if len(statements) != 1:
            raise MagicError(f"export --query: give one query, not {len(statements)} statements")
        st = statements[0]
        result = export_csv(
            sync_con(entry),
            opts.targets[0],
            query=st.query,
            params=st.params(ns),
            partitions=opts.partitions,
        )
    else:
        result = export_csv(
            sync_con(entry), opts.targets[1], table=opts.targets[0], partitions=opts.partitions
        )
    if magics.feedback:
        print(result.message)


def persist(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> None:
    p = ArgumentParser(prog="%pgmonkey persist")
    p.add_argument("dataframe", help="name of a DataFrame variable")
    p.add_argument("table", type=expander(magics.shell, ns), help="schema.table")
    p.add_argument("--if-exists", choices=IF_EXISTS, default="fail")
    p.add_argument("--conn", help="connection name (default: the current one)")
    opts = p.parse_args(args)
    import pandas as pd

    if opts.dataframe not in ns:
        raise MagicError(f"undefined variable {opts.dataframe!r}")
    df = ns[opts.dataframe]
    if _cmd_dask.is_dask_frame(df):
        _cmd_dask.persist(magics.entry(opts.conn), df, opts.table, opts.if_exists, magics.feedback)
        return
    if not isinstance(df, pd.DataFrame):
        raise MagicError(f"{opts.dataframe!r} is a {type(df).__name__}, not a DataFrame")
    from pgmonkey import frames

    table, if_exists = opts.table, opts.if_exists

    def sync(conn: psycopg.Connection[Any]) -> Any:
        return frames.to_sql(df, table, conn, if_exists=if_exists)

    async def async_(conn: psycopg.AsyncConnection[Any]) -> Any:
        return await frames.to_sql_async(df, table, conn, if_exists=if_exists)

    written = magics.using(magics.entry(opts.conn), sync, async_)
    if magics.feedback:
        count = written if isinstance(written, int) else len(df)
        print(f"{count} row{'' if count == 1 else 's'} written to {table}")


def sync_con(entry: Entry) -> Any:
    """What the sync transfer functions take as ``con`` for this entry."""
    if not entry.is_async:
        return entry.obj
    # CSV transfer is sync: an async entry lends its (validated) config instead.
    from pgmonkey.config import load_config

    return load_config(entry.path, resolve_env=entry.resolve_env)
