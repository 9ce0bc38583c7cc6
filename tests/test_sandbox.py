"""The sandbox PostgreSQL, on a server of its own (not the session's)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from pgmonkey import sandbox as sb
from pgmonkey.config import connect_params, load_config
from pgmonkey.errors import SandboxError
from pgmonkey.sandbox import _lifecycle as sb_lifecycle
from pgmonkey.sandbox import _process as sb_process

Conn = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sb.Sandbox]:
    """A sandbox started for this module alone, in its own directory."""
    path = tmp_path_factory.mktemp("own-sandbox")
    running = sb.start(path)
    try:
        yield running
    finally:
        sb.stop(path)


def _load(path: Path) -> dict[str, Any]:
    cfg = yaml.safe_load(path.read_text())
    assert isinstance(cfg, dict)
    return cfg


def _connect(cfg: dict[str, Any]) -> Conn:
    return psycopg.connect(**connect_params(cfg).connect_kwargs())


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """True once *pid* no longer runs (a zombie waiting for init counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def _children(pid: int) -> list[int]:
    """Live processes whose parent is *pid* (the postmaster's backends and workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    ("kind", "ssl", "user"),
    [("password", False, "pgmonkey"), ("ssl", True, "pgmonkey"), ("cert", True, "pgmonkey_cert")],
    ids=["password", "ssl", "cert"],
)
def test_connect_with_each_config(
    own: sb.Sandbox, kind: str, ssl: bool, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    # pgmonkey's own loader and validator take the config without a single warning.
    with caplog.at_level(logging.WARNING):
        cfg = load_config(own.configs[kind])
    assert caplog.records == []
    assert set(cfg) == {
        "connection_type",
        "connection_settings",
        "pool_settings",
        "async_settings",
        "async_pool_settings",
    }
    settings = cfg["connection_settings"]
    assert settings["host"] == "127.0.0.1"
    assert int(settings["port"]) == own.port
    with _connect(cfg) as conn:
        row = conn.execute(
            "SELECT ssl, current_user, current_database() FROM pg_stat_ssl"
            " WHERE pid = pg_backend_pid()"
        ).fetchone()
    assert row == (ssl, user, "pgmonkey")


def test_ssl_config_verifies_the_server(own: sb.Sandbox) -> None:
    settings = _load(own.configs["ssl"])["connection_settings"]
    assert settings["sslmode"] == "verify-full"
    assert Path(settings["sslrootcert"]) == own.dir / "ca.crt"


def test_cert_role_logs_in_without_password(own: sb.Sandbox) -> None:
    cfg = _load(own.configs["cert"])
    settings = cfg["connection_settings"]
    assert "password" not in settings
    assert settings["sslmode"] == "verify-full"
    with _connect(cfg) as conn:
        assert conn.info.password in (None, "")
        row = conn.execute(
            "SELECT r.rolsuper, s.client_dn FROM pg_roles r, pg_stat_ssl s"
            " WHERE r.rolname = current_user AND s.pid = pg_backend_pid()"
        ).fetchone()
        assert row == (False, "/O=pgmonkey sandbox/CN=pgmonkey_cert")
        # The role may create tables in schema public of database pgmonkey.
        conn.execute("CREATE TABLE public.cert_can_create (id int)")
        conn.execute("DROP TABLE public.cert_can_create")
    with psycopg.connect(own.superuser_conninfo) as conn:
        row = conn.execute(
            "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'pgmonkey_cert'"
        ).fetchone()
    assert row == (True,)


def test_cert_role_needs_its_certificate(own: sb.Sandbox) -> None:
    cfg = _load(own.configs["cert"])
    settings = cfg["connection_settings"]
    del settings["sslcert"], settings["sslkey"]
    with pytest.raises(psycopg.OperationalError, match="certificate"):
        _connect(cfg).close()


def test_wrong_password_fails(own: sb.Sandbox) -> None:
    cfg = _load(own.configs["password"])
    cfg["connection_settings"]["password"] = "not-the-password"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(cfg).close()


def test_files_and_modes(own: sb.Sandbox) -> None:
    me = os.geteuid()
    for name in ("password.yaml", "ssl.yaml", "cert.yaml", "client.key", "sandbox.json"):
        st = (own.dir / name).stat()
        assert stat.S_IMODE(st.st_mode) == 0o600, name
        assert st.st_uid == me, name
    server_key = (own.server_dir / "server.key").stat()
    assert stat.S_IMODE(server_key.st_mode) == 0o600
    data_owner = (own.server_dir / "data").stat().st_uid
    assert server_key.st_uid == data_owner
    if me == 0:
        import pwd

        # The server runs as postgres, which cannot enter pytest's 0700 root tmp folders.
        assert data_owner == pwd.getpwnam("postgres").pw_uid
        assert own.dir not in own.server_dir.parents
    state = json.loads((own.dir / "sandbox.json").read_text())
    assert (state["port"], state["pid"], state["server_dir"]) == (
        own.port,
        own.pid,
        str(own.server_dir),
    )


def test_superuser_conninfo(own: sb.Sandbox) -> None:
    params = conninfo_to_dict(own.superuser_conninfo)
    assert params["user"] == "pgmonkey"
    with psycopg.connect(own.superuser_conninfo) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == (True,)
        assert conn.execute("SHOW max_connections").fetchone() == ("200",)


def test_no_password_in_repr_or_summary(own: sb.Sandbox) -> None:
    for text in (repr(own), str(own), own.describe()):
        assert own.password not in text
    summary = own.describe()
    assert f"127.0.0.1:{own.port}" in summary
    for path in own.configs.values():
        assert str(path) in summary
    # As root the server's files live outside the sandbox folder: the summary says where.
    assert f"{own.server_dir} (server.log)" in summary
    assert (own.server_dir / "server.log").is_file()


def test_start_is_idempotent(own: sb.Sandbox) -> None:
    again = sb.start(own.dir)
    assert again == own
    assert sb.start(own.dir, port=own.port) == own
    # A running sandbox whose configs were deleted gets them back.
    own.configs["ssl"].unlink()
    assert sb.start(own.dir) == own
    assert _load(own.configs["ssl"])["connection_settings"]["sslmode"] == "verify-full"
    with pytest.raises(SandboxError, match="already runs on port"):
        sb.start(own.dir, port=own.port + 1 if own.port < 65535 else own.port - 1)


def test_status(own: sb.Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sb.status(own.dir) == own
    assert sb.status(tmp_path) is None
    # The default directory comes from PGMONKEY_SANDBOX_DIR.
    monkeypatch.setenv("PGMONKEY_SANDBOX_DIR", str(own.dir))
    assert sb.status() == own
    monkeypatch.setenv("PGMONKEY_SANDBOX_DIR", str(tmp_path))
    assert sb.status() is None


def test_stale_state_is_not_running(tmp_path: Path) -> None:
    state = {"port": 1, "pid": 2**22 + 7, "server_dir": str(tmp_path / "gone"), "password": "x"}
    (tmp_path / "sandbox.json").write_text(json.dumps(state))
    assert sb.status(tmp_path) is None
    assert sb.stop(tmp_path) is False
    assert not (tmp_path / "sandbox.json").exists()


def test_lifecycle_start_connect_three_ways_stop_leaves_nothing(tmp_path: Path) -> None:
    """The sandbox end to end, in one piece, on a sandbox of its own."""
    path = tmp_path / "life"
    port = sb_process._free_port()
    running = sb.start(path, port=port)
    assert running.port == port
    seen = {}
    for kind in ("password", "ssl", "cert"):
        cfg = load_config(running.configs[kind])
        with _connect(cfg) as conn:
            seen[kind] = conn.execute(
                "SELECT ssl, current_user FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone()
    assert seen == {
        "password": (False, "pgmonkey"),
        "ssl": (True, "pgmonkey"),
        "cert": (True, "pgmonkey_cert"),
    }
    assert "password" not in cfg["connection_settings"]  # the cert role used no password
    children = _children(running.pid)
    assert children, "a running postmaster has background processes"

    assert sb.stop(path) is True
    assert _gone(running.pid)
    assert all(_gone(child) for child in children)
    assert sb.status(path) is None
    assert not running.server_dir.exists()
    assert not path.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(running.superuser_conninfo).close()
    assert sb.stop(path) is False


def test_missing_binaries_say_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with pytest.raises(SandboxError) as info:
        sb.start(tmp_path / "sb", bindir=empty)
    message = str(info.value)
    assert "\n" not in message
    assert "apt-get install postgresql" in message
    assert not (tmp_path / "sb").exists()

    monkeypatch.setenv(sb.BINDIR_ENV, str(empty))
    with pytest.raises(SandboxError, match="apt-get install postgresql"):
        sb.find_bindir()
    with pytest.raises(SandboxError, match="apt-get install postgresql"):
        sb.start(tmp_path / "sb")


def test_binaries_are_found() -> None:
    bindir = sb.find_bindir()
    for name in ("initdb", "pg_ctl", "postgres"):
        assert os.access(bindir / name, os.X_OK)
    assert sb.find_bindir([Path("/nonexistent"), bindir]) == bindir


def test_invalid_port() -> None:
    with pytest.raises(SandboxError, match="invalid port 70000"):
        sb.start("/nonexistent/never-created", port=70000)


def test_failed_start_leaves_nothing(tmp_path: Path) -> None:
    # Another process takes the port between our pick and the server's bind (a race that
    # start() retries with a new port): the half-made cluster is removed entirely.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(sb_process._PortTaken):
            sb_lifecycle._create(tmp_path, sb.find_bindir(), taken.getsockname()[1])
    assert list(tmp_path.iterdir()) == []


def test_port_in_use(own: sb.Sandbox, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match=f"port {own.port} on 127.0.0.1 is already in use"):
        sb.start(tmp_path / "clash", port=own.port)
    assert sb.status(tmp_path / "clash") is None
    # The folder the failed start made is gone again: no lock file, nothing.
    assert not (tmp_path / "clash").exists()


def test_failed_start_in_an_existing_folder_leaves_it_as_it_was(
    own: sb.Sandbox, tmp_path: Path
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("kept")
    with pytest.raises(SandboxError, match="already in use"):
        sb.start(folder, port=own.port)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    # A later start there works and its stop leaves the user's file alone.
    again = sb.start(folder)
    try:
        assert sb.status(folder) == again
    finally:
        sb.stop(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_failed_start_from_the_cli_leaves_no_lock_file(own: sb.Sandbox, tmp_path: Path) -> None:
    folder = tmp_path / "cli"
    command = ["sandbox", "start", "--dir", str(folder), "--port", str(own.port)]
    proc = subprocess.run(
        [sys.executable, "-m", "pgmonkey", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert f"port {own.port} on 127.0.0.1 is already in use" in proc.stderr
    assert not folder.exists()


def test_the_lock_survives_its_file_being_removed(tmp_path: Path) -> None:
    # Whoever holds the lock may remove the lock file; the next one locks a fresh file.
    with sb_process._locked(tmp_path, create=True):
        sb_process._unlock_file(tmp_path, remove_dir=False)
        assert not (tmp_path / ".sandbox.lock").exists()
    with sb_process._locked(tmp_path):
        assert (tmp_path / ".sandbox.lock").exists()


def test_session_fixtures(
    sandbox: sb.Sandbox,
    db_conn: Conn,
    superuser_dsn: str,
    password_config: Path,
    ssl_config: Path,
    cert_config: Path,
) -> None:
    assert os.environ["PGMONKEY_SANDBOX_DIR"] == str(sandbox.dir)
    assert sb.status() == sandbox
    assert superuser_dsn == sandbox.superuser_conninfo
    assert [password_config, ssl_config, cert_config] == [
        sandbox.configs[k] for k in ("password", "ssl", "cert")
    ]
    assert db_conn.autocommit
    assert db_conn.execute("SELECT current_user").fetchone() == ("pgmonkey",)


def test_auth_config_fixture(auth_config: Path, sandbox: sb.Sandbox) -> None:
    with _connect(_load(auth_config)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert auth_config in sandbox.configs.values()


def test_environment_is_wiped() -> None:
    leftovers = [k for k in os.environ if k.startswith("PG") and k != "PGMONKEY_SANDBOX_DIR"]
    assert leftovers == []


def test_restart_then_crash_then_start_afresh(tmp_path: Path) -> None:
    path = tmp_path / "crash"
    with pytest.raises(SandboxError, match="no sandbox is running"):
        sb.restart(path)
    before = sb.start(path)
    try:
        old = psycopg.connect(before.superuser_conninfo, autocommit=True)
        old.execute("CREATE TABLE kept (id int)")
        first = sb.restart(path)
        assert (first.port, first.password, first.configs) == (
            before.port,
            before.password,
            before.configs,
        )
        assert first.pid != before.pid
        assert _gone(before.pid)
        assert sb.status(path) == first
        with pytest.raises(psycopg.OperationalError):
            old.execute("SELECT 1")
        old.close()
        with psycopg.connect(first.superuser_conninfo) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)

        os.kill(first.pid, signal.SIGKILL)
        assert _gone(first.pid)
        assert sb.status(path) is None
        second = sb.start(path)
        assert second.pid != first.pid
        with psycopg.connect(second.superuser_conninfo) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("pgmonkey",)
    finally:
        sb.stop(path)
    assert not path.exists()


@pytest.mark.slow
def test_session_end_stops_a_sandbox_started_outside_fixtures(tmp_path: Path) -> None:
    # What a notebook run by nbval does: start() with the session's PGMONKEY_SANDBOX_DIR.
    pid_file = tmp_path / "pid"
    (tmp_path / "test_inner.py").write_text(
        "from pathlib import Path\n"
        "from pgmonkey import sandbox\n"
        "def test_start():\n"
        f"    Path({str(pid_file)!r}).write_text(str(sandbox.start().pid))\n"
    )
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.fix_sandbox",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_inner.py"),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _gone(int(pid_file.read_text()))
