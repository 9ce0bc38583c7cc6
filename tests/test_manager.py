"""PGConnectionManager: the per-manager cache, its keys, locks and lifecycle."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from pgmonkey import ConfigError, PGConnectionManager, load_config
from pgmonkey.connections.async_pool import PGAsyncPoolConnection
from pgmonkey.connections.pool import PGPoolConnection
from tests._conn_support import (
    app_name,
    close_leftovers,  # noqa: F401 (autouse fixture)
    connections_after_close,
    derive_config,
    server_connections,
)


def test_fresh_manager_is_empty_and_caches_per_type(password_config: Path) -> None:
    manager = PGConnectionManager()
    assert manager.cache_info == {"size": 0, "connection_types": {}}
    normal = manager.get_database_connection(password_config, "normal")
    pool = manager.get_database_connection(password_config, "pool")
    assert manager.get_database_connection(password_config, "normal") is normal
    assert manager.get_database_connection(password_config) is normal  # the file's type
    assert manager.get_database_connection(str(password_config), "pool") is pool
    info = manager.cache_info
    assert info["size"] == 2
    assert sorted(info["connection_types"].values()) == ["normal", "pool"]
    # Another manager has its own cache (as in 4.0).
    other = PGConnectionManager()
    assert other.cache_info["size"] == 0
    assert other.get_database_connection(password_config, "normal") is not normal
    other.clear_cache()
    manager.clear_cache()
    assert manager.cache_info["size"] == 0
    assert normal.connection is None and pool.pool is None


def test_relative_path_and_file_change(
    password_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = derive_config(password_config, tmp_path)
    monkeypatch.chdir(tmp_path)
    manager = PGConnectionManager()
    first = manager.get_database_connection(config.name, "normal")
    assert manager.get_database_connection(config, "normal") is first
    # Edit the file: its new content is a new key (size and mtime changed).
    data = yaml.safe_load(config.read_text())
    data["connection_settings"]["application_name"] = "pgm-test-changed-name"
    config.write_text(yaml.safe_dump(data))
    second = manager.get_database_connection(config.name, "normal")
    assert second is not first
    with second as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("pgm-test-changed-name",)
    manager.clear_cache()


def test_force_reload_replaces_and_disconnect_evicts(
    password_config: Path, tmp_path: Path, db_conn: psycopg.Connection[Any]
) -> None:
    config = derive_config(password_config, tmp_path)
    manager = PGConnectionManager()
    pool = manager.get_database_connection(config, "pool")
    fresh = manager.get_database_connection(config, "pool", force_reload=True)
    assert fresh is not pool and pool.pool is None  # the old one was closed
    assert manager.get_database_connection(config, "pool") is fresh
    assert manager.cache_info["size"] == 1
    fresh.disconnect()
    assert manager.cache_info["size"] == 0
    again = manager.get_database_connection(config, "pool")
    assert again is not fresh
    with again as conn:
        conn.execute("SELECT 1")
    manager.clear_cache()
    assert connections_after_close(db_conn, app_name(config)) == 0


async def test_async_force_reload_and_disconnect(password_config: Path) -> None:
    manager = PGConnectionManager()
    first = await manager.get_database_connection(password_config, "async")
    assert await manager.get_database_connection(password_config, "async") is first
    second = await manager.get_database_connection(password_config, "async", force_reload=True)
    assert second is not first and first.connection is None
    await second.disconnect()
    assert manager.cache_info["size"] == 0


def test_from_dict_keys_on_content(password_config: Path) -> None:
    cfg = load_config(password_config)
    manager = PGConnectionManager()
    a = manager.get_database_connection_from_dict(cfg, "normal")
    assert manager.get_database_connection_from_dict(dict(cfg), "normal") is a
    changed = {**cfg, "connection_settings": {**cfg["connection_settings"]}}
    changed["connection_settings"]["application_name"] = "pgm-test-other"
    b = manager.get_database_connection_from_dict(changed, "normal")
    assert b is not a
    assert manager.cache_info["size"] == 2
    manager.clear_cache()


def test_bad_type_and_missing_file_are_config_errors(password_config: Path, tmp_path: Path) -> None:
    manager = PGConnectionManager()
    with pytest.raises(ConfigError, match="connection type 'bogus'"):
        manager.get_database_connection(password_config, "bogus")
    with pytest.raises(ConfigError, match="not found"):
        manager.get_database_connection(tmp_path / "nope.yaml")
    assert manager.cache_info["size"] == 0


def test_resolve_env(
    password_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = yaml.safe_load(password_config.read_text())
    password = cfg["connection_settings"]["password"]
    cfg["connection_settings"]["password"] = "${PGM_TEST_PASSWORD}"
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    monkeypatch.setenv("PGM_TEST_PASSWORD", password)
    manager = PGConnectionManager()
    obj = manager.get_database_connection(path, "normal", resolve_env=True)
    with obj as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert manager.get_database_connection(path, "normal", resolve_env=True) is obj
    # A changed variable is a different config: a new object, which really uses the new value.
    monkeypatch.setenv("PGM_TEST_PASSWORD", "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        manager.get_database_connection(path, "normal", resolve_env=True)
    monkeypatch.setenv("PGM_TEST_PASSWORD", password)
    assert manager.get_database_connection(path, "normal", resolve_env=True) is obj
    manager.clear_cache()


def test_32_threads_racing_create_one_pool(
    password_config: Path, tmp_path: Path, db_conn: psycopg.Connection[Any]
) -> None:
    config = derive_config(
        password_config, tmp_path, pool_settings={"min_size": 2, "max_size": 4, "timeout": 10}
    )
    manager = PGConnectionManager()
    barrier = threading.Barrier(32)
    results: list[Any] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            barrier.wait(10)
            obj = manager.get_database_connection(config, "pool")
            with obj as conn:
                conn.execute("SELECT 1")
            results.append(obj)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=race) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(results) == 32
    assert len({id(r) for r in results}) == 1
    assert isinstance(results[0], PGPoolConnection)
    assert manager.cache_info["size"] == 1
    # one pool: the server sees at most that pool's connections
    assert server_connections(db_conn, app_name(config)) <= 4
    manager.clear_cache()


async def test_concurrent_async_first_calls_create_one_pool(
    password_config: Path, tmp_path: Path, db_conn: psycopg.Connection[Any]
) -> None:
    config = derive_config(
        password_config,
        tmp_path,
        async_pool_settings={"min_size": 2, "max_size": 4, "timeout": 10},
    )
    manager = PGConnectionManager()
    objs = await asyncio.gather(
        *(manager.get_database_connection(config, "async_pool") for _ in range(50))
    )
    assert len({id(o) for o in objs}) == 1
    assert isinstance(objs[0], PGAsyncPoolConnection)
    assert server_connections(db_conn, app_name(config)) <= 4
    await manager.clear_cache_async()


def test_async_objects_are_keyed_by_event_loop(password_config: Path) -> None:
    manager = PGConnectionManager()

    async def get() -> Any:
        return await manager.get_database_connection(password_config, "async_pool")

    # Two loops alive at once, in two threads: each gets its own pool.
    got: dict[str, Any] = {}
    ready = threading.Event()
    done = threading.Event()

    def other_thread() -> None:
        async def main() -> None:
            got["other"] = await get()
            ready.set()
            while not done.is_set():
                await asyncio.sleep(0.01)

        asyncio.run(main())

    thread = threading.Thread(target=other_thread)
    thread.start()
    assert ready.wait(10)

    async def here() -> None:
        got["here"] = await get()
        assert manager.cache_info["size"] == 2
        # clear_cache_async closes this loop's pool here and the other loop's on its loop.
        await manager.clear_cache_async()

    try:
        asyncio.run(here())
    finally:
        done.set()
        thread.join(10)
    assert got["here"] is not got["other"]
    assert got["here"].pool is None and got["other"].pool is None
    assert manager.cache_info["size"] == 0


def test_clear_cache_from_sync_code_closes_async_objects(password_config: Path) -> None:
    manager = PGConnectionManager()
    loop = asyncio.new_event_loop()
    try:
        obj = loop.run_until_complete(
            manager.get_database_connection(password_config, "async_pool")
        )
        manager.clear_cache()  # the loop is idle: the pool is closed on it, bounded
        assert obj.pool is None
    finally:
        loop.close()


def test_cache_info_and_repr_hold_no_secret(password_config: Path) -> None:
    password = load_config(password_config)["connection_settings"]["password"]
    manager = PGConnectionManager()
    manager.get_database_connection(password_config, "normal")
    assert password not in repr(manager.cache_info) + repr(manager)
    manager.clear_cache()


def test_cached_call_reads_no_file(password_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path stats the file and nothing more (the 4.0 cost was parsing YAML)."""
    manager = PGConnectionManager()
    obj = manager.get_database_connection(password_config, "pool")
    import builtins

    def no_open(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the cached call opened a file")

    monkeypatch.setattr(builtins, "open", no_open)
    started = time.perf_counter()
    for _ in range(100):
        assert manager.get_database_connection(password_config, "pool") is obj
    assert time.perf_counter() - started < 5  # bounded, not a timing assertion
    monkeypatch.undo()
    manager.clear_cache()
    assert os.path.exists(password_config)
