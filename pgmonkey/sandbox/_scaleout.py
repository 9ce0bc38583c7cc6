"""Scale-out: streaming-replication standbys, PgBouncer, ``promote`` and ``stop_node``."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from pgmonkey.errors import SandboxError

from ._binaries import find_bindir
from ._certs import _write_private
from ._model import (
    _PGBOUNCER_POOL_SIZE,
    _READY_TIMEOUT,
    DBNAME,
    HOST,
    SUPERUSER,
    Node,
    _resolve_dir,
)
from ._process import (
    _accepts,
    _alive,
    _free_port,
    _locked,
    _log_tail,
    _pg_ctl_start,
    _pgbouncer_pid,
    _PortTaken,
    _postmaster_pid,
    _shutdown,
    _stop_pgbouncer,
)
from ._runas import _give_to_server, _run
from ._state import _read_state, _write_configs, _write_state


def _state_conninfo(state: dict[str, Any], port: int | None = None) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(
        host=HOST,
        port=int(port if port is not None else state["port"]),
        dbname=DBNAME,
        user=SUPERUSER,
        password=str(state["password"]),
        sslmode="disable",
        connect_timeout=5,
    )


def _scale_out(dir: Path, state: dict[str, Any], standbys: int, pgbouncer: Path | None) -> None:
    """Add standbys until there are *standbys*, and PgBouncer if asked and missing."""
    server_dir = Path(state["server_dir"])
    bindir = find_bindir([state["bindir"]])
    have: list[dict[str, Any]] = state.setdefault("standbys", [])
    try:
        while len(have) < standbys:
            try:
                _add_standby(dir, state, bindir, server_dir, len(have) + 1)
            except BaseException:
                _drop_last_standby(dir, state, server_dir)
                raise
        if pgbouncer is not None and not state.get("pgbouncer"):
            try:
                _add_pgbouncer(dir, state, pgbouncer, server_dir)
            except BaseException:
                _stop_pgbouncer(server_dir)
                state.pop("pgbouncer", None)
                _write_state(dir, state)
                raise
    finally:
        _write_configs(dir, int(state["port"]), str(state["password"]), state)


def _drop_last_standby(dir: Path, state: dict[str, Any], server_dir: Path) -> None:
    """Undo a standby that failed half-way: a running sandbox stays as it was."""
    entry = state["standbys"].pop()
    node_dir = server_dir / str(entry["name"])
    pid = _postmaster_pid(node_dir / "data")
    if pid is not None and _alive(pid):
        with contextlib.suppress(SandboxError):
            _shutdown(state, node_dir / "data", pid)
    shutil.rmtree(node_dir, ignore_errors=True)
    _write_state(dir, state)


def _write_passfile(server_dir: Path, password: str) -> Path:
    """A libpq password file for the standbys' replication connections (never argv)."""

    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    path = server_dir / "pgpass"
    _write_private(path, f"*:*:*:{esc(SUPERUSER)}:{esc(password)}\n".encode(), server=True)
    return path


def _add_standby(
    dir: Path, state: dict[str, Any], bindir: Path, server_dir: Path, index: int
) -> None:
    from psycopg.conninfo import make_conninfo

    basebackup = bindir / "pg_basebackup"
    if not os.access(basebackup, os.X_OK):
        raise SandboxError(
            f"pg_basebackup not found in {str(bindir)!r}: it comes with the PostgreSQL server"
        )
    name = f"standby{index}"
    node_dir = server_dir / name
    entry: dict[str, Any] = {"name": name, "port": None, "pid": None}
    state["standbys"].append(entry)
    _write_state(dir, state)  # recorded first: stop() cleans up whatever happens next
    if node_dir.exists():
        shutil.rmtree(node_dir)
    node_dir.mkdir(mode=0o700)
    _give_to_server(node_dir)
    passfile = _write_passfile(server_dir, str(state["password"]))
    # -R writes standby.signal and primary_conninfo (with this application_name and
    # passfile) into the copy: the standby streams from the primary as soon as it starts.
    source = make_conninfo(
        host=HOST,
        port=int(state["port"]),
        user=SUPERUSER,
        passfile=str(passfile),
        sslmode="disable",
        application_name=name,
    )
    _run(
        [
            basebackup,
            *("-D", node_dir / "data", "-R", "-X", "stream", "-c", "fast", "--no-sync"),
            *("-d", source),
        ],
        cwd=node_dir,
        timeout=120,
    )
    conf = node_dir / "data" / "postgresql.conf"
    for _ in range(3):
        port = _free_port()
        with open(conf, "a") as f:
            f.write(f"\n# pgmonkey sandbox: {name}\nport = {port}\ncluster_name = '{name}'\n")
        entry["port"] = port
        _write_state(dir, state)
        with contextlib.suppress(_PortTaken):
            entry["pid"] = _pg_ctl_start(bindir, node_dir)
            break
    else:
        raise SandboxError(f"could not find a free port on {HOST} for {name}")
    _write_state(dir, state)
    _wait_streaming(state, name, node_dir / "server.log")


def _wait_streaming(state: dict[str, Any], name: str, log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + _READY_TIMEOUT
    with psycopg.connect(_state_conninfo(state), autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT state FROM pg_stat_replication WHERE application_name = %s", (name,)
            ).fetchone()
            if row is not None and row[0] == "streaming":
                return
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"{name} did not start streaming in {_READY_TIMEOUT:g} s; "
                    f"its log: {_log_tail(log)}"
                )
            time.sleep(0.1)


def _add_pgbouncer(dir: Path, state: dict[str, Any], binary: Path, server_dir: Path) -> None:
    import psycopg

    bdir = server_dir / "pgbouncer"
    bdir.mkdir(mode=0o700, exist_ok=True)
    _give_to_server(bdir)
    # The SCRAM verifier, not the password: PgBouncer checks the client with it and, as the
    # client proved it knows the password, logs in to the server with the same proof.
    with psycopg.connect(_state_conninfo(state), autocommit=True) as conn:
        row = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (SUPERUSER,)
        ).fetchone()
    if row is None or not str(row[0] or "").startswith("SCRAM-SHA-256$"):
        raise SandboxError(f"the role {SUPERUSER!r} has no SCRAM secret for PgBouncer")
    _write_private(bdir / "userlist.txt", f'"{SUPERUSER}" "{row[0]}"\n'.encode(), server=True)
    entry: dict[str, Any] = {"port": None, "pid": None, "binary": str(binary)}
    state["pgbouncer"] = entry
    for _ in range(3):
        entry["port"] = port = _free_port()
        _write_state(dir, state)
        with contextlib.suppress(_PortTaken):
            entry["pid"] = _pgbouncer_start(binary, bdir, port, int(state["port"]))
            break
    else:
        raise SandboxError(f"could not find a free port on {HOST} for pgbouncer")
    _write_state(dir, state)


def _pgbouncer_start(binary: Path, bdir: Path, port: int, primary_port: int) -> int:
    settings = {
        "listen_addr": HOST,
        "listen_port": str(port),
        "unix_socket_dir": "",  # TCP only
        "auth_type": "scram-sha-256",
        "auth_file": str(bdir / "userlist.txt"),
        "pool_mode": "transaction",
        "default_pool_size": str(_PGBOUNCER_POOL_SIZE),
        "max_client_conn": "500",
        "admin_users": SUPERUSER,
        "ignore_startup_parameters": "extra_float_digits",
        "logfile": str(bdir / "pgbouncer.log"),
        "pidfile": str(bdir / "pgbouncer.pid"),
    }
    ini = (
        "; pgmonkey sandbox: PgBouncer in front of the primary\n"
        f"[databases]\n* = host={HOST} port={primary_port}\n\n[pgbouncer]\n"
        + "".join(f"{k} = {v}\n" for k, v in settings.items())
    )
    (bdir / "pgbouncer.ini").write_text(ini)
    _give_to_server(bdir / "pgbouncer.ini")
    log, pidfile = bdir / "pgbouncer.log", bdir / "pgbouncer.pid"
    for stale in (log, pidfile):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    _run([binary, "-d", bdir / "pgbouncer.ini"], cwd=bdir, timeout=30)
    deadline = time.monotonic() + 15.0
    while True:
        pid = _pgbouncer_pid(bdir)
        if pid is not None and _accepts(port):
            return pid
        text = ""
        with contextlib.suppress(OSError):
            text = log.read_text(errors="replace")
        if "Address already in use" in text:
            _stop_pgbouncer(bdir.parent)
            raise _PortTaken
        if time.monotonic() > deadline or (pid is None and "FATAL" in text):
            _stop_pgbouncer(bdir.parent)
            raise SandboxError(f"pgbouncer did not start; its log: {_log_tail(log)}")
        time.sleep(0.05)


def _node_data_dir(state: dict[str, Any], node: str) -> Path:
    server_dir = Path(state["server_dir"])
    if node == "primary":
        return server_dir / "data"
    names = [str(s["name"]) for s in state.get("standbys") or ()]
    if node not in names:
        known = ", ".join(["primary", *names, *(["pgbouncer"] if state.get("pgbouncer") else [])])
        raise SandboxError(f"the sandbox has no node {node!r}: expected one of {known}")
    return server_dir / node / "data"


def _state_of(path: Path) -> dict[str, Any]:
    state = _read_state(path) if path.is_dir() else None
    if state is None:
        raise SandboxError(f"no sandbox in {str(path)!r}")
    return state


def promote(dir: str | os.PathLike[str] | None = None, standby: int | str = 1) -> Node:
    """Promote a standby (its number, or a name such as 'standby1') to a primary.

    For failover tests: stop the primary with :func:`stop_node`, then promote. Waits until
    the standby accepts writes; the other standbys keep following the old primary.
    """
    path = _resolve_dir(dir)
    name = f"standby{standby}" if isinstance(standby, int) else standby
    with _locked(path):
        state = _state_of(path)
        data_dir = _node_data_dir(state, name)
        if name == "primary":
            raise SandboxError("the primary is a primary already: promote a standby")
        pid = _postmaster_pid(data_dir)
        if pid is None or not _alive(pid):
            raise SandboxError(f"{name} is not running")
        bindir = find_bindir([state["bindir"]])
        _run(
            [bindir / "pg_ctl", "-D", data_dir, "-w", "-t", str(int(_READY_TIMEOUT)), "promote"],
            cwd=data_dir.parent,
            timeout=_READY_TIMEOUT + 10,
        )
        entry = next(s for s in state["standbys"] if s["name"] == name)
        entry["promoted"] = True
        _write_state(path, state)
        return Node(name, int(entry["port"]), pid)


def stop_node(dir: str | os.PathLike[str] | None = None, node: str = "primary") -> bool:
    """Stop one process of the sandbox: 'primary', 'standby1', ... or 'pgbouncer'.

    The rest keeps running (a stopped primary is how failover starts). True if it was
    running. ``stop()`` still stops and removes everything; ``status()`` reports a sandbox
    only while its primary runs.
    """
    path = _resolve_dir(dir)
    with _locked(path):
        state = _state_of(path)
        if node == "pgbouncer":
            if not state.get("pgbouncer"):
                raise SandboxError("the sandbox has no pgbouncer")
            return _stop_pgbouncer(Path(state["server_dir"]))
        data_dir = _node_data_dir(state, node)
        pid = _postmaster_pid(data_dir)
        if pid is None or not _alive(pid):
            return False
        _shutdown(state, data_dir, pid)
        return True
