"""Every code example of the 4.0 reference's connection sections, run over each auth method.

Sections: "Using pgmonkey in Python", "Best Practice Recipes" (the Flask and FastAPI recipes
without the web framework), "Testing All Connection Types", "Testing Pool Capacity". The
example bodies are copied as written; only ``'config.yaml'`` / ``'/path/to/config.yaml'``
became a parameter, and ``print`` output is checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgmonkey import PGConnectionManager
from tests._conn_support import close_leftovers  # noqa: F401 (autouse fixture)

# --- Using pgmonkey in Python -------------------------------------------------------------


def example_normal(config_file: Path) -> None:
    manager = PGConnectionManager()
    connection = manager.get_database_connection(config_file, "normal")
    with connection as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT version();")
            print(cur.fetchone())


def example_pool(config_file: Path) -> None:
    manager = PGConnectionManager()
    pool_connection = manager.get_database_connection(config_file, "pool")
    # Each 'with' block acquires and releases a connection from the pool
    with pool_connection as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT version();")
            print(cur.fetchone())


async def example_async(config_file: Path) -> None:
    manager = PGConnectionManager()
    connection = await manager.get_database_connection(config_file, "async")
    async with connection as conn:
        async with conn.cursor() as cur:
            await cur.execute("SELECT version();")
            print(await cur.fetchone())


async def example_async_pool(config_file: Path) -> None:
    manager = PGConnectionManager()
    pool_connection = await manager.get_database_connection(config_file, "async_pool")
    # Each 'async with' cursor block acquires and releases a connection from the pool
    async with pool_connection as conn:
        async with conn.cursor() as cur:
            await cur.execute("SELECT version();")
            print(await cur.fetchone())


def test_normal_example(auth_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example_normal(auth_config)
    assert "PostgreSQL" in capsys.readouterr().out


def test_pool_example(auth_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example_pool(auth_config)
    assert "PostgreSQL" in capsys.readouterr().out


async def test_async_example(auth_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await example_async(auth_config)
    assert "PostgreSQL" in capsys.readouterr().out


async def test_async_pool_example(auth_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await example_async_pool(auth_config)
    assert "PostgreSQL" in capsys.readouterr().out


def test_default_connection_type_example(auth_config: Path) -> None:
    manager = PGConnectionManager()
    # Uses whatever connection_type is set in config.yaml (defaults to 'normal')
    connection = manager.get_database_connection(auth_config)
    assert type(connection).__name__ == "PGNormalConnection"
    with connection as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.fixture
def my_table(auth_config: Path) -> Iterator[Path]:
    """``my_table`` as the examples use it, owned by the config's own user."""
    manager = PGConnectionManager()
    with manager.get_database_connection(auth_config, "normal") as conn:
        conn.execute("DROP TABLE IF EXISTS my_table")
        conn.execute("CREATE TABLE my_table (id serial PRIMARY KEY, name text)")
        conn.execute("INSERT INTO my_table (name) VALUES ('Bob')")
    yield auth_config
    with manager.get_database_connection(auth_config, "normal") as conn:
        conn.execute("DROP TABLE IF EXISTS my_table")
    manager.clear_cache()


def _names(config: Path) -> list[Any]:
    manager = PGConnectionManager()
    with manager.get_database_connection(config, "normal") as conn:
        rows = conn.execute("SELECT name FROM my_table ORDER BY id").fetchall()
    manager.clear_cache()
    return [r[0] for r in rows]


@pytest.mark.parametrize("ctype", ["normal", "pool"])
def test_sync_transaction_example(
    my_table: Path, ctype: str, capsys: pytest.CaptureFixture[str]
) -> None:
    connection = PGConnectionManager().get_database_connection(my_table, ctype)
    # Synchronous transaction
    with connection as conn:
        with conn.transaction():
            with conn.cursor() as cur:
                cur.execute("INSERT INTO my_table (name) VALUES (%s)", ("Alice",))
                cur.execute("SELECT * FROM my_table WHERE name = %s", ("Alice",))
                print(cur.fetchall())
    assert "'Alice'" in capsys.readouterr().out
    assert _names(my_table) == ["Bob", "Alice"]


@pytest.mark.parametrize("ctype", ["async", "async_pool"])
async def test_async_transaction_example(
    my_table: Path, ctype: str, capsys: pytest.CaptureFixture[str]
) -> None:
    connection = await PGConnectionManager().get_database_connection(my_table, ctype)
    # Asynchronous transaction
    async with connection as conn:
        async with conn.transaction():
            async with conn.cursor() as cur:
                await cur.execute("INSERT INTO my_table (name) VALUES (%s)", ("Alice",))
                await cur.execute("SELECT * FROM my_table WHERE name = %s", ("Alice",))
                print(await cur.fetchall())
    assert "'Alice'" in capsys.readouterr().out
    assert _names(my_table) == ["Bob", "Alice"]


@pytest.mark.parametrize("ctype", ["async", "async_pool"])
async def test_manual_commit_and_rollback_example(my_table: Path, ctype: str) -> None:
    connection = await PGConnectionManager().get_database_connection(my_table, ctype)
    # Manual commit
    async with connection as conn:
        async with conn.cursor() as cur:
            await cur.execute("UPDATE my_table SET name = %s WHERE id = %s", ("Doe", 1))
        await conn.commit()
    assert _names(my_table) == ["Doe"]

    # Manual rollback on error
    try:
        async with connection as conn:
            async with conn.cursor() as cur:
                await cur.execute("DELETE FROM my_table WHERE id = %s", (1,))
                raise RuntimeError("something failed before the commit")
            await conn.commit()
    except Exception:
        await conn.rollback()
    assert _names(my_table) == ["Doe"]


# --- Best Practice Recipes ----------------------------------------------------------------


class Database:
    def __init__(self, config_path: Path) -> None:
        self.manager = PGConnectionManager()
        self.config_path = config_path
        # Pool is created on first call, cached thereafter
        self.pool = self.manager.get_database_connection(config_path, "pool")

    def fetch_one(self, query: str, params: Any = None) -> Any:
        with self.pool as conn:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchone()

    def fetch_all(self, query: str, params: Any = None) -> Any:
        with self.pool as conn:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()

    def execute(self, query: str, params: Any = None) -> None:
        with self.pool as conn:
            with conn.cursor() as cur:
                cur.execute(query, params)


class AsyncDatabase:
    def __init__(self, config_path: Path) -> None:
        self.manager = PGConnectionManager()
        self.config_path = config_path
        self.pool: Any = None

    async def connect(self) -> None:
        self.pool = await self.manager.get_database_connection(self.config_path, "async_pool")

    async def disconnect(self) -> None:
        await self.manager.clear_cache_async()

    async def fetch_one(self, query: str, params: Any = None) -> Any:
        async with self.pool as conn:
            async with conn.cursor() as cur:
                await cur.execute(query, params)
                return await cur.fetchone()

    async def fetch_all(self, query: str, params: Any = None) -> Any:
        async with self.pool as conn:
            async with conn.cursor() as cur:
                await cur.execute(query, params)
                return await cur.fetchall()

    async def execute(self, query: str, params: Any = None) -> None:
        async with self.pool as conn:
            async with conn.cursor() as cur:
                await cur.execute(query, params)


def test_flask_recipe(auth_config: Path) -> None:
    db = Database(auth_config)
    db.execute("DROP TABLE IF EXISTS users")
    db.execute("CREATE TABLE users (id int PRIMARY KEY, name text)")
    try:
        db.execute("INSERT INTO users VALUES (%s, %s), (%s, %s)", (2, "bo", 1, "al"))

        # the body of the Flask view list_users()
        rows = db.fetch_all("SELECT id, name FROM users ORDER BY id;")
        body = {"users": [{"id": r[0], "name": r[1]} for r in rows]}

        assert body == {"users": [{"id": 1, "name": "al"}, {"id": 2, "name": "bo"}]}
        assert db.fetch_one("SELECT count(*) FROM users") == (2,)
        # "cached thereafter": the recipe's manager hands out the same pool
        assert db.manager.get_database_connection(auth_config, "pool") is db.pool
    finally:
        db.execute("DROP TABLE IF EXISTS users")
        db.manager.clear_cache()


async def test_fastapi_recipe(auth_config: Path) -> None:
    db = AsyncDatabase(auth_config)
    await db.connect()  # @app.on_event("startup")
    await db.execute("DROP TABLE IF EXISTS orders")
    await db.execute("CREATE TABLE orders (id int PRIMARY KEY, total int)")
    try:
        await db.execute("INSERT INTO orders VALUES (1, 10), (2, 25)")

        # the body of the FastAPI view list_orders()
        rows = await db.fetch_all("SELECT id, total FROM orders ORDER BY id;")
        body = {"orders": [{"id": r[0], "total": r[1]} for r in rows]}

        assert body == {"orders": [{"id": 1, "total": 10}, {"id": 2, "total": 25}]}
        assert await db.fetch_one("SELECT sum(total) FROM orders") == (35,)
    finally:
        await db.execute("DROP TABLE IF EXISTS orders")
    await db.disconnect()  # @app.on_event("shutdown")
    assert db.manager.cache_info["size"] == 0
    assert db.pool.pool is None


# --- Testing All Connection Types ---------------------------------------------------------


def test_sync(manager: Any, config_file: Path, connection_type: str) -> None:
    connection = manager.get_database_connection(config_file, connection_type)
    with connection as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT version();")
            print(f"{connection_type}: {cur.fetchone()}")


async def test_async(manager: Any, config_file: Path, connection_type: str) -> None:
    connection = await manager.get_database_connection(config_file, connection_type)
    async with connection as conn:
        async with conn.cursor() as cur:
            await cur.execute("SELECT version();")
            print(f"{connection_type}: {await cur.fetchone()}")


# The example's helpers are named test_*: keep pytest from collecting them.
test_sync.__test__ = False  # type: ignore[attr-defined]
test_async.__test__ = False  # type: ignore[attr-defined]


async def all_types_main(config_file: Path) -> None:
    manager = PGConnectionManager()

    # Test synchronous connections
    test_sync(manager, config_file, "normal")
    test_sync(manager, config_file, "pool")

    # Test asynchronous connections
    await test_async(manager, config_file, "async")
    await test_async(manager, config_file, "async_pool")


async def test_all_connection_types_example(
    auth_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await all_types_main(auth_config)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["normal", "pool", "async", "async_pool"]
    assert all("PostgreSQL" in line for line in lines)


# --- Testing Pool Capacity ----------------------------------------------------------------


async def check_async_pool(config_file: Path, num_connections: int) -> None:
    manager = PGConnectionManager()
    connections = []
    for _ in range(num_connections):
        connection = await manager.get_database_connection(config_file, "async_pool")
        connections.append(connection)

    for idx, connection in enumerate(connections):
        async with connection as conn:
            async with conn.cursor() as cur:
                await cur.execute("SELECT version();")
                version = await cur.fetchone()
                print(f"Async pool connection {idx + 1}: {version}")

    for connection in connections:
        await connection.disconnect()
    assert manager.cache_info["size"] == 0


def check_sync_pool(config_file: Path, num_connections: int) -> None:
    manager = PGConnectionManager()
    connections = []
    for _ in range(num_connections):
        connection = manager.get_database_connection(config_file, "pool")
        connections.append(connection)

    for idx, connection in enumerate(connections):
        with connection as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT version();")
                version = cur.fetchone()
                print(f"Sync pool connection {idx + 1}: {version}")

    for connection in connections:
        connection.disconnect()
    assert manager.cache_info["size"] == 0


async def test_pool_capacity_example(auth_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = auth_config
    num_connections = 5

    print("Testing async pool:")
    await check_async_pool(config_file, num_connections)

    print("\nTesting sync pool:")
    check_sync_pool(config_file, num_connections)

    out = capsys.readouterr().out
    for n in range(1, 6):
        assert f"Async pool connection {n}: ('PostgreSQL" in out
        assert f"Sync pool connection {n}: ('PostgreSQL" in out
