"""After os.fork() a child never closes or uses the parent's connections.

A child that exits normally used to run pgmonkey's exit handler (and finalizers) on the
objects it inherited, closing the parent's sockets: the parent's open transaction and its
pool's idle connections died. Real processes: a script forks; the child exits normally (its
atexit handlers and finalizers run); the parent then commits its transaction and uses its
pool. The child's own manager opens connections of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgmonkey import PGConnectionManager
from pgmonkey.errors import ConnectionStateError

SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, os, sys
    from pgmonkey import PGConnectionManager, ConnectionStateError

    config, table = sys.argv[1], sys.argv[2]
    manager = PGConnectionManager()
    normal = manager.get_database_connection(config, "normal")
    pool = manager.get_database_connection(config, "pool")
    with pool as c:  # the pool holds idle connections now
        c.execute("SELECT 1")

    with normal as conn:  # an open transaction across the fork
        conn.execute(f"INSERT INTO {table} VALUES ('before fork')")
        pid = os.fork()
        if pid == 0:
            # The child: an inherited object refuses to be used ...
            try:
                with pool as c:
                    c.execute("SELECT 1")
                print("child: inherited pool used", flush=True)
            except ConnectionStateError as e:
                print("child: refused:", "after os.fork()" in str(e), flush=True)
            # ... its manager opens connections of its own ...
            mine = manager.get_database_connection(config, "normal")
            assert mine is not normal
            with mine as c:
                c.execute(f"INSERT INTO {table} VALUES ('child')")
            # ... and a normal exit runs atexit handlers and finalizers.
            del normal, pool
            gc.collect()
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        print("child exit status:", os.waitstatus_to_exitcode(status), flush=True)
        conn.execute(f"INSERT INTO {table} VALUES ('after fork')")
    with pool as c:
        print("pool after fork:", c.execute("SELECT 41 + 1").fetchone()[0], flush=True)
    print("parent done", flush=True)
    """
)


def test_a_forked_child_leaves_the_parents_connections_alone(
    password_config: Path, tmp_path: Path, db_conn: psycopg.Connection[Any]
) -> None:
    table = f"fork_{uuid.uuid4().hex[:8]}"
    db_conn.execute(f"CREATE TABLE {table} (v text)")
    db_conn.execute(f"GRANT ALL ON {table} TO PUBLIC")
    db_conn.commit()
    script = tmp_path / "fork.py"
    script.write_text(SCRIPT)
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-W",
                "ignore::ResourceWarning",
                str(script),
                str(password_config),
                table,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert "child: refused: True" in lines
        assert "child exit status: 0" in lines
        assert "pool after fork: 42" in lines
        assert "parent done" in lines
        rows = db_conn.execute(f"SELECT v FROM {table} ORDER BY v").fetchall()
        assert [r[0] for r in rows] == ["after fork", "before fork", "child"]
    finally:
        db_conn.rollback()
        db_conn.execute(f"DROP TABLE {table}")
        db_conn.commit()


@pytest.mark.parametrize("ctype", ["normal", "pool"])
def test_the_check_is_the_process_id(password_config: Path, ctype: str) -> None:
    manager = PGConnectionManager()
    obj = manager.get_database_connection(password_config, ctype)
    assert not obj.inherited
    obj._pid = -1  # as a forked child sees it: created by another process
    assert obj.inherited
    with pytest.raises(ConnectionStateError, match=r"after os\.fork"):
        with obj:
            pass
    obj._pid = os.getpid()
    manager.clear_cache()
