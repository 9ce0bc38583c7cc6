"""CSV export: ``COPY table|(query) TO STDOUT`` streamed into a file, no review step.

PostgreSQL writes NULL unquoted and any value equal to the NULL string (with the default
``''``: an empty string) quoted, so NULL and '' survive an export and a re-import.
The file is written beside its final name and renamed at the end (``_files.atomic_writer``):
a failed export leaves no half-written file, a symlink is never written through, and an
existing file keeps its permissions.
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql

from pgmonkey import _connect, _psycopg
from pgmonkey.errors import TransferError

from ._files import atomic_writer
from ._progress import Progress
from ._settings import (
    ExportSettings,
    export_settings_path,
    find_legacy_settings,
    load_export_settings,
    logger,
    pg_encoding,
)
from ._sql import copy_options, default_csv_name, parse_table, rows_text

_FLUSH: Final = 1 << 20


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    path: Path
    rows: int
    bytes: int
    source: str  # the table name, or the query
    settings: ExportSettings

    @property
    def message(self) -> str:
        return f"exported {rows_text(self.rows)} to {os.fspath(self.path)!r} ({self.bytes} bytes)"

    def report(self) -> str:
        """What the CLI prints (as :meth:`ImportResult.report`)."""
        return self.message

    def __str__(self) -> str:
        return self.message


def export_csv(
    con: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    table: str | tuple[str, str] | None = None,
    query: str | None = None,
    settings: ExportSettings | str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    resolve_env: bool = False,
) -> ExportResult:
    """Export a table or a query's rows to a CSV file through ``COPY ... TO STDOUT``.

    ``path`` defaults to the table's name (``public.my_table`` -> ``my_table.csv``); a query
    needs one. Settings come from ``settings``, else ``<out>.export.yaml``, else 4.0's
    ``<out stem>.yaml`` (settings keys only), else the defaults (comma, double quote,
    UTF-8, a header row). ``con``, ``progress`` and ``resolve_env`` are as for
    :func:`import_csv`.
    """
    if (table is None) == (query is None):
        raise TransferError("export needs either a table or a query")
    if table is not None:
        target = parse_table(table)
        source_sql: sql.Composable = target.ident
        source = str(target)
        if path is None:
            path = default_csv_name(target)
    else:
        text = (query or "").strip().rstrip(";").strip()
        if not text:
            raise TransferError("export query is empty")
        if path is None:
            raise TransferError("a query export needs a file name")
        # The query is the caller's own SQL, run as written.
        source_sql = sql.SQL("({})").format(sql.SQL(text))
        source = text
    out = Path(path)
    s = _resolve_settings(out, settings)

    server_encoding = pg_encoding(s.encoding)
    stmt = sql.SQL("COPY {} TO STDOUT {}").format(
        source_sql,
        copy_options(s),
    )
    try:
        with atomic_writer(out) as f, _connect.connection(con, resolve_env=resolve_env) as conn:
            rows, size = _write(conn, stmt, f, s, server_encoding, out.name, progress)
    except OSError as exc:
        raise TransferError(f"cannot write {os.fspath(out)!r}: {exc.strerror or exc}") from None
    return ExportResult(out, rows, size, source, s)


def _resolve_settings(
    out: Path, given: ExportSettings | str | os.PathLike[str] | None
) -> ExportSettings:
    if isinstance(given, ExportSettings):
        return given
    if given is not None:
        return load_export_settings(given)
    own = export_settings_path(out)
    if own.is_file():
        return load_export_settings(own)
    legacy = find_legacy_settings(out)
    if legacy is not None:
        logger.info("using 4.0 settings file %s for %s", legacy, out)
        return load_export_settings(legacy)
    return ExportSettings()


class _Output:
    """The output file behind a 1 MiB buffer, transcoding if PostgreSQL cannot encode."""

    def __init__(self, f: Any, encoding: str, server_encoding: str | None, bar: Progress):
        self.buf = bytearray()
        self.written = 0
        self._f = f
        self._bar = bar
        # A codec PostgreSQL does not know (UTF-16, ...): COPY sends UTF-8, Python re-encodes.
        self._decoder = self._encoder = None
        if server_encoding is None:
            self._decoder = codecs.getincrementaldecoder("utf-8")()
            self._encoder = codecs.getincrementalencoder(encoding)()
        elif codecs.lookup(encoding).name == "utf-8-sig":
            self.buf += codecs.BOM_UTF8

    def flush(self, final: bool = False) -> None:
        data: bytes | bytearray = self.buf
        if self._decoder is not None and self._encoder is not None:
            data = self._encoder.encode(self._decoder.decode(data, final), final)
        self._f.write(data)
        self.written += len(data)
        self._bar.update(len(self.buf))
        self.buf.clear()


def _write(
    conn: psycopg.Connection[Any],
    stmt: sql.Composed,
    f: Any,
    s: ExportSettings,
    server_encoding: str | None,
    desc: str,
    progress: bool | None,
) -> tuple[int, int]:
    """Run the COPY and write its output; return (rows, bytes written)."""
    with Progress(None, desc, progress) as bar:
        out = _Output(f, s.encoding, server_encoding, bar)
        with conn.transaction(), conn.cursor() as cur:
            rows = _copy_out(cur, stmt, out)
        out.flush(final=True)
    return rows, out.written


def _copy_out(cur: psycopg.Cursor[Any], stmt: sql.Composed, out: _Output) -> int:
    """COPY TO STDOUT into ``out``; return the rows.

    The rows go straight into the output buffer, many per call (``_psycopg.copy_into``:
    psycopg's ``Copy.read()`` would cost a generator step and a wait per row, a third more
    than ``psql \\copy`` takes in all); the buffer is written out each time it is full.
    """
    conn = cur.connection
    encoding = conn.info.encoding
    with cur.copy(stmt):
        while True:
            fill = _psycopg.copy_into(conn.pgconn, out.buf, _FLUSH, encoding, least=_FLUSH)
            result = _psycopg.wait(conn, fill)
            if result is not None:
                return int(result.command_tuples or 0)
            out.flush()
