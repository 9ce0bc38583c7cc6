"""Start, status, restart and stop of a sandbox (the primary and what it wrote)."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from pgmonkey.errors import SandboxError

from ._binaries import find_bindir, find_pgbouncer
from ._certs import _make_certificates, _write_private
from ._model import (
    _CLIENT_FILES,
    _CONFIG_HEADER,
    _EXTRA_CONFIGS,
    _MAX_SOCKET_DIR,
    _READY_TIMEOUT,
    _STATE_FILE,
    CERT_USER,
    DBNAME,
    HOST,
    SERVER_USER,
    SUPERUSER,
    Sandbox,
    _resolve_dir,
)
from ._process import (
    _alive,
    _free_port,
    _locked,
    _pg_ctl_start,
    _pgbouncer_pid,
    _port_in_use,
    _PortTaken,
    _postmaster_pid,
    _running,
    _shutdown,
    _stop_pgbouncer,
    _unlock_file,
)
from ._runas import _give_to_server, _run, _server_account
from ._scaleout import _scale_out
from ._state import _read_state, _sandbox_from_state, _write_configs, _write_state


def status(dir: str | os.PathLike[str] | None = None) -> Sandbox | None:
    """The sandbox running in *dir* (default: :func:`default_dir`), or None."""
    path = _resolve_dir(dir)
    state = _read_state(path)
    if state is None or not _running(state):
        return None
    return _sandbox_from_state(path, state)


def start(
    dir: str | os.PathLike[str] | None = None,
    port: int | None = None,
    *,
    bindir: str | os.PathLike[str] | None = None,
    standbys: int = 0,
    pgbouncer: bool = False,
) -> Sandbox:
    """Start a sandbox in *dir*, or return the one already running there.

    *port* defaults to a free port on 127.0.0.1. *bindir* overrides where the PostgreSQL
    binaries are taken from (see :func:`find_bindir`).

    *standbys*: at least this many streaming-replication standbys run next to the primary
    (a running sandbox with fewer gets more). *pgbouncer*: a PgBouncer in transaction pool
    mode runs in front of the primary (:func:`find_pgbouncer` must find the binary).

    What a sandbox that is no longer running left in *dir* (after a crash or a reboot) is
    removed first, the configs of its standbys and PgBouncer included. A start that fails
    leaves *dir* as it was found.
    """
    path = _resolve_dir(dir)
    if port is not None and not 0 < port < 65536:
        raise SandboxError(f"invalid port {port!r}: expected 1..65535")
    if isinstance(standbys, bool) or not isinstance(standbys, int) or not 0 <= standbys <= 9:
        raise SandboxError(f"invalid number of standbys {standbys!r}: expected 0..9")
    binaries = find_bindir([bindir] if bindir is not None else None)
    bouncer = find_pgbouncer() if pgbouncer else None
    made_dir = not path.exists()
    with _locked(path, create=True):
        try:
            return _start_locked(path, binaries, port, standbys, bouncer)
        except BaseException:
            # Nothing started: leave DIR as it was found (no lock file, no empty new folder).
            if not (path / _STATE_FILE).exists():
                _unlock_file(path, remove_dir=made_dir)
            raise


def _start_locked(
    path: Path, binaries: Path, port: int | None, standbys: int, bouncer: Path | None
) -> Sandbox:
    state = _read_state(path)
    if state is not None and _running(state):
        if port is not None and port != state["port"]:
            raise SandboxError(
                f"the sandbox in {str(path)!r} already runs on port {state['port']}: "
                "stop it first to use another port"
            )
        running = _sandbox_from_state(path, state)
        if len(running.standbys) < standbys or (bouncer and running.pgbouncer is None):
            _scale_out(path, state, standbys, bouncer)
        elif not all(p.exists() for p in running.configs.values()):
            _write_configs(path, running.port, running.password, state)
        return _sandbox_from_state(path, state)
    if state is not None:
        _cleanup(path, state)  # stale: the machine rebooted or the server died
    # Configs of an earlier sandbox (standbys, PgBouncer) point at ports nothing listens on.
    _remove_client_files(path)
    if port is not None:
        if not _port_in_use(port):
            with contextlib.suppress(_PortTaken):
                return _create(path, binaries, port, standbys=standbys, pgbouncer=bouncer)
        raise SandboxError(f"port {port} on {HOST} is already in use")
    # Another process may take the port picked here before the server binds it: retry.
    for _ in range(3):
        with contextlib.suppress(_PortTaken):
            return _create(path, binaries, _free_port(), standbys=standbys, pgbouncer=bouncer)
    raise SandboxError(f"could not find a free port on {HOST}")


def _reachable(path: Path, account: pwd.struct_passwd) -> bool:
    """Whether *account* may enter *path* (search permission on it and every parent)."""
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if account.pw_name in g.gr_mem}
    for part in (path, *path.parents):
        try:
            st = part.stat()
        except OSError:
            return False
        if st.st_uid == account.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def _make_server_dir(dir: Path) -> Path:
    account = _server_account()
    if account is None or _reachable(dir, account):
        server_dir = dir / "server"
        if server_dir.exists():
            shutil.rmtree(server_dir)
        server_dir.mkdir(mode=0o700)
        _give_to_server(server_dir)
        return server_dir
    # The postgres user cannot enter DIR (e.g. ~root, or pytest's 0700 root tmp folders):
    # the server side goes to a folder of its own, recorded in sandbox.json.
    for parent in (tempfile.gettempdir(), "/tmp"):
        if _reachable(Path(parent), account):
            server_dir = Path(tempfile.mkdtemp(prefix="pgmonkey-sandbox-", dir=parent))
            _give_to_server(server_dir)
            return server_dir
    raise SandboxError(
        f"the {SERVER_USER!r} user can enter neither {str(dir)!r} nor the temporary folder"
    )


def _create(
    dir: Path, bindir: Path, port: int, *, standbys: int = 0, pgbouncer: Path | None = None
) -> Sandbox:
    server_dir = _make_server_dir(dir)
    password = secrets.token_urlsafe(24)
    state: dict[str, Any] = {
        "port": port,
        "pid": None,
        "server_dir": str(server_dir),
        "password": password,
        "bindir": str(bindir),
    }
    # Recorded first, so a failure below can still be cleaned up by stop().
    _write_state(dir, state)
    try:
        _make_certificates(dir, server_dir)
        data_dir = server_dir / "data"
        pwfile = server_dir / "pwfile"
        _write_private(pwfile, password.encode() + b"\n", server=True)
        try:
            _run(
                [
                    bindir / "initdb",
                    "-D",
                    data_dir,
                    "-U",
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                cwd=server_dir,
                timeout=120,
            )
        finally:
            pwfile.unlink()
        _configure_server(server_dir, data_dir, port)
        pid = _pg_ctl_start(bindir, server_dir)
        state["pid"] = pid
        _write_state(dir, state)
        sandbox = Sandbox(
            dir=dir,
            port=port,
            pid=pid,
            server_dir=server_dir,
            configs=_write_configs(dir, port, password),
            password=password,
        )
        _bootstrap(sandbox)
        if standbys or pgbouncer:
            _scale_out(dir, state, standbys, pgbouncer)
            return _sandbox_from_state(dir, state)
        return sandbox
    except BaseException:
        _cleanup(dir, state)
        _remove_client_files(dir)
        raise


def _configure_server(server_dir: Path, data_dir: Path, port: int) -> None:
    socket_dir = str(server_dir) if len(str(server_dir)) <= _MAX_SOCKET_DIR else ""

    def q(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    settings = {
        "listen_addresses": q(HOST),
        "port": str(port),
        "unix_socket_directories": q(socket_dir),
        "ssl": "on",
        "ssl_cert_file": q(str(server_dir / "server.crt")),
        "ssl_key_file": q(str(server_dir / "server.key")),
        "ssl_ca_file": q(str(server_dir / "ca.crt")),
        "password_encryption": "scram-sha-256",
        # Many pools and 500-task tests run against one sandbox.
        "max_connections": "200",
        "shared_buffers": "32MB",
        # A throwaway cluster: trade durability for speed.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_wal_size": "256MB",
        "log_min_messages": "warning",
        "log_connections": "off",
        "logging_collector": "off",
    }
    conf = "\n# pgmonkey sandbox\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    with open(data_dir / "postgresql.conf", "a") as f:
        f.write(conf)
    # What `pgmonkey pgserverconfig` advises: 'hostssl' for the clients that use SSL (ssl.yaml,
    # cert.yaml), so none of them is also let in without it; 'hostnossl' for password.yaml.
    hba = (
        "# pgmonkey sandbox\n"
        "# TYPE    DATABASE    USER           ADDRESS       METHOD\n"
        "local     all         all                          scram-sha-256\n"
        f"hostssl   all         {CERT_USER}  127.0.0.1/32  cert\n"
        f"hostssl   all         {CERT_USER}  ::1/128       cert\n"
        "hostssl   all         all            127.0.0.1/32  scram-sha-256\n"
        "hostssl   all         all            ::1/128       scram-sha-256\n"
        "hostnossl all         all            127.0.0.1/32  scram-sha-256\n"
        "hostnossl all         all            ::1/128       scram-sha-256\n"
        # pg_basebackup, for streaming-replication standbys.
        "host      replication all            127.0.0.1/32  scram-sha-256\n"
        "host      replication all            ::1/128       scram-sha-256\n"
    )
    (data_dir / "pg_hba.conf").write_text(hba)


def _bootstrap(sandbox: Sandbox) -> None:
    """Create the database and the certificate role, waiting for the server to accept us."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    admin = make_conninfo(sandbox.superuser_conninfo, dbname="postgres")
    deadline = time.monotonic() + _READY_TIMEOUT
    while True:
        try:
            conn = psycopg.connect(admin, autocommit=True)
            break
        except psycopg.OperationalError as e:
            if time.monotonic() > deadline:
                raise SandboxError(f"the sandbox server does not accept connections: {e}") from None
            time.sleep(0.1)
    with conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(DBNAME), sql.Identifier(SUPERUSER)
            )
        )
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(CERT_USER)))
    cert_user = sql.Identifier(CERT_USER)
    with psycopg.connect(sandbox.superuser_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT CREATE, USAGE ON SCHEMA public TO {}").format(cert_user))
        # So that the certificate role's own audit can check its pg_hba rule, as an auditing
        # role on a real server would be allowed to.
        conn.execute(
            sql.SQL("GRANT SELECT ON pg_catalog.pg_hba_file_rules TO {}").format(cert_user)
        )
        conn.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION pg_catalog.pg_hba_file_rules() TO {}").format(
                cert_user
            )
        )


def restart(dir: str | os.PathLike[str] | None = None) -> Sandbox:
    """Restart the running sandbox in *dir* (fast shutdown), keeping its data, port and configs.

    Existing connections break, as in a real server restart; for fault-injection tests.
    """
    path = _resolve_dir(dir)
    if not path.is_dir():
        raise SandboxError(f"no sandbox is running in {str(path)!r}")
    with _locked(path):
        state = _read_state(path)
        if state is None or not _running(state):
            raise SandboxError(f"no sandbox is running in {str(path)!r}")
        server_dir = Path(state["server_dir"])
        bindir = find_bindir([state["bindir"]])
        _shutdown(state, server_dir / "data", int(state["pid"]))
        try:
            state["pid"] = _pg_ctl_start(bindir, server_dir)
        except _PortTaken:
            raise SandboxError(
                f"port {state['port']} was taken while the sandbox restarted"
            ) from None
        _write_state(path, state)
        return _sandbox_from_state(path, state)


def stop(dir: str | os.PathLike[str] | None = None) -> bool:
    """Stop the sandbox in *dir* and remove its data; True if any of its processes ran.

    The configs and certificates in *dir* are removed too (they point at a server that is
    gone); *dir* itself is removed when nothing else is left in it.
    """
    path = _resolve_dir(dir)
    if not path.is_dir():
        return False
    with _locked(path):
        state = _read_state(path)
        was_running = state is not None and (_running(state) or _any_node_alive(state))
        if state is not None:
            _cleanup(path, state)
        _remove_client_files(path)
        _unlock_file(path, remove_dir=True)
    return was_running


def _any_node_alive(state: dict[str, Any]) -> bool:
    """Whether a standby or PgBouncer of *state* still runs (e.g. after its primary stopped)."""
    if not isinstance(state.get("server_dir"), str):
        return False
    server_dir = Path(state["server_dir"])
    pids = [
        _postmaster_pid(server_dir / str(s["name"]) / "data") for s in state.get("standbys") or ()
    ]
    pids.append(_pgbouncer_pid(server_dir / "pgbouncer"))
    return any(pid is not None and _alive(pid) for pid in pids)


def _remove_client_files(dir: Path) -> None:
    for name in _CLIENT_FILES:
        with contextlib.suppress(FileNotFoundError):
            (dir / name).unlink()
    # Scale-out configs: only the ones the sandbox wrote (they start with its header).
    for path in [*dir.glob("standby*.yaml"), *(dir / n for n in _EXTRA_CONFIGS)]:
        with contextlib.suppress(OSError):
            with open(path, "rb") as f:
                ours = f.read(len(_CONFIG_HEADER)) == _CONFIG_HEADER.encode()
            if ours:
                path.unlink()


def _cleanup(dir: Path, state: dict[str, Any]) -> None:
    """Stop the servers recorded in *state* (if they run) and remove the server directory."""
    server_dir = Path(state["server_dir"]) if state.get("server_dir") else None
    if server_dir is not None:
        _stop_pgbouncer(server_dir)
        for standby in state.get("standbys") or ():
            node_dir = server_dir / str(standby["name"])
            pid = _postmaster_pid(node_dir / "data")
            if pid is not None and _alive(pid):
                _shutdown(state, node_dir / "data", pid)
        data_dir = server_dir / "data"
        pid = _postmaster_pid(data_dir)
        if pid is not None and _alive(pid):
            _shutdown(state, data_dir, pid)
        if server_dir.exists():
            shutil.rmtree(server_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (dir / _STATE_FILE).unlink()
