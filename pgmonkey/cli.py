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

Every value reaches the code as the exact text typed: fire would read ``--table 2024_01`` as
the number 202401 and ``{a:1}`` as a dict, so each command tells fire to pass its values
through as text (``fire.decorators.SetParseFns``) and the counts are checked here. Help goes
to stdout (``pgmonkey --help | less``), ``--version`` prints the version, and a mistyped
command or flag gets a "did you mean" (exit 2).

Nothing heavy is imported here: ``pgmonkey --help`` loads neither pandas nor IPython.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from fire import decorators as fire_decorators

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
    """The command line is wrong (exit 2); ``words``: the command whose help to point at."""

    def __init__(self, message: str, words: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.words = words


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


# Flags whose value is text (or a count checked here): fire must not read it as Python.
_TEXT = frozenset(_SHOWN)
# Flags that take no value (`--audit`, `--noaudit`).
_SWITCHES = frozenset({"resolve_env", "audit", "strict", "pgbouncer"})


def _as_typed(value: str) -> str:
    """fire's parse function for text flags: the text as typed, never a Python literal."""
    return value


def _command(fn: _F) -> _F:
    """A CLI command: text flags reach ``fn`` as typed; fire's help shows readable types."""
    names = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    fn.__annotations__ = {n: _Shown(_SHOWN[n]) for n in names if n in _SHOWN}
    texts = {n: _as_typed for n in names if n in _TEXT}
    return fire_decorators.SetParseFns(**texts)(fn)  # type: ignore[no-any-return]


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


def _count(name: str, value: Any) -> int | None:
    """A number typed in decimal digits (fire would also take 0x1f, 1e3, 5_432 or True)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value):
        return int(value)
    raise _UsageError(f"--{name} must be a number, got {value!r}")


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


# --- the top level ------------------------------------------------------------------------


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
        """Export a table (or a --query's rows) to a CSV file (default: <table>.csv).

        Args:
          table: the table to export, schema.table or table.
          connconfig: the pgmonkey config file (alias: --filepath).
          filepath: alias of --connconfig.
          export_file: the CSV file to write (default for --table: the table name, e.g.
            my_table.csv; --query needs one).
          query: export the rows of this SELECT instead of a table (with --export_file).
          resolve_env: resolve ${VAR}, from_env and from_file references in the config.
        """
        path = _config_path(connconfig, filepath)
        resolve = _flag("resolve-env", resolve_env)
        if table is None and query is None:
            raise _UsageError("give either --table or --query: what to export")
        if table is not None and query is not None:
            raise _UsageError(
                "give either --table or --query, not both (to export some of a table's rows:"
                ' --query "SELECT ... FROM the_table WHERE ..." --export_file out.csv)'
            )
        if query is not None and (not isinstance(query, str) or not query.strip()):
            raise _UsageError(f"--query needs a SELECT statement, got {query!r}")
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
        result = export_csv(cfg, out, table=name, query=query)
        _out(_report(result))


def _report(result: Any) -> str:
    report = getattr(result, "report", None)
    return str(report() if callable(report) else result)


def _table(value: Any) -> str:
    if value is None or isinstance(value, bool) or value == "":
        raise _UsageError("missing --table: schema.table or table")
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


# fire's own test for a flag (fire.core._IsFlag): `--name` or `-x`; `-1` is a value.
_FLAG = re.compile(r"^(--|-[A-Za-z])")
_HELP = frozenset({"-h", "--help"})
_VERSION = frozenset({"--version", "-V"})
# Flags the reference spells with a dash (the others, like --import_file, with an underscore).
_DASHED = frozenset({"connection_type", "resolve_env"})
# fire splits a command line at a lone "-" (its separator), so `--export_file -` would lose
# its value. A NUL can never be typed in an argument: fire's separator is set to it.
_NO_SEPARATOR = ("--separator", "\0")


def _spelled(name: str) -> str:
    return "--" + (name.replace("_", "-") if name in _DASHED else name)


def _commands(group: object) -> list[str]:
    """The command (or group) names that may follow ``group``."""
    return sorted(n for n in dir(group) if not n.startswith("_"))


def _did_you_mean(typed: str, choices: Sequence[str]) -> str:
    import difflib

    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(typed.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean {lowered[close[0]]}?" if close else ""


def _resolve(component: object, args: Sequence[str]) -> tuple[list[str], Any, list[str]]:
    """Follow the command words of ``args``: (those words, the group or command, the rest)."""
    words: list[str] = []
    target: Any = component
    for i, word in enumerate(args):
        if inspect.ismethod(target) or _FLAG.match(word):
            return words, target, list(args[i:])
        choices = _commands(target)
        if word not in choices:
            hint = _did_you_mean(word, choices) or f"expected one of {', '.join(choices)}"
            raise _UsageError(f"unknown command {word!r}: {hint}", words)
        target = getattr(target, word)
        words.append(word)
    return words, target, []


def _check_flags(command: Any, rest: Sequence[str], words: Sequence[str]) -> None:
    """Refuse unknown flags, flags without their value and extra arguments *before* running.

    fire calls the command first and only then complains about what it could not use
    (``pgserverconfig --filepath c.yaml --adit`` would print the advice, then exit 2), and
    reads a text flag given no value (``--table --connconfig c.yaml``) as the text "True".
    """
    params = [
        p.name
        for p in inspect.signature(command).parameters.values()
        if p.kind == p.POSITIONAL_OR_KEYWORD
    ]
    given: set[str] = set()
    positional = 0
    j = 0
    while j < len(rest):
        token = rest[j]
        j += 1
        if not _FLAG.match(token):
            positional += 1
            continue
        typed, inline, _ = token.partition("=")
        key = typed.lstrip("-").replace("-", "_")
        if key not in params and len(key) == 1:  # fire's shortcut: -t for --table
            short = [n for n in params if n.startswith(key)]
            if len(short) > 1:
                spelled = ", ".join(_spelled(n) for n in short)
                raise _UsageError(f"{typed!r} is ambiguous: {spelled}", words)
            key = short[0] if short else key
        if not inline and key.startswith("no") and key[2:] in _SWITCHES and key[2:] in params:
            key = key[2:]  # --noaudit
        elif key not in params:
            flags = [_spelled(n) for n in params]
            hint = _did_you_mean(typed, flags) or f"expected {', '.join(flags)}"
            raise _UsageError(f"unknown option {typed!r}: {hint}", words)
        elif key in _TEXT and not inline:
            if j == len(rest) or _FLAG.match(rest[j]):
                raise _UsageError(f"{_spelled(key)} needs a value", words)
            j += 1
        elif not inline and j < len(rest) and not _FLAG.match(rest[j]):
            j += 1  # fire takes it as the switch's value (refused by _flag)
        if key in given:
            raise _UsageError(f"{_spelled(key)} is given twice", words)
        given.add(key)
    if positional > len([n for n in params if n not in given]):
        raise _UsageError(f"too many arguments: {' '.join(rest)!r}", words)


def _help(component: object, words: Sequence[str], target: Any) -> str:
    """fire's help text for ``target``, flags spelled as the reference spells them."""
    from fire import helptext, trace

    steps = trace.FireTrace(component, name=PROG)
    member = component
    for word in words:
        member = getattr(member, word)
        steps.AddAccessedProperty(member, word, [word], None, None)
    if inspect.ismethod(target):
        target = _without_metadata(target)
    text: str = helptext.HelpText(target, trace=steps, verbose=False)
    for name in _DASHED:
        text = text.replace("--" + name, _spelled(name))
    for name in _SWITCHES:  # fire shows `--audit=AUDIT`; a switch takes no value
        text = text.replace(f"{_spelled(name)}={name.upper()}", _spelled(name))
    return text


def _without_metadata(method: Any) -> Any:
    """The command as fire's help should see it: fire lists the FIRE_METADATA attribute
    that its own SetParseFns puts on a function as if it were a subcommand."""
    import types

    fn = method.__func__
    bare = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__)
    for attr in ("__doc__", "__annotations__", "__kwdefaults__", "__module__", "__qualname__"):
        setattr(bare, attr, getattr(fn, attr))
    return types.MethodType(bare, method.__self__)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version(PROG)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        from pgmonkey import __version__

        return __version__


def _dispatch(args: list[str]) -> None:
    """Answer --help and --version, check the command line, then let fire run it."""
    import fire

    head, tail = args, []
    if "--" in args:  # what follows is fire's own (--trace, --verbose, ...)
        cut = args.index("--")
        head, tail = args[:cut], args[cut + 1 :]
    component = PgMonkey()
    if head and head[0] in _VERSION and len(head) == 1 and not tail:
        _out(f"{PROG} {_version()}")
        return
    words, target, rest = _resolve(component, head)
    if _HELP.intersection(rest) or _HELP.intersection(tail):
        _out(_help(component, words, target))
        return
    if not inspect.ismethod(target):
        if not rest:
            _out(_help(component, words, target))  # a group alone: its commands
            return
        typed = rest[0].partition("=")[0]
        known = ["--help", *(sorted(_VERSION) if not words else [])]
        hint = _did_you_mean(typed, known) or f"give a command: {', '.join(_commands(target))}"
        raise _UsageError(f"unknown option {typed!r}: {hint}", words)
    try:
        _check_flags(target, rest, words)
        fire.Fire(component, command=[*head, "--", *tail, *_NO_SEPARATOR], name=PROG)
    except _UsageError as e:
        e.words = words if e.words is None else e.words
        raise


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
        _dispatch(args)
    except fire.core.FireExit as e:  # fire's own usage errors (2)
        return int(e.code or 0)
    except _Exit as e:
        return e.code
    except _UsageError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        where = " ".join([PROG, *(e.words or [])])
        sys.stderr.write(f"{PROG}: see `{where} --help`\n")
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


def main() -> None:
    """Console entry point (``pgmonkey`` and ``python -m pgmonkey``)."""
    sys.exit(run())
