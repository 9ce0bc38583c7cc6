"""Table names and COPY statements, built with psycopg.sql only (never by pasting text)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from pgmonkey.errors import TransferError

from ._settings import ExportSettings, ImportSettings, pg_encoding


@dataclass(frozen=True)
class TableName:
    """A table, optionally schema-qualified; without a schema the search_path decides."""

    schema: str | None
    name: str

    @property
    def ident(self) -> sql.Identifier:
        if self.schema is None:
            return sql.Identifier(self.name)
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return self.name if self.schema is None else f"{self.schema}.{self.name}"


def parse_table(table: str | Sequence[str]) -> TableName:
    """``'schema.table'``, ``'table'``, ``'"My.Schema"."a table"'`` or ``(schema, table)``.

    Names are taken as written (no case folding); double quotes are only needed around a
    part that holds a dot. Whatever the name holds, it is quoted as an identifier in SQL.
    """
    if isinstance(table, str):
        parts = _split_dotted(table)
    else:
        parts = [str(p) for p in table]
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise TransferError(f"invalid table name {table!r}: expected 'table' or 'schema.table'")
    if len(parts) == 1:
        return TableName(None, parts[0])
    return TableName(parts[0], parts[1])


def default_csv_name(table: TableName) -> str:
    """``public.my_table`` -> ``my_table.csv`` (4.0 wrote ``public.csv``)."""
    safe = "".join("_" if c in (os.sep, "/", "\0") else c for c in table.name)
    return f"{safe}.csv"


def copy_options(s: ImportSettings | ExportSettings) -> sql.Composed:
    """The ``(FORMAT csv, ...)`` option list of a COPY statement for these settings.

    An encoding PostgreSQL does not know is sent as UTF-8 and transcoded in Python.
    """
    options = [
        sql.SQL("FORMAT csv"),
        sql.SQL("HEADER true" if s.has_headers else "HEADER false"),
        sql.SQL("DELIMITER {}").format(sql.Literal(s.delimiter)),
        sql.SQL("QUOTE {}").format(sql.Literal(s.quotechar)),
        sql.SQL("NULL {}").format(sql.Literal(s.null_string)),
        sql.SQL("ENCODING {}").format(sql.Literal(pg_encoding(s.encoding) or "UTF8")),
    ]
    if isinstance(s, ExportSettings) and s.force_quote:
        options.append(sql.SQL("FORCE_QUOTE *"))
    return sql.SQL("({})").format(sql.SQL(", ").join(options))


def _split_dotted(text: str) -> list[str]:
    """Split on dots outside double quotes; a quoted part loses its quotes ("" -> ")."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False  # inside a "..." part
    was_quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == '"':
                if text[i + 1 : i + 2] == '"':
                    current.append('"')
                    i += 1
                else:
                    quoted = False
            else:
                current.append(c)
        elif c == '"' and not current and not was_quoted:
            quoted = was_quoted = True
        elif c == ".":
            parts.append("".join(current))
            current, was_quoted = [], False
        else:
            current.append(c)
        i += 1
    if quoted:
        raise TransferError(f"invalid table name {text!r}: unterminated double quote")
    parts.append("".join(current))
    return parts


def rows_text(n: int) -> str:
    """``'1 row'``, ``'2 rows'``: for messages."""
    return f"{n} row" if n == 1 else f"{n} rows"
