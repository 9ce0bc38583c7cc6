"""Helpers shared by the connection and manager tests (not a test module)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from pgmonkey.connections import _lifecycle

POLL_DEADLINE = 120.0  # seconds: generous, only ever reached when something is broken


def derive_config(base: Path, dest_dir: Path, **sections: Any) -> Path:
    """A copy of the YAML config *base* in *dest_dir* with sections updated.

    ``connection_settings`` entries are merged into the base's; other sections replace.
    A unique ``application_name`` is set so a test can count its own server connections.
    """
    data = yaml.safe_load(base.read_text())
    settings = dict(data.get("connection_settings") or {})
    settings["application_name"] = f"pgm-test-{uuid.uuid4().hex[:10]}"
    settings.update(sections.pop("connection_settings", {}))
    data["connection_settings"] = settings
    data.update(sections)
    path = dest_dir / f"cfg-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    path.chmod(0o600)
    return path


def poll(what: str, check: Callable[[], Any], deadline: float = POLL_DEADLINE) -> Any:
    """The first true value of ``check()``, asked again and again: a wait for a state the
    server or another process reaches, never a guess at how long it takes."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def run_script(
    tmp_path: Path, text: str, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """*text* run as a script by a fresh interpreter, with *args*; its output captured."""
    script = tmp_path / "script.py"
    script.write_text(text)
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout
    )


def app_name(path: Path) -> str:
    return str(yaml.safe_load(path.read_text())["connection_settings"]["application_name"])


def in_transaction(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """(pid, state, query) of the other sessions in this database idle inside a transaction
    (aborted ones too): each holds a snapshot back, and CREATE INDEX CONCURRENTLY waits
    for it."""
    return conn.execute(
        "SELECT pid, state, left(query, 200) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND state LIKE 'idle in transaction%'"
    ).fetchall()


def server_connections(db_conn: psycopg.Connection[Any], application_name: str) -> int:
    """How many backends the server has for *application_name*."""
    row = db_conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
        (application_name,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def connections_after_close(
    db_conn: psycopg.Connection[Any], application_name: str, timeout: float = 30.0
) -> int:
    """The backends of *application_name* once closed ones have gone (0 as soon as it is 0).

    A backend leaves ``pg_stat_activity`` a moment after its client closed the socket; on a
    loaded machine that moment can be long. The deadline only matters when something leaked.
    """
    deadline = time.monotonic() + timeout
    while (count := server_connections(db_conn, application_name)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def terminate(db_conn: psycopg.Connection[Any], application_name: str) -> int:
    """Kill every backend of *application_name* (pg_terminate_backend); how many."""
    rows = db_conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (application_name,),
    ).fetchall()
    return len(rows)


@pytest.fixture(autouse=True)
def close_leftovers() -> Iterator[None]:
    """Whatever a test left open (examples drop their managers) is closed after it."""
    yield
    for obj in _lifecycle.live_objects():
        obj.close_now(2.0)


class Background:
    """A call on a thread of its own; :meth:`wait` gives its result or raises its error."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except BaseException as error:
            self.error = error

    def wait(self) -> Any:
        self.thread.join(POLL_DEADLINE)
        assert not self.thread.is_alive(), "the call did not end"
        if self.error is not None:
            raise self.error
        return self.result


def advisory_waiters(admin: psycopg.Connection[Any], key: int) -> int:
    """How many sessions wait for advisory lock ``key`` (a test's gate on a query)."""
    row = admin.execute(
        "SELECT count(*) FROM pg_catalog.pg_locks"
        " WHERE locktype = 'advisory' AND objid = %s AND NOT granted",
        (key,),
    ).fetchone()
    assert row is not None
    return int(row[0])
