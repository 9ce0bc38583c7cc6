"""Server processes: pids and ports, ``pg_ctl start``, shutdown, PgBouncer's pid."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pgmonkey.errors import SandboxError

from ._binaries import _has_binaries
from ._model import _LOCK_FILE, _READY_TIMEOUT, _STOP_TIMEOUT, HOST
from ._runas import _last_lines, _run


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        return int(first)
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (a child of ours not yet reaped) is not a running server.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _running(state: dict[str, Any]) -> bool:
    pid, port, password = state.get("pid"), state.get("port"), state.get("password")
    if not (isinstance(pid, int) and isinstance(port, int) and isinstance(password, str)):
        return False
    return _postmaster_pid(Path(state["server_dir"]) / "data") == pid and _alive(pid)


@contextlib.contextmanager
def _locked(dir: Path, *, create: bool = False) -> Iterator[None]:
    """Serialize start/stop on one DIR across processes (*create*: make DIR first).

    Whoever holds the lock may remove the lock file (and DIR): a process that was waiting
    for it then holds a lock on a file that is gone, sees so, and locks the new one.
    """
    lock = dir / _LOCK_FILE
    while True:
        if create:
            dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        f = open(lock, "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                current = os.stat(lock).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                current = False
        except BaseException:
            f.close()
            raise
        if current:
            break
        f.close()
    try:
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _unlock_file(dir: Path, *, remove_dir: bool) -> None:
    """Remove DIR's lock file (the caller holds the lock) and DIR too when asked and empty."""
    with contextlib.suppress(FileNotFoundError):
        (dir / _LOCK_FILE).unlink()
    if remove_dir:
        with contextlib.suppress(OSError):
            dir.rmdir()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


class _PortTaken(Exception):
    pass


def _pg_ctl_start(bindir: Path, server_dir: Path) -> int:
    """Start the server in *server_dir*, wait until it is ready, and return its pid."""
    data_dir, log = server_dir / "data", server_dir / "server.log"
    try:
        _run(
            [
                bindir / "pg_ctl",
                "-D",
                data_dir,
                "-l",
                log,
                "-w",
                "-t",
                str(int(_READY_TIMEOUT)),
                "-s",
                "start",
            ],
            cwd=server_dir,
            timeout=_READY_TIMEOUT + 10,
        )
    except SandboxError as e:
        try:
            text = log.read_text(errors="replace")
        except OSError:
            text = ""
        if "could not bind" in text and "already in use" in text:
            raise _PortTaken from None
        raise SandboxError(
            f"the server did not start ({e}); server log: {_log_tail(log)}"
        ) from None
    pid = _postmaster_pid(data_dir)
    if pid is None:
        raise SandboxError(f"the server started but wrote no pid file; log: {_log_tail(log)}")
    return pid


def _log_tail(log: Path) -> str:
    try:
        return _last_lines(log.read_text(errors="replace"))
    except OSError:
        return "no log"


def _shutdown(state: dict[str, Any], data_dir: Path, pid: int) -> None:
    bindir = Path(state["bindir"]) if state.get("bindir") else None
    if bindir is not None and _has_binaries(bindir):
        with contextlib.suppress(SandboxError):
            _run(
                [
                    bindir / "pg_ctl",
                    "-D",
                    data_dir,
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(_STOP_TIMEOUT)),
                    "-s",
                    "stop",
                ],
                cwd=data_dir.parent,
                timeout=_STOP_TIMEOUT + 10,
            )
    # pg_ctl missing or failed: signal the postmaster ourselves (SIGINT = fast shutdown,
    # then SIGQUIT = immediate), never leaving a process behind.
    steps = ((signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0))
    _terminate(pid, steps, "the sandbox server")


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect((HOST, port))
        except OSError:
            return False
    return True


def _pgbouncer_pid(bdir: Path) -> int | None:
    """The running pgbouncer's pid from its pid file (None if it is not running)."""
    try:
        pid = int((bdir / "pgbouncer.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    if not _alive(pid):
        return None
    with contextlib.suppress(OSError):
        # A pid file left behind by a crash may name a reused pid: check what runs there.
        if Path(f"/proc/{pid}/comm").read_text().strip() != "pgbouncer":
            return None
    return pid


def _stop_pgbouncer(server_dir: Path) -> bool:
    pid = _pgbouncer_pid(server_dir / "pgbouncer")
    if pid is None:
        return False
    # SIGTERM: immediate shutdown (SIGINT would wait for clients to finish).
    _terminate(pid, ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)), "pgbouncer")
    return True


def _terminate(pid: int, steps: Sequence[tuple[signal.Signals, float]], what: str) -> None:
    """Send each signal in turn until *pid* is gone; an error if it survives them all."""
    for sig, wait in steps:
        if not _alive(pid):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    if _alive(pid):
        raise SandboxError(f"{what} (pid {pid}) did not stop")
