"""IPython magics: ``%load_ext pgmonkey``, then ``%pgmonkey`` / ``%%pgmonkey`` (SPEC S5).

A thin face over the Python API: connections come from :class:`pgmonkey.PGConnectionManager`,
results from :func:`pgmonkey.frames.read_sql`, tables from :func:`pgmonkey.frames.to_sql`,
CSV from :mod:`pgmonkey.transfer`, advice from :mod:`pgmonkey.serveradvice`. This module
parses arguments, keeps the named connections of a notebook, and displays.

Errors fail the cell (so ``Run All``, nbval and papermill stop) but show one short message,
the server's error and its position in the cell, instead of a Python traceback; set
``%config PgMonkeyMagics.short_errors = False`` to see the full traceback.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import shlex
import weakref
from collections import ChainMap
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import psycopg
from IPython.core import magic as _ipython_magic
from IPython.core.magic import Magics
from IPython.utils.text import DollarFormatter
from traitlets import Bool

from pgmonkey.config import CONNECTION_TYPES
from pgmonkey.errors import MagicError, PgMonkeyError
from pgmonkey.magics._loop import LoopThread
from pgmonkey.magics._params import Statement, parse

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MagicCellError", "PgMonkeyMagics", "load_ipython_extension"]

_ASYNC_TYPES = frozenset({"async", "async_pool"})
_IF_EXISTS = ("fail", "append", "replace")
# Leading options of a line query: %pgmonkey --conn NAME --out VAR SELECT ...
_LINE_OPTIONS = re.compile(r"\s*((?:--(?:conn|out)(?:=|\s+)\S+\s*)+)(.*)", re.DOTALL)


_F = TypeVar("_F", bound=Callable[..., Any])


def _typed_decorator(decorator: object) -> Callable[[_F], _F]:
    # IPython 8 ships its magic decorators untyped and IPython 9 typed: declaring their type
    # here, once, keeps mypy's verdict the same whichever IPython is installed.
    return cast("Callable[[_F], _F]", decorator)


if TYPE_CHECKING:

    class _MagicsBase:
        """The part of IPython's ``Magics`` this module uses (IPython 8 ships no types)."""

        shell: Any

        def __init__(self, shell: Any = None, **kwargs: Any) -> None: ...

else:
    _MagicsBase = Magics

magics_class = _typed_decorator(_ipython_magic.magics_class)
line_cell_magic = _typed_decorator(_ipython_magic.line_cell_magic)
needs_local_scope = _typed_decorator(_ipython_magic.needs_local_scope)
no_var_expand = _typed_decorator(_ipython_magic.no_var_expand)


class MagicCellError(MagicError):
    """A ``%pgmonkey`` magic failed; IPython shows its message only, no traceback."""

    def _render_traceback_(self) -> list[str]:
        # IPython (and ipykernel) use this instead of a formatted traceback.
        return str(self).splitlines()


class _HelpShown(Exception):
    """argparse printed the help of a subcommand: nothing else to do."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        raise MagicError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message)
        raise _HelpShown


@dataclass
class _Entry:
    """A named connection of the notebook (the manager owns the object)."""

    name: str
    ctype: str
    path: str
    resolve_env: bool
    obj: Any
    host: str = ""
    port: str = ""
    dbname: str = ""
    user: str = ""
    ssl: str = ""

    @property
    def is_async(self) -> bool:
        return self.ctype in _ASYNC_TYPES


@dataclass
class _Affected:
    """A statement that returned no rows."""

    rowcount: int
    status: str

    def message(self) -> str:
        if self.rowcount >= 0:
            return f"{self.rowcount} row{'' if self.rowcount == 1 else 's'} affected"
        return self.status or "done"


@magics_class
class PgMonkeyMagics(_MagicsBase):
    """``%pgmonkey`` and ``%%pgmonkey``: SQL and pgmonkey commands in IPython."""

    feedback = Bool(True, help="Print connection banners and 'N rows affected' messages.").tag(
        config=True
    )
    short_errors = Bool(
        True, help="Show failing magics as one short message instead of a traceback."
    ).tag(config=True)
    decimal = Bool(
        False, help="Return numeric columns as decimal.Decimal objects instead of float64."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._connections: dict[str, _Entry] = {}
        self._current: str | None = None
        self._manager: Any = None
        self._loop = LoopThread()
        ref = weakref.ref(self)
        atexit.register(_close_at_exit, ref)

    # -- entry point ---------------------------------------------------------------------

    @no_var_expand
    @needs_local_scope
    @line_cell_magic
    def pgmonkey(self, line: str, cell: str | None = None, local_ns: Any = None) -> Any:
        """Run SQL or a pgmonkey command.

        Connections::

            %pgmonkey connect config.yaml [TYPE] [--name NAME] [--resolve-env]
                (TYPE: normal, pool, async or async_pool)
            %pgmonkey connections
            %pgmonkey use NAME
            %pgmonkey disconnect [NAME | --all]

        Queries (``:name`` binds the notebook variable ``name`` as a parameter)::

            df = %pgmonkey SELECT * FROM t WHERE id = :id
            %%pgmonkey [--out VAR] [--conn NAME]
            INSERT INTO t VALUES (:a);      -- all statements in one transaction,
            SELECT * FROM t                 -- the last one's rows returned

        Commands (their file and table arguments expand ``{expr}`` and ``$var`` as in
        other magics; SQL, ``export --query`` included, is never expanded)::

            %pgmonkey config [config.yaml] [--resolve-env]
            %pgmonkey serverconfig [config.yaml] | audit [config.yaml]
            %pgmonkey import data.csv --table schema.table [--if-exists fail|append|replace]
            %pgmonkey export schema.table out.csv | export --query "SELECT ..." out.csv
            %pgmonkey tables [schema] | columns schema.table
            %pgmonkey persist DF schema.table [--if-exists fail|append|replace]
        """
        # Local variables first (a magic called inside a function), then the notebook's.
        user_ns = self.shell.user_ns if self.shell is not None else {}
        namespace = ChainMap(local_ns, user_ns) if local_ns is not None else ChainMap(user_ns)
        try:
            if cell is None:
                return self._line(line, namespace)
            return self._cell(line, cell, namespace)
        except _HelpShown:
            return None
        except (PgMonkeyError, psycopg.Error, OSError) as exc:
            if isinstance(exc, MagicCellError):
                if not self.short_errors and exc.__cause__ is not None:
                    raise exc.__cause__ from None
                raise
            if not self.short_errors:
                raise
            raise MagicCellError(_error_message(exc)) from exc

    # -- dispatch -------------------------------------------------------------------------

    def _line(self, line: str, ns: Mapping[str, Any]) -> Any:
        stripped = line.strip()
        if not stripped:
            raise MagicError("nothing to do: give a command or SQL (see %pgmonkey?)")
        first = stripped.split(None, 1)[0].lower()
        command = _COMMANDS.get(first)
        if command is not None:
            return command(self, _split_words(stripped)[1:], ns)
        conn, out = None, None
        m = _LINE_OPTIONS.fullmatch(line)
        if m:
            opts = _query_parser("%pgmonkey").parse_args(_split_args(m.group(1)))
            conn, out, line = opts.conn, opts.out, m.group(2)
        return self._query(line, ns, conn_name=conn, out=out)

    def _cell(self, line: str, cell: str, ns: Mapping[str, Any]) -> Any:
        opts = _query_parser("%%pgmonkey").parse_args(_split_args(line))
        # Error positions count the %%pgmonkey line, as the notebook shows the cell.
        return self._query(cell, ns, conn_name=opts.conn, out=opts.out, first_line=2)

    # -- the connection registry ----------------------------------------------------------

    def _get_manager(self) -> Any:
        if self._manager is None:
            from pgmonkey.manager import PGConnectionManager

            self._manager = PGConnectionManager()
        return self._manager

    def _entry(self, name: str | None) -> _Entry:
        if name is None:
            if self._current is None:
                raise MagicError("no connection: run %pgmonkey connect config.yaml first")
            name = self._current
        try:
            return self._connections[name]
        except KeyError:
            known = ", ".join(map(repr, self._connections)) or "none"
            raise MagicError(f"no connection named {name!r} (connections: {known})") from None

    def _connect(self, args: list[str], ns: Mapping[str, Any]) -> None:
        p = _ArgumentParser(prog="%pgmonkey connect", add_help=True)
        expand = _expander(self.shell, ns)
        p.add_argument("config", type=expand, help="pgmonkey YAML config")
        p.add_argument(
            "type", nargs="?", type=expand, choices=CONNECTION_TYPES, help="connection type"
        )
        p.add_argument(
            "--name", type=expand, help="name of the connection (default: config stem[-type])"
        )
        p.add_argument("--resolve-env", action="store_true", help="interpolate ${VAR} references")
        opts = p.parse_args(args)
        path = os.fspath(Path(opts.config).expanduser())
        manager = self._get_manager()
        kwargs = {"resolve_env": opts.resolve_env}
        ctype = opts.type or _config_type(path, opts.resolve_env)
        if ctype in _ASYNC_TYPES:

            async def open_async() -> Any:
                return await manager.get_database_connection(path, ctype, **kwargs)

            obj = self._loop.run(open_async())
        else:
            obj = manager.get_database_connection(path, ctype, **kwargs)
        name = opts.name or (Path(path).stem + (f"-{opts.type}" if opts.type else ""))
        entry = _Entry(name=name, ctype=ctype, path=path, resolve_env=opts.resolve_env, obj=obj)
        info = self._using(entry, _describe_connection, _describe_connection_async)
        for key, value in info.items():
            setattr(entry, key, value)
        old = self._connections.get(name)
        if old is not None and old.obj is not obj:
            self._disconnect_entry(old)
        self._connections[name] = entry
        self._current = name
        if self.feedback:
            print(
                f"connected {entry.name!r} ({entry.ctype}): {entry.user}@{entry.host}:{entry.port}"
                f"/{entry.dbname}, ssl {entry.ssl}"
            )

    def _list_connections(self, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
        _ArgumentParser(prog="%pgmonkey connections").parse_args(args)
        import pandas as pd

        rows = [
            {
                "name": e.name,
                "type": e.ctype,
                "host": e.host,
                "port": e.port,
                "dbname": e.dbname,
                "user": e.user,
                "ssl": e.ssl,
                "config": e.path,
                "current": e.name == self._current,
            }
            for e in self._connections.values()
        ]
        columns = ["name", "type", "host", "port", "dbname", "user", "ssl", "config", "current"]
        return pd.DataFrame(rows, columns=columns)

    def _use(self, args: list[str], ns: Mapping[str, Any]) -> None:
        p = _ArgumentParser(prog="%pgmonkey use")
        p.add_argument("name", type=_expander(self.shell, ns))
        opts = p.parse_args(args)
        self._current = self._entry(opts.name).name
        if self.feedback:
            print(f"using {self._current!r}")

    def _disconnect(self, args: list[str], ns: Mapping[str, Any]) -> None:
        p = _ArgumentParser(prog="%pgmonkey disconnect")
        p.add_argument("name", nargs="?", type=_expander(self.shell, ns))
        p.add_argument("--all", action="store_true", help="disconnect every connection")
        opts = p.parse_args(args)
        if opts.all and opts.name:
            raise MagicError("%pgmonkey disconnect: give a NAME or --all, not both")
        entries = list(self._connections.values()) if opts.all else [self._entry(opts.name)]
        for entry in entries:
            self._disconnect_entry(entry)
            if self.feedback:
                print(f"disconnected {entry.name!r}")

    def _disconnect_entry(self, entry: _Entry, timeout: float | None = None) -> None:
        self._connections.pop(entry.name, None)
        if self._current == entry.name:
            self._current = next(iter(self._connections), None)
        if any(e.obj is entry.obj for e in self._connections.values()):
            return  # the same cached object is still in use under another name
        if entry.is_async:

            async def close() -> None:
                await entry.obj.disconnect()

            self._loop.run(close(), timeout)
        else:
            entry.obj.disconnect()

    def close_all(self) -> None:
        """Disconnect every connection and stop the private event loop (bounded in time)."""
        for entry in list(self._connections.values()):
            with contextlib.suppress(Exception):
                self._disconnect_entry(entry, timeout=5.0)
        self._loop.stop()

    def _using(
        self,
        entry: _Entry,
        sync: Callable[[psycopg.Connection[Any]], Any],
        async_: Callable[[psycopg.AsyncConnection[Any]], Awaitable[Any]],
    ) -> Any:
        """Call *sync* or *async_* with a connection of *entry* (a transaction block)."""
        if entry.is_async:

            async def run() -> Any:
                async with entry.obj as aconn:
                    return await async_(aconn)

            return self._loop.run(run())
        with entry.obj as conn:
            return sync(conn)

    # -- queries --------------------------------------------------------------------------

    def _query(
        self,
        sql: str,
        ns: Mapping[str, Any],
        conn_name: str | None,
        out: str | None,
        first_line: int = 1,
    ) -> Any:
        if out is not None and not out.isidentifier():
            raise MagicError(f"--out: not a valid variable name: {out!r}")
        statements = parse(sql)
        if not statements:
            raise MagicError("no SQL statement to run")
        # Look every variable up before anything runs: a typo must not half-run a cell.
        params = [st.params(ns) for st in statements]
        entry = self._entry(conn_name)
        run = _Run(sql, statements, params, self.decimal, first_line)
        result = self._using(entry, run.sync, run.async_)
        if isinstance(result, _Affected):
            if self.feedback:
                print(result.message())
            result = None
        if out is not None and self.shell is not None:
            self.shell.user_ns[out] = result
        return result

    def _frame(self, name: str | None, query: str, params: dict[str, Any]) -> pd.DataFrame:
        """A catalog query through the same fast path as user queries."""
        st = parse(query)[0]
        run = _Run(query, [st], [params], self.decimal)
        result = self._using(self._entry(name), run.sync, run.async_)
        assert not isinstance(result, _Affected)
        return result

    # -- commands -------------------------------------------------------------------------

    def _config_args(
        self, command: str, args: list[str], ns: Mapping[str, Any]
    ) -> tuple[str, bool]:
        """``[config.yaml] [--resolve-env]``; without a path, the current connection's."""
        p = _ArgumentParser(prog=f"%pgmonkey {command}")
        p.add_argument(
            "config",
            nargs="?",
            type=_expander(self.shell, ns),
            help="default: the current connection's config",
        )
        p.add_argument("--resolve-env", action="store_true", help="interpolate ${VAR} references")
        opts = p.parse_args(args)
        if opts.config is not None:
            return os.fspath(Path(opts.config).expanduser()), opts.resolve_env
        entry = self._entry(None)
        return entry.path, opts.resolve_env or entry.resolve_env

    def _show_config(self, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
        path, resolve_env = self._config_args("config", args, ns)
        from pgmonkey.config import load_config, redact_config

        cfg = redact_config(load_config(path, resolve_env=resolve_env))
        import pandas as pd

        rows: list[dict[str, Any]] = []
        for key, value in cfg.items():
            if isinstance(value, Mapping):
                rows.extend(
                    {"section": key, "key": k, "value": _cell_text(v)} for k, v in value.items()
                )
            else:
                rows.append({"section": "", "key": key, "value": _cell_text(value)})
        return pd.DataFrame(rows, columns=["section", "key", "value"])

    def _serverconfig(self, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
        path, resolve_env = self._config_args("serverconfig", args, ns)
        from pgmonkey import serveradvice
        from pgmonkey.config import load_config

        return serveradvice.recommend(load_config(path, resolve_env=resolve_env)).to_frame()

    def _audit(self, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
        path, resolve_env = self._config_args("audit", args, ns)
        from pgmonkey import serveradvice
        from pgmonkey.config import load_config

        # The audit opens its own short read-only connection as this config's client.
        return serveradvice.audit(load_config(path, resolve_env=resolve_env)).to_frame()

    def _import(self, args: list[str], ns: Mapping[str, Any]) -> None:
        p = _ArgumentParser(prog="%pgmonkey import")
        expand = _expander(self.shell, ns)
        p.add_argument("csv", type=expand, help="CSV file to import")
        p.add_argument("--table", type=expand, required=True, help="target table, schema.table")
        p.add_argument("--if-exists", choices=_IF_EXISTS, default=None)
        p.add_argument("--conn", help="connection name (default: the current one)")
        opts = p.parse_args(args)
        from pgmonkey.transfer import import_csv

        entry = self._entry(opts.conn)
        result = import_csv(opts.csv, opts.table, self._sync_con(entry), if_exists=opts.if_exists)
        if self.feedback:
            print(result.message)
            if result.review_needed:
                print(result.preview_text())

    def _export(self, args: list[str], ns: Mapping[str, Any]) -> None:
        p = _ArgumentParser(prog="%pgmonkey export")
        p.add_argument(
            "targets",
            nargs="+",
            type=_expander(self.shell, ns),
            metavar="[TABLE] OUT",
            help="schema.table out.csv",
        )
        # SQL stays as written: no {expr}/$var expansion (use :name parameters instead)
        p.add_argument("--query", help="export the rows of this query instead of a table")
        p.add_argument("--conn", help="connection name (default: the current one)")
        opts = p.parse_args(args)
        if opts.query is not None and len(opts.targets) != 1:
            raise MagicError('%pgmonkey export: use export --query "SELECT ..." out.csv')
        if opts.query is None and len(opts.targets) != 2:
            raise MagicError("%pgmonkey export: use export schema.table out.csv")
        from pgmonkey.transfer import export_csv

        entry = self._entry(opts.conn)
        if opts.query is not None:
            result = export_csv(self._sync_con(entry), opts.targets[0], query=opts.query)
        else:
            result = export_csv(self._sync_con(entry), opts.targets[1], table=opts.targets[0])
        if self.feedback:
            print(result.message)

    def _sync_con(self, entry: _Entry) -> Any:
        """What the sync transfer functions take as ``con`` for this entry."""
        if not entry.is_async:
            return entry.obj
        # CSV transfer is sync: an async entry lends its (validated) config instead.
        from pgmonkey.config import load_config

        return load_config(entry.path, resolve_env=entry.resolve_env)

    def _tables(self, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
        p = _ArgumentParser(prog="%pgmonkey tables")
        p.add_argument("schema", nargs="?", help="default: every schema but the system ones")
        p.add_argument("--conn", help="connection name (default: the current one)")
        opts = p.parse_args(args)
        return self._frame(opts.conn, _TABLES_SQL, {"schema": opts.schema})

    def _columns(self, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
        p = _ArgumentParser(prog="%pgmonkey columns")
        p.add_argument("table", help="schema.table (resolved like in SQL, search_path included)")
        p.add_argument("--conn", help="connection name (default: the current one)")
        opts = p.parse_args(args)
        return self._frame(opts.conn, _COLUMNS_SQL, {"table": opts.table})

    def _persist(self, args: list[str], ns: Mapping[str, Any]) -> None:
        p = _ArgumentParser(prog="%pgmonkey persist")
        p.add_argument("dataframe", help="name of a DataFrame variable")
        p.add_argument("table", type=_expander(self.shell, ns), help="schema.table")
        p.add_argument("--if-exists", choices=_IF_EXISTS, default="fail")
        p.add_argument("--conn", help="connection name (default: the current one)")
        opts = p.parse_args(args)
        import pandas as pd

        if opts.dataframe not in ns:
            raise MagicError(f"undefined variable {opts.dataframe!r}")
        df = ns[opts.dataframe]
        if not isinstance(df, pd.DataFrame):
            raise MagicError(f"{opts.dataframe!r} is a {type(df).__name__}, not a DataFrame")
        from pgmonkey import frames

        table, if_exists = opts.table, opts.if_exists

        def sync(conn: psycopg.Connection[Any]) -> Any:
            return frames.to_sql(df, table, conn, if_exists=if_exists)

        async def async_(conn: psycopg.AsyncConnection[Any]) -> Any:
            return await frames.to_sql_async(df, table, conn, if_exists=if_exists)

        written = self._using(self._entry(opts.conn), sync, async_)
        if self.feedback:
            count = written if isinstance(written, int) else len(df)
            print(f"{count} row{'' if count == 1 else 's'} written to {table}")


_COMMANDS: dict[str, Callable[[PgMonkeyMagics, list[str], Mapping[str, Any]], Any]] = {
    "connect": PgMonkeyMagics._connect,
    "connections": PgMonkeyMagics._list_connections,
    "use": PgMonkeyMagics._use,
    "disconnect": PgMonkeyMagics._disconnect,
    "config": PgMonkeyMagics._show_config,
    "serverconfig": PgMonkeyMagics._serverconfig,
    "audit": PgMonkeyMagics._audit,
    "import": PgMonkeyMagics._import,
    "export": PgMonkeyMagics._export,
    "tables": PgMonkeyMagics._tables,
    "columns": PgMonkeyMagics._columns,
    "persist": PgMonkeyMagics._persist,
}

# Statements PostgreSQL refuses inside a transaction block: alone in a cell, they run in
# autocommit mode, as in psql.
_NO_TRANSACTION = re.compile(
    r"(vacuum|alter\s+system|(create|drop)\s+(database|tablespace)"
    r"|(create|drop)\s+(unique\s+)?index\s+concurrently|reindex\s.*\sconcurrently)\b",
    re.IGNORECASE | re.DOTALL,
)

_TRANSACTION_CONTROL = frozenset(
    {"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"}
)

_TABLES_SQL = """\
SELECT table_schema AS schema, table_name AS name, table_type AS type
FROM information_schema.tables
WHERE CASE WHEN :schema::text IS NULL
           THEN table_schema NOT IN ('pg_catalog', 'information_schema')
                AND table_schema NOT LIKE 'pg\\_toast%'
           ELSE table_schema = :schema::text END
ORDER BY 1, 2"""

_COLUMNS_SQL = """\
SELECT c.column_name AS column, c.data_type AS type, c.is_nullable = 'YES' AS nullable,
       c.column_default AS default
FROM information_schema.columns c
JOIN pg_catalog.pg_class k ON k.relname = c.table_name
JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace AND n.nspname = c.table_schema
WHERE k.oid = :table::text::regclass
ORDER BY c.ordinal_position"""


class _Run:
    """The statements of one query cell, run on one connection in one transaction."""

    def __init__(
        self,
        sql: str,
        statements: Sequence[Statement],
        params: Sequence[dict[str, Any] | None],
        decimal: bool,
        first_line: int = 1,
    ) -> None:
        self.first_line = first_line
        self.sql = sql
        self.statements = statements
        self.params = params
        self.decimal = decimal

    def _outside_transaction(self) -> bool:
        """A cell of one statement that cannot run in a transaction block (VACUUM, ...)."""
        return len(self.statements) == 1 and bool(_NO_TRANSACTION.match(self.statements[0].text))

    def _one_transaction(self) -> bool:
        """Whether to wrap the statements in ``conn.transaction()``.

        One statement runs as the connection is configured (so VACUUM works with
        ``autocommit: true``); several share one transaction, unless the cell manages
        transactions itself (BEGIN, COMMIT, ...), which psycopg's block must not get into.
        """
        return len(self.statements) > 1 and not any(
            st.keyword in _TRANSACTION_CONTROL for st in self.statements
        )

    def sync(self, conn: psycopg.Connection[Any]) -> Any:
        from pgmonkey.frames import read_sql

        result: Any = None
        if self._outside_transaction() and not conn.autocommit:
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                conn.autocommit = True
                try:
                    return self.sync(conn)
                finally:
                    conn.autocommit = False
        tx = conn.transaction() if self._one_transaction() else contextlib.nullcontext()
        with tx:
            for st, params in zip(self.statements, self.params, strict=True):
                fast = st is self.statements[-1] and st.returns_rows
                try:
                    if fast:
                        result = read_sql(st.query, conn, params, decimal=self.decimal)
                    else:
                        with psycopg.ClientCursor(conn) as cur:
                            cur.execute(st.query, params)
                            last = st is self.statements[-1]
                            rows = cur.fetchall() if last and cur.description else None
                            result = _cursor_result(cur, rows)
                except psycopg.Error as exc:
                    sent = _literal_lengths(psycopg.ClientCursor(conn), params)
                    raise MagicCellError(
                        _error_message(exc, self.sql, st, sent, self.first_line)
                    ) from exc
        return result

    async def async_(self, conn: psycopg.AsyncConnection[Any]) -> Any:
        from pgmonkey.frames import read_sql_async

        result: Any = None
        if self._outside_transaction() and not conn.autocommit:
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                await conn.set_autocommit(True)
                try:
                    return await self.async_(conn)
                finally:
                    await conn.set_autocommit(False)
        atx = conn.transaction() if self._one_transaction() else contextlib.nullcontext()
        async with atx:
            for st, params in zip(self.statements, self.params, strict=True):
                fast = st is self.statements[-1] and st.returns_rows
                try:
                    if fast:
                        result = await read_sql_async(st.query, conn, params, decimal=self.decimal)
                    else:
                        async with psycopg.AsyncClientCursor(conn) as acur:
                            await acur.execute(st.query, params)
                            last = st is self.statements[-1]
                            rows = await acur.fetchall() if last and acur.description else None
                            result = _cursor_result(acur, rows)
                except psycopg.Error as exc:
                    sent = _literal_lengths(psycopg.AsyncClientCursor(conn), params)
                    raise MagicCellError(
                        _error_message(exc, self.sql, st, sent, self.first_line)
                    ) from exc
        return result


def _literal_lengths(cur: Any, params: Mapping[str, Any] | None) -> dict[str, int] | None:
    """Length of each value as sent: bound client-side, as psycopg's quoted literal.

    Client-side binding (read_sql does the same, COPY takes no ``$n``) lets ``:name`` work
    in statements the server cannot bind parameters in: ``SET``, ``CREATE TABLE ... AS``.
    """
    if not params:
        return None
    try:
        return {name: len(cur.mogrify("%s", [value])) for name, value in params.items()}
    except Exception:
        return None


def _cursor_result(cur: Any, rows: list[Any] | None) -> Any:
    """The result of a statement judged not to return rows (DDL, DML without RETURNING)."""
    if cur.description is None or rows is None:
        return _Affected(cur.rowcount, cur.statusmessage or "")
    # Rows after all (CALL with OUT parameters): few rows, typed by psycopg.
    import pandas as pd

    return pd.DataFrame.from_records(rows, columns=[c.name for c in cur.description])


def _describe_connection(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return _connection_info(conn)


async def _describe_connection_async(conn: psycopg.AsyncConnection[Any]) -> dict[str, str]:
    return _connection_info(conn)


def _connection_info(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
) -> dict[str, str]:
    """What the banner and ``connections`` show: never the password (``info`` has none)."""
    info = conn.info
    return {
        "host": info.host,
        "port": str(info.port),
        "dbname": info.dbname,
        "user": info.user,
        "ssl": "on" if conn.pgconn.ssl_in_use else "off",
    }


def _query_parser(prog: str) -> _ArgumentParser:
    p = _ArgumentParser(prog=prog)
    p.add_argument("--out", help="also store the result in this variable")
    p.add_argument("--conn", help="connection name (default: the current one)")
    return p


_FORMATTER = DollarFormatter()


def _expander(shell: Any, ns: Mapping[str, Any]) -> Callable[[str], str]:
    """``{expr}`` / ``$var`` expansion of one argument, as IPython expands other magics' lines.

    The same formatter and namespace as ``InteractiveShell.var_expand``: the notebook's
    variables, the caller's local ones first. As there, a failure (an undefined name, a
    path with literal braces) leaves the text unchanged; ``{{`` and ``$$`` escape.
    """

    def expand(text: str) -> str:
        if shell is None or ("{" not in text and "$" not in text):
            return text
        try:
            return str(_FORMATTER.vformat(text, args=[], kwargs=dict(ns)))
        except Exception:
            return text

    return expand


def _split_words(text: str) -> list[str]:
    """Shell-like words, an unquoted ``{expr}`` kept whole (spaces and quotes included)."""
    if "{" not in text or "\ue000" in text:
        return _split_args(text)
    groups: list[str] = []
    out: list[str] = []
    i, quote = 0, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"':
                out.append(text[i : i + 2])
                i += 2
                continue
        elif ch in "'\"":
            quote = ch
        elif ch == "\\":
            out.append(text[i : i + 2])
            i += 2
            continue
        elif ch == "{":
            end = _closing_brace(text, i)
            if end > 0:
                out.append(f"\ue000{len(groups)}\ue001")
                groups.append(text[i : end + 1])
                i = end + 1
                continue
        out.append(ch)
        i += 1
    words = _split_args("".join(out))
    return [_GROUP.sub(lambda m: groups[int(m.group(1))], w) for w in words]


_GROUP = re.compile("\ue000(\\d+)\ue001")


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``{`` at *start* (Python strings skipped), or -1."""
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _split_args(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise MagicError(f"cannot parse arguments: {exc}") from None


def _config_type(path: str, resolve_env: bool) -> str:
    from pgmonkey.config import load_config, resolved_connection_type

    return resolved_connection_type(load_config(path, resolve_env=resolve_env))


def _cell_text(value: Any) -> str:
    return "" if value is None else str(value)


def _error_message(
    exc: BaseException,
    sql: str | None = None,
    statement: Statement | None = None,
    sent: Mapping[str, int] | None = None,
    first_line: int = 1,
) -> str:
    """One short message: the server's error and where it is in the cell."""
    name = type(exc).__name__
    if not isinstance(exc, psycopg.Error):
        return f"{name}: {exc}"
    diag = exc.diag
    primary = diag.message_primary or (str(exc).splitlines() or [""])[0]
    lines = [f"{name}: {primary}"]
    position = diag.statement_position
    if sql is not None and statement is not None and position and position.isdigit():
        # read_sql reruns a failing query as written, so positions are in the user's text.
        offset = statement.start + statement.source_offset(int(position), sent)
        line_no = sql.count("\n", 0, offset) + first_line
        line_start = sql.rfind("\n", 0, offset) + 1
        line_end = sql.find("\n", offset)
        text = sql[line_start : len(sql) if line_end < 0 else line_end]
        column = offset - line_start + 1
        lines[0] += f" (line {line_no}, column {column})"
        lines.append(f"  {text.rstrip()}")
        lines.append("  " + " " * (column - 1) + "^")
    if diag.message_detail:
        lines.append(f"DETAIL: {diag.message_detail}")
    if diag.message_hint:
        lines.append(f"HINT: {diag.message_hint}")
    return "\n".join(lines)


def _close_at_exit(ref: weakref.ReferenceType[PgMonkeyMagics]) -> None:
    magics = ref()
    if magics is not None:
        magics.close_all()


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics with *ipython*; ``%config PgMonkeyMagics`` shows the settings.

    Loading again (``%reload_ext pgmonkey``) keeps the notebook's named connections.
    """
    magics = next((c for c in ipython.configurables if isinstance(c, PgMonkeyMagics)), None)
    if magics is None:
        magics = PgMonkeyMagics(shell=ipython)
        ipython.configurables.append(magics)
    ipython.register_magics(magics)
