"""Finding the PostgreSQL server binaries (``initdb``, ``pg_ctl``) and PgBouncer."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from pgmonkey.errors import SandboxError

from ._model import _BINARIES, BINDIR_ENV, INSTALL_HINT, PGBOUNCER_ENV, PGBOUNCER_HINT


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)


def _candidate_bindirs() -> Iterator[Path]:
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                yield Path(out)
    yield from sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        yield Path(initdb).resolve().parent
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry:
            yield Path(entry)


def _has_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _BINARIES)


def find_bindir(candidates: Sequence[str | os.PathLike[str]] | None = None) -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Looks in *candidates* if given, else in ``$PGMONKEY_PG_BINDIR`` if set, else in
    ``pg_config --bindir``, ``/usr/lib/postgresql/*/bin`` (highest version first) and PATH.
    Raises :class:`SandboxError` with an install hint when none has them.
    """
    if candidates is not None:
        search: Iterator[Path] = (Path(c) for c in candidates)
    elif os.environ.get(BINDIR_ENV):
        search = iter([Path(os.environ[BINDIR_ENV])])
    else:
        search = _candidate_bindirs()
    for bindir in search:
        if _has_binaries(bindir):
            return bindir
    raise SandboxError(INSTALL_HINT)


def find_pgbouncer(candidates: Sequence[str | os.PathLike[str]] | None = None) -> Path:
    """The pgbouncer binary.

    Looks at *candidates* if given, else at ``$PGMONKEY_PGBOUNCER`` if set, else on PATH and
    in the usual sbin folders (Debian installs it as ``/usr/sbin/pgbouncer``). Raises
    :class:`SandboxError` with an install hint when there is none.
    """
    if candidates is not None:
        search = [Path(c) for c in candidates]
    elif os.environ.get(PGBOUNCER_ENV):
        search = [Path(os.environ[PGBOUNCER_ENV])]
    else:
        found = shutil.which("pgbouncer")
        search = [Path(found)] if found else []
        search += [
            Path(d) / "pgbouncer"
            for d in ("/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/opt/homebrew/bin")
        ]
    for path in search:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise SandboxError(PGBOUNCER_HINT)
