"""The ``pgmonkey`` command (python-fire): a thin face over the library.

Commands and flags are the 4.0 ones, spelled as the 4.0 documentation spells them::

    pgmonkey pgconfig create --type pg --filepath config.yaml
    pgmonkey pgconfig test --connconfig config.yaml [--connection-type pool] [--resolve-env]
    pgmonkey pgconfig generate-code --filepath config.yaml [--connection-type T] [--library psycopg]
    pgmonkey pgserverconfig --filepath config.yaml [--audit [--strict]] [--resolve-env]
    pgmonkey pgimport --table public.t --connconfig config.yaml --import_file data.csv
    pgmonkey pgexport --table public.t --connconfig config.yaml [--export_file out.csv]
    pgmonkey sandbox start|status|stop [--dir DIR] [--port N]

``--connconfig`` and ``--filepath`` are aliases everywhere. Exit codes: 0 success, 1 an
expected failure (bad config, refused connection, missing table: one line on stderr, no
traceback), 2 a usage error, 3 ``pgserverconfig --audit --strict`` found something to look at.

Nothing heavy is imported here: ``pgmonkey --help`` loads neither pandas nor IPython.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pgmonkey.manager import PGConnectionManager

__all__ = ["main", "run"]

PROG = "pgmonkey"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_ATTENTION = 3

_LIBRARIES = ("pgmonkey", "psycopg")
_TYPES = ("normal", "pool", "async", "async_pool")


class _UsageError(Exception):
    """The command line is wrong (exit 2)."""


class _Failure(Exception):
    """An expected failure the CLI itself detects (exit 1)."""


class _Exit(Exception):
    """Leave with this code, the message (if any) being printed already."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# --- argument helpers ---------------------------------------------------------------------

_F = TypeVar("_F", bound=Callable[..., Any])


class _Shown:
    """A type as fire's help shows it (it prints the repr of an annotation)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


_SHOWN = {
    "connconfig": "PATH",
    "filepath": "PATH",
    "import_file": "PATH",
    "export_file": "PATH",
    "dir": "PATH",
    "connection_type": "str",
    "library": "pgmonkey|psycopg",
    "type": "pg",
    "table": "SCHEMA.TABLE",
    "query": "SQL",
    "port": "int",
    "standbys": "int",
}


def _command(fn: _F) -> _F:
    """Show fire readable types: the static annotations (``Any``) mean nothing to a user."""
    names = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    fn.__annotations__ = {n: _Shown(_SHOWN[n]) for n in names if n in _SHOWN}
    return fn


def _config_path(connconfig: Any, filepath: Any) -> str:
    """``--connconfig`` and ``--filepath`` are one option under two names."""
    if connconfig is None and filepath is None:
        raise _UsageError("missing --connconfig (or --filepath): the config file to use")
    if connconfig is not None and filepath is not None and str(connconfig) != str(filepath):
        raise _UsageError("--connconfig and --filepath are the same option: give only one")
    value = connconfig if connconfig is not None else filepath
    if value is True or value == "":
        raise _UsageError("--connconfig (or --filepath) needs a file name")
    return str(value)


def _flag(name: str, value: Any) -> bool:
    # fire turns `--flag` into True and `--noflag` into False; `--flag yes` is a string.
    if isinstance(value, bool):
        return value
    raise _UsageError(f"--{name} takes no value (use --{name} or --no{name}), got {value!r}")


def _choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _UsageError(f"--{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _connection_type(value: Any) -> str | None:
    return None if value is None else _choice("connection-type", value, _TYPES)


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _info(text: str) -> None:
    sys.stderr.write(f"{PROG}: {text}\n")


def _load(path: str, resolve_env: bool) -> dict[str, Any]:
    from pgmonkey.config import load_config

    return load_config(path, resolve_env=resolve_env)


# --- pgconfig -----------------------------------------------------------------------------


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
        from pgmonkey.config import resolved_connection_type
        from pgmonkey.manager import PGConnectionManager

        cfg = _load(path, resolve)
        ctype = resolved_connection_type(cfg, ctype_arg)
        manager = PGConnectionManager()
        if ctype in ("async", "async_pool"):
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

_PROBE_SQL = (
    "SELECT current_setting('server_version'), current_user, current_database(),"
    " (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()),"
    " (SELECT cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid())"
)


def _facts(conn: Any, row: Sequence[Any], rtt: float) -> dict[str, Any]:
    return {
        "version": row[0],
        "user": row[1],
        "database": row[2],
        "ssl": bool(conn.pgconn.ssl_in_use),
        "protocol": row[3],
        "cipher": row[4],
        "host": conn.info.host,
        "port": conn.info.port,
        "rtt": rtt,
    }


def _probe_sync(
    manager: PGConnectionManager, path: str, ctype: str, resolve: bool
) -> dict[str, Any]:
    try:
        obj = manager.get_database_connection(path, ctype, resolve_env=resolve)
        with obj as conn:
            rtt = float("inf")
            for _ in range(3):  # the best of three: the first may pay for a cold cache
                t0 = time.perf_counter()
                conn.execute("SELECT 1").fetchone()
                rtt = min(rtt, time.perf_counter() - t0)
            row = conn.execute(_PROBE_SQL).fetchone()
            return _facts(conn, row, rtt)
    finally:
        manager.clear_cache()


async def _probe_async(
    manager: PGConnectionManager, path: str, ctype: str, resolve: bool
) -> dict[str, Any]:
    try:
        obj = await manager.get_database_connection(path, ctype, resolve_env=resolve)
        async with obj as conn:
            rtt = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                await (await conn.execute("SELECT 1")).fetchone()
                rtt = min(rtt, time.perf_counter() - t0)
            row = await (await conn.execute(_PROBE_SQL)).fetchone()
            return _facts(conn, row, rtt)
    finally:
        await manager.clear_cache_async()


def _test_report(ctype: str, f: dict[str, Any]) -> str:
    if f["ssl"]:
        detail = ", ".join(str(x) for x in (f["protocol"], f["cipher"]) if x)
        ssl = f"on ({detail})" if detail else "on"
    else:
        ssl = "off"
    where = f["host"] if str(f["host"]).startswith("/") else f"{f['host']}:{f['port']}"
    return "\n".join(
        [
            f"connection test passed ({ctype})",
            f"  server:     PostgreSQL {f['version']}",
            f"  host:       {where}",
            f"  user:       {f['user']}",
            f"  database:   {f['database']}",
            f"  ssl:        {ssl}",
            f"  round trip: {f['rtt'] * 1000:.2f} ms (SELECT 1)",
        ]
    )


# --- sandbox ------------------------------------------------------------------------------


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
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
            raise _UsageError(f"--port must be a number, got {port!r}")
        if isinstance(standbys, bool) or not isinstance(standbys, int) or standbys < 0:
            raise _UsageError(f"--standbys must be a number >= 0, got {standbys!r}")
        bouncer = _flag("pgbouncer", pgbouncer)
        from pgmonkey import sandbox

        kwargs: dict[str, Any] = {}
        if standbys:
            kwargs["standbys"] = standbys
        if bouncer:
            kwargs["pgbouncer"] = True
        if kwargs:
            import inspect

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


# --- the top level ------------------------------------------------------------------------


class PgMonkey:
    """pgmonkey: one YAML config, four PostgreSQL connection types.

    Exit codes: 0 success, 1 failure (one line on stderr), 2 usage error,
    3 `pgserverconfig --audit --strict` found something that needs attention.
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
    ) -> None:
        """Import a CSV file into a table (the first run writes settings to review).

        Args:
          table: the target table, schema.table or table.
          connconfig: the pgmonkey config file (alias: --filepath).
          filepath: alias of --connconfig.
          import_file: the CSV (or text) file to import.
          resolve_env: resolve ${VAR}, from_env and from_file references in the config.
        """
        name = _table(table)
        path = _config_path(connconfig, filepath)
        if import_file is None or isinstance(import_file, bool):
            raise _UsageError("missing --import_file: the CSV file to import")
        resolve = _flag("resolve-env", resolve_env)
        from pgmonkey.transfer import import_csv

        cfg = _load(path, resolve)
        result = import_csv(str(import_file), name, cfg)
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
    ) -> None:
        """Export a table (or --query) to a CSV file (default: <table>.csv).

        Args:
          table: the table to export, schema.table or table.
          connconfig: the pgmonkey config file (alias: --filepath).
          filepath: alias of --connconfig.
          export_file: the CSV file to write (default: the table name, e.g. my_table.csv).
          query: export the rows of this SELECT instead of a table.
          resolve_env: resolve ${VAR}, from_env and from_file references in the config.
        """
        path = _config_path(connconfig, filepath)
        resolve = _flag("resolve-env", resolve_env)
        if (table is None) == (query is None):
            raise _UsageError("give either --table or --query")
        if query is not None and (not isinstance(query, str) or not query.strip()):
            raise _UsageError(f"--query needs a SELECT statement, got {query!r}")
        name = _table(table) if table is not None else None
        if query is not None and export_file is None:
            raise _UsageError("--query needs --export_file")
        if isinstance(export_file, bool):
            raise _UsageError("--export_file needs a file name")
        from pgmonkey.transfer import export_csv

        cfg = _load(path, resolve)
        out = str(export_file) if export_file is not None else None
        result = export_csv(cfg, out, table=name, query=query)
        _out(_report(result))


def _report(result: Any) -> str:
    report = getattr(result, "report", None)
    return str(report() if callable(report) else result)


def _table(value: Any) -> str:
    if value is None or isinstance(value, bool) or value == "":
        raise _UsageError("missing --table: schema.table or table")
    if isinstance(value, (tuple, list)):  # fire reads `a,b` as a tuple
        raise _UsageError(f"--table takes one table name, got {value!r}")
    return str(value)


# --- running ------------------------------------------------------------------------------

_SECRET = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _one_line(error: BaseException) -> str:
    """The error as one line, never a password (libpq messages span lines)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return _SECRET.sub(r"\1***", text)


def _is_expected(error: BaseException) -> bool:
    from pgmonkey.errors import PgMonkeyError

    if isinstance(error, (PgMonkeyError, _Failure)):
        return True
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(error, psycopg.Error):
        return True  # refused connection, wrong password, missing table, ...
    return isinstance(error, OSError)


_FLAG = re.compile(r"^--?[A-Za-z_]")


def _preflight(component: object, args: Sequence[str]) -> None:
    """Refuse unknown flags and extra arguments *before* the command runs.

    fire calls the command first and only then complains about what it could not use
    (``pgserverconfig --filepath c.yaml --adit`` would print the advice, then exit 2).
    """
    import inspect

    if "--" in args:  # what follows is fire's own (--help, --trace, ...)
        args = args[: args.index("--")]
    target: Any = component
    i = 0
    while i < len(args) and not _FLAG.match(args[i]) and not inspect.ismethod(target):
        word = args[i]
        member = getattr(target, word, None)
        if member is None:
            member = getattr(target, word.replace("-", "_"), None)
        if member is None or word.startswith("_"):
            return  # fire reports the unknown command
        target, i = member, i + 1
    if not inspect.ismethod(target):
        return
    params = [
        p
        for p in inspect.signature(target).parameters.values()
        if p.kind == p.POSITIONAL_OR_KEYWORD
    ]
    names = {p.name: p for p in params}
    rest = list(args[i:])
    given: set[str] = set()
    positional = 0
    j = 0
    while j < len(rest):
        token = rest[j]
        j += 1
        if token in ("-h", "--help"):
            return
        if not _FLAG.match(token):
            positional += 1
            continue
        key = token.lstrip("-").split("=", 1)[0].replace("-", "_")
        if key not in names and key.startswith("no") and key[2:] in names:
            given.add(key[2:])
            continue
        if key not in names and len(key) == 1:
            short = [n for n in names if n.startswith(key)]
            key = short[0] if len(short) == 1 else key
        if key not in names:
            flags = ", ".join(
                "--" + n.replace("_", "-") if n in _DASHED else "--" + n for n in names
            )
            raise _UsageError(f"unknown option {token!r}: expected {flags}")
        given.add(key)
        if "=" not in token and j < len(rest) and not _FLAG.match(rest[j]):
            j += 1  # its value
    if positional > len([n for n in names if n not in given]):
        raise _UsageError(f"too many arguments: {' '.join(rest)!r}")


# Flags the reference spells with a dash (the others, like --import_file, with an underscore).
_DASHED = frozenset({"connection_type", "resolve_env"})


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command line (``argv`` without the program name); return the exit code."""
    import fire

    args = list(sys.argv[1:] if argv is None else argv)
    # fire's help asks IPython's inspector for docstrings when IPython is installed: 0.7 s
    # at every --help, against S8's promise. Its own fallback gives the same help text, and
    # no command needs IPython (tqdm then draws a terminal progress bar, as it should).
    hide_ipython = "IPython" not in sys.modules
    if hide_ipython:
        sys.modules["IPython"] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        component = PgMonkey()
        _preflight(component, args)
        fire.Fire(component, command=args, name=PROG)
    except fire.core.FireExit as e:  # help (0) and fire's own usage errors (2)
        return int(e.code or 0)
    except _Exit as e:
        return e.code
    except _UsageError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        sys.stderr.write(f"{PROG}: see `{PROG} {_words(args)} --help`\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as e:
        if not _is_expected(e):
            raise  # a bug: keep the traceback
        sys.stderr.write(f"{PROG}: error: {_one_line(e)}\n")
        return EXIT_FAILURE
    finally:
        if hide_ipython and sys.modules.get("IPython", False) is None:
            del sys.modules["IPython"]
    return 0


def _words(args: Sequence[str]) -> str:
    words = [a for a in args[:2] if not a.startswith("-")]
    if words[:1] != ["pgconfig"] and words[:1] != ["sandbox"]:
        words = words[:1]
    return " ".join(words)


def main() -> None:
    """Console entry point (``pgmonkey`` and ``python -m pgmonkey``)."""
    if os.name == "posix":
        # fire pages help through $PAGER on a terminal: print it, like other CLIs.
        os.environ["PAGER"] = "cat"
    sys.exit(run())
