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
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Final

import psycopg
from psycopg import sql
from psycopg.pq import ExecStatus, TransactionStatus

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
# Before a range's COPY, for its transaction: a range reads its blocks in order, as one
# COPY table does: no parallel plan (its workers' rows interleave), a TID range scan, and
# if a scan of the whole table were chosen, one that starts at the first block.
_IN_BLOCK_ORDER: Final = (
    "SELECT pg_catalog.set_config('max_parallel_workers_per_gather', '0', true),"
    " pg_catalog.set_config('enable_tidscan', 'on', true),"
    " pg_catalog.set_config('synchronize_seqscans', 'off', true)"
)


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
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    settings: ExportSettings | str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    resolve_env: bool = False,
    partitions: int | None = None,
) -> ExportResult:
    """Export a table or a query's rows to a CSV file through ``COPY ... TO STDOUT``.

    ``path`` defaults to the table's name (``public.my_table`` -> ``my_table.csv``); a query
    needs one. Settings come from ``settings``, else ``<out>.export.yaml``, else 4.0's
    ``<out stem>.yaml`` (settings keys only), else the defaults (comma, double quote,
    UTF-8, a header row). ``con``, ``progress`` and ``resolve_env`` are as for
    :func:`import_csv`. ``params``: the query's parameters (``%s`` or ``%(name)s``), bound
    by psycopg on the client, as ``read_sql`` binds them (COPY takes none).

    ``partitions``: a table export read in that many ranges of the table's blocks at once,
    each on a connection of its own in one snapshot, for when the server has cores to
    spare; the file is the same bytes as one ``COPY`` writes (see :class:`_Ranged`).
    """
    if (table is None) == (query is None):
        raise TransferError("export needs either a table or a query")
    if params is not None and query is None:
        raise TransferError("params go with a query export")
    if partitions is not None:
        from pgmonkey.frames._partition import check_partitions

        check_partitions(partitions)
        if query is not None and partitions > 1:
            raise TransferError(
                f"partitions={partitions} splits a table by its blocks: a query's rows are "
                "exported on one connection"
            )
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
        source_sql = _in_parentheses(text)
        source = text
    out = Path(path)
    s = _resolve_settings(out, settings)

    server_encoding = pg_encoding(s.encoding)
    stmt = sql.SQL("COPY {} TO STDOUT {}").format(source_sql, copy_options(s))
    try:
        with (
            atomic_writer(out) as f,
            _connect.connection(con, resolve_env=resolve_env) as conn,
            Progress(None, out.name, progress) as bar,
        ):
            # In the caller's transaction, what it sees (its own writes too) is read by it
            # alone, in one COPY, as without partitions.
            idle = conn.info.transaction_status == TransactionStatus.IDLE
            if params is not None:
                from pgmonkey.frames._sqltext import bind  # not at import: the CLI loads no frames

                bound = _in_parentheses(bind(conn, text, params))
                stmt = sql.SQL("COPY {} TO STDOUT {}").format(bound, copy_options(s))
            if table is not None and partitions is not None and partitions > 1 and idle:
                ranged = _Ranged(
                    con=con,
                    table=target.ident,
                    plain=stmt,
                    partitions=partitions,
                    settings=s,
                    server_encoding=server_encoding,
                    file=f,
                    folder=out.parent,
                    bar=bar,
                )
                rows, size = ranged.write(conn, resolve_env=resolve_env)
            else:
                sink = _Output(f, s.encoding, server_encoding, bar)
                try:
                    rows, size = _copy_to(conn, stmt, sink, parse_first=query is not None)
                except psycopg.Error as error:
                    if query is None or params is not None:
                        raise
                    raise _placed(error, query) from None
    except OSError as exc:
        raise TransferError(f"cannot write {os.fspath(out)!r}: {exc.strerror or exc}") from None
    return ExportResult(out, rows, size, source, s)


_OPENING: Final = "COPY (\n"  # what precedes the caller's query in the statement


def _placed(error: psycopg.Error, query: str) -> psycopg.Error:
    """The server's error, its position given in the caller's query (line and column, the
    line shown with a caret) rather than in the COPY statement around it. The same error,
    its message rewritten: its class, ``diag`` and ``pgresult`` stay the server's."""
    position = error.diag.statement_position
    if not (position and position.isdigit()):
        return error
    text = query.strip().rstrip(";").strip()
    offset = int(position) - 1 - len(_OPENING)
    if not 0 <= offset < len(text):
        return error
    before = query[: len(query) - len(query.lstrip())]
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line = text[line_start : len(text) if line_end < 0 else line_end]
    column = offset - line_start + 1
    number = before.count("\n") + text.count("\n", 0, offset) + 1
    if line_start == 0:
        column += len(before) - before.rfind("\n") - 1
        line = before[before.rfind("\n") + 1 :] + line
    diag = error.diag
    lines = [
        f"{diag.message_primary or str(error).splitlines()[0]} "
        f"(line {number}, column {column} of the query)",
        f"  {line.rstrip().replace(chr(9), ' ')}",  # a tab as one space: the caret lines up
        "  " + " " * (column - 1) + "^",
    ]
    if diag.message_detail:
        lines.append(f"DETAIL: {diag.message_detail}")
    if diag.message_hint:
        lines.append(f"HINT: {diag.message_hint}")
    error.args = ("\n".join(lines),)
    return error


def _in_parentheses(query: str) -> sql.Composed:
    """The caller's own SQL, run as written; on lines of its own, so that a comment on its
    last line does not take the closing parenthesis with it."""
    return sql.SQL(_OPENING[len("COPY ") :] + "{}\n)").format(sql.SQL(query))


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
    """The output file behind a 1 MiB buffer, transcoding if PostgreSQL cannot encode.

    ``start``: whether this is the file's start (where a ``utf-8-sig`` BOM goes).
    """

    def __init__(
        self,
        f: Any,
        encoding: str,
        server_encoding: str | None,
        bar: Progress,
        *,
        start: bool = True,
    ):
        self.buf = bytearray()
        self.written = 0
        self._f = f
        self._bar = bar
        # A codec PostgreSQL does not know (UTF-16, ...): COPY sends UTF-8, Python re-encodes.
        self._decoder = self._encoder = None
        if server_encoding is None:
            self._decoder = codecs.getincrementaldecoder("utf-8")()
            self._encoder = codecs.getincrementalencoder(encoding)()
        elif start and codecs.lookup(encoding).name == "utf-8-sig":
            self.buf += codecs.BOM_UTF8

    def flush(self, final: bool = False) -> None:
        data: bytes | bytearray = self.buf
        if self._decoder is not None and self._encoder is not None:
            data = self._encoder.encode(self._decoder.decode(data, final), final)
        self._f.write(data)
        self.written += len(data)
        self._bar.update(len(self.buf))
        self.buf.clear()


def _copy_to(
    conn: psycopg.Connection[Any],
    stmt: str | sql.Composed,
    out: _Output,
    setup: str | None = None,
    parse_first: bool = False,
) -> tuple[int, int]:
    """Run the COPY (after ``setup``, in the same transaction), write its output to the
    end; return (rows, bytes written). ``parse_first``: see :func:`_one_statement`."""
    with conn.transaction(), conn.cursor() as cur:
        if setup is not None:
            cur.execute(setup)
        if parse_first:
            _one_statement(conn, stmt)
        rows = _copy_out(cur, stmt, out)
    out.flush(final=True)
    return rows, out.written


@dataclass
class _Ranged:
    """A table's export in ranges of its blocks over several connections at once.

    Each range is ``COPY (SELECT <columns> FROM ONLY table WHERE ctid ...) TO STDOUT``: the
    columns ``COPY table`` writes (not the dropped nor the generated ones), the table's own
    rows (not its inheritance children's), a TID range scan (PostgreSQL 14 and later) that
    reads only its blocks, and the header row in the first range only. The ranges are read
    in one snapshot (``frames._parallel``); the first is written straight into the file, the
    others into unnamed temporary files beside it, appended in order at the end: the same
    bytes as one ``COPY table``, as rows come in block order (each range's transaction plans
    without parallel workers, see ``_IN_BLOCK_ORDER``). Anything else (see :meth:`_selects`;
    an older server, a table too small to split, an encoding Python transcodes, a session
    no other connection can read as) is read by that one ``COPY`` on one connection.
    """

    con: Any
    table: sql.Identifier
    plain: sql.Composed  # the one COPY
    partitions: int
    settings: ExportSettings
    server_encoding: str | None
    file: Any  # the output, where the first range goes
    folder: Path  # the output's, where the other ranges wait (unnamed temporary files)
    bar: Progress
    statements: list[str] = field(default_factory=list, init=False)
    _spills: list[IO[bytes]] = field(default_factory=list, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def write(self, conn: psycopg.Connection[Any], *, resolve_env: bool) -> tuple[int, int]:
        from pgmonkey.frames._parallel import read_ranges  # ~10 ms of imports, only here

        f = self.file
        try:
            parts = read_ranges(
                self.con, conn, self._plan, self._read, True, resolve_env=resolve_env
            )
            f.flush()
            for _rows, _size, spill in parts[1:]:
                spill.seek(0)
                shutil.copyfileobj(spill, f, _FLUSH)
        finally:
            for spill in self._spills:
                spill.close()
        return sum(p[0] for p in parts), sum(p[1] for p in parts)

    def _plan(self, conn: psycopg.Connection[Any], others: bool) -> Sequence[str]:
        selects = self._selects(conn) if others else []
        if len(selects) <= 1:
            self.statements = [self.plain.as_string(conn)]
        else:
            rest = copy_options(replace(self.settings, has_headers=False))
            self.statements = [
                sql.SQL("COPY ({}) TO STDOUT {}")
                .format(sql.SQL(q), copy_options(self.settings) if i == 0 else rest)
                .as_string(conn)
                for i, q in enumerate(selects)
            ]
        return self.statements

    def _selects(self, conn: psycopg.Connection[Any]) -> list[str]:
        """The ranges' SELECTs, or none when the table is not one to split.

        The other connections are new sessions: they name the table by the schema and name
        it has on ``conn`` (its search_path may differ from theirs), and a temporary table,
        which they cannot see, is not split. Nor is a table whose rows ``COPY table`` does
        not read in block order or that ``ctid`` cannot range over: one under row-level
        security (COPY reads it through a planned query), one read with column privileges
        only (a ``ctid`` filter needs the table's), one of another access method than heap.
        """
        if self.server_encoding is None or conn.info.server_version < 140000:
            return []
        row = conn.execute(
            "SELECT c.relkind = 'r' AND c.relpersistence <> 't' AND am.amname = 'heap'"
            "  AND pg_catalog.has_table_privilege(c.oid, 'SELECT')"
            "  AND NOT pg_catalog.row_security_active(c.oid),"
            " n.nspname, c.relname,"
            " ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute AS a"
            "  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
            "  AND a.attgenerated = '' ORDER BY a.attnum)::text[]"
            " FROM pg_catalog.pg_class AS c"
            " JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_catalog.pg_am AS am ON am.oid = c.relam"
            " WHERE c.oid = %s::regclass",
            (self.table.as_string(conn),),
        ).fetchone()
        assert row is not None
        splittable, schema, name, columns = row
        if not splittable or not columns:
            return []
        from pgmonkey.frames._partition import block_queries

        table = sql.Identifier(schema, name)
        select = sql.SQL("SELECT {} FROM ONLY {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns), table
        )
        return block_queries(conn, table, self.partitions, select)

    def _read(self, conn: psycopg.Connection[Any], stmt: str) -> tuple[int, int, IO[bytes]]:
        start = self.statements.index(stmt) == 0
        if start:
            sink: Any = self.file
        else:
            sink = tempfile.TemporaryFile(dir=self.folder)
            with self._lock:
                self._spills.append(sink)
        setup = _IN_BLOCK_ORDER if len(self.statements) > 1 else None
        out = _Output(sink, self.settings.encoding, self.server_encoding, self.bar, start=start)
        rows, size = _copy_to(conn, stmt, out, setup)
        return rows, size, sink


def _one_statement(conn: psycopg.Connection[Any], stmt: str | sql.Composed) -> None:
    """Have the server parse the COPY of a query, without running it: one statement, or an
    error. The query sits between parentheses; one that closes them could add statements
    after the COPY, which the simple query protocol (COPY's, in psycopg) would run."""
    if not psycopg.Pipeline.is_supported():
        return  # a libpq before 14: no parse without a run
    text = stmt if isinstance(stmt, str) else stmt.as_string(conn)
    results = _psycopg.run_and_describe(conn, text.encode(conn.info.encoding), lambda: ([], []))
    for result in results or ():
        if result.status == ExecStatus.FATAL_ERROR:
            error = _psycopg.error_from_result(result, encoding=conn.info.encoding)
            if "multiple commands" not in str(error):
                raise error
            raise TransferError(
                "export query: not one statement (a query that closes its parentheses, or "
                "holds several statements, cannot be exported)"
            )


def _copy_out(cur: psycopg.Cursor[Any], stmt: str | sql.Composed, out: _Output) -> int:
    """COPY TO STDOUT into ``out``; return the rows.

    The rows go straight into the output buffer, many per call (``_psycopg.copy_into``:
    psycopg's ``Copy.read()`` would cost a generator step and a wait per row, a third more
    than ``psql \\copy`` takes in all); the buffer is written out each time it is full.
    """
    conn = cur.connection
    encoding = conn.info.encoding
    try:
        with cur.copy(stmt):
            while True:
                fill = _psycopg.copy_into(conn.pgconn, out.buf, _FLUSH, encoding, least=_FLUSH)
                result = _psycopg.wait(conn, fill)
                if result is not None:
                    return int(result.command_tuples or 0)
                out.flush()
    except BaseException:
        # Ctrl-C, SIGTERM, a full disk: the server's COPY is cancelled (a query still
        # running would go on until it wrote), and the connection left usable for rollback.
        _psycopg.cancel_and_drain(conn)
        raise
