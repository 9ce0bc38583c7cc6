"""pgmonkey.dask on a real LocalCluster of worker processes against the sandbox.

Ground truth is :func:`pgmonkey.read_sql` of the whole query (values and dtypes); workers are
separate processes (their pids differ from ours); a killed worker is a real SIGKILL, timed by
database locks (the task is seen waiting on the server before it is killed), never by sleeps.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest

pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import psutil  # noqa: E402

import pgmonkey  # noqa: E402
import pgmonkey.dask as pmd  # noqa: E402
from pgmonkey.config import load_config  # noqa: E402
from pgmonkey.dask._source import Source  # noqa: E402
from pgmonkey.dask._write import Target, write_tasks  # noqa: E402
from pgmonkey.errors import ConfigError, EnvInterpolationError, TransferError  # noqa: E402
from tests._conn_support import in_transaction  # noqa: E402
from tests._conn_support import poll as _poll  # noqa: E402

# A killed worker's replacement imports dask, pandas and pyarrow afresh: on two cores loaded
# by other processes that took over two minutes once, so its wait gets more room than a
# poll's.
RESTART_DEADLINE = 600.0
ROWS = 3000


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    # The scheduler runs in this process and would keep its last 1000 messages (tasks and
    # their consistent reads' snapshots with them) for debugging: without that log, a
    # snapshot's transaction ends when its frames are collected, as with a remote scheduler.
    with dask.config.set({"distributed.admin.low-level-log-length": 0}):
        yield from _cluster()


@pytest.fixture(autouse=True)
def _no_snapshot_left_open(db_conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Each test ends with no session idle in a transaction in the sandbox's database (none
    holds back the next module's ``CREATE INDEX CONCURRENTLY``): the consistent reads'
    frames are gone, and nothing else of ours stays in a transaction."""
    yield
    gc.collect()
    _poll("every consistent read's snapshot transaction to end", lambda: not _open(db_conn))


def _open(conn: psycopg.Connection[Any]) -> list[int]:
    """The pids of the other sessions in a transaction (a snapshot's holder)."""
    return [row[0] for row in in_transaction(conn)]


def _cluster() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        worker_dashboard_address=":0",
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _make_table(conn: psycopg.Connection[Any], name: str, rows: int = ROWS) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(
        f"""CREATE TABLE {name} AS SELECT
            i::int8 AS id,
            CASE WHEN i % 7 = 0 THEN NULL ELSE i * 10 END AS v,
            CASE WHEN i % 11 = 0 THEN NULL WHEN i % 13 = 0 THEN 'NaN'::float8
                 ELSE i / 3.0 END::float8 AS f,
            CASE WHEN i % 5 = 0 THEN NULL WHEN i % 6 = 0 THEN '' ELSE 'row ' || i END AS s,
            CASE WHEN i % 9 = 0 THEN NULL
                 ELSE timestamptz '2024-01-01 00:00+00' + i * interval '1 hour' END AS ts,
            date '2020-01-01' + i AS d,
            CASE WHEN i % 4 = 0 THEN NULL ELSE i % 2 = 0 END AS b,
            i % 3 = 0 AS flag,
            jsonb_build_object('k', i) AS j,
            (i / 7.0)::numeric(12, 4) AS n
        FROM generate_series(1, {rows}) AS i"""
    )
    conn.execute(f"ALTER TABLE {name} ALTER COLUMN id SET NOT NULL")


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("id", kind="stable").reset_index(drop=True)


def _stage_tables(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT relname FROM pg_class WHERE relname LIKE '\\_pgmonkey\\_stage\\_%'"
    ).fetchall()
    return [r[0] for r in rows]


def _worker_of_backend(client: Any, backend_pid: int, conn: psycopg.Connection[Any]) -> int:
    """The pid of the worker process whose connection is served by *backend_pid*."""
    row = conn.execute(
        "SELECT client_port FROM pg_stat_activity WHERE pid = %s", (backend_pid,)
    ).fetchone()
    assert row is not None and row[0] is not None
    for pid in client.run(os.getpid).values():
        for c in psutil.Process(pid).net_connections(kind="tcp"):
            if c.laddr and c.laddr.port == row[0]:
                return int(pid)
    raise AssertionError("no worker holds that connection")


def _waiting_backends(conn: psycopg.Connection[Any], table: str) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_locks WHERE NOT granted AND relation = %s::regclass", (table,)
    ).fetchall()
    return [r[0] for r in rows]


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    _poll("the killed worker to exit", lambda: not psutil.pid_exists(pid) or _zombie(pid))


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_import_pgmonkey_does_not_import_dask() -> None:
    import subprocess
    import sys

    code = "import sys, pgmonkey; print('dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tasks_run_in_worker_processes(
    client: Any, password_config: Path, db_conn: psycopg.Connection[Any]
) -> None:
    _make_table(db_conn, "dask_pids")
    ddf = pmd.read_sql("dask_pids", password_config, partitions=4)
    pids = ddf.map_partitions(
        lambda df: pd.DataFrame({"pid": [os.getpid()], "rows": [len(df)]}),
        meta={"pid": "int64", "rows": "int64"},
    ).compute()
    workers = set(client.run(os.getpid).values())
    assert len(pids) == 4
    assert set(pids["pid"]) <= workers
    assert os.getpid() not in set(pids["pid"])
    assert pids["rows"].sum() == ROWS


CASES = {
    # name: (query, read options)
    "int range, NULLs in the column": ("SELECT * FROM dask_eq", {"partition_on": "v"}),
    "int range, empty partitions": (
        "SELECT * FROM dask_eq",
        {"partition_on": "id", "bounds": (-100_000, 100_000)},
    ),
    "float range, NULL and NaN": ("SELECT * FROM dask_eq", {"partition_on": "f"}),
    "timestamptz range, NULLs": ("SELECT * FROM dask_eq", {"partition_on": "ts"}),
    "date range": ("SELECT * FROM dask_eq", {"partition_on": "d"}),
    "query with a filter": (
        "SELECT id, v, s, b FROM dask_eq WHERE id % 3 <> 0;",
        {"partition_on": "id"},
    ),
    "table by blocks (ctid)": ("dask_eq", {}),
    "table by blocks, consistent": ("public.dask_eq", {"consistent": True}),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_partitioned_read_equals_read_sql(
    client: Any, password_config: Path, db_conn: psycopg.Connection[Any], case: str
) -> None:
    _make_table(db_conn, "dask_eq")
    query, options = CASES[case]
    whole_query = query if " " in query else f"SELECT * FROM {query}"
    whole = pgmonkey.read_sql(whole_query, password_config)
    ddf = pmd.read_sql(query, password_config, partitions=6, **options)
    assert ddf.npartitions > 1
    assert list(ddf.dtypes) == list(whole.dtypes)
    sizes = ddf.map_partitions(len).compute()
    if "empty" in case:
        assert (sizes == 0).sum() >= 2
    got = ddf.compute()
    pd.testing.assert_frame_equal(_sorted(got), _sorted(whole))


def test_dtypes_narrow_when_no_null_occurs(
    client: Any, password_config: Path, db_conn: psycopg.Connection[Any]
) -> None:
    # NULLs only in some rows of v: whole result Int64; without those rows, int64.
    _make_table(db_conn, "dask_narrow")
    query = "SELECT id, v, b FROM dask_narrow WHERE v IS NOT NULL AND b IS NOT NULL"
    whole = pgmonkey.read_sql(query, password_config)
    ddf = pmd.read_sql(query, password_config, partition_on="id", partitions=3)
    assert [str(t) for t in whole.dtypes] == ["int64", "int64", "bool"]
    assert list(ddf.dtypes) == list(whole.dtypes)
    pd.testing.assert_frame_equal(_sorted(ddf.compute()), _sorted(whole))


def test_consistent_read_sees_one_snapshot_under_a_concurrent_writer(
    client: Any, password_config: Path, db_conn: psycopg.Connection[Any]
) -> None:
    _make_table(db_conn, "dask_snap")
    before = pgmonkey.read_sql("SELECT * FROM dask_snap", password_config)
    ddf = pmd.read_sql(
        "SELECT * FROM dask_snap", password_config, partition_on="id", partitions=4, consistent=True
    )
    # Committed after the snapshot: rows in the first and the last partition's ranges.
    db_conn.execute("INSERT INTO dask_snap (id, v) VALUES (-1, 1), (100000, 2)")
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(
            db_conn.info.dsn + " password=" + _password(password_config), autocommit=True
        ) as w:
            i = 0
            while not stop.is_set():
                i += 1
                w.execute(
                    "INSERT INTO dask_snap (id, v) VALUES (%s, 1), (%s, 2)", (-1 - i, 100000 + i)
                )

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        got = ddf.compute()
        unplanned = pmd.read_sql(
            "SELECT * FROM dask_snap", password_config, partition_on="id", partitions=4
        ).compute()
    finally:
        stop.set()
        thread.join()
    pd.testing.assert_frame_equal(_sorted(got), _sorted(before))
    assert len(unplanned) > len(before)  # without a snapshot the new rows are read

    # The exporting transaction ends once the DataFrame is gone.
    (holder,) = _open(db_conn)
    del ddf
    gc.collect()
    _poll("the exported snapshot's transaction to end", lambda: holder not in _open(db_conn))


def _password(config: Path) -> str:
    return str(load_config(config)["connection_settings"]["password"])


def test_worker_killed_mid_read_is_retried(
    client: Any, password_config: Path, db_conn: psycopg.Connection[Any], superuser_dsn: str
) -> None:
    _make_table(db_conn, "dask_kill_read")
    whole = pgmonkey.read_sql("SELECT * FROM dask_kill_read", password_config)
    ddf = pmd.read_sql("dask_kill_read", password_config, partitions=4)
    with psycopg.connect(superuser_dsn) as locker:
        # Every partition's read waits on this lock: a task is seen waiting, then killed.
        locker.execute("LOCK TABLE dask_kill_read IN ACCESS EXCLUSIVE MODE")
        future = client.compute(ddf)
        backend = _poll(
            "a read waiting on the lock", lambda: _waiting_backends(db_conn, "dask_kill_read")
        )[0]
        _kill(_worker_of_backend(client, backend, db_conn))
        locker.rollback()
    got = future.result()
    pd.testing.assert_frame_equal(_sorted(got), _sorted(whole))
    client.wait_for_workers(2, timeout=RESTART_DEADLINE)


def _target_rows(conn: psycopg.Connection[Any], table: str) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


@pytest.mark.parametrize("if_exists", ["fail", "append", "replace"])
def test_to_sql_writes_every_partition(
    client: Any, password_config: Path, db_conn: psycopg.Connection[Any], if_exists: str
) -> None:
    _make_table(db_conn, "dask_w_src")
    # Float NaN/NULL stays out: pgmonkey.to_sql's CSV path cannot write it yet (pandas
    # cuts the NULL token of float columns to 32 characters).
    db_conn.execute("ALTER TABLE dask_w_src DROP COLUMN f")
    db_conn.execute("DROP TABLE IF EXISTS dask_w_dst")
    if if_exists != "fail":
        db_conn.execute("CREATE TABLE dask_w_dst AS SELECT * FROM dask_w_src WHERE id <= 10")
    ddf = pmd.read_sql("dask_w_src", password_config, partitions=4)
    n = pmd.to_sql(ddf, "public.dask_w_dst", password_config, if_exists=if_exists)
    assert n == ROWS
    got = pgmonkey.read_sql("SELECT * FROM dask_w_dst", password_config)
    # What pgmonkey.to_sql would have written, read back the same way.
    pgmonkey.to_sql(ddf.compute(), "dask_w_ref", password_config, if_exists="replace")
    ref = pgmonkey.read_sql("SELECT * FROM dask_w_ref", password_config)
    if if_exists == "append":
        head = pgmonkey.read_sql("SELECT * FROM dask_w_src WHERE id <= 10", password_config)
        assert len(got) == ROWS + 10
        ref = pd.concat([ref, head.astype(ref.dtypes.to_dict())])
        got = got.astype(ref.dtypes.to_dict())
    pd.testing.assert_frame_equal(_sorted(got), _sorted(ref))
    assert _stage_tables(db_conn) == []


def test_to_sql_fail_refuses_an_existing_table(
    password_config: Path, db_conn: psycopg.Connection[Any]
) -> None:
    db_conn.execute("DROP TABLE IF EXISTS dask_exists; CREATE TABLE dask_exists (a int)")
    ddf = dd.from_pandas(pd.DataFrame({"a": [1, 2]}), npartitions=1)
    with pytest.raises(TransferError, match="already exists"):
        pmd.to_sql(ddf, "dask_exists", password_config)
    assert _stage_tables(db_conn) == []


@pytest.mark.parametrize("if_exists", ["fail", "append", "replace"])
def test_partition_raising_leaves_the_target_unchanged(
    client: Any, password_config: Path, db_conn: psycopg.Connection[Any], if_exists: str
) -> None:
    db_conn.execute("DROP TABLE IF EXISTS dask_raise")
    if if_exists != "fail":
        db_conn.execute("CREATE TABLE dask_raise AS SELECT 1::int8 AS a, 'x'::text AS s")
    before = _target_rows(db_conn, "dask_raise") if if_exists != "fail" else None
    frame = pd.DataFrame({"a": range(1000), "s": [f"s{i}" for i in range(1000)]})

    def boom(df: pd.DataFrame) -> pd.DataFrame:
        if df["a"].iloc[0] >= 500:
            raise RuntimeError("partition says no")
        return df

    ddf = dd.from_pandas(frame, npartitions=4).map_partitions(boom)
    with pytest.raises(RuntimeError, match="partition says no"):
        pmd.to_sql(ddf, "dask_raise", password_config, if_exists=if_exists)
    if before is None:
        assert db_conn.execute("SELECT to_regclass('dask_raise')").fetchone() == (None,)
    else:
        assert _target_rows(db_conn, "dask_raise") == before
    _poll("no staging table", lambda: _stage_tables(db_conn) == [])


def _gate(df: pd.DataFrame, config: str) -> pd.DataFrame:
    """Wait (in the task) until the test lets partitions through an advisory lock."""
    with psycopg.connect(
        **pgmonkey.config.connect_params(load_config(config)).connect_kwargs()
    ) as c:
        c.execute("SELECT pg_advisory_lock_shared(4242)")
    return df


@pytest.mark.parametrize("retries", [False, True], ids=["fails", "retried"])
def test_worker_killed_mid_write(
    client: Any,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    superuser_dsn: str,
    retries: bool,
) -> None:
    db_conn.execute("DROP TABLE IF EXISTS dask_kill_w")
    db_conn.execute("CREATE TABLE dask_kill_w AS SELECT -1::int8 AS a, 'old'::text AS s")
    before = _target_rows(db_conn, "dask_kill_w")
    frame = pd.DataFrame({"a": range(2000), "s": [f"s{i}" for i in range(2000)]})
    ddf = dd.from_pandas(frame, npartitions=2).map_partitions(_gate, str(password_config))
    scheduler = client.cluster.scheduler
    allowed = scheduler.allowed_failures
    if not retries:
        scheduler.allowed_failures = 0
    outcome: dict[str, Any] = {}

    def write() -> None:
        try:
            outcome["rows"] = pmd.to_sql(ddf, "dask_kill_w", password_config, if_exists="replace")
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=write)
    try:
        with (
            psycopg.connect(superuser_dsn, autocommit=True) as gate,
            psycopg.connect(superuser_dsn) as locker,
        ):
            gate.execute("SELECT pg_advisory_lock(4242)")
            thread.start()
            stage = _poll(
                "the staging table",
                lambda: [t for t in _stage_tables(db_conn) if not t.endswith("_done")],
            )[0]
            # Partitions, let through, block in their COPY into the staging table.
            locker.execute(f"LOCK TABLE {stage} IN SHARE MODE")
            gate.execute("SELECT pg_advisory_unlock(4242)")
            backend = _poll(
                "a write waiting on the lock", lambda: _waiting_backends(db_conn, stage)
            )[0]
            _kill(_worker_of_backend(client, backend, db_conn))
            locker.rollback()
        thread.join()
    finally:
        scheduler.allowed_failures = allowed
    client.wait_for_workers(2, timeout=RESTART_DEADLINE)
    _poll("no staging table", lambda: _stage_tables(db_conn) == [])
    if retries:
        assert outcome == {"rows": 2000}
        got = pgmonkey.read_sql("SELECT * FROM dask_kill_w", password_config)
        pd.testing.assert_frame_equal(got.sort_values("a").reset_index(drop=True), frame)
    else:
        assert isinstance(outcome.get("error"), distributed.KilledWorker)
        assert _target_rows(db_conn, "dask_kill_w") == before


def _setenv(name: str, value: str | None) -> None:
    # Run on the workers (a bound method of os.environ would be pickled as a copy).
    import os

    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def test_secrets_stay_out_of_the_task_graph(
    client: Any,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _make_table(db_conn, "dask_secret", rows=500)
    password = _password(password_config)
    config = load_config(password_config)
    config["connection_settings"]["password"] = {"from_env": "PGMONKEY_DASK_PW"}
    monkeypatch.setenv("PGMONKEY_DASK_PW", password)
    client.run(_setenv, "PGMONKEY_DASK_PW", password)
    try:
        whole = pgmonkey.read_sql("SELECT * FROM dask_secret", password_config)
        for source, env in ((config, True), (password_config, False)):
            ddf = pmd.read_sql("dask_secret", source, partitions=3, resolve_env=env)
            graph = dict(ddf.optimize().__dask_graph__())
            import cloudpickle

            blob = cloudpickle.dumps(graph)
            assert password.encode() not in blob
            pd.testing.assert_frame_equal(_sorted(ddf.compute()), _sorted(whole))
            writes = write_tasks(ddf, Source.of(source, resolve_env=env), Target.of("t", None))
            assert password.encode() not in cloudpickle.dumps(
                [dict(t.__dask_graph__()) for t in writes]
            )
        # A worker that cannot resolve the reference fails as a local call would.
        client.run(_setenv, "PGMONKEY_DASK_PW", None)
        ddf = pmd.read_sql("dask_secret", config, partitions=2, resolve_env=True)
        with pytest.raises(EnvInterpolationError, match="PGMONKEY_DASK_PW"):
            ddf.compute()
    finally:
        client.run(_setenv, "PGMONKEY_DASK_PW", None)


def test_a_literal_secret_in_a_dict_config_is_refused(password_config: Path) -> None:
    config = load_config(password_config)
    with pytest.raises(ConfigError, match=r"connection_settings\.password") as info:
        pmd.read_sql("SELECT 1 AS a", config)
    assert _password(password_config) not in str(info.value)


def test_bad_partitioning_requests(password_config: Path, db_conn: psycopg.Connection[Any]) -> None:
    _make_table(db_conn, "dask_bad", rows=10)
    with pytest.raises(TransferError, match="partition_on"):
        pmd.read_sql("SELECT * FROM dask_bad", password_config, partitions=3)
    with pytest.raises(TransferError, match="no column named 'nope'"):
        pmd.read_sql("SELECT * FROM dask_bad", password_config, partition_on="nope")
    with pytest.raises(TransferError, match="numeric, date or timestamp"):
        pmd.read_sql("SELECT * FROM dask_bad", password_config, partition_on="s")
    for bad in (0, True, "2"):
        with pytest.raises(TransferError, match=f"not {bad!r}"):
            pmd.read_sql("SELECT * FROM dask_bad", password_config, partitions=bad)
    with dask.config.set(scheduler="sync"):
        one = pmd.read_sql("SELECT * FROM dask_bad", password_config)
        assert one.npartitions == 1


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A sandbox of its own with one streaming standby (the session's stays single)."""
    from pgmonkey import sandbox as sb

    path = tmp_path_factory.mktemp("dask-scaled")
    running = sb.start(path, standbys=1)
    try:
        yield running
    finally:
        sb.stop(path)


def _replicated_table(scaled: Any, rows: int = 2000) -> None:
    with psycopg.connect(scaled.superuser_conninfo, autocommit=True) as conn:
        _make_table(conn, "dask_replica", rows)
        lsn = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]  # type: ignore[index]
    (standby,) = scaled.standbys
    standby_dsn = scaled.superuser_conninfo.replace(f"port={scaled.port}", f"port={standby.port}")
    with psycopg.connect(standby_dsn, autocommit=True) as conn:
        _poll(
            "the standby to replay the table",
            lambda: conn.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)
            ).fetchone()[0],  # type: ignore[index]
        )


def test_prefer_standby_reads_every_partition_on_the_standby(client: Any, scaled: Any) -> None:
    _replicated_table(scaled)
    query = "SELECT id, v, s, inet_server_port() AS port FROM dask_replica"
    ddf = pmd.read_sql(query, scaled.configs["readonly"], partition_on="id", partitions=4)
    got = ddf.compute()
    (standby,) = scaled.standbys
    assert set(got["port"]) == {standby.port}
    whole = pgmonkey.read_sql(query, scaled.configs["readonly"])
    pd.testing.assert_frame_equal(_sorted(got), _sorted(whole))


def test_consistent_multi_host_read_stays_on_the_exporting_server(
    client: Any, scaled: Any, tmp_path: Path
) -> None:
    import yaml

    _replicated_table(scaled)
    config = yaml.safe_load(Path(scaled.configs["multihost"]).read_text())
    config["connection_settings"]["load_balance_hosts"] = "random"
    config["connection_settings"]["target_session_attrs"] = "any"
    path = tmp_path / "balanced.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    query = "SELECT id, v, s, inet_server_port() AS port FROM dask_replica"
    for _ in range(3):  # each time the snapshot may come from either server
        ddf = pmd.read_sql(query, path, partition_on="id", partitions=6, consistent=True)
        got = ddf.compute()
        assert len(set(got["port"])) == 1
        assert len(got) == 2000


def test_parameters_are_bound_as_read_sql_binds_them(
    password_config: Path, db_conn: psycopg.Connection[Any]
) -> None:
    _make_table(db_conn, "dask_params", rows=10)
    # A placeholder inside quotes would let a value's quote end the string: refused.
    with pytest.raises(TransferError, match="inside a string literal"):
        pmd.read_sql("SELECT * FROM dask_params WHERE s = '%s'", password_config, params=["x"])
    with dask.config.set(scheduler="sync"):
        query = "SELECT id, %s::text AS t, pg_typeof(%s)::text AS k FROM dask_params"
        got = pmd.read_sql(query, password_config, params=[-0.0, -0.0]).compute()
    assert set(got["t"]) == {"-0"} and set(got["k"]) == {"double precision"}


def test_to_sql_without_a_cluster(password_config: Path, db_conn: psycopg.Connection[Any]) -> None:
    # The synchronous scheduler runs the tasks in this process; object columns are typed
    # from their values (dicts: jsonb), as pgmonkey.to_sql types them.
    db_conn.execute("DROP TABLE IF EXISTS dask_sync")
    frame = pd.DataFrame({"a": range(10), "j": [{"k": i} for i in range(10)]})
    # Dask may turn object columns into strings when it builds the frame: not here.
    with dask.config.set({"scheduler": "sync", "dataframe.convert-string": False}):
        written = pmd.to_sql(dd.from_pandas(frame, npartitions=3), "dask_sync", password_config)
    assert written == 10
    row = db_conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = 'dask_sync'::regclass AND attname = 'j'"
    ).fetchone()
    assert row == ("jsonb",)
    got = pgmonkey.read_sql("SELECT * FROM dask_sync ORDER BY a", password_config)
    pd.testing.assert_frame_equal(got, frame)


@pytest.mark.parametrize("ctype", ["normal", "async_pool"])
def test_magics_dask_query_and_persist(
    client: Any, password_config: Path, db_conn: psycopg.Connection[Any], ctype: str
) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from pgmonkey.magics import PgMonkeyMagics

    _make_table(db_conn, "dask_magic", rows=500)
    db_conn.execute("DROP TABLE IF EXISTS dask_magic_copy")
    shell = InteractiveShell.instance()
    magics = PgMonkeyMagics(shell=shell)
    shell.register_magics(magics)

    def ok(code: str) -> Any:
        result = shell.run_cell(code, store_history=False)
        assert result.error_in_exec is None, result.error_in_exec
        return result.result

    try:
        ok(f"%pgmonkey connect {password_config} {ctype}")
        shell.user_ns["low"] = 100
        ok(
            "%pgmonkey --out ddf --dask --partition-on id --partitions 3 "
            "SELECT id, v, s FROM dask_magic WHERE id > :low"
        )
        ddf = shell.user_ns["ddf"]
        assert isinstance(ddf, dd.DataFrame) and ddf.npartitions == 3
        whole = pgmonkey.read_sql("SELECT id, v, s FROM dask_magic WHERE id > 100", password_config)
        pd.testing.assert_frame_equal(_sorted(ddf.compute()), _sorted(whole))
        ok("%pgmonkey persist ddf dask_magic_copy --if-exists replace")
        copied = pgmonkey.read_sql("SELECT * FROM dask_magic_copy", password_config)
        pd.testing.assert_frame_equal(_sorted(copied), _sorted(whole))
        bad = shell.run_cell("%pgmonkey --partitions 3 SELECT 1", store_history=False)
        assert "go with --dask" in str(bad.error_in_exec)
    finally:
        magics.close_all()


def test_autocommit_config(
    client: Any, password_config: Path, db_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # autocommit: true in the config must not end the snapshot's transaction early, nor
    # split a partition's write from its ledger row.
    import yaml

    config = yaml.safe_load(password_config.read_text())
    config["connection_settings"]["autocommit"] = True
    path = tmp_path / "autocommit.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    _make_table(db_conn, "dask_auto", rows=1000)
    db_conn.execute("ALTER TABLE dask_auto DROP COLUMN f")  # see test_to_sql_writes_every_partition
    whole = pgmonkey.read_sql("SELECT * FROM dask_auto", password_config)
    ddf = pmd.read_sql("dask_auto", path, partitions=3, consistent=True)
    db_conn.execute("DELETE FROM dask_auto WHERE id > 500")
    pd.testing.assert_frame_equal(_sorted(ddf.compute()), _sorted(whole))
    db_conn.execute("DROP TABLE IF EXISTS dask_auto_copy")
    assert pmd.to_sql(ddf, "dask_auto_copy", path) == len(whole)
    assert db_conn.execute("SELECT count(*) FROM dask_auto_copy").fetchone() == (len(whole),)
    assert _stage_tables(db_conn) == []


def test_a_partition_written_twice_lands_once(
    password_config: Path, db_conn: psycopg.Connection[Any]
) -> None:
    # A worker that dies after its partition committed, before reporting, gets the task
    # retried: the ledger makes the second attempt a no-op. Driven directly, in-process.
    from pgmonkey.dask._write import WritePart, _create, _drop, write_partition

    frame = pd.DataFrame({"a": range(100), "s": [f"s{i}" for i in range(100)]})
    source = Source.of(password_config, resolve_env=False)
    target = Target.of("dask_twice", None)
    with source.connect() as conn:
        _create(conn, frame.iloc[:0], target)
    try:
        part = WritePart(source, target)
        assert write_partition(frame, part, 7) == 100
        assert write_partition(frame, part, 7) == 100
        staged = db_conn.execute(f'SELECT count(*) FROM "{target.stage}"').fetchone()
        ledger = db_conn.execute(f'SELECT part, rows FROM "{target.stage}_done"').fetchall()
        assert staged == (100,)
        assert ledger == [(7, 100)]
    finally:
        _drop(source, target)
    assert _stage_tables(db_conn) == []


def test_snapshot_lives_as_long_as_a_derived_frame(
    client: Any, password_config: Path, db_conn: psycopg.Connection[Any]
) -> None:
    _make_table(db_conn, "dask_derived", rows=600)
    ddf = pmd.read_sql("dask_derived", password_config, partitions=3, consistent=True)
    derived = ddf[ddf["id"] > 100]
    (holder,) = _open(db_conn)
    del ddf
    gc.collect()
    db_conn.execute("DELETE FROM dask_derived")
    assert len(derived.compute()) == 500  # still the snapshot's rows
    assert _open(db_conn) == [holder]
    del derived
    gc.collect()
    _poll("the exported snapshot's transaction to end", lambda: not _open(db_conn))


def test_release_ends_the_snapshot_of_a_live_frame(
    client: Any, password_config: Path, db_conn: psycopg.Connection[Any]
) -> None:
    # What ends the snapshot where the frames alone cannot (a scheduler in this process keeps
    # its recent tasks by default): release(), on any frame derived from the read.
    _make_table(db_conn, "dask_release", rows=600)
    plain = pmd.read_sql("dask_release", password_config, partitions=2)
    ddf = pmd.read_sql("dask_release", password_config, partitions=3, consistent=True)
    derived = ddf[ddf["id"] > 100]["id"]
    (holder,) = _open(db_conn)
    assert len(derived.compute()) == 500
    persisted = derived.persist()  # holds the results, not the read
    distributed.wait(persisted)
    assert pmd.release(persisted) == 0
    assert pmd.release(plain) == 0
    assert pmd.release(derived) == 1
    _poll("the released snapshot's transaction to end", lambda: holder not in _open(db_conn))
    assert pmd.release(ddf) == 0  # already ended
    with pytest.raises(TransferError, match=r"snapshot .* of this consistent read is gone"):
        ddf.compute()
    with pytest.raises(TypeError, match=r"Dask DataFrame or Series, not a pandas\..*DataFrame"):
        pmd.release(pd.DataFrame())


def test_nulls_appearing_after_planning_are_named(
    client: Any, password_config: Path, db_conn: psycopg.Connection[Any]
) -> None:
    # Without a snapshot the planned dtypes can go stale: the error says which column.
    _make_table(db_conn, "dask_stale", rows=300)
    ddf = pmd.read_sql("SELECT id, flag FROM dask_stale", password_config, partition_on="id")
    assert str(ddf.dtypes["flag"]) == "bool"
    db_conn.execute("UPDATE dask_stale SET flag = NULL WHERE id = 7")
    with pytest.raises(TransferError, match="column 'flag' holds NULLs"):
        ddf.compute()
