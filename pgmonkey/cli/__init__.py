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

from ._run import main, run

__all__ = ["main", "run"]
