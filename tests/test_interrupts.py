"""Ctrl-C or a cancellation in the middle of a query leaves the connection usable.

The interrupt used to leave libpq inside the query ("another command is already in
progress" on every later command, and every later notebook cell). Real processes: a script
starts a long query; a watcher sees it running on the server (pg_stat_activity), then
interrupts it (SIGINT for sync code, Task.cancel for async); the next query on the same
object works, and the user sees KeyboardInterrupt / CancelledError, not a parser error.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from pgmonkey import _psycopg
from tests._conn_support import run_script

# What both scripts start with: Ctrl-C as a terminal sends it, and a watcher that acts once
# another session sees the moment to (no guess about timing).
PROLOGUE = textwrap.dedent(
    """
    import asyncio, os, signal, sys, threading, time
    import psycopg
    import pgmonkey.frames

    MAIN = threading.main_thread().ident
    # As in an interactive Python: a child started from a background job (nohup, some CI
    # runners) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def ctrl_c():
        # To the main thread, as a terminal's Ctrl-C reaches the program.
        signal.pthread_kill(MAIN, signal.SIGINT)

    def when(dsn, count, action):
        # Run action once the query ``count`` (run by another session) counts a row.
        def watch():
            with psycopg.connect(dsn, autocommit=True) as admin:
                for _ in range(6000):
                    if admin.execute(count).fetchone()[0]:
                        action()
                        return
                    time.sleep(0.01)
        threading.Thread(target=watch, daemon=True).start()
    """
)

SCRIPT = PROLOGUE + textwrap.dedent(
    """
    from pgmonkey import PGConnectionManager

    config, admin_dsn = sys.argv[1], sys.argv[2]
    SLOW = "SELECT pg_sleep(60) AS s, 1 AS x /* pgm-interrupt */"

    def when_running(action):
        # Act once the server runs the slow query.
        when(
            admin_dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
            " AND query LIKE '%%pg_sleep(60)%%pgm-interrupt%%'"
            " AND pid <> pg_backend_pid()",
            action,
        )

    manager = PGConnectionManager()
    for ctype in ("normal", "pool"):
        obj = manager.get_database_connection(config, ctype)
        when_running(ctrl_c)
        try:
            pgmonkey.frames.read_sql(SLOW, obj)
        except BaseException as e:
            print(ctype, "raised", type(e).__name__, flush=True)
        df = pgmonkey.frames.read_sql("SELECT 1 AS x", obj)
        print(ctype, "after", df["x"].tolist(), flush=True)

    async def main():
        for ctype in ("async", "async_pool"):
            obj = await manager.get_database_connection(config, ctype)
            task = asyncio.ensure_future(pgmonkey.frames.read_sql_async(SLOW, obj))
            loop = asyncio.get_running_loop()
            when_running(lambda: loop.call_soon_threadsafe(task.cancel))
            try:
                await task
            except BaseException as e:
                print(ctype, "raised", type(e).__name__, flush=True)
            df = await pgmonkey.frames.read_sql_async("SELECT 1 AS x", obj)
            print(ctype, "after", df["x"].tolist(), flush=True)
        await manager.clear_cache_async()

    asyncio.run(main())

    # The magics: a %pgmonkey SELECT interrupted, then the next cell works.
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext pgmonkey")
    shell.run_cell(f"%pgmonkey connect {config} normal --name c")
    when_running(ctrl_c)
    r = shell.run_cell(f"%pgmonkey {SLOW}")
    print("magic raised", type(r.error_in_exec).__name__, flush=True)
    r = shell.run_cell("%pgmonkey SELECT 1 AS x")
    print("magic after", r.error_in_exec, r.result["x"].tolist(), flush=True)
    """
)


def test_interrupted_reads_leave_the_connection_usable(
    password_config: Path, superuser_dsn: str, tmp_path: Path
) -> None:
    done = run_script(tmp_path, SCRIPT, str(password_config), superuser_dsn)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for ctype in ("normal", "pool"):
        assert f"{ctype} raised KeyboardInterrupt" in lines, done.stdout + done.stderr
        assert f"{ctype} after [1]" in lines
    for ctype in ("async", "async_pool"):
        assert f"{ctype} raised CancelledError" in lines, done.stdout + done.stderr
        assert f"{ctype} after [1]" in lines
    assert "magic raised KeyboardInterrupt" in lines, done.stdout + done.stderr
    assert "magic after None [1]" in lines
    assert "another command is already in progress" not in done.stderr


def test_cancel_and_drain_ends_a_running_query(superuser_dsn: str) -> None:
    # The canary of the pq-level calls behind the fix (cancel_safe, then drain).
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.pgconn.send_query(b"SELECT pg_sleep(60)")
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE
        _psycopg.cancel_and_drain(conn)
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        row: Any = conn.execute("SELECT 2").fetchone()
        assert row == (2,)


# A read that fails (after its COPY: a value outside pandas' years) cleans up what it left
# running on the connection. A command another thread started on the same connection in the
# meantime is not the read's to cancel: the read is held at the start of its cleanup until
# that command is running on the server, then let go.
OTHER_THREAD_SCRIPT = textwrap.dedent(
    """
    import os, sys, threading, time
    import psycopg
    import pgmonkey
    from pgmonkey import _psycopg

    done = {}
    conn = psycopg.connect(sys.argv[1], autocommit=True)

    def other():
        try:
            done["row"] = conn.execute("SELECT 1 FROM pg_sleep(1)").fetchone()
        except psycopg.Error as error:
            done["error"] = repr(error)

    thread = threading.Thread(target=other, daemon=True)

    def hold(frame, event, arg):
        if event == "call" and frame.f_code is _psycopg.cancel_and_drain.__code__:
            thread.start()
            # Until the other command has been sent (or, on a machine too loaded to see it
            # running, has ended: then nothing is left to tell apart, and nothing hangs).
            active = psycopg.pq.TransactionStatus.ACTIVE
            while conn.pgconn.transaction_status != active and not done:
                time.sleep(0.001)

    sys.settrace(hold)
    try:
        pgmonkey.read_sql("SELECT 'infinity'::timestamp AS a", conn)
    except psycopg.DataError as error:
        print("read raised DataError", "infinity" in str(error))
    sys.settrace(None)
    # A bound on the wait, not on speed: a command whose results the read's cleanup took
    # would wait for them for ever (and hold the connection's lock).
    thread.join(timeout=60)
    if thread.is_alive():
        print("the other command lost its results", flush=True)
        os._exit(1)
    print("other", done)
    print("after", conn.execute("SELECT 2").fetchone())
    """
)


def test_a_failed_read_leaves_another_threads_command_alone(
    superuser_dsn: str, tmp_path: Path
) -> None:
    # It used to cancel the other thread's command, and take its results.
    done = run_script(tmp_path, OTHER_THREAD_SCRIPT, superuser_dsn)
    lines = done.stdout.splitlines()
    assert lines == [
        "read raised DataError True",
        "other {'row': (1,)}",
        "after (2,)",
    ], done.stdout + done.stderr


DESCRIBE_SCRIPT = PROLOGUE + textwrap.dedent(
    """
    dsn = sys.argv[1]

    def when_waiting(action):
        # Act once the read waits for the table's lock (its describe parses the query).
        when(
            dsn,
            "SELECT count(*) FROM pg_locks"
            " WHERE NOT granted AND relation = 'pgm_locked'::regclass",
            action,
        )

    def read_interrupted(label, conn):
        when_waiting(ctrl_c)
        try:
            pgmonkey.frames.read_sql("SELECT x FROM pgm_locked", conn)
        except BaseException as e:
            print(label, "raised", type(e).__name__, flush=True)

    with psycopg.connect(dsn, autocommit=True) as holder, \\
            psycopg.connect(dsn, autocommit=True) as conn:
        holder.execute("DROP TABLE IF EXISTS pgm_locked")
        holder.execute("CREATE TABLE pgm_locked AS SELECT 1 AS x")
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE pgm_locked IN ACCESS EXCLUSIVE MODE")
        read_interrupted("sync", conn)
        mode = psycopg.pq.PipelineStatus(conn.pgconn.pipeline_status)
        print("sync pipeline", mode.name, flush=True)
        print("sync after", pgmonkey.frames.read_sql("SELECT 1 AS x", conn)["x"].tolist())

        async def main():
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
                task = asyncio.ensure_future(
                    pgmonkey.frames.read_sql_async("SELECT x FROM pgm_locked", aconn)
                )
                loop = asyncio.get_running_loop()
                when_waiting(lambda: loop.call_soon_threadsafe(task.cancel))
                try:
                    await task
                except BaseException as e:
                    print("async raised", type(e).__name__, flush=True)
                mode = psycopg.pq.PipelineStatus(aconn.pgconn.pipeline_status)
                print("async pipeline", mode.name, flush=True)
                df = await pgmonkey.frames.read_sql_async("SELECT 1 AS x", aconn)
                print("async after", df["x"].tolist(), flush=True)

        asyncio.run(main())

        # Inside the caller's transaction: rolled back to the describe's savepoint, the
        # transaction goes on.
        with psycopg.connect(dsn) as tconn:
            tconn.execute("SELECT 1")
            read_interrupted("transaction", tconn)
            print("transaction status", tconn.info.transaction_status.name, flush=True)
            df = pgmonkey.frames.read_sql("SELECT 1 AS x", tconn)
            print("transaction after", df["x"].tolist(), flush=True)
            tconn.rollback()
        holder.execute("COMMIT")
        print("table", pgmonkey.frames.read_sql("SELECT x FROM pgm_locked", conn)["x"].tolist())
        holder.execute("DROP TABLE pgm_locked")
    """
)


def test_an_interrupted_describe_leaves_the_connection_usable(
    superuser_dsn: str, tmp_path: Path
) -> None:
    # The describe of a read (Parse and Describe, in libpq's pipeline mode) waits for the
    # lock of a table another session holds; Ctrl-C or a cancellation there ends the read,
    # and the connection is out of pipeline mode and usable.
    done = run_script(tmp_path, DESCRIBE_SCRIPT, superuser_dsn)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines == [
        "sync raised KeyboardInterrupt",
        "sync pipeline OFF",
        "sync after [1]",
        "async raised CancelledError",
        "async pipeline OFF",
        "async after [1]",
        "transaction raised KeyboardInterrupt",
        "transaction status INTRANS",
        "transaction after [1]",
        "table [1]",
    ], done.stdout + done.stderr


LINE_SCRIPT = PROLOGUE + textwrap.dedent(
    """
    import inspect
    from pgmonkey import _psycopg

    dsn, tx = sys.argv[1], sys.argv[2] == "tx"
    lines, first = inspect.getsourcelines(_psycopg.describe)
    body = range(first + 1, first + len(lines))
    for n in body:
        conn = psycopg.connect(dsn, autocommit=not tx)
        if tx:
            conn.execute("SELECT 1")
        fired = []

        def local(frame, event, arg, n=n):
            if event == "line" and frame.f_lineno == n and not fired:
                fired.append(n)
                ctrl_c()
            return local

        sys.settrace(lambda f, e, a: local if f.f_code.co_name == "describe" else None)
        try:
            pgmonkey.frames.read_sql("SELECT 2 AS b", conn)
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(None)
        status = "closed" if conn.closed else psycopg.pq.PipelineStatus(
            conn.pgconn.pipeline_status).name
        if not conn.closed:
            got = pgmonkey.frames.read_sql("SELECT 3 AS c", conn)["c"].tolist()
            status += f" {got} {conn.info.transaction_status.name}"
        print(n, bool(fired), status, flush=True)
        conn.close()
    """
)


@pytest.mark.parametrize("mode", ["autocommit", "tx"])
def test_ctrl_c_at_every_line_of_the_describe(
    superuser_dsn: str, tmp_path: Path, mode: str
) -> None:
    # A Ctrl-C at each line of the pipelined describe (a trace function sends it): the read
    # ends, and the connection is out of pipeline mode, usable, its transaction going on.
    # Before the fix, a Ctrl-C before the Sync was sent waited for an answer that never
    # came, and one after the Sync was read spun at full CPU.
    done = run_script(tmp_path, LINE_SCRIPT, superuser_dsn, mode, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.split(" ", 2) for line in done.stdout.splitlines()]
    # Every line the describe runs (its docstring's lines never fire).
    assert sum(fired == "True" for _, fired, _ in lines) >= 8, done.stdout
    expected = "OFF [3] " + ("INTRANS" if mode == "tx" else "IDLE")
    assert all(status == expected for _, _, status in lines), done.stdout + done.stderr


# A pool of one connection, held by one block; another block waits for it and is
# interrupted (a watcher sees the pool's waiting request, then sends Ctrl-C). The held
# connection then goes back, and the next borrow gets it: psycopg_pool's sync waiting client
# caught Exception only, so the interrupted waiter took that connection away for good.
POOL_WAIT_SCRIPT = PROLOGUE + textwrap.dedent(
    """
    import inspect
    from pgmonkey import PGConnectionManager

    config = sys.argv[1]
    manager = PGConnectionManager()
    pool = manager.get_database_connection(config, "pool")

    def when_waiting(action):
        def watch():
            for _ in range(6000):
                if pool.pool.get_stats().get("requests_waiting", 0):
                    action()
                    return
                time.sleep(0.01)
        threading.Thread(target=watch, daemon=True).start()

    for way in ("with", "connection()"):
        with pool as held:
            when_waiting(ctrl_c)
            try:
                if way == "with":
                    with pool as conn:
                        print(way, "borrowed a second connection", flush=True)
                else:
                    with pool.connection() as conn:
                        print(way, "borrowed a second connection", flush=True)
            except BaseException as e:
                print(way, "raised", type(e).__name__, flush=True)
            pid = held.info.backend_pid
        with pool.connection(timeout=20) as again:
            print(way, "after", again.info.backend_pid == pid, flush=True)
        print(way, "available", pool.pool.get_stats()["pool_available"], flush=True)

    # Ctrl-C while the borrow's helper thread is being started: the helper runs (it may be
    # queued in the pool already) though the borrow ends, and must still give back what it
    # gets. Sent from a trace function at Thread.start's wait for the new thread.
    start_wait = next(
        threading.Thread.start.__code__.co_firstlineno + i
        for i, line in enumerate(inspect.getsourcelines(threading.Thread.start)[0])
        if "_started.wait()" in line
    )
    fired = []

    def local(frame, event, arg):
        if event == "line" and frame.f_lineno == start_wait and not fired:
            if frame.f_locals["self"].name == "pgmonkey-pool-borrow":
                fired.append(True)
                ctrl_c()
        return local

    with pool as held:
        sys.settrace(lambda f, e, a: local if f.f_code is threading.Thread.start.__code__ else None)
        try:
            with pool as conn:
                print("start borrowed a second connection", flush=True)
        except BaseException as e:
            print("start raised", type(e).__name__, bool(fired), flush=True)
        finally:
            sys.settrace(None)
    # The helper took the connection given back; once it has ended, the pool holds it again.
    for _ in range(6000):  # a bound, not a pace
        if not any(t.name == "pgmonkey-pool-borrow" for t in threading.enumerate()):
            break
        time.sleep(0.01)
    print("start available", pool.pool.get_stats()["pool_available"], flush=True)
    manager.clear_cache()
    """
)


def test_ctrl_c_while_waiting_for_a_pooled_connection_loses_none(
    tmp_path: Path, password_config: Path
) -> None:
    config = yaml.safe_load(password_config.read_text())
    config["pool_settings"] = {"min_size": 1, "max_size": 1, "timeout": 60}
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(config))
    done = run_script(tmp_path, POOL_WAIT_SCRIPT, str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "with raised KeyboardInterrupt",
        "with after True",
        "with available 1",
        "connection() raised KeyboardInterrupt",
        "connection() after True",
        "connection() available 1",
        "start raised KeyboardInterrupt True",
        "start available 1",
    ], done.stdout + done.stderr
