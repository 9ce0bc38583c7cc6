"""Scale-out: PgBouncer in transaction mode and multi-host failover, for real.

One module-scoped sandbox of its own (not the session's) with a streaming standby and a
PgBouncer in front of the primary; the failover test starts another one through the CLI,
since it stops that sandbox's primary.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import PoolTimeout

from pgmonkey import PGConnectionManager, load_config, serveradvice
from pgmonkey import sandbox as sb
from pgmonkey.errors import SandboxError
from pgmonkey.sandbox import _model as sb_model
from pgmonkey.sandbox import _scaleout as sb_scaleout

pytestmark = pytest.mark.slow

# What psycopg's server-side prepared statements run into behind PgBouncer (< 1.21) in
# transaction mode: the next transaction lands on another server connection.
PREPARED_ERRORS = (
    psycopg.errors.DuplicatePreparedStatement,
    psycopg.errors.InvalidSqlStatementName,
)
QUERY = "SELECT %s::int + %s::int, pg_backend_pid()"


def _has_pgbouncer() -> bool:
    try:
        sb.find_pgbouncer()
    except SandboxError:
        return False
    return True


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sb.Sandbox]:
    """A sandbox with one standby, and PgBouncer when the binary is installed."""
    path = tmp_path_factory.mktemp("scaleout")
    running = sb.start(path, standbys=1, pgbouncer=_has_pgbouncer())
    try:
        yield running
    finally:
        sb.stop(path)


@pytest.fixture
def bouncer(scaled: sb.Sandbox) -> dict[str, Any]:
    """The PgBouncer config as a dict (skips when pgbouncer is not installed)."""
    if scaled.pgbouncer is None:
        pytest.skip(sb.PGBOUNCER_HINT)
    cfg = load_config(scaled.configs["pgbouncer"])
    for section in ("pool_settings", "async_pool_settings"):
        cfg[section].update(min_size=1, max_size=8, timeout=20)
    return cfg


def _without_null_threshold(cfg: dict[str, Any]) -> dict[str, Any]:
    """The same config with psycopg's default prepare_threshold (prepare after 5 runs)."""
    settings = {k: v for k, v in cfg["connection_settings"].items() if k != "prepare_threshold"}
    return {**cfg, "connection_settings": settings}


def _threads(
    cfg: dict[str, Any], threads: int = 8, rounds: int = 25
) -> tuple[set[int], Counter[type]]:
    """*threads* threads through one ``pool``, a parameterised query per transaction.

    Returns the server backends seen and the errors by class.
    """
    manager = PGConnectionManager()
    pool = manager.get_database_connection_from_dict(cfg, "pool")
    backends: set[int] = set()
    errors: Counter[type] = Counter()
    lock = threading.Lock()

    def work(n: int) -> None:
        for r in range(rounds):
            try:
                with pool as conn:
                    total, backend = conn.execute(QUERY, (n, r)).fetchone()
                assert total == n + r
                with lock:
                    backends.add(backend)
            except psycopg.Error as e:
                with lock:
                    errors[type(e)] += 1

    try:
        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
        assert not any(w.is_alive() for w in workers)
    finally:
        pool.disconnect()
    return backends, errors


async def _tasks(
    cfg: dict[str, Any], tasks: int = 200, rounds: int = 3
) -> tuple[int, Counter[type]]:
    """*tasks* asyncio tasks through one ``async_pool``; returns successes and errors."""
    manager = PGConnectionManager()
    pool = await manager.get_database_connection_from_dict(cfg, "async_pool")
    errors: Counter[type] = Counter()
    done = 0

    async def work(n: int) -> None:
        nonlocal done
        for r in range(rounds):
            try:
                async with pool as conn:
                    cur = await conn.execute(QUERY, (n, r))
                    row = await cur.fetchone()
                assert row is not None and row[0] == n + r
                done += 1
            except psycopg.Error as e:
                errors[type(e)] += 1

    try:
        await asyncio.wait_for(asyncio.gather(*(work(n) for n in range(tasks))), timeout=120)
    finally:
        await pool.disconnect()
    return done, errors


# --- the sandbox's scale-out options ------------------------------------------------------


def test_standby_streams_and_configs_load_cleanly(
    scaled: sb.Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert sb.status(scaled.dir) == scaled
    (standby,) = scaled.standbys
    assert standby.name == "standby1"
    ports = [scaled.port, standby.port, *([scaled.pgbouncer.port] if scaled.pgbouncer else [])]
    assert len(set(ports)) == len(ports)
    expected = {"password", "ssl", "cert", "standby1", "multihost", "readonly"}
    if scaled.pgbouncer is not None:
        expected.add("pgbouncer")
    assert set(scaled.configs) == expected
    summary = scaled.describe()
    assert scaled.password not in summary and scaled.password not in repr(scaled)
    for path in scaled.configs.values():
        assert str(path) in summary
    with caplog.at_level(logging.WARNING):
        configs = {kind: load_config(path) for kind, path in scaled.configs.items()}
    assert caplog.records == []
    multi = configs["multihost"]["connection_settings"]
    assert multi["host"] == "127.0.0.1,127.0.0.1"
    assert multi["port"] == f"{scaled.port},{standby.port}"
    assert multi["target_session_attrs"] == "read-write"
    assert configs["multihost"]["pool_settings"]["check_on_checkout"] is True
    assert configs["readonly"]["connection_settings"]["target_session_attrs"] == "prefer-standby"

    with psycopg.connect(scaled.superuser_conninfo, autocommit=True) as primary:
        row = primary.execute(
            "SELECT state FROM pg_stat_replication WHERE application_name = 'standby1'"
        ).fetchone()
        assert row == ("streaming",)
        primary.execute("DROP TABLE IF EXISTS replicated")
        primary.execute("CREATE TABLE replicated AS SELECT generate_series(1, 100) AS n")
    with psycopg.connect(scaled.node_conninfo("standby1"), autocommit=True) as replica:
        assert replica.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        deadline = time.monotonic() + 10
        while replica.execute("SELECT to_regclass('replicated') IS NULL").fetchone() == (True,):
            assert time.monotonic() < deadline, "the standby did not replay the new table"
            time.sleep(0.05)
        assert replica.execute("SELECT count(*) FROM replicated").fetchone() == (100,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            replica.execute("INSERT INTO replicated VALUES (101)")


def test_start_again_returns_the_same_scaled_out_sandbox(scaled: sb.Sandbox) -> None:
    assert sb.start(scaled.dir) == scaled
    assert sb.start(scaled.dir, standbys=1, pgbouncer=scaled.pgbouncer is not None) == scaled
    with pytest.raises(SandboxError, match="no node 'standby9'"):
        scaled.node_conninfo("standby9")


def test_scale_out_a_running_sandbox(tmp_path: Path) -> None:
    path = tmp_path / "grow"
    plain = sb.start(path)
    try:
        assert plain.standbys == () and plain.pgbouncer is None
        assert set(plain.configs) == {"password", "ssl", "cert"}
        with pytest.raises(SandboxError, match="no node 'standby1': expected one of primary"):
            sb.promote(path, 1)
        grown = sb.start(path, standbys=1)
        assert (grown.port, grown.pid) == (plain.port, plain.pid)
        assert [n.name for n in grown.standbys] == ["standby1"]
        assert grown.configs["readonly"].exists()
        with pytest.raises(SandboxError, match="promote a standby"):
            sb.promote(path, "primary")
        with pytest.raises(SandboxError, match="has no pgbouncer"):
            sb.stop_node(path, "pgbouncer")
        (standby,) = grown.standbys
        assert sb.stop_node(path, "standby1") is True
        assert _gone(standby.pid)
        assert sb.stop_node(path, "standby1") is False
        assert sb.status(path) == grown  # the primary still runs
    finally:
        assert sb.stop(path) is True
    assert not path.exists()


def test_a_failed_standby_leaves_the_running_sandbox_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "half"
    plain = sb.start(path)
    try:
        real_run = sb_scaleout._run

        def failing_basebackup(cmd: Any, **kwargs: Any) -> None:
            if Path(str(cmd[0])).name == "pg_basebackup":
                raise SandboxError("pg_basebackup failed with exit code 1: simulated")
            real_run(cmd, **kwargs)

        with monkeypatch.context() as m:
            m.setattr(sb_scaleout, "_run", failing_basebackup)
            with pytest.raises(SandboxError, match="simulated"):
                sb.start(path, standbys=1)
        assert sb.status(path) == plain
        assert json.loads((path / "sandbox.json").read_text())["standbys"] == []
        assert not (plain.server_dir / "standby1").exists()
        assert not (path / "standby1.yaml").exists() and not (path / "multihost.yaml").exists()
        grown = sb.start(path, standbys=1)
        assert [n.name for n in grown.standbys] == ["standby1"]
    finally:
        sb.stop(path)


@pytest.mark.parametrize("bad", [-1, 10, True, "1"])
def test_invalid_standbys(bad: Any, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="invalid number of standbys"):
        sb.start(tmp_path / "never", standbys=bad)
    assert not (tmp_path / "never").exists()


def test_missing_pgbouncer_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(sb.PGBOUNCER_ENV, str(tmp_path / "no-such-pgbouncer"))
    with pytest.raises(SandboxError) as info:
        sb.start(tmp_path / "sb", standbys=1, pgbouncer=True)
    message = str(info.value)
    assert "\n" not in message
    assert "apt-get install pgbouncer" in message
    assert not (tmp_path / "sb").exists()  # checked before anything is created

    proc = _cli("start", "--dir", str(tmp_path / "cli"), "--pgbouncer")
    assert proc.returncode != 0
    assert "apt-get install pgbouncer" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cli").exists()


def _kill(pid: int) -> None:
    """SIGKILL *pid* and wait until it is gone (a zombie waiting to be reaped counts)."""
    os.kill(pid, signal.SIGKILL)
    stat = Path(f"/proc/{pid}/stat")
    while True:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return
        except FileNotFoundError:
            return
        time.sleep(0.05)


def test_start_after_a_crash_drops_the_configs_of_dead_nodes(tmp_path: Path) -> None:
    # A crash or a reboot: every server of the sandbox is gone, its files stay.
    path = tmp_path / "crashed"
    before = sb.start(path, standbys=1)
    try:
        for pid in (before.standbys[0].pid, before.pid):
            _kill(pid)
        for kind in ("standby1", "multihost", "readonly"):
            assert before.configs[kind].exists()
        after = sb.start(path)
        assert sorted(after.configs) == ["cert", "password", "ssl"]
        left = sorted(p.name for p in path.glob("*.yaml"))
        assert left == ["cert.yaml", "password.yaml", "ssl.yaml"]
        assert load_config(after.configs["password"])["connection_settings"]["port"] == str(
            after.port
        )
        # Asking for the standby again writes its configs anew, for the new ports.
        again = sb.start(path, standbys=1)
        ports = load_config(again.configs["multihost"])["connection_settings"]["port"]
        assert ports == f"{again.port},{again.standbys[0].port}"
    finally:
        sb.stop(path)
    assert not path.exists()


def test_audit_reports_standby_and_replication(scaled: sb.Sandbox) -> None:
    standby = serveradvice.audit(load_config(scaled.configs["standby1"]))
    assert standby.in_recovery is True
    assert "WAL receiver: streaming" in standby.replication
    assert any(line.startswith("replication lag: ") for line in standby.replication)
    text = standby.to_text()
    assert "This server is a standby" in text
    assert "Replication:" in text

    primary = serveradvice.audit(load_config(scaled.configs["password"]))
    assert primary.in_recovery is False
    (line,) = primary.replication
    assert line.startswith("standby standby1 from 127.0.0.1: streaming (async), replay lag ")
    assert scaled.password not in primary.to_text() + text


@pytest.fixture(params=[False, True], ids=["plain-role", "pg_read_all_stats"])
def auditor(scaled: sb.Sandbox, request: pytest.FixtureRequest) -> Iterator[tuple[str, str, bool]]:
    """A login role made for the test: (name, password, member of pg_read_all_stats).

    Created on the primary; waits until the standby has replayed it.
    """
    role, password = f"auditor_{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    stats: bool = request.param
    with psycopg.connect(scaled.superuser_conninfo, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        if stats:
            admin.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(role)))
        # The insert position: with synchronous_commit off the commit may not be written yet.
        row = admin.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    replayed = "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn"
    with psycopg.connect(scaled.node_conninfo("standby1"), autocommit=True) as standby:
        deadline = time.monotonic() + 60
        while standby.execute(replayed, (row[0],)).fetchone() != (True,):
            assert time.monotonic() < deadline, "the standby did not replay the new role"
            time.sleep(0.05)
    try:
        yield role, password, stats
    finally:
        with psycopg.connect(scaled.superuser_conninfo, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_audit_as_a_non_superuser_says_what_it_cannot_see(
    scaled: sb.Sandbox, auditor: tuple[str, str, bool]
) -> None:
    role, password, stats = auditor
    reports = {}
    for kind in ("standby1", "password"):
        config = load_config(scaled.configs[kind])
        config["connection_settings"].update(user=role, password=password)
        reports[kind] = serveradvice.audit(config)
    standby, primary = reports["standby1"], reports["password"]
    assert standby.in_recovery is True and primary.in_recovery is False
    (sender,) = primary.replication
    if stats:
        assert "WAL receiver: streaming" in standby.replication
        assert sender.startswith("standby standby1 from 127.0.0.1: streaming (async), ")
    else:
        hidden = f"hidden from role {role!r}: needs pg_read_all_stats"
        # The WAL receiver runs; only its status is hidden: never "not running".
        assert standby.replication[0] == f"WAL receiver: running, status unknown ({hidden})"
        assert sender == f"standby standby1: state, address and lag unknown ({hidden})"
    assert any(line.startswith("replication lag: ") for line in standby.replication)
    for report in (standby, primary):
        text = report.to_text(width=1000)
        assert "None" not in text and "not running" not in text
        assert password not in text


# --- multi-host: read-write and prefer-standby, all four types ----------------------------


async def _where(manager: PGConnectionManager, path: Path, ctype: str) -> tuple[bool, int]:
    sql = "SELECT pg_is_in_recovery(), current_setting('port')::int"
    obj = manager.get_database_connection(path, ctype)
    if ctype in ("async", "async_pool"):
        obj = await obj
        async with obj as conn:
            cur = await conn.execute(sql)
            row = await cur.fetchone()
        await obj.disconnect()
    else:
        with obj as conn:
            row = conn.execute(sql).fetchone()
        obj.disconnect()
    assert row is not None
    return bool(row[0]), int(row[1])


@pytest.mark.parametrize("ctype", ["normal", "pool", "async", "async_pool"])
async def test_multihost_writes_to_primary_and_reads_from_standby(
    scaled: sb.Sandbox, ctype: str
) -> None:
    manager = PGConnectionManager()
    (standby,) = scaled.standbys
    assert await _where(manager, scaled.configs["multihost"], ctype) == (False, scaled.port)
    assert await _where(manager, scaled.configs["readonly"], ctype) == (True, standby.port)


def test_prefer_standby_with_load_balancing_still_reads_from_the_standby(
    scaled: sb.Sandbox,
) -> None:
    cfg = load_config(scaled.configs["readonly"])
    cfg["connection_settings"]["load_balance_hosts"] = "random"
    manager = PGConnectionManager()
    for _ in range(5):
        with manager.get_database_connection_from_dict(cfg, "normal", force_reload=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    manager.clear_cache()


# --- PgBouncer in transaction mode ----------------------------------------------------------


def test_pgbouncer_threads_without_prepared_statements(
    scaled: sb.Sandbox, bouncer: dict[str, Any]
) -> None:
    assert bouncer["connection_settings"]["prepare_threshold"] is None
    assert "async_settings" not in bouncer and "sync_settings" not in bouncer
    backends, errors = _threads(bouncer)
    assert errors == Counter()
    # 8 client connections shared at most 4 server connections (default_pool_size).
    assert 1 <= len(backends) <= sb_model._PGBOUNCER_POOL_SIZE


async def test_pgbouncer_tasks_without_prepared_statements(bouncer: dict[str, Any]) -> None:
    done, errors = await _tasks(bouncer)
    assert errors == Counter()
    assert done == 200 * 3


def test_pgbouncer_default_prepare_threshold_fails(bouncer: dict[str, Any]) -> None:
    _backends, errors = _threads(_without_null_threshold(bouncer))
    assert errors, "psycopg's prepared statements were expected to break behind PgBouncer"
    assert set(errors) <= set(PREPARED_ERRORS), errors


async def test_pgbouncer_default_prepare_threshold_fails_async(bouncer: dict[str, Any]) -> None:
    _done, errors = await _tasks(_without_null_threshold(bouncer))
    assert errors, "psycopg's prepared statements were expected to break behind PgBouncer"
    assert set(errors) <= set(PREPARED_ERRORS), errors


# --- failover --------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgmonkey", "sandbox", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _pids_under(server_dir: Path) -> list[int]:
    """Processes whose command line names the server directory (postgres -D, pgbouncer)."""
    proc = subprocess.run(
        ["pgrep", "-f", str(server_dir)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in proc.stdout.split()]


def _gone(pid: int, timeout: float = 10.0) -> bool:
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


async def test_failover_pools_follow_the_new_primary(tmp_path: Path) -> None:
    """CLI start --standbys 1 [--pgbouncer], status; failover; CLI stop leaves no process."""
    path = tmp_path / "failover"
    flags = ["--pgbouncer"] if _has_pgbouncer() else []
    started = _cli("start", "--dir", str(path), "--standbys", "1", *flags)
    assert started.returncode == 0, started.stderr
    box = sb.status(path)
    assert box is not None
    try:
        assert box.password not in started.stdout
        assert "standby1: streaming replica on 127.0.0.1:" in started.stdout
        assert str(box.configs["multihost"]) in started.stdout
        status = _cli("status", "--dir", str(path))
        assert status.returncode == 0 and status.stdout == started.stdout
        await _failover(box)
        assert sb.status(path) is None  # its primary is gone
    finally:
        pids = [box.pid, *(n.pid for n in box.standbys)]
        pids += [box.pgbouncer.pid] if box.pgbouncer else []
        pids += _pids_under(box.server_dir)
        stopped = _cli("stop", "--dir", str(path))
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == "sandbox stopped"
    assert all(_gone(pid) for pid in pids)
    assert _pids_under(box.server_dir) == []
    assert not path.exists() and not box.server_dir.exists()


async def _failover(box: sb.Sandbox) -> None:
    (standby,) = box.standbys
    cfg = load_config(box.configs["multihost"])
    for section in ("pool_settings", "async_pool_settings"):
        cfg[section].update(min_size=2, max_size=4, timeout=2)
    manager = PGConnectionManager()
    pool = manager.get_database_connection_from_dict(cfg, "pool")
    apool = await manager.get_database_connection_from_dict(cfg, "async_pool")
    write = "INSERT INTO failover (who) VALUES (%s) RETURNING current_setting('port')::int"

    def sync_write() -> int:
        with pool as conn:
            row = conn.execute(write, ("pool",)).fetchone()
        assert row is not None
        return int(row[0])

    async def pool_write() -> int:
        return await asyncio.to_thread(sync_write)

    async def async_write() -> int:
        async with apool as conn:
            cur = await conn.execute(write, ("async_pool",))
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    try:
        with psycopg.connect(box.superuser_conninfo, autocommit=True) as conn:
            conn.execute("CREATE TABLE failover (id serial, who text)")
        assert sync_write() == box.port
        assert await async_write() == box.port

        assert sb.stop_node(box.dir, "primary") is True
        # No primary at all: each query fails with a clear error within the pool timeout.
        for attempt in (pool_write, async_write):
            began = time.monotonic()
            with pytest.raises(psycopg.OperationalError) as info:
                await attempt()
            assert time.monotonic() - began < 2 + 5
            assert isinstance(info.value, PoolTimeout) or "connection" in str(info.value)

        promoted = sb.promote(box.dir, 1)
        assert promoted.port == standby.port
        deadline = time.monotonic() + 10
        seen: dict[str, int] = {}
        failures: list[BaseException] = []
        while len(seen) < 2:
            assert time.monotonic() < deadline, f"no write after 10 s: {failures!r}"
            for name, attempt in (("pool", pool_write), ("async_pool", async_write)):
                if name in seen:
                    continue
                try:
                    seen[name] = await attempt()
                except psycopg.OperationalError as e:  # PoolTimeout is one
                    failures.append(e)
            await asyncio.sleep(0.1)
        assert seen == {"pool": standby.port, "async_pool": standby.port}
        with psycopg.connect(box.node_conninfo("standby1"), autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
            rows = conn.execute("SELECT who, count(*) FROM failover GROUP BY 1 ORDER BY 1")
            assert rows.fetchall() == [("async_pool", 2), ("pool", 2)]
    finally:
        pool.disconnect()
        await apool.disconnect()


def test_sandbox_state_has_no_secret_outside_the_state_file(scaled: sb.Sandbox) -> None:
    state = json.loads((scaled.dir / "sandbox.json").read_text())
    assert [s["name"] for s in state["standbys"]] == ["standby1"]
    for name in os.listdir(scaled.dir):
        if name.endswith(".yaml") or name == "sandbox.json":
            mode = (scaled.dir / name).stat().st_mode & 0o777
            assert mode == 0o600, name
    if scaled.pgbouncer is not None:
        userlist = (scaled.server_dir / "pgbouncer" / "userlist.txt").read_text()
        assert scaled.password not in userlist  # a SCRAM verifier, not the password
        assert "SCRAM-SHA-256$" in userlist
