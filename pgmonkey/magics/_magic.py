"""The ``%pgmonkey`` / ``%%pgmonkey`` magic: entry point, dispatch, named connections.

A line whose first word is a command (``connect``, ``import``, ...) goes to that command's
function in a ``_cmd_*`` module; anything else is SQL, run by ``_run.Run``. This class keeps
the notebook's named connections (:class:`~pgmonkey.magics._cmd_connections.Entry`) and
offers the command modules a small interface: :meth:`entry`, :meth:`using`,
:meth:`get_manager`, :meth:`disconnect_entry`, :meth:`frame`, plus ``registry``, ``current``,
``loop`` and the traitlets settings.

Errors fail the cell (so ``Run All``, nbval and papermill stop) but show one short message,
the server's error and its position in the cell, instead of a Python traceback; set
``%config PgMonkeyMagics.short_errors = False`` to see the full traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import difflib
import importlib.util
import re
import time
import weakref
from collections import ChainMap
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from traitlets import Bool, Int

from pgmonkey.errors import MagicCellError, MagicError, PgMonkeyError

from . import (
    _cmd_config,
    _cmd_connections,
    _cmd_dask,
    _cmd_explain,
    _cmd_plot,
    _cmd_profile,
    _cmd_schema,
    _cmd_transfer,
    _complete,
    _show,
    _snippets,
)
from ._args import (
    LINE_OPTIONS,
    HelpShown,
    check_out_name,
    query_parser,
    split_args,
    split_words,
)
from ._cmd_connections import Entry
from ._display import error_message
from ._ipython import MagicsBase, line_cell_magic, magics_class, needs_local_scope, no_var_expand
from ._loop import LoopThread
from ._params import parse
from ._run import Affected, Run

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MagicCellError", "PgMonkeyMagics", "load_ipython_extension"]


@magics_class
class PgMonkeyMagics(MagicsBase):
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
    displaylimit = Int(
        0, help="Render at most this many rows of a result (0: no limit); the value keeps all."
    ).tag(config=True)
    footer = Bool(
        False, help="Show rows x columns, elapsed time and connection under each result."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.registry: dict[str, Entry] = {}
        self.current: str | None = None
        self.loop = LoopThread()
        self._manager: Any = None
        self.snippets: dict[str, _snippets.Snippet] = {}
        self.completer = _complete.install(self) if shell is not None else None
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
            %%pgmonkey [--out VAR] [--conn NAME] [--dask [--partition-on COL] [--partitions N]]
            INSERT INTO t VALUES (:a);      -- all statements in one transaction,
            SELECT * FROM t                 -- the last one's rows returned

        Commands (their file and table arguments expand ``{expr}`` and ``$var`` as in
        other magics; SQL, ``export --query`` included, is never expanded)::

            %pgmonkey config [config.yaml] [--resolve-env]
            %pgmonkey serverconfig [config.yaml] | audit [config.yaml]
            %pgmonkey import data.csv --table schema.table [--if-exists fail|append|replace]
            %pgmonkey export schema.table out.csv [--partitions N]
            %pgmonkey export --query "SELECT ..." out.csv
            %pgmonkey tables [schema] | columns schema.table
            %pgmonkey persist DF schema.table [--if-exists fail|append|replace]

        Looking at data (aggregates run in SQL; only they travel)::

            %pgmonkey explain [--analyze] [--buffers] SQL     (or %%pgmonkey explain)
            %pgmonkey profile TABLE [--schema S]              (per-column statistics)
            %pgmonkey plot hist|box|bar|line TABLE_OR_QUERY --column C [--by G] [--bins N]

        Snippets (saved queries, composed as CTEs)::

            %%pgmonkey --save NAME [--no-execute]     then  %%pgmonkey --with NAME
            %pgmonkey snippets [--delete NAME]

        ``--out-format arrow`` (or ``polars``) returns the rows as a ``pyarrow.Table`` (a
        ``polars.DataFrame``), read without going through pandas (``pgmonkey.read_arrow``).

        With ``--dask`` a query gives a Dask DataFrame (``pgmonkey.dask.read_sql`` on the
        connection's config: one SELECT, read by the workers); ``persist`` takes one too.
        """
        # Local variables first (a magic called inside a function), then the notebook's.
        user_ns = self.shell.user_ns if self.shell is not None else {}
        namespace = ChainMap(local_ns, user_ns) if local_ns is not None else ChainMap(user_ns)
        try:
            if cell is None:
                return self._line(line, namespace)
            return self._cell(line, cell, namespace)
        except HelpShown:
            return None
        except (PgMonkeyError, psycopg.Error, OSError) as exc:
            if isinstance(exc, MagicCellError):
                if not self.short_errors and exc.__cause__ is not None:
                    raise exc.__cause__ from None
                raise
            if not self.short_errors:
                raise
            raise MagicCellError(error_message(exc)) from exc

    # -- dispatch -------------------------------------------------------------------------

    def _line(self, line: str, ns: Mapping[str, Any]) -> Any:
        stripped = line.strip()
        if not stripped:
            raise MagicError("nothing to do: give a command or SQL (see %pgmonkey?)")
        first = stripped.split(None, 1)[0].lower()
        if first in _SQL_COMMANDS:
            return _SQL_COMMANDS[first](self, stripped[len(first) :], None, ns)
        command = _COMMANDS.get(first)
        if command is not None:
            return command(self, split_words(stripped)[1:], ns)
        m = LINE_OPTIONS.fullmatch(line)
        opts = query_parser("%pgmonkey").parse_args(split_args(m.group(1)) if m else [])
        if m:
            line = m.group(2)
        _check_option(line)
        sql, added = _snippets.prepare(self, opts, line)
        if sql is None:
            return None
        try:
            return self._query_of(opts, sql, ns, first_line=1 - added)
        except MagicCellError as exc:  # the server's error, placed in the line
            word = (line.split(None, 1) or [""])[0]  # after the options, if any
            meant = _command_meant(word, exc.__cause__)
            if meant is None:
                raise
            raise MagicError(
                f"{word!r} is no %pgmonkey command, and the server read it as SQL: "
                f"did you mean %pgmonkey {meant}?"
            ) from exc

    def _cell(self, line: str, cell: str, ns: Mapping[str, Any]) -> Any:
        first = (line.split(None, 1) or [""])[0].lower()
        if first in _SQL_COMMANDS:
            return _SQL_COMMANDS[first](self, line.strip()[len(first) :], cell, ns)
        opts = query_parser("%%pgmonkey").parse_args(split_args(line))
        sql, added = _snippets.prepare(self, opts, cell)
        if sql is None:
            return None
        # Error positions count the %%pgmonkey line, as the notebook shows the cell.
        return self._query_of(opts, sql, ns, first_line=2 - added)

    def _query_of(self, opts: Any, sql: str, ns: Mapping[str, Any], first_line: int) -> Any:
        """:meth:`query` with the options of a query line (``query_parser``)."""
        return self.query(
            sql,
            ns,
            conn_name=opts.conn,
            out=opts.out,
            first_line=first_line,
            dask=_dask(opts),
            output=opts.out_format,
        )

    # -- the connection registry ----------------------------------------------------------

    def get_manager(self) -> Any:
        if self._manager is None:
            from pgmonkey.manager import PGConnectionManager

            self._manager = PGConnectionManager()
        return self._manager

    def entry(self, name: str | None) -> Entry:
        if name is None:
            if self.current is None:
                raise MagicError("no connection: run %pgmonkey connect config.yaml first")
            name = self.current
        try:
            return self.registry[name]
        except KeyError:
            known = ", ".join(map(repr, self.registry)) or "none"
            raise MagicError(f"no connection named {name!r} (connections: {known})") from None

    def disconnect_entry(self, entry: Entry, timeout: float | None = None) -> None:
        self.registry.pop(entry.name, None)
        if self.current == entry.name:
            self.current = next(iter(self.registry), None)
        if any(e.obj is entry.obj for e in self.registry.values()):
            return  # the same cached object is still in use under another name
        if entry.is_async:

            async def close() -> None:
                await entry.obj.disconnect()

            self.loop.run(close(), timeout)
        else:
            entry.obj.disconnect()

    def close_all(self) -> None:
        """Disconnect every connection and stop the private event loop (bounded in time)."""
        for entry in list(self.registry.values()):
            with contextlib.suppress(Exception):
                self.disconnect_entry(entry, timeout=5.0)
        self.loop.stop()

    def using(
        self,
        entry: Entry,
        sync: Callable[[psycopg.Connection[Any]], Any],
        async_: Callable[[psycopg.AsyncConnection[Any]], Awaitable[Any]],
    ) -> Any:
        """Call *sync* or *async_* with a connection of *entry* (a transaction block)."""
        if entry.is_async:

            async def run() -> Any:
                async with entry.obj as aconn:
                    return await async_(aconn)

            return self.loop.run(run())
        with entry.obj as conn:
            return sync(conn)

    # -- queries --------------------------------------------------------------------------

    def query(
        self,
        sql: str,
        ns: Mapping[str, Any],
        conn_name: str | None,
        out: str | None,
        first_line: int = 1,
        dask: dict[str, Any] | None = None,
        output: str = "pandas",
    ) -> Any:
        if out is not None:
            check_out_name(out)
        if output != "pandas":
            if dask is not None:
                raise MagicError(f"--out-format {output} does not go with --dask")
            if output == "polars" and importlib.util.find_spec("polars") is None:
                raise MagicError("--out-format polars needs polars: pip install 'pgmonkey[polars]'")
        statements = parse(sql)
        if not statements:
            raise MagicError("no SQL statement to run")
        # Look every variable up before anything runs: a typo must not half-run a cell.
        params = [st.params(ns) for st in statements]
        entry = self.entry(conn_name)
        started = time.perf_counter()
        if dask is not None:
            result = _cmd_dask.read(entry, statements, params, dask)
        else:
            run = Run(sql, statements, params, self.decimal, first_line, ns, output)
            result = self.using(entry, run.sync, run.async_)
        _show.remember(self, result, entry.name, time.perf_counter() - started)
        if isinstance(result, Affected):
            if self.feedback:
                print(result.message())
            result = None
        if out is not None and self.shell is not None:
            self.shell.user_ns[out] = result
        return result

    def frame(self, name: str | None, query: str, params: dict[str, Any]) -> pd.DataFrame:
        """A catalog query through the same fast path as user queries."""
        st = parse(query)[0]
        run = Run(query, [st], [params], self.decimal)
        result = self.using(self.entry(name), run.sync, run.async_)
        assert not isinstance(result, Affected)
        return result


def _dask(opts: Any) -> dict[str, Any] | None:
    """The Dask options of a query (None: an ordinary query)."""
    if not opts.dask:
        if opts.partition_on is not None or opts.partitions is not None:
            raise MagicError("--partition-on and --partitions go with --dask")
        return None
    return {"partition_on": opts.partition_on, "partitions": opts.partitions}


_COMMANDS: dict[str, Callable[[PgMonkeyMagics, list[str], Mapping[str, Any]], Any]] = {
    "connect": _cmd_connections.connect,
    "connections": _cmd_connections.connections,
    "use": _cmd_connections.use,
    "disconnect": _cmd_connections.disconnect,
    "config": _cmd_config.show_config,
    "serverconfig": _cmd_config.serverconfig,
    "audit": _cmd_config.audit,
    "import": _cmd_transfer.import_csv,
    "export": _cmd_transfer.export_csv,
    "tables": _cmd_schema.tables,
    "columns": _cmd_schema.columns,
    "persist": _cmd_transfer.persist,
    "profile": _cmd_profile.profile,
    "snippets": _snippets.snippets,
}

# Commands over SQL: they get the text after their name as written (never split like a
# shell, so the SQL keeps its quotes) and, in a %%pgmonkey cell, the cell's body.
_SQL_COMMANDS: dict[str, Callable[[PgMonkeyMagics, str, str | None, Mapping[str, Any]], Any]] = {
    "explain": _cmd_explain.explain,
    "plot": _cmd_plot.plot,
}


_OPTION = re.compile(r"\s*(--[A-Za-z][\w-]*)")


def _check_option(line: str) -> None:
    """A line whose first word looks like an option it does not know (``--outt x SELECT``)
    is a typo, not SQL: the line would be one comment, with no statement to run."""
    m = _OPTION.match(line)
    if m is None or parse(line):
        return
    actions = query_parser("%pgmonkey")._actions
    option = m.group(1)
    for action in actions:
        if option in action.option_strings:  # known, with nothing after it to run
            if action.nargs != 0 and not line[m.end() :].strip():
                raise MagicError(f"option {option} needs a value (see %pgmonkey?)")
            return
    known = [a for action in actions for a in action.option_strings]
    close = difflib.get_close_matches(option, known, n=1)
    hint = f"did you mean {close[0]}?" if close else "see %pgmonkey?"
    raise MagicError(f"unknown option {m.group(1)!r}: {hint}")


def _command_meant(first: str, exc: BaseException | None) -> str | None:
    """The command a line's first word misspells, when the server choked on that word."""
    if not isinstance(exc, psycopg.errors.SyntaxError):
        return None
    if exc.diag.message_primary != f'syntax error at or near "{first}"':
        return None
    commands = [*_COMMANDS, *_SQL_COMMANDS]
    close = difflib.get_close_matches(first.lower(), commands, n=1, cutoff=0.75)
    return close[0] if close else None


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
