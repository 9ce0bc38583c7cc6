"""Looking at data from the magics: explain, profile, plot, snippets, completion.

Driven through a real InteractiveShell against the sandbox; every figure is compared with
what PostgreSQL itself says (the EXPLAIN JSON, direct SQL aggregates) or with numpy.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import IPython.core.completer
import pandas as pd
import psycopg
import pytest
import yaml
from IPython.core.interactiveshell import InteractiveShell

from pgmonkey.magics import PgMonkeyMagics
from pgmonkey.magics._cmd_explain import MISESTIMATE, Plan
from tests.fix_magics import connect, ok, run
from tests.tcp_proxy import TcpProxy

TYPES = ("normal", "pool", "async", "async_pool")


def fails(ip: InteractiveShell, code: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a cell that must fail; return its (short) output."""
    capsys.readouterr()
    result = run(ip, code)
    assert result.error_in_exec is not None
    out = "".join(capsys.readouterr())
    assert "Traceback" not in out
    assert len(out.strip().splitlines()) <= 4, out
    return out


@pytest.fixture
def scratch(db_conn: psycopg.Connection[Any]) -> Iterator[Callable[[str, str], None]]:
    """``scratch(name, "AS SELECT ...")``: a fresh table made by the given SQL, dropped after."""
    names: list[str] = []

    def make(name: str, body: str) -> None:
        db_conn.execute(f"DROP TABLE IF EXISTS {name}")
        db_conn.execute(f"CREATE TABLE {name} {body}")
        names.append(name)

    yield make
    for name in names:
        db_conn.execute(f"DROP TABLE IF EXISTS {name}")


# -- explain --------------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", TYPES)
def test_explain_analyze_of_update_changes_no_row(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    scratch: Callable[[str, str], None],
    ctype: str,
) -> None:
    table = f"explore_upd_{ctype}"
    scratch(table, "AS SELECT g AS id, g AS v FROM generate_series(1, 50) g")
    connect(ip, password_config, ctype, "--name", "c")
    plan = ok(ip, f"%pgmonkey explain --analyze UPDATE {table} SET v = v + 1000 WHERE id <= 20")
    assert isinstance(plan, Plan)
    # It did run: the scan under the Update node produced the 20 rows it updated...
    scan = plan.root.children[0]
    assert plan.root.raw["Node Type"] == "ModifyTable"
    assert scan.actual_rows == 20
    # ...and nothing changed.
    assert db_conn.execute(f"SELECT sum(v) FROM {table}").fetchone() == (50 * 51 // 2,)
    # The connection is usable afterwards, with nothing left open.
    assert ok(ip, "%pgmonkey SELECT 1 AS one")["one"].tolist() == [1]


def test_explain_tree_figures_follow_the_json(
    ip: InteractiveShell, password_config: Path, scratch: Callable[[str, str], None]
) -> None:
    scratch("explore_ex_t", "AS SELECT g AS id, g % 10 AS k FROM generate_series(1, 5000) g")
    scratch("explore_ex_u", "AS SELECT g AS k, 'n' || g AS name FROM generate_series(0, 9) g")
    connect(ip, password_config)
    plan = ok(
        ip,
        "%pgmonkey explain --analyze --buffers SELECT u.name, count(*) FROM explore_ex_t t "
        "JOIN explore_ex_u u ON u.k = t.k GROUP BY 1 ORDER BY 2 DESC",
    )
    doc = plan.json
    assert isinstance(doc, list) and "Plan" in doc[0] and "Execution Time" in doc[0]
    raws = []

    def collect(raw: dict[str, Any]) -> None:
        raws.append(raw)
        for child in raw.get("Plans", []):
            collect(child)

    collect(doc[0]["Plan"])
    nodes = plan.nodes
    assert [n.raw for n in nodes] == raws
    for node in nodes:
        raw = node.raw
        assert node.inclusive == pytest.approx(raw["Actual Total Time"] * raw["Actual Loops"])
        children = sum(c["Actual Total Time"] * c["Actual Loops"] for c in raw.get("Plans", []))
        assert node.exclusive == pytest.approx(max(node.inclusive - children, 0.0))
        assert node.actual_rows == raw["Actual Rows"]
        assert node.estimated_rows == raw["Plan Rows"]
    assert "hit" in plan.root.buffers  # --buffers asked for them
    slowest = [n for n in nodes if n.slowest]
    assert slowest == [max(nodes, key=lambda n: n.exclusive)]
    text = str(plan)
    assert repr(plan) == text
    assert text.count("◀ slowest") == 1
    assert "Seq Scan on explore_ex_t t" in text and "Seq Scan on explore_ex_u u" in text
    assert text.splitlines()[0].startswith("planning ")
    page = plan._repr_html_()
    assert page.count("◀ slowest") == 1
    assert "explore_ex_t" in page and "<table" in page


def test_explain_flags_a_misestimate(ip: InteractiveShell, password_config: Path) -> None:
    connect(ip, password_config)
    # unnest() of a subquery's array is planned at 10 rows, whatever it holds.
    sql = "SELECT * FROM unnest(ARRAY(SELECT generate_series(1, 5000)))"
    plan = ok(ip, f"%pgmonkey explain --analyze {sql}")
    scan = next(n for n in plan.nodes if n.raw["Node Type"] == "Function Scan")
    assert scan.estimated_rows == 10 and scan.actual_rows == 5000
    assert scan.misestimate == pytest.approx(500) and scan.misestimate > MISESTIMATE
    assert "⚠ x500" in str(plan)
    assert "estimate off by 500x" in plan._repr_html_()


def test_explain_without_analyze_runs_nothing_and_binds_parameters(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    scratch: Callable[[str, str], None],
) -> None:
    scratch("explore_ex_p", "AS SELECT g AS id FROM generate_series(1, 10) g")
    connect(ip, password_config)
    ip.user_ns["wanted"] = 7
    plan = ok(ip, "%pgmonkey explain DELETE FROM explore_ex_p WHERE id = :wanted")
    assert not plan.analyzed and plan.execution_time is None
    scan = plan.root.children[0]
    assert "(id = 7)" in scan.raw["Filter"]
    assert "not run" in str(plan) and "cost" in str(plan)
    assert db_conn.execute("SELECT count(*) FROM explore_ex_p").fetchone() == (10,)


def test_explain_cell_form_and_out(ip: InteractiveShell, password_config: Path) -> None:
    connect(ip, password_config)
    ip.user_ns["n"] = 3
    plan = ok(
        ip,
        "%%pgmonkey explain --analyze --verbose --out p\n"
        "SELECT 'it''s' AS s, g\n"
        "FROM generate_series(1, :n) g",
    )
    assert ip.user_ns["p"] is plan
    assert plan.root.actual_rows == 3
    # The quotes of the SQL arrive intact (the body is never split like a shell line).
    assert "'it''s'::text" in plan.root.raw["Output"]


def test_explain_in_sql_syntax_stays_sql(ip: InteractiveShell, password_config: Path) -> None:
    connect(ip, password_config)
    for line in ("EXPLAIN (COSTS OFF) SELECT 1", "explain verbose SELECT 1"):
        df = ok(ip, f"%pgmonkey {line}")
        assert list(df.columns) == ["QUERY PLAN"]
        assert df["QUERY PLAN"].iloc[0].startswith("Result")


def test_explain_errors_are_short(
    ip: InteractiveShell, password_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    connect(ip, password_config)
    out = fails(ip, "%pgmonkey explain SELEC 1", capsys)
    assert "SyntaxError" in out
    out = fails(ip, "%pgmonkey explain SELECT 1; SELECT 2", capsys)
    assert "one SQL statement" in out
    out = fails(ip, "%%pgmonkey explain SELECT 1\nSELECT 2", capsys)
    assert "cell body" in out
    assert ok(ip, "%pgmonkey SELECT 1 AS one")["one"].tolist() == [1]


# -- profile --------------------------------------------------------------------------------

PROFILE_TABLE = """AS SELECT g AS id,
    CASE WHEN g % 9 = 0 THEN NULL ELSE ((g * 37) % 101)::numeric(8, 2) / 4 END AS price,
    CASE WHEN g % 5 = 0 THEN NULL ELSE 'k' || (g % 4) || repeat('x', g % 3) END AS label,
    timestamptz '2024-03-01 12:00+00' + (g * g % 997) * interval '37 minutes' AS ts,
    date '2024-01-01' + (g % 400) AS day,
    g % 3 = 0 AS flag
  FROM generate_series(1, 2000) g"""


@pytest.mark.parametrize("ctype", ["normal", "async"])
def test_profile_numbers_equal_direct_sql(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    scratch: Callable[[str, str], None],
    ctype: str,
) -> None:
    scratch("explore_prof", PROFILE_TABLE)
    connect(ip, password_config, ctype)
    df = ok(ip, "%pgmonkey profile explore_prof --schema public")
    assert list(df["column"]) == ["id", "price", "label", "ts", "day", "flag"]
    got = df.set_index("column")

    def one(query: str) -> Any:
        row = db_conn.execute(query).fetchone()
        assert row is not None
        return row[0] if len(row) == 1 else row

    assert (
        one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
            "'explore_prof'::regclass AND attname = 'price'"
        )
        == got.loc["price", "type"]
    )
    for col in ("id", "price", "label", "ts", "day", "flag"):
        count, nulls, distinct = one(
            f"SELECT count({col}), count(*) - count({col}), count(DISTINCT {col}) FROM explore_prof"
        )
        assert (got.loc[col, "count"], got.loc[col, "nulls"]) == (count, nulls), col
        assert (got.loc[col, "distinct"], got.loc[col, "distinct_estimated"]) == (distinct, False)
    for col in ("id", "price", "label", "ts", "day"):
        assert (got.loc[col, "min"], got.loc[col, "max"]) == one(
            f"SELECT min({col}), max({col}) FROM explore_prof"
        ), col
    for col in ("id", "price"):
        mean, std, quartiles = one(
            f"SELECT avg({col})::float8, stddev_samp({col})::float8, percentile_cont("
            f"ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY {col}) FROM explore_prof"
        )
        assert got.loc[col, "mean"] == pytest.approx(mean, rel=1e-12)
        assert got.loc[col, "std"] == pytest.approx(std, rel=1e-12)
        assert [got.loc[col, q] for q in ("p25", "p50", "p75")] == pytest.approx(quartiles)
    for col in ("ts", "day"):
        quartiles = one(
            f"SELECT percentile_disc(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY {col}) "
            "FROM explore_prof"
        )
        assert [got.loc[col, q] for q in ("p25", "p50", "p75")] == quartiles, col
    mean_ts, std_ts = one(
        "SELECT to_timestamp(avg(extract(epoch FROM ts))::float8), "
        "stddev_samp(extract(epoch FROM ts))::float8 FROM explore_prof"
    )
    assert got.loc["ts", "mean"] == mean_ts
    assert got.loc["ts", "std"].total_seconds() == pytest.approx(std_ts, abs=1e-5)
    for col in ("label", "flag"):
        rows = db_conn.execute(
            f"SELECT {col}::text, count(*) FROM explore_prof WHERE {col} IS NOT NULL "
            f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3"
        ).fetchall()
        assert got.loc[col, "top"] == ", ".join(f"{v}: {n:,}" for v, n in rows), col
        assert got.loc[col, "mean"] is None
    assert pd.isna(got.loc["id", "top"])


def test_profile_estimates_distinct_above_the_size(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    scratch: Callable[[str, str], None],
) -> None:
    scratch("explore_prof_est", "AS SELECT g AS id, g % 10 AS k FROM generate_series(1, 3000) g")
    db_conn.execute("ANALYZE explore_prof_est")
    connect(ip, password_config)
    df = ok(ip, "%pgmonkey profile explore_prof_est --exact-below 100").set_index("column")
    reltuples = one_value(
        db_conn, "SELECT reltuples FROM pg_class WHERE relname = 'explore_prof_est'"
    )
    for col in ("id", "k"):
        n_distinct = one_value(
            db_conn,
            "SELECT n_distinct FROM pg_stats "
            f"WHERE tablename = 'explore_prof_est' AND attname = '{col}'",
        )
        expected = round(-n_distinct * reltuples) if n_distinct < 0 else round(n_distinct)
        assert (df.loc[col, "distinct"], df.loc[col, "distinct_estimated"]) == (expected, True)
    # Below the size the count is exact.
    df = ok(ip, "%pgmonkey profile explore_prof_est").set_index("column")
    assert (df.loc["k", "distinct"], df.loc["k", "distinct_estimated"]) == (10, False)


def test_profile_of_a_missing_table_fails_short(
    ip: InteractiveShell, password_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    connect(ip, password_config)
    out = fails(ip, "%pgmonkey profile no_such_table_here", capsys)
    assert "UndefinedTable" in out


def one_value(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


# -- plot -----------------------------------------------------------------------------------

PLOT_TABLE = """AS SELECT g AS id,
    CASE WHEN g % 97 = 0 THEN NULL ELSE (sin(g) * 1000 + (g % 13) * 17.25)::numeric(10, 3) END AS v,
    'g' || (g % 3) AS grp,
    (ARRAY['red', 'green', 'blue', 'cyan', 'gray'])[1 + (g * g) % 5] AS color,
    timestamptz '2024-01-01 00:00+00' + g * interval '17 minutes' AS ts
  FROM generate_series(1, 4000) g"""


@pytest.fixture
def plt() -> Iterator[Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    yield pyplot
    pyplot.close("all")


def column_values(conn: psycopg.Connection[Any], query: str) -> Any:
    import numpy as np

    return np.array([r[0] for r in conn.execute(query).fetchall()], dtype=np.float64)


@pytest.mark.parametrize("ctype", ["normal", "async_pool"])
def test_plot_hist_bins_equal_numpy_histogram(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    scratch: Callable[[str, str], None],
    plt: Any,
    ctype: str,
) -> None:
    import numpy as np

    scratch("explore_plot", PLOT_TABLE)
    connect(ip, password_config, ctype)
    data = column_values(db_conn, "SELECT v FROM explore_plot WHERE v IS NOT NULL")
    for bins in (1, 7, 20, 64):
        ax = ok(ip, f"%pgmonkey plot hist explore_plot --column v --bins {bins}")
        counts, edges = np.histogram(data, bins=bins)
        assert [p.get_height() for p in ax.patches] == counts.tolist()
        assert [p.get_x() for p in ax.patches] == edges[:-1].tolist()
        assert ax.patches[-1].get_x() + ax.patches[-1].get_width() == pytest.approx(edges[-1])
    # Groups share the edges of the whole column; each outline is that group's histogram.
    ax = ok(ip, "%pgmonkey plot hist explore_plot --column v --by grp --bins 12")
    _counts, edges = np.histogram(data, bins=12)
    steps = {s.get_label(): s.get_data() for s in ax.patches}
    assert sorted(steps) == ["g0", "g1", "g2"]
    for grp, stairs in steps.items():
        part = column_values(
            db_conn, f"SELECT v FROM explore_plot WHERE v IS NOT NULL AND grp = '{grp}'"
        )
        assert stairs.values.tolist() == np.histogram(part, bins=edges)[0].tolist()
        assert stairs.edges.tolist() == edges.tolist()


def test_plot_query_source_cell_form_and_parameters(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    scratch: Callable[[str, str], None],
    plt: Any,
) -> None:
    import numpy as np

    scratch("explore_plot", PLOT_TABLE)
    connect(ip, password_config)
    ip.user_ns["lo"] = 2500
    query = "SELECT v * 2 AS w FROM explore_plot WHERE id > :lo AND grp <> 'g1'"
    expected = np.histogram(
        column_values(db_conn, query.replace(":lo", "2500") + " AND v IS NOT NULL"), bins=9
    )[0]
    ax = ok(ip, f'%pgmonkey plot hist "{query}" --column w --bins 9')
    assert [p.get_height() for p in ax.patches] == expected.tolist()
    ax = ok(ip, f"%%pgmonkey plot hist --column w --bins 9\n{query}")
    assert [p.get_height() for p in ax.patches] == expected.tolist()


def test_plot_box_equals_matplotlib_statistics(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    scratch: Callable[[str, str], None],
    plt: Any,
) -> None:
    from matplotlib import cbook

    scratch("explore_plot", PLOT_TABLE)
    # A few far values, so the whiskers stop short of the extremes.
    db_conn.execute("UPDATE explore_plot SET v = v * 40 WHERE id % 401 = 0")
    connect(ip, password_config)
    ax = ok(ip, "%pgmonkey plot box explore_plot --column v")
    (expected,) = cbook.boxplot_stats(
        column_values(db_conn, "SELECT v FROM explore_plot WHERE v IS NOT NULL")
    )
    ys = {round(float(y), 6) for line in ax.lines for y in line.get_ydata()}
    for key in ("q1", "med", "q3", "whislo", "whishi", "mean"):
        assert round(float(expected[key]), 6) in ys, key
    outliers = len(expected["fliers"])
    assert outliers > 0
    assert f"{outliers:,} outliers" in ax.get_xticklabels()[0].get_text()


def test_plot_bar_and_line_counts_equal_group_by(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    scratch: Callable[[str, str], None],
    plt: Any,
) -> None:
    scratch("explore_plot", PLOT_TABLE)
    connect(ip, password_config)
    ax = ok(ip, "%pgmonkey plot bar explore_plot --column color --top 3")
    expected = db_conn.execute(
        "SELECT color, count(*) FROM explore_plot GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3"
    ).fetchall()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert list(zip(labels, [p.get_height() for p in ax.patches], strict=True)) == expected
    ax = ok(ip, "%pgmonkey plot bar explore_plot --column grp --y v --agg max")
    expected = db_conn.execute(
        "SELECT grp, max(v)::float8 FROM explore_plot GROUP BY 1 ORDER BY 2 DESC"
    ).fetchall()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert list(zip(labels, [p.get_height() for p in ax.patches], strict=True)) == expected
    # Ten equal bins over the time column: every row is in one of them.
    ax = ok(ip, "%pgmonkey plot line explore_plot --column ts --bins 10 --by grp")
    lines = {line.get_label(): line.get_ydata() for line in ax.lines}
    for grp, counts in lines.items():
        total = one_value(db_conn, f"SELECT count(*) FROM explore_plot WHERE grp = '{grp}'")
        assert len(counts) == 10 and sum(counts) == total


def test_plot_errors_are_short(
    ip: InteractiveShell,
    password_config: Path,
    scratch: Callable[[str, str], None],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    plt: Any,
) -> None:
    scratch("explore_plot", PLOT_TABLE)
    connect(ip, password_config)
    assert "UndefinedColumn" in fails(ip, "%pgmonkey plot hist explore_plot -c nope", capsys)
    assert "line --bins" in fails(ip, "%pgmonkey plot hist explore_plot -c ts", capsys)
    assert "invalid choice" in fails(ip, "%pgmonkey plot pie explore_plot -c v", capsys)
    assert "--agg needs --y" in fails(ip, "%pgmonkey plot bar explore_plot -c v --agg sum", capsys)
    # A line of 4,000 distinct values is refused past the limit, not fetched.
    monkeypatch.setattr("pgmonkey.magics._cmd_plot.MAX_POINTS", 1000)
    assert "add --bins N" in fails(ip, "%pgmonkey plot line explore_plot -c id", capsys)


class CountingProxy(TcpProxy):
    """The test proxy, counting the bytes the server sends to the client."""

    received = 0

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        from_server = src.getpeername()[1] == self.target[1]
        try:
            while self._running():
                readable, _w, _x = select.select([src], [], [], 0.1)
                if not readable:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                if from_server:
                    self.received += len(data)
                dst.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()


def test_plot_of_a_large_table_receives_only_aggregates(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    scratch: Callable[[str, str], None],
    tmp_path: Path,
    plt: Any,
) -> None:
    rows = 2_000_000
    scratch("explore_big", f"AS SELECT g::float8 * 0.37 AS v FROM generate_series(1, {rows}) g")
    size = one_value(db_conn, "SELECT pg_relation_size('explore_big')")
    settings = yaml.safe_load(password_config.read_text())
    target = settings["connection_settings"]
    with CountingProxy(target["host"], int(target["port"]), lifetime=120) as proxy:
        target.update(host=proxy.host, port=str(proxy.port))
        config = tmp_path / "proxied.yaml"
        config.write_text(yaml.safe_dump(settings))
        config.chmod(0o600)
        connect(ip, config)
        before = proxy.received
        ax = ok(ip, "%pgmonkey plot hist explore_big --column v --bins 50")
        received = proxy.received - before
        assert sum(p.get_height() for p in ax.patches) == rows
        ax = ok(ip, "%pgmonkey plot box explore_big --column v")
        received_box = proxy.received - before - received
        ok(ip, "%pgmonkey disconnect")
    # The table is tens of megabytes; what came back is a few kilobytes of aggregates.
    assert size > 50_000_000
    assert 0 < received < 20_000, received
    assert 0 < received_box < 20_000, received_box


def test_matplotlib_is_imported_only_to_draw() -> None:
    code = (
        "import sys, pgmonkey, pgmonkey.magics, pgmonkey.cli\nprint('matplotlib' in sys.modules)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert res.stdout.strip() == "False"


# -- snippets -------------------------------------------------------------------------------


def test_snippets_save_with_and_list(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    scratch: Callable[[str, str], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    scratch("explore_snip", "AS SELECT g AS id, g % 4 AS k FROM generate_series(1, 100) g")
    connect(ip, password_config)
    ip.user_ns["limit"] = 50
    # --save runs the query and keeps it; :limit is bound each time the snippet is used.
    df = ok(ip, "%%pgmonkey --save small\nSELECT * FROM explore_snip WHERE id <= :limit;")
    assert len(df) == 50
    assert (
        ok(ip, "%%pgmonkey --save ks --with small --no-execute\nSELECT DISTINCT k FROM small")
        is None
    )
    df = ok(ip, "%%pgmonkey --with ks\nSELECT count(*) AS n FROM ks")
    assert df["n"].tolist() == [4]
    # Both snippets are in the query: ks reads small, so small comes first.
    ip.user_ns["limit"] = 2
    df = ok(
        ip,
        "%pgmonkey --with ks --with small SELECT (SELECT count(*) FROM ks) AS a, "
        "(SELECT count(*) FROM small) AS b",
    )
    assert df.to_dict("list") == {"a": [2], "b": [2]}
    # A cell with its own WITH gets the snippets in front of its CTEs.
    df = ok(
        ip,
        "%%pgmonkey --with small\nWITH doubled AS (SELECT id * 2 AS d FROM small)\n"
        "SELECT sum(d) AS s FROM doubled",
    )
    assert df["s"].tolist() == [6]
    expected = db_conn.execute("SELECT count(*) FROM explore_snip WHERE id <= 2").fetchone()
    assert expected == (2,)
    listed = ok(ip, "%pgmonkey snippets")
    assert listed["name"].tolist() == ["small", "ks"]
    assert listed["with"].tolist() == ["", "small"]
    assert listed["sql"].tolist()[1] == "SELECT DISTINCT k FROM small"
    assert "used by 'ks'" in fails(ip, "%pgmonkey snippets --delete small", capsys)
    assert "no snippet named 'nope'" in fails(ip, "%%pgmonkey --with nope\nSELECT 1", capsys)
    assert "built on itself" in fails(ip, "%%pgmonkey --save small --with ks\nSELECT 1", capsys)
    assert ok(ip, "%pgmonkey snippets --delete ks")["name"].tolist() == ["small"]


def test_snippet_error_position_counts_the_cell(
    ip: InteractiveShell, password_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    connect(ip, password_config)
    ok(ip, "%%pgmonkey --save one --no-execute\nSELECT 1 AS x")
    out = fails(ip, "%%pgmonkey --with one\nSELECT x\nFROM one WHERE nope = 1", capsys)
    assert "(line 3, column 16)" in out
    assert "FROM one WHERE nope = 1" in out


# -- display --------------------------------------------------------------------------------


@pytest.fixture
def display_settings(ip: InteractiveShell) -> Iterator[InteractiveShell]:
    """``%config`` changes of a test, undone after it (the shell's config outlives tests)."""
    try:
        yield ip
    finally:
        ok(ip, "%config PgMonkeyMagics.displaylimit = 0")
        ok(ip, "%config PgMonkeyMagics.footer = False")


def test_displaylimit_truncates_the_rendering_not_the_value(
    display_settings: InteractiveShell, password_config: Path
) -> None:
    ip = display_settings
    connect(ip, password_config, "--name", "db")
    ok(ip, "%config PgMonkeyMagics.displaylimit = 3")
    df = ok(ip, "%pgmonkey SELECT g AS n FROM generate_series(1, 10) g")
    assert df["n"].tolist() == list(range(1, 11))
    data, _meta = ip.display_formatter.format(df)
    assert data["text/html"] == df.head(3)._repr_html_()
    assert data["text/plain"] == repr(df.head(3))
    # Frames made from it, and frames pgmonkey did not return, render as pandas renders them.
    for other in (df.head(5), df.copy(), pd.DataFrame({"n": range(10)})):
        data, _meta = ip.display_formatter.format(other)
        assert data["text/html"] == other._repr_html_()
        assert data["text/plain"] == repr(other)
    ok(ip, "%config PgMonkeyMagics.footer = True")
    data, _meta = ip.display_formatter.format(df)
    for text in (data["text/html"], data["text/plain"]):
        assert re.search(r"10 rows × 1 column \(first 3 shown\) · [0-9.]+ m?s · db", text), text
    ok(ip, "%config PgMonkeyMagics.displaylimit = 0")
    data, _meta = ip.display_formatter.format(df)
    assert data["text/html"].startswith(df._repr_html_())
    assert re.search(r"10 rows × 1 column · [0-9.]+ m?s · db", data["text/plain"])


# -- completion -----------------------------------------------------------------------------


# Completion uses IPython's matcher API v2 (IPython 8.6 and later).
needs_matcher_v2 = pytest.mark.skipif(
    not hasattr(IPython.core.completer, "context_matcher"),
    reason="IPython before 8.6 has no matcher API v2",
)


def completions(ip: InteractiveShell, text: str) -> list[str]:
    """What IPython's completer offers with the cursor at the end of *text*."""
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(text, len(text))]


def magics_of(ip: InteractiveShell) -> PgMonkeyMagics:
    return next(c for c in reversed(ip.configurables) if isinstance(c, PgMonkeyMagics))


@needs_matcher_v2
def test_completion_of_commands_connections_and_snippets(
    ip: InteractiveShell, password_config: Path
) -> None:
    assert completions(ip, "%pgmonkey pro") == ["profile"]
    assert completions(ip, "df = %pgmonkey ex") == ["explain", "export"]
    assert completions(ip, "%%pgmonkey ex") == ["explain", "export"]
    assert completions(ip, "%%pgmonkey --w") == ["--with"]
    assert completions(ip, "%pgmonkey explain --a") == ["--analyze"]
    assert sorted(completions(ip, "%pgmonkey plot hist t --b")) == ["--bins", "--by"]
    connect(ip, password_config, "--name", "first")
    connect(ip, password_config, "--name", "second")
    assert completions(ip, "%pgmonkey use ") == ["first", "second"]
    assert completions(ip, "%%pgmonkey --conn s") == ["second"]
    ok(ip, "%%pgmonkey --save recent --no-execute\nSELECT 1 AS x")
    assert completions(ip, "%%pgmonkey --with r") == ["recent"]
    # Plain Python is left to IPython's own matchers.
    ip.user_ns["pgmonkey_probe_variable"] = 1
    assert "pgmonkey_probe_variable" in completions(ip, "pgmonkey_probe_v")


@needs_matcher_v2
@pytest.mark.parametrize("ctype", ["normal", "async"])
def test_completion_of_tables_and_columns_cached_and_refreshed(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    scratch: Callable[[str, str], None],
    ctype: str,
) -> None:
    db_conn.execute("CREATE SCHEMA IF NOT EXISTS explore_s")
    scratch("explore_s.explore_orders", "(order_id int, order_total numeric, placed date)")
    scratch("explore_customers", "(customer_id int, customer_name text)")
    scratch("explore_late", "(x int)")  # dropped now, created by the test, dropped after
    db_conn.execute("DROP TABLE explore_late")
    connect(ip, password_config, ctype)
    magics = magics_of(ip)
    assert completions(ip, "%pgmonkey SELECT * FROM explore_cu") == ["explore_customers"]
    assert completions(ip, "%pgmonkey SELECT * FROM explore_s.explore_o") == [
        "explore_s.explore_orders"
    ]
    assert "explore_s" in completions(ip, "%pgmonkey SELECT * FROM explore_")
    # Columns: of the tables the statement names, and after "table.".
    cell = "%%pgmonkey\nSELECT customer_\nFROM explore_customers"
    with_cursor = cell.split("\n")
    assert completions_at(ip, cell, 1, len(with_cursor[1])) == ["customer_id", "customer_name"]
    line = "%pgmonkey SELECT customer_n FROM explore_customers"
    assert completions_at(ip, line, 0, line.index(" FROM")) == ["customer_name"]
    assert completions(ip, "%%pgmonkey\nSELECT explore_s.explore_orders.order_") == [
        "explore_s.explore_orders.order_id",
        "explore_s.explore_orders.order_total",
    ]
    assert completions(ip, "%pgmonkey plot hist explore_s.explore_orders --column order_t") == [
        "order_total"
    ]
    assert completions(ip, "%pgmonkey profile explore_cus") == ["explore_customers"]
    assert magics.completer is not None and magics.completer.reads == 1  # cached
    # DDL through the magics drops the cache: the new table completes.
    ok(ip, "%pgmonkey CREATE TABLE explore_late (x int)")
    assert completions(ip, "%pgmonkey SELECT * FROM explore_la") == ["explore_late"]
    assert magics.completer.reads == 2
    db_conn.execute("DROP SCHEMA explore_s CASCADE")


def completions_at(ip: InteractiveShell, text: str, line: int, column: int) -> list[str]:
    from IPython.core.completer import provisionalcompleter

    offset = sum(len(x) + 1 for x in text.split("\n")[:line]) + column
    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(text, offset)]
