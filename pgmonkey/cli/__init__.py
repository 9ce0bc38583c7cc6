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

The package: ``_args`` (flags as typed, printing), ``_commands`` (the command tree),
``_run`` (help, version, dispatch, exit codes).
"""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._run import run

__all__ = ["main", "run"]


def main() -> None:
    """Console entry point (``pgmonkey`` and ``python -m pgmonkey``)."""
    # One command, then exit. Python's cycle collector would search the objects start-up
    # makes (the modules of fire, psycopg and PyYAML) over and over while they are made, and
    # a command leaves next to no cyclic garbage (a 1,000,000-row export or import: none per
    # row), so it is off from before fire is imported to the exit; reference counting frees
    # everything else as usual.
    gc.disable()
    from ._run import run

    code = run()
    # At exit Python would still search every object for cycles to free, 30-40 ms: a fifth
    # of a short command. Frozen, they are left to the OS, which frees the whole process at
    # once; atexit handlers still run and stdout/stderr are still flushed (Python never
    # promised __del__ for objects alive at exit).
    gc.freeze()
    gc.enable()  # for a caller that catches SystemExit; the frozen objects stay left alone
    sys.exit(code)


def __getattr__(name: str) -> Any:
    # ``run``, the in-process entry point, is imported on first use: main() must turn the
    # collector off before fire is imported.
    if name == "run":
        from ._run import run

        globals()["run"] = run  # later lookups skip __getattr__
        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
