"""The command tree fire walks: ``pgconfig``, ``sandbox`` and the top-level commands."""

from __future__ import annotations

import inspect
import os
import sys
from typing import TYPE_CHECKING, Any

from ._args import (
    _LIBRARIES,
    EXIT_ATTENTION,
    PROG,
    _choice,
    _command,
    _config_path,
    _connection_type,
    _count,
    _Exit,
    _Failure,
    _flag,
    _info,
    _load,
    _out,
    _UsageError,
)

if TYPE_CHECKING:
    from pgmonkey.manager import PGConnectionManager


class PgConfig:
    """Create a config file, test it against the server, or generate code for it."""

    @_command
    def create(self, type: Any = "pg", filepath: Any = None, connconfig: Any = None) -> None:
        """Write the full, commented config template to --filepath (never overwrites).

        Args:
          type: the database type; only 'pg' (PostgreSQL).
          filepath: where to write the new config file.
          connconfig: alias of --filepath.
        """
        _choice("type", type, ("pg",))
        path = _config_path(connconfig, filepath)
        from pgmonkey.config import config_template

        text = config_template()
        try:
            # O_EXCL: an existing file is never replaced. 0600: the template holds a password.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise _Failure(f"{path!r} already exists: not overwritten") from None
        except OSError as e:
            raise _Failure(f"cannot create {path!r}: {e.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        _out(f"wrote the config template to {path!r}: edit it, then run")
        _out(f"  {PROG} pgconfig test --connconfig {path}")

    @_command
    def test(
        self,
        connconfig: Any = None,
        filepath: Any = None,
        connection_type: Any = None,
        resolve_env: Any = False,
    ) -> None:
        """Connect with the config and report server, user, database, SSL and round trip.

        Args:
          connconfig: the pgmonkey config file (alias: --filepath).
          filepath: alias of --connconfig.
          connection_type: normal, pool, async or async_pool (default: the config's).
          resolve_env: resolve ${VAR}, from_env and from_file references in the config.
        """
        path = _config_path(connconfig, filepath)
        ctype_arg = _connection_type(connection_type)
        resolve = _flag("resolve-env", resolve_env)
        from pgmonkey.config import ASYNC_CONNECTION_TYPES, resolved_connection_type
        from pgmonkey.connections._probe import bounded_connect
        from pgmonkey.manager import PGConnectionManager

        cfg = _load(path, resolve)
        ctype = resolved_connection_type(cfg, ctype_arg)
        manager = PGConnectionManager()
        with bounded_connect():
            if ctype in ASYNC_CONNECTION_TYPES:
                import asyncio

                facts = asyncio.run(_probe_async(manager, path, ctype, resolve))
            else:
                facts = _probe_sync(manager, path, ctype, resolve)
        _out(_test_report(ctype, facts))

    @_command
    def generate_code(
        self,
        connconfig: Any = None,
        filepath: Any = None,
        connection_type: Any = None,
        library: Any = "pgmonkey",
        resolve_env: Any = False,
    ) -> None:
        """Print a runnable Python script for the config (only the script goes to stdout).

        Args:
          connconfig: the pgmonkey config file (alias: --filepath).
          filepath: alias of --connconfig.
          connection_type: normal, pool, async or async_pool (default: the config's).
          library: pgmonkey (PGConnectionManager) or psycopg (psycopg / psycopg_pool).
          resolve_env: the script resolves ${VAR}, from_env and from_file references.
        """
        path = _config_path(connconfig, filepath)
        ctype_arg = _connection_type(connection_type)
        lib = _choice("library", library, _LIBRARIES)
        resolve = _flag("resolve-env", resolve_env)
        from pgmonkey.codegen import generate_code
        from pgmonkey.config import resolved_connection_type

        cfg = _load(path, resolve)  # a config that does not load gets no code
        ctype = resolved_connection_type(cfg, ctype_arg)
        sys.stdout.write(generate_code(path, ctype, lib, resolve_env=resolve))


# The 4.0 spelling: fire would list the method as generate_code and accept both spellings
# on the command line, but its help should show the one users type.
setattr(PgConfig, "generate-code", PgConfig.generate_code)


delattr(PgConfig, "generate_code")


def _probe_sync(manager: PGConnectionManager, path: str, ctype: str, resolve: bool) -> Any:
    from pgmonkey.connections._probe import probe

    try:
        with manager.get_database_connection(path, ctype, resolve_env=resolve) as conn:
            return probe(conn, rounds=3)
    finally:
        manager.clear_cache()


async def _probe_async(manager: PGConnectionManager, path: str, ctype: str, resolve: bool) -> Any:
    from pgmonkey.connections._probe import probe_async

    try:
        obj = await manager.get_database_connection(path, ctype, resolve_env=resolve)
        async with obj as conn:
            return await probe_async(conn, rounds=3)
    finally:
        await manager.clear_cache_async()


def _test_report(ctype: str, f: Any) -> str:
    return "\n".join(
        [
            f"connection test passed ({ctype})",
            f"  server:     PostgreSQL {f.version}",
            f"  host:       {f.where}",
            f"  user:       {f.user}",
            f"  database:   {f.database}",
            f"  ssl:        {f.ssl_text}",
            f"  round trip: {f.rtt * 1000:.2f} ms (SELECT 1)",
        ]
    )


class SandboxCommands:
    """A throwaway PostgreSQL on 127.0.0.1 with ready configs (password, SSL, certificate)."""

    @_command
    def start(
        self, dir: Any = None, port: Any = None, standbys: Any = 0, pgbouncer: Any = False
    ) -> None:
        """Start the sandbox (or show the one already running) and list its configs.

        Args:
          dir: the sandbox directory (default: $PGMONKEY_SANDBOX_DIR or ~/.pgmonkey/sandbox).
          port: the port to listen on (default: a free one).
          standbys: streaming-replication standbys to start next to the primary.
          pgbouncer: also start a PgBouncer in front (needs the pgbouncer binary).
        """
        port = _count("port", port)
        standbys = _count("standbys", standbys) or 0
        bouncer = _flag("pgbouncer", pgbouncer)
        from pgmonkey import sandbox

        kwargs: dict[str, Any] = {}
        if standbys:
            kwargs["standbys"] = standbys
        if bouncer:
            kwargs["pgbouncer"] = True
        if kwargs:
            accepted = inspect.signature(sandbox.start).parameters
            missing = [k for k in kwargs if k not in accepted]
            if missing:
                raise _Failure(f"this pgmonkey's sandbox does not support --{missing[0]} yet")
        sb = sandbox.start(_opt_dir(dir), port, **kwargs)
        _out(sb.describe())

    @_command
    def status(self, dir: Any = None) -> None:
        """Show the running sandbox; exit 1 when none runs.

        Args:
          dir: the sandbox directory (default: $PGMONKEY_SANDBOX_DIR or ~/.pgmonkey/sandbox).
        """
        from pgmonkey import sandbox

        sb = sandbox.status(_opt_dir(dir))
        if sb is None:
            raise _Failure("no sandbox is running (start one with `pgmonkey sandbox start`)")
        _out(sb.describe())

    @_command
    def stop(self, dir: Any = None) -> None:
        """Stop the sandbox and remove its data and configs.

        Args:
          dir: the sandbox directory (default: $PGMONKEY_SANDBOX_DIR or ~/.pgmonkey/sandbox).
        """
        from pgmonkey import sandbox

        stopped = sandbox.stop(_opt_dir(dir))
        _out("sandbox stopped" if stopped else "no sandbox was running")


def _opt_dir(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or value == "":
        raise _UsageError("--dir needs a directory name")
    return str(value)


class PgMonkey:
    """pgmonkey: one YAML config, four PostgreSQL connection types.

    Exit codes: 0 success, 1 failure (one line on stderr), 2 usage error,
    3 `pgserverconfig --audit --strict` found something that needs attention.
    `pgmonkey COMMAND --help` shows a command's flags; `pgmonkey --version` the version.
    """

    def __init__(self) -> None:
        self.pgconfig = PgConfig()
        self.sandbox = SandboxCommands()

    @_command
    def pgserverconfig(
        self,
        filepath: Any = None,
        connconfig: Any = None,
        audit: Any = False,
        strict: Any = False,
        resolve_env: Any = False,
    ) -> None:
        """Server settings (pg_hba.conf, postgresql.conf) this config needs; --audit checks them.

        Args:
          filepath: the pgmonkey config file (alias: --connconfig).
          connconfig: alias of --filepath.
          audit: connect and compare with pg_settings and pg_hba_file_rules (read-only).
          strict: with --audit, exit 3 when a row is not OK or could not be checked (for CI).
          resolve_env: resolve ${VAR}, from_env and from_file references in the config.
        """
        path = _config_path(connconfig, filepath)
        do_audit = _flag("audit", audit)
        be_strict = _flag("strict", strict)
        resolve = _flag("resolve-env", resolve_env)
        if be_strict and not do_audit:
            raise _UsageError("--strict goes with --audit")
        from pgmonkey import serveradvice

        cfg = _load(path, resolve)
        if not do_audit:
            _out(serveradvice.recommend(cfg).to_text())
            return
        report = serveradvice.audit(cfg)
        _out(report.to_text())
        if be_strict and report.needs_attention:
            _info("audit: some items need attention (--strict)")
            raise _Exit(EXIT_ATTENTION)

    @_command
    def pgimport(
        self,
        table: Any = None,
        connconfig: Any = None,
        filepath: Any = None,
        import_file: Any = None,
        resolve_env: Any = False,
        if_exists: Any = None,
    ) -> None:
        """Import a CSV file into a table (the first run writes settings to review).

        Args:
          table: the target table, schema.table or table.
          connconfig: the pgmonkey config file (alias: --filepath).
          filepath: alias of --connconfig.
          import_file: the CSV (or text) file to import.
          resolve_env: resolve ${VAR}, from_env and from_file references in the config.
          if_exists: for a table that already holds rows: fail (the settings' default),
            append or replace; overrides the settings file's if_exists for this run.
        """
        name = _table(table)
        path = _config_path(connconfig, filepath)
        if import_file is None or isinstance(import_file, bool):
            raise _UsageError("missing --import_file: the CSV file to import")
        resolve = _flag("resolve-env", resolve_env)
        from pgmonkey.transfer import import_csv
        from pgmonkey.transfer._settings import IF_EXISTS

        if if_exists is not None and if_exists not in IF_EXISTS:
            raise _UsageError(
                f"--if_exists must be one of {', '.join(IF_EXISTS)}, got {if_exists!r}"
            )
        cfg = _load(path, resolve)
        result = import_csv(str(import_file), name, cfg, if_exists=if_exists)
        _out(result.report())

    @_command
    def pgexport(
        self,
        table: Any = None,
        connconfig: Any = None,
        filepath: Any = None,
        export_file: Any = None,
        query: Any = None,
        resolve_env: Any = False,
        partitions: Any = None,
    ) -> None:
        """Export a table (or a --query's rows) to a CSV file (default: <table>.csv).

        Args:
          table: the table to export, schema.table or table.
          connconfig: the pgmonkey config file (alias: --filepath).
          filepath: alias of --connconfig.
          export_file: the CSV file to write (default for --table: the table name, e.g.
            my_table.csv; --query needs one).
          query: export the rows of this SELECT instead of a table (with --export_file).
          resolve_env: resolve ${VAR}, from_env and from_file references in the config.
          partitions: read the --table in this many ranges of its blocks at once, each on a
            connection of its own, in one snapshot, on PostgreSQL 14 and later; for a big
            table when the server has cores to spare. The file is the same.
        """
        path = _config_path(connconfig, filepath)
        resolve = _flag("resolve-env", resolve_env)
        ranges = _count("partitions", partitions)
        if ranges is not None and ranges < 1:
            raise _UsageError(f"--partitions must be 1 or more, got {partitions!r}")
        if table is None and query is None:
            raise _UsageError("give either --table or --query: what to export")
        if table is not None and query is not None:
            raise _UsageError(
                "give either --table or --query, not both (to export some of a table's rows:"
                ' --query "SELECT ... FROM the_table WHERE ..." --export_file out.csv)'
            )
        if query is not None and (not isinstance(query, str) or not query.strip()):
            raise _UsageError(f"--query needs a SELECT statement, got {query!r}")
        if query is not None and ranges is not None and ranges > 1:
            raise _UsageError(
                "--partitions splits a --table by its blocks: a --query's rows are exported"
                " on one connection"
            )
        name = _table(table) if table is not None else None
        if query is not None and export_file is None:
            raise _UsageError(
                "--query needs --export_file FILE: only a --table export has a default"
                " file name (<table>.csv)"
            )
        if isinstance(export_file, bool) or export_file == "":
            raise _UsageError("--export_file needs a file name")
        from pgmonkey.transfer import export_csv

        cfg = _load(path, resolve)
        out = str(export_file) if export_file is not None else None
        result = export_csv(cfg, out, table=name, query=query, partitions=ranges)
        _out(_report(result))


def _report(result: Any) -> str:
    report = getattr(result, "report", None)
    return str(report() if callable(report) else result)


def _table(value: Any) -> str:
    if value is None or isinstance(value, bool) or value == "":
        raise _UsageError("missing --table: schema.table or table")
    return str(value)
