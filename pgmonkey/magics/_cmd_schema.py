"""``tables``, ``columns``: the catalog, through the same fast path as user queries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._args import ArgumentParser

if TYPE_CHECKING:
    import pandas as pd

    from ._magic import PgMonkeyMagics


TABLES_SQL = """\
SELECT table_schema AS schema, table_name AS name, table_type AS type
FROM information_schema.tables
WHERE CASE WHEN :schema::text IS NULL
           THEN table_schema NOT IN ('pg_catalog', 'information_schema')
                AND table_schema NOT LIKE 'pg\\_toast%'
           ELSE table_schema = :schema::text END
ORDER BY 1, 2"""

COLUMNS_SQL = """\
SELECT c.column_name AS column, c.data_type AS type, c.is_nullable = 'YES' AS nullable,
       c.column_default AS default
FROM information_schema.columns c
JOIN pg_catalog.pg_class k ON k.relname = c.table_name
JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace AND n.nspname = c.table_schema
WHERE k.oid = :table::text::regclass
ORDER BY c.ordinal_position"""


def tables(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
    p = ArgumentParser(prog="%pgmonkey tables")
    p.add_argument("schema", nargs="?", help="default: every schema but the system ones")
    p.add_argument("--conn", help="connection name (default: the current one)")
    opts = p.parse_args(args)
    return magics.frame(opts.conn, TABLES_SQL, {"schema": opts.schema})


def columns(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
    p = ArgumentParser(prog="%pgmonkey columns")
    p.add_argument("table", help="schema.table (resolved like in SQL, search_path included)")
    p.add_argument("--conn", help="connection name (default: the current one)")
    opts = p.parse_args(args)
    return magics.frame(opts.conn, COLUMNS_SQL, {"table": opts.table})
