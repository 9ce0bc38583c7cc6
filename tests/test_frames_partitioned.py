"""read_sql / read_arrow / read_polars in ranges of a column over several connections.

Ground truth is the unpartitioned read of the same query (values and dtypes exactly; rows
sorted by a key first, as ranges come one after another). When something must happen while
a read is in flight (ranges waiting on the server, a snapshot exported, a failure while the
other ranges run), the read waits on an advisory lock the test holds, and the test acts once
it sees the waiters in ``pg_locks``: never a sleep that guesses.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.conninfo import make_conninfo

import pgmonkey
from pgmonkey.errors import TransferError
from pgmonkey.frames import _parallel
from pgmonkey.frames._partition import Split, plan_split
from pgmonkey.manager import PGConnectionManager
from tests._conn_support import POLL_DEADLINE as DEADLINE
from tests._conn_support import (
    Background,
    advisory_waiters,
    derive_config,
    run_script,
)
from tests._conn_support import poll as _poll

ROWS = 1000
POOL = {"min_size": 1, "max_size": 5, "timeout": 30}

SHAPES: dict[str, tuple[str, str, Any]] = {
    # low_nulls has NULLs in the first range only, flag in the last only: Int64 / boolean
    # overall, while id (no NULL anywhere) stays int64.
    "ints with NULLs in one range only": ("SELECT * FROM part_shapes", "id", None),
    "floats with NaN, NULL and infinity": ("SELECT id, f, s FROM part_shapes", "f", None),
    "text with '' and NULL": ("SELECT id, s FROM part_shapes", "id", None),
    "timestamptz": ("SELECT id, ts, low_nulls FROM part_shapes", "ts", None),
    "dates": ("SELECT id, d, flag FROM part_shapes", "d", None),
    "numeric": ("SELECT id, n, j FROM part_shapes", "n", None),
    "skewed values": ("SELECT id, skew, low_nulls FROM part_shapes", "skew", None),
    "empty result": ("SELECT * FROM part_shapes WHERE id < 0", "id", None),
    "one row": ("SELECT * FROM part_shapes WHERE id = 7", "id", None),
    "bound parameters": ("SELECT * FROM part_shapes WHERE id > %s", "id", (500,)),
}
CONS = ("pool", "config", "psycopg", "normal")


@pytest.fixture(scope="module")
def shapes(superuser_dsn: str) -> Iterator[None]:
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS part_shapes")
        conn.execute(
            f"""CREATE TABLE part_shapes AS SELECT
                i::int8 AS id,
                CASE WHEN i <= 60 AND i % 3 = 0 THEN NULL ELSE i * 10 END::int4 AS low_nulls,
                CASE WHEN i > 940 AND i % 4 = 0 THEN NULL ELSE i % 2 = 0 END AS flag,
                CASE WHEN i % 11 = 0 THEN NULL WHEN i % 13 = 0 THEN 'NaN'::float8
                     WHEN i % 17 = 0 THEN 'Infinity'::float8 WHEN i = 500 THEN '-Infinity'
                     ELSE i / 7.0 END::float8 AS f,
                CASE WHEN i % 5 = 0 THEN NULL WHEN i % 6 = 0 THEN '' ELSE 'row ' || i END AS s,
                CASE WHEN i % 9 = 0 THEN NULL
                     ELSE timestamptz '2024-03-31 01:30:00+00' + i * interval '97 minutes'
                END AS ts,
                CASE WHEN i % 8 = 0 THEN NULL ELSE date '1999-12-25' + i END AS d,
                CASE WHEN i % 10 = 0 THEN NULL ELSE (i * 1.25)::numeric(12, 2) END AS n,
                jsonb_build_object('i', i) AS j,
                CASE WHEN i < 990 THEN i ELSE i::int8 * 1000000000 END AS skew
            FROM generate_series(1, {ROWS}) AS i"""
        )
        # Holds the read at an advisory lock: copying=true in the ranges' COPY, false in
        # the planning scan (never in the LIMIT 0 describe, which reads no row).
        conn.execute(
            """CREATE OR REPLACE FUNCTION part_gate(k int8, copying bool) RETURNS bool
               LANGUAGE plpgsql VOLATILE AS $$
               BEGIN
                 IF (current_query() LIKE 'COPY%') = copying THEN
                   PERFORM pg_advisory_xact_lock_shared(k);
                 END IF;
                 RETURN true;
               END $$"""
        )
    yield
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS part_shapes, part_snap")


@pytest.fixture(scope="module")
def manager() -> Iterator[PGConnectionManager]:
    manager = PGConnectionManager()
    yield manager
    manager.clear_cache()


@pytest.fixture(scope="module")
def pool(manager: PGConnectionManager, password_config: Path) -> Any:
    return manager.get_database_connection(str(password_config), "pool")


@pytest.fixture(params=CONS)
def con(
    request: pytest.FixtureRequest,
    manager: PGConnectionManager,
    password_config: Path,
    superuser_dsn: str,
    pool: Any,
) -> Iterator[Any]:
    kind = request.param
    if kind == "pool":
        yield pool
    elif kind == "config":
        yield password_config
    elif kind == "normal":
        yield manager.get_database_connection(str(password_config), "normal")
    else:
        # Not in autocommit: each range's read must leave it as it found it.
        with psycopg.connect(superuser_dsn) as conn:
            yield conn


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("id", kind="stable", ignore_index=True)


def _nan(value: Any) -> Any:
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


def _assert_same_table(got: Any, expected: Any) -> None:
    """Same schema (metadata too) and values, rows sorted by id (NaN equal to NaN)."""
    assert got.schema.equals(expected.schema, check_metadata=True), (got.schema, expected.schema)
    got, expected = got.sort_by("id"), expected.sort_by("id")
    for i, name in enumerate(expected.column_names):
        values = [_nan(v) for v in got.column(i).to_pylist()]
        assert values == [_nan(v) for v in expected.column(i).to_pylist()], name


def _own_pool(
    manager: PGConnectionManager, config: Path, tmp_path: Path, **pool_settings: int
) -> Any:
    path = derive_config(config, tmp_path, pool_settings={**POOL, **pool_settings})
    return manager.get_database_connection(str(path), "pool")


def _assert_pool_whole(obj: Any) -> None:
    """Every connection of the pool is back, idle and usable, nobody waiting for one."""
    raw = obj.pool
    stats = raw.get_stats()
    assert stats["pool_available"] == stats["pool_size"], stats
    assert stats["requests_waiting"] == 0, stats
    borrowed = [raw.getconn(timeout=DEADLINE) for _ in range(stats["pool_size"])]
    try:
        for conn in borrowed:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for conn in borrowed:
            raw.putconn(conn)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_partitioned_read_equals_the_whole_read(shapes: None, con: Any, shape: str) -> None:
    query, column, params = SHAPES[shape]
    whole = pgmonkey.read_sql(query, con, params)
    part = pgmonkey.read_sql(query, con, params, partition_on=column, partitions=4)
    assert part.index.equals(pd.RangeIndex(len(part)))
    assert dict(part.dtypes) == dict(whole.dtypes)
    pd.testing.assert_frame_equal(_sorted(part), _sorted(whole))

    whole_t = pgmonkey.read_arrow(query, con, params)
    part_t = pgmonkey.read_arrow(query, con, params, partition_on=column, partitions=3)
    _assert_same_table(part_t, whole_t)
    if isinstance(con, psycopg.Connection):
        assert con.info.transaction_status != psycopg.pq.TransactionStatus.INERROR


@pytest.mark.parametrize(
    "start", ["2021-03-14 05:00+00", "2021-11-07 04:00+00"], ids=["spring", "autumn"]
)
def test_time_ranges_across_a_clock_change_read_every_row_once(
    superuser_dsn: str, start: str
) -> None:
    # Four hours of minutes around a change of America/New_York's clocks, split in ten: in
    # the session's zone an edge computed by the wall clock falls in the skipped hour.
    query = (
        f"SELECT g AS id, timestamptz '{start}' + g * interval '1 minute' AS ts"
        " FROM generate_series(0, 240) AS g"
    )
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'America/New_York'")
        whole = pgmonkey.read_sql(query, conn)
        part = pgmonkey.read_sql(query, conn, partition_on="ts", partitions=10)
        assert len(plan_split(conn, query, Split("ts", 10, False))) == 10
    assert len(whole) == 241
    pd.testing.assert_frame_equal(_sorted(part), _sorted(whole))


def test_the_shapes_test_what_they_claim(shapes: None, superuser_dsn: str) -> None:
    # The differential above means something only if the whole read mixes the dtypes and
    # the plan really splits.
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        whole = pgmonkey.read_sql(SHAPES["ints with NULLs in one range only"][0], conn)
        assert (str(whole["id"].dtype), str(whole["low_nulls"].dtype)) == ("int64", "Int64")
        assert str(whole["flag"].dtype) == "boolean"
        for query, column, _params in SHAPES.values():
            if "%s" in query or "id <" in query or "id =" in query:
                continue
            assert len(plan_split(conn, query, Split(column, 4, False))) == 4, query
        plan = plan_split(conn, "SELECT * FROM part_shapes", Split("id", 4, False))
        assert pgmonkey.read_sql(plan[0], conn)["low_nulls"].isna().any()
        assert str(pgmonkey.read_sql(plan[-1], conn)["low_nulls"].dtype) == "int64"


def test_read_polars_partitioned(shapes: None, pool: Any) -> None:
    pytest.importorskip("polars")
    query = SHAPES["ints with NULLs in one range only"][0]
    whole = pgmonkey.read_polars(query, pool)
    part = pgmonkey.read_polars(query, pool, partition_on="id", partitions=4)
    assert part.schema == whole.schema
    assert part.sort("id").equals(whole.sort("id"))


def test_pandas_engine_arrow_output_partitioned(shapes: None, superuser_dsn: str) -> None:
    # A LATIN1 session is read by pandas' engine, whose tables carry pandas metadata (the
    # dtypes Int64 or int64): the whole result's, not the first range's.
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute("SET client_encoding TO 'LATIN1'")
        query = "SELECT id, low_nulls, s FROM part_shapes"
        whole = pgmonkey.read_arrow(query, conn)
        assert whole.schema.metadata is not None and b"pandas" in whole.schema.metadata
        part = pgmonkey.read_arrow(query, conn, partition_on="id", partitions=4)
        _assert_same_table(part, whole)


@pytest.mark.parametrize(("max_size", "at_once"), [(5, 4), (2, 2)])
def test_ranges_are_read_at_once_up_to_the_pool_size(
    shapes: None,
    password_config: Path,
    superuser_dsn: str,
    tmp_path: Path,
    max_size: int,
    at_once: int,
) -> None:
    key = 100 + max_size
    query = f"SELECT * FROM part_shapes WHERE part_gate({key}, true)"
    manager = PGConnectionManager()
    obj = _own_pool(manager, password_config, tmp_path, max_size=max_size)
    try:
        with psycopg.connect(superuser_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_advisory_lock(%s)", (key,))
            reader = Background(
                lambda: pgmonkey.read_sql(query, obj, partition_on="id", partitions=4)
            )
            try:
                _poll(
                    f"{at_once} ranges read at once",
                    lambda: advisory_waiters(admin, key) == at_once,
                )
                assert advisory_waiters(admin, key) <= max_size
            finally:
                admin.execute("SELECT pg_advisory_unlock(%s)", (key,))
            part = reader.wait()
            whole = pgmonkey.read_sql(query, admin)
        pd.testing.assert_frame_equal(_sorted(part), _sorted(whole))
        _assert_pool_whole(obj)
    finally:
        manager.clear_cache()


def test_a_busy_pool_lends_what_it_can(shapes: None, password_config: Path, tmp_path: Path) -> None:
    # Both connections of a max_size=2 pool are taken but the one read_sql borrows: its four
    # ranges are read on that one.
    manager = PGConnectionManager()
    obj = _own_pool(manager, password_config, tmp_path, min_size=2, max_size=2)
    query = "SELECT * FROM part_shapes"
    try:
        with obj as held:
            assert held.execute("SELECT 1").fetchone() == (1,)
            obj.pool.pop_stats()
            part = pgmonkey.read_sql(query, obj, partition_on="id", partitions=4)
            assert obj.pool.pop_stats().get("requests_num") == 1  # no other was asked for
            whole = pgmonkey.read_sql(query, held)
        pd.testing.assert_frame_equal(_sorted(part), _sorted(whole))
        _assert_pool_whole(obj)
    finally:
        manager.clear_cache()


@pytest.mark.parametrize("kind", ["pool", "config", "psycopg"])
@pytest.mark.parametrize("consistent", [True, False])
def test_consistent_read_sees_one_snapshot(
    shapes: None,
    pool: Any,
    password_config: Path,
    superuser_dsn: str,
    kind: str,
    consistent: bool,
) -> None:
    # The planning scan waits on the lock; rows are committed meanwhile, in the first and
    # the last range. consistent=True: no range sees them. False (the control): they do.
    key = 200 + 10 * consistent + CONS.index(kind)
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        admin.execute("DROP TABLE IF EXISTS part_snap")
        admin.execute("CREATE TABLE part_snap AS SELECT id, low_nulls FROM part_shapes")
        before = pgmonkey.read_sql("SELECT * FROM part_snap", admin)
        query = f"SELECT * FROM part_snap WHERE part_gate({key}, false)"
        con: Any = {"pool": pool, "config": password_config}.get(kind)
        own = psycopg.connect(superuser_dsn) if con is None else None
        admin.execute("SELECT pg_advisory_lock(%s)", (key,))
        reader = Background(
            lambda: pgmonkey.read_sql(
                query, con or own, partition_on="id", partitions=4, consistent=consistent
            )
        )
        try:
            _poll("the planning scan", lambda: advisory_waiters(admin, key) == 1)
            admin.execute("INSERT INTO part_snap VALUES (-5, NULL), (5000, 1)")
        finally:
            admin.execute("SELECT pg_advisory_unlock(%s)", (key,))
        try:
            part = reader.wait()
        finally:
            if own is not None:
                own.close()
        after = pgmonkey.read_sql("SELECT * FROM part_snap", admin)
    assert len(after) == len(before) + 2
    expected = before if consistent else after
    pd.testing.assert_frame_equal(_sorted(part), _sorted(expected))


def test_consistent_in_a_read_committed_transaction_is_refused(
    shapes: None, superuser_dsn: str
) -> None:
    query = "SELECT * FROM part_shapes"
    with psycopg.connect(superuser_dsn) as conn:
        conn.execute("SELECT 1")  # a transaction is open, READ COMMITTED
        with pytest.raises(TransferError, match="'read committed'"):
            pgmonkey.read_sql(query, conn, partition_on="id", partitions=3, consistent=True)
        conn.rollback()
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.execute("SELECT 1")
        part = pgmonkey.read_sql(query, conn, partition_on="id", partitions=3, consistent=True)
        pd.testing.assert_frame_equal(_sorted(part), _sorted(pgmonkey.read_sql(query, conn)))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS


def test_an_error_in_one_range_cancels_the_others(
    shapes: None, password_config: Path, superuser_dsn: str, tmp_path: Path
) -> None:
    # Ranges of id over 1..1000 by 4: the last (id >= 750) waits on lock 302, the others on
    # 301. Once all four wait, 302 is released: the last range divides by zero at id 1000
    # while the three others still wait, and must be cancelled for the call to return.
    manager = PGConnectionManager()
    obj = _own_pool(manager, password_config, tmp_path)
    query = (
        "SELECT id, 1 / (id - 1000) AS x FROM part_shapes"
        " WHERE part_gate(CASE WHEN id >= 750 THEN 302 ELSE 301 END, true)"
    )
    try:
        with psycopg.connect(superuser_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_advisory_lock(301), pg_advisory_lock(302)")
            reader = Background(
                lambda: pgmonkey.read_sql(query, obj, partition_on="id", partitions=4)
            )
            try:
                _poll(
                    "the four ranges",
                    lambda: (advisory_waiters(admin, 301), advisory_waiters(admin, 302)) == (3, 1),
                )
                admin.execute("SELECT pg_advisory_unlock(302)")
                reader.thread.join(DEADLINE)
                assert not reader.thread.is_alive(), "the waiting ranges were not cancelled"
                assert advisory_waiters(admin, 301) == 0
            finally:
                admin.execute("SELECT pg_advisory_unlock_all()")
            with pytest.raises(psycopg.errors.DivisionByZero):
                reader.wait()
        _assert_pool_whole(obj)
        assert pgmonkey.read_sql("SELECT 1 AS a", obj)["a"].tolist() == [1]
    finally:
        manager.clear_cache()


def test_a_cancelled_describe_is_not_run_again(superuser_dsn: str) -> None:
    # A range cancelled while its read describes the query (here: waiting for a table lock)
    # raises QueryCanceled. The reader used to take any error of the describe for a
    # statement it cannot wrap, and ran the query as written: the cancelled range read on.
    with (
        psycopg.connect(superuser_dsn, autocommit=True) as admin,
        psycopg.connect(superuser_dsn, autocommit=True) as watch,
        psycopg.connect(superuser_dsn, autocommit=True) as conn,
    ):
        admin.execute("DROP TABLE IF EXISTS part_lockme")
        admin.execute("CREATE TABLE part_lockme AS SELECT 1 AS a")
        pid = conn.info.backend_pid

        def waiting(describe: bool) -> bool:
            row = watch.execute(
                "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE pid = %s"
                " AND wait_event_type = 'Lock' AND (query LIKE '%%LIMIT 0%%') = %s",
                (pid, describe),
            ).fetchone()
            return row is not None and row[0] == 1

        with admin.transaction():
            admin.execute("LOCK TABLE part_lockme IN ACCESS EXCLUSIVE MODE")
            reader = Background(lambda: pgmonkey.read_sql("SELECT * FROM part_lockme", conn))
            _poll("the describe", lambda: waiting(True))
            conn.cancel_safe()
            _poll("the read to end", lambda: not reader.thread.is_alive() or waiting(False))
        with pytest.raises(psycopg.errors.QueryCanceled):
            reader.wait()
        assert conn.execute("SELECT 1").fetchone() == (1,)
        admin.execute("DROP TABLE part_lockme")


CTRL_C = textwrap.dedent(
    """
    import signal, sys, threading, time
    import psycopg
    import pgmonkey
    from pgmonkey import PGConnectionManager

    config, admin_dsn = sys.argv[1], sys.argv[2]
    MAIN = threading.main_thread().ident
    signal.signal(signal.SIGINT, signal.default_int_handler)
    KEY = 401
    WAITING = (
        "SELECT count(*) FROM pg_catalog.pg_locks"
        " WHERE locktype = 'advisory' AND objid = %s AND NOT granted"
    )

    obj = PGConnectionManager().get_database_connection(config, "pool")
    admin = psycopg.connect(admin_dsn, autocommit=True)
    admin.execute("SELECT pg_advisory_lock(%s)", (KEY,))

    def watch():
        # Ctrl-C once the four ranges wait on the server: no guess about timing.
        with psycopg.connect(admin_dsn, autocommit=True) as watcher:
            while watcher.execute(WAITING, (KEY,)).fetchone()[0] < 4:
                time.sleep(0.02)
        signal.pthread_kill(MAIN, signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()
    try:
        pgmonkey.read_sql(
            f"SELECT * FROM part_shapes WHERE part_gate({KEY}, true)",
            obj, partition_on="id", partitions=4,
        )
    except BaseException as e:
        print("raised", type(e).__name__, flush=True)
    print("waiting", admin.execute(WAITING, (KEY,)).fetchone()[0], flush=True)
    stats = obj.pool.get_stats()
    print("pool", stats["pool_size"], stats["pool_available"], flush=True)
    conns = [obj.pool.getconn(timeout=60) for _ in range(stats["pool_size"])]
    print("usable", [c.execute("SELECT 1").fetchone()[0] for c in conns], flush=True)
    """
)


def test_ctrl_c_cancels_every_range(
    shapes: None, password_config: Path, superuser_dsn: str, tmp_path: Path
) -> None:
    done = run_script(tmp_path, CTRL_C, str(password_config), superuser_dsn)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "raised KeyboardInterrupt" in lines, done.stdout + done.stderr
    assert "waiting 0" in lines
    size = next(int(x.split()[1]) for x in lines if x.startswith("pool "))
    assert f"pool {size} {size}" in lines and size >= 4
    assert f"usable {[1] * size}" in lines


@pytest.mark.parametrize("bad", [0, -1, "2", True, 2.0])
def test_bad_partitions_name_the_value(password_config: Path, bad: Any) -> None:
    with pytest.raises(TransferError, match=f"not {bad!r}"):
        pgmonkey.read_sql("SELECT 1 AS a", password_config, partition_on="a", partitions=bad)
    with pytest.raises(TransferError, match=f"not {bad!r}"):
        pgmonkey.read_arrow("SELECT 1 AS a", password_config, partition_on="a", partitions=bad)


def test_bad_partitioning_requests(shapes: None, pool: Any) -> None:
    query = "SELECT * FROM part_shapes"
    with pytest.raises(TransferError, match="no column named 'nope'"):
        pgmonkey.read_sql(query, pool, partition_on="nope", partitions=2)
    with pytest.raises(TransferError, match="must be a numeric, date or timestamp column"):
        pgmonkey.read_sql(query, pool, partition_on="s", partitions=2)
    with pytest.raises(TransferError, match="several columns named 'id'"):
        pgmonkey.read_sql("SELECT id, id FROM part_shapes", pool, partition_on="id", partitions=2)
    with pytest.raises(TransferError, match="partitions=3 needs partition_on"):
        pgmonkey.read_sql(query, pool, partitions=3)
    with pytest.raises(TransferError, match="partition_on='id' needs partitions"):
        pgmonkey.read_sql(query, pool, partition_on="id")
    with pytest.raises(psycopg.errors.UndefinedColumn):
        pgmonkey.read_sql(
            "SELECT * FROM part_shapes WHERE nope", pool, partition_on="id", partitions=2
        )
    _assert_pool_whole(pool)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(-(2**63), 2**63 - 1) | st.none(), st.integers(-5, 5) | st.none()),
        max_size=30,
    ),
    partitions=st.integers(1, 6),
)
def test_random_int_columns(
    pool: Any, rows: list[tuple[int | None, int | None]], partitions: int
) -> None:
    keys = [k for k, _v in rows]
    values = [v for _k, v in rows]
    query = (
        sql.SQL("SELECT * FROM unnest({}::int4[], {}::int8[], {}::int8[]) AS t(id, k, v)")
        .format(sql.Literal(list(range(len(rows)))), sql.Literal(keys), sql.Literal(values))
        .as_string()
    )
    whole = pgmonkey.read_sql(query, pool)
    part = pgmonkey.read_sql(query, pool, partition_on="k", partitions=partitions)
    pd.testing.assert_frame_equal(_sorted(part), _sorted(whole))
    whole_t = pgmonkey.read_arrow(query, pool)
    part_t = pgmonkey.read_arrow(query, pool, partition_on="v", partitions=partitions)
    _assert_same_table(part_t, whole_t)


def test_a_transaction_that_has_written_reads_every_range_itself(
    shapes: None, manager: PGConnectionManager, password_config: Path, superuser_dsn: str
) -> None:
    # Rows inserted and not committed are seen by their own connection only: every range is
    # read on it, so none of them is missed. The first range is held at the gate, so that
    # other connections, had they been opened, would have taken the ranges these rows are in.
    key = 300
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        admin.execute("DROP TABLE IF EXISTS part_written")
        admin.execute("CREATE TABLE part_written AS SELECT id, low_nulls FROM part_shapes")
        admin.execute("GRANT ALL ON part_written TO PUBLIC")
        obj = manager.get_database_connection(str(password_config), "normal")
        query = f"SELECT * FROM part_written WHERE part_gate({key}, true)"
        with obj as conn, conn.transaction():
            conn.execute(
                "INSERT INTO part_written VALUES (%s, 7), (%s, 8)", (ROWS // 2, ROWS * 3 // 4)
            )
            # Not through the gate: its lock would be held by this transaction until its end.
            whole = pgmonkey.read_sql("SELECT * FROM part_written", conn)
            # In this thread: the normal object's connection is the one of this block.
            part = _held_at_the_gate(
                superuser_dsn,
                admin,
                key,
                lambda: pgmonkey.read_sql(query, obj, partition_on="id", partitions=4),
            )
    assert len(whole) == ROWS + 2
    pd.testing.assert_frame_equal(_sorted(part), _sorted(whole))


def _held_at_the_gate(
    superuser_dsn: str, admin: psycopg.Connection[Any], key: int, read: Callable[[], Any]
) -> Any:
    """``read()`` with its first range held at the gate on ``key`` (``admin`` takes the lock)
    until it waits there, so that other connections, if any, take the other ranges."""
    admin.execute("SELECT pg_advisory_lock(%s)", (key,))
    opener = Background(lambda: _unlock_once_waited_for(superuser_dsn, admin, key))
    try:
        return read()
    finally:
        opener.wait()


def _unlock_once_waited_for(superuser_dsn: str, admin: psycopg.Connection[Any], key: int) -> None:
    """Release ``admin``'s lock on ``key`` once a read waits for it (``admin`` took it)."""
    with psycopg.connect(superuser_dsn, autocommit=True) as watcher:
        try:
            _poll("a range at the gate", lambda: advisory_waiters(watcher, key) >= 1)
        finally:
            admin.execute("SELECT pg_advisory_unlock(%s)", (key,))


@pytest.fixture
def own_normal(password_config: Path, tmp_path: Path) -> Iterator[Any]:
    """A pgmonkey ``normal`` object of its own (a session the test may change), closed after."""
    manager = PGConnectionManager()
    try:
        yield manager.get_database_connection(
            str(derive_config(password_config, tmp_path)), "normal"
        )
    finally:
        manager.clear_cache()


@pytest.fixture
def twins(superuser_dsn: str) -> Iterator[None]:
    """``part_twin`` twice: the rows of part_shapes in schema ``part_s``, none in public."""
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        admin.execute("DROP SCHEMA IF EXISTS part_s CASCADE")
        admin.execute("CREATE SCHEMA part_s")
        admin.execute("CREATE TABLE part_s.part_twin AS SELECT id, low_nulls FROM part_shapes")
        admin.execute("CREATE TABLE public.part_twin AS SELECT * FROM part_s.part_twin LIMIT 0")
        admin.execute("GRANT ALL ON SCHEMA part_s TO PUBLIC")
        admin.execute("GRANT ALL ON part_s.part_twin, public.part_twin TO PUBLIC")
    yield
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        admin.execute("DROP SCHEMA part_s CASCADE")
        admin.execute("DROP TABLE public.part_twin")


def test_the_other_sessions_get_the_lent_sessions_settings(
    shapes: None, twins: None, own_normal: Any, superuser_dsn: str
) -> None:
    # The lent session's search_path finds part_s.part_twin; a new session's finds the empty
    # one in public. Both ranges wait at the gate, one on each session: the other session
    # reads with the lent one's search_path (and TimeZone), so the rows are all there.
    key = 310
    obj = own_normal
    query = f"SELECT id, low_nulls, now()::text AS at FROM part_twin WHERE part_gate({key}, true)"
    with obj as conn:
        conn.execute("SET search_path = part_s, public")
        conn.execute("SET TimeZone = 'Asia/Kathmandu'")
        conn.commit()
        whole = pgmonkey.read_sql(query.replace(f"part_gate({key}, true)", "true"), conn)
        conn.commit()
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            reader = Background(
                lambda: pgmonkey.read_sql(query, obj, partition_on="id", partitions=2)
            )
            _poll("a range on each session", lambda: advisory_waiters(admin, key) == 2)
        finally:
            admin.execute("SELECT pg_advisory_unlock(%s)", (key,))
        part = reader.wait()
    assert len(whole) == ROWS
    assert part["at"].str.endswith("+05:45").all()
    pd.testing.assert_frame_equal(
        _sorted(part).drop(columns="at"), _sorted(whole).drop(columns="at")
    )


def test_a_session_with_a_temporary_table_reads_every_range_itself(
    shapes: None, twins: None, own_normal: Any, superuser_dsn: str
) -> None:
    # No other session sees the lent session's temporary tables (here part_twin, in front of
    # the empty one in public): every range is read on it. The first range is held at the
    # gate, so that other connections, had they been opened, would have taken the others.
    key = 320
    obj = own_normal
    query = f"SELECT * FROM part_twin WHERE part_gate({key}, true)"
    with obj as conn:
        conn.execute("CREATE TEMP TABLE part_twin AS SELECT * FROM part_s.part_twin")
        conn.commit()
        whole = pgmonkey.read_sql("SELECT * FROM part_twin", conn)
        conn.commit()
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        part = _held_at_the_gate(
            superuser_dsn,
            admin,
            key,
            lambda: pgmonkey.read_sql(query, obj, partition_on="id", partitions=4),
        )
    assert len(whole) == ROWS
    pd.testing.assert_frame_equal(_sorted(part), _sorted(whole))


@pytest.mark.parametrize(
    "state",
    ["SET ROLE", "SET SESSION AUTHORIZATION", "a temporary table", "no pg_settings access"],
)
def test_sessions_no_other_can_be_are_read_alone(superuser_dsn: str, state: str) -> None:
    # What other sessions cannot be made to share: every range is read on the lent one.
    role, password = "part_alone", "part-alone-pw"
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        try:
            dsn = superuser_dsn
            if state == "no pg_settings access":  # a superuser may read pg_settings anyway
                dsn = make_conninfo(superuser_dsn, user=role, password=password)
            with psycopg.connect(dsn, autocommit=True) as conn:
                assert _parallel._session_settings(conn) is not None
                if state == "SET ROLE":
                    conn.execute(f"SET ROLE {role}")
                elif state == "SET SESSION AUTHORIZATION":
                    conn.execute(f"SET SESSION AUTHORIZATION {role}")
                elif state == "a temporary table":
                    conn.execute("CREATE TEMP TABLE part_alone_t (a int)")
                else:
                    admin.execute("REVOKE SELECT ON pg_catalog.pg_settings FROM PUBLIC")
                assert _parallel._session_settings(conn) is None
                assert conn.execute("SELECT 1").fetchone() == (1,)  # nothing failed
        finally:
            admin.execute("GRANT SELECT ON pg_catalog.pg_settings TO PUBLIC")
            admin.execute(f"DROP ROLE {role}")


def test_the_settings_given_leave_out_the_transactions_own(superuser_dsn: str) -> None:
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute("SET search_path = part_s, public")
        conn.execute("SET temp_buffers = '32MB'")
        conn.execute("SET idle_in_transaction_session_timeout = 1000")
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY DEFERRABLE")
        given = _parallel._session_settings(conn)
        conn.execute("COMMIT")
    assert given is not None
    names = given[0]
    assert "search_path" in names
    assert not {
        "temp_buffers",
        "transaction_isolation",
        "transaction_read_only",
        "transaction_deferrable",
        "idle_in_transaction_session_timeout",
    } & set(names), names


def test_a_lent_session_in_its_own_transaction_kind(
    shapes: None, own_normal: Any, superuser_dsn: str
) -> None:
    # psycopg's isolation_level / deferrable make each transaction begin with them: the
    # other connections are not given those (they could not take them after a query).
    obj = own_normal
    query = "SELECT * FROM part_shapes"
    with obj as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.deferrable = False
        conn.read_only = False
    for consistent in (False, True):
        part = pgmonkey.read_sql(query, obj, partition_on="id", partitions=3, consistent=consistent)
        with psycopg.connect(superuser_dsn) as admin:
            whole = pgmonkey.read_sql(query, admin)
        pd.testing.assert_frame_equal(_sorted(part), _sorted(whole))


def test_consistent_in_the_callers_repeatable_read_block_of_a_normal_object(
    shapes: None, own_normal: Any, superuser_dsn: str
) -> None:
    # Inside the object's own block the read runs in a savepoint, which cannot export a
    # snapshot: every range is read on the caller's connection, in its snapshot, which
    # does not see rows committed after it began.
    obj = own_normal
    query = "SELECT * FROM part_snap"
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        admin.execute("DROP TABLE IF EXISTS part_snap")
        admin.execute("CREATE TABLE part_snap AS SELECT id, low_nulls FROM part_shapes")
        with obj as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            before = pgmonkey.read_sql(query, conn)  # the transaction's snapshot
            admin.execute("INSERT INTO part_snap VALUES (-5, NULL), (5000, 1)")
            part = pgmonkey.read_sql(query, obj, partition_on="id", partitions=3, consistent=True)
            conn.rollback()
            conn.isolation_level = None
    pd.testing.assert_frame_equal(_sorted(part), _sorted(before))
    assert len(before) == ROWS
