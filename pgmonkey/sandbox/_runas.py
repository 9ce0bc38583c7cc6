"""Running commands, as the ``postgres`` user (through ``runuser``) when we are root."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pgmonkey.errors import SandboxError

from ._model import SERVER_USER


def _as_root() -> bool:
    return os.geteuid() == 0


def _server_account() -> pwd.struct_passwd | None:
    """The account the server runs as when it is not us (we are root), else None."""
    if not _as_root():
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise SandboxError(
            f"running as root, but there is no {SERVER_USER!r} user to run the server as: "
            "install the postgresql package or run pgmonkey as an ordinary user"
        ) from None


def _clean_env() -> dict[str, str]:
    # PGDATA, PGPORT, PGHOST... from the caller's shell must not steer initdb or pg_ctl.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _run(cmd: Sequence[str | os.PathLike[str]], *, cwd: Path, timeout: float) -> None:
    argv = [os.fspath(c) for c in cmd]
    name = Path(argv[0]).name
    if _server_account() is not None:
        runuser = shutil.which("runuser")
        if runuser is None:
            raise SandboxError(
                f"running as root needs `runuser` to drop to the {SERVER_USER!r} user"
            )
        argv = [runuser, "-u", SERVER_USER, "--", *argv]
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SandboxError(f"{name} did not finish in {timeout:g} s") from None
    if proc.returncode != 0:
        detail = _last_lines(proc.stderr or proc.stdout)
        raise SandboxError(f"{name} failed with exit code {proc.returncode}: {detail}")


def _last_lines(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) or "no output"


def _give_to_server(path: Path) -> None:
    account = _server_account()
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)
