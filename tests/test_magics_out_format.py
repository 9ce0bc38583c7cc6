"""``%pgmonkey --out-format arrow|polars``: the rows as ``read_arrow``/``read_polars`` give them.

Ground truth is the library itself: the magic's result equals ``pgmonkey.read_arrow`` (or
``read_polars``) of the same query on a plain psycopg connection, on all four connection
types, for line and cell magics.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from IPython.core.interactiveshell import InteractiveShell

import pgmonkey
from pgmonkey.magics import PgMonkeyMagics
from tests.fix_magics import connect, fresh_magics, ok, run

TYPES = ("normal", "pool", "async", "async_pool")

QUERY = (
    "SELECT g AS id, g * 0.5 AS x, CASE WHEN g % 3 = 0 THEN NULL ELSE 'v' || g END AS name, "
    "timestamptz '2024-01-01 00:00+00' + g * interval '1 hour' AS ts, g % 2 = 0 AS flag, "
    "(g / 7.0)::numeric(12, 2) AS amount, jsonb_build_object('g', g) AS doc "
    "FROM generate_series(1, 50) AS g"
)


@pytest.fixture
def shell_magics() -> Iterator[tuple[InteractiveShell, PgMonkeyMagics]]:
    with fresh_magics() as pair:
        yield pair


def _expected(password_config: Path) -> pa.Table:
    return pgmonkey.read_arrow(QUERY, str(password_config))


@pytest.mark.parametrize("ctype", TYPES)
def test_arrow_out_format_is_read_arrow(
    shell_magics: tuple[InteractiveShell, PgMonkeyMagics], password_config: Path, ctype: str
) -> None:
    ip, _ = shell_magics
    connect(ip, password_config, ctype)
    expected = _expected(password_config)
    line = ok(ip, f"%pgmonkey --out-format arrow {QUERY}")
    cell = ok(ip, f"%%pgmonkey --out-format=arrow --out t\n{QUERY}")
    for table in (line, cell, ip.user_ns["t"]):
        assert isinstance(table, pa.Table)
        assert table.equals(expected), (table.schema, expected.schema)


@pytest.mark.parametrize("ctype", ["normal", "async_pool"])
def test_polars_out_format_is_read_polars(
    shell_magics: tuple[InteractiveShell, PgMonkeyMagics], password_config: Path, ctype: str
) -> None:
    pl = pytest.importorskip("polars")
    ip, _ = shell_magics
    connect(ip, password_config, ctype)
    frame = ok(ip, f"%pgmonkey --out-format polars {QUERY}")
    assert isinstance(frame, pl.DataFrame)
    assert frame.equals(pl.from_arrow(_expected(password_config)))


def test_pandas_is_the_default_and_can_be_asked_for(
    shell_magics: tuple[InteractiveShell, PgMonkeyMagics], password_config: Path
) -> None:
    ip, _ = shell_magics
    connect(ip, password_config)
    expected = pgmonkey.read_sql(QUERY, str(password_config))
    for line in (QUERY, f"--out-format pandas {QUERY}"):
        frame = ok(ip, f"%pgmonkey {line}")
        assert frame.equals(expected)
        assert list(frame.dtypes) == list(expected.dtypes)


def test_decimal_mode_keeps_numeric_exact_in_arrow(
    shell_magics: tuple[InteractiveShell, PgMonkeyMagics], password_config: Path
) -> None:
    ip, magics = shell_magics
    connect(ip, password_config)
    magics.decimal = True
    table = ok(ip, "%pgmonkey --out-format arrow SELECT 0.1::numeric(12, 2) + 0.2 AS amount")
    assert pa.types.is_decimal(table.schema.field("amount").type)
    assert table.column("amount").to_pylist() == [Decimal("0.30")]


def test_rows_of_a_statement_that_is_not_a_plain_query_are_converted_too(
    shell_magics: tuple[InteractiveShell, PgMonkeyMagics], password_config: Path
) -> None:
    ip, _ = shell_magics
    connect(ip, password_config)
    # Several statements, the last one DML ... RETURNING: read by psycopg's cursor, then
    # converted; a statement without rows still only reports its count.
    table = ok(
        ip,
        "%%pgmonkey --out-format arrow\n"
        "CREATE TEMP TABLE of_t (id int, name text);\n"
        "INSERT INTO of_t VALUES (1, 'a'), (2, NULL) RETURNING id, name",
    )
    assert isinstance(table, pa.Table)
    assert table.to_pydict() == {"id": [1, 2], "name": ["a", None]}
    assert ok(ip, "%pgmonkey --out-format arrow DELETE FROM of_t") is None


def test_a_result_arrow_cannot_hold_is_a_cell_error(
    shell_magics: tuple[InteractiveShell, PgMonkeyMagics], password_config: Path
) -> None:
    from pgmonkey.errors import MagicCellError

    ip, magics = shell_magics
    connect(ip, password_config)
    magics.decimal = True  # read through pandas: jsonb values as Python objects
    result = run(
        ip,
        "%pgmonkey --out-format arrow SELECT x, 1.5::numeric AS n FROM"
        " (VALUES ('{\"a\": 1}'::jsonb), ('[1, 2]'::jsonb)) AS v(x)",
    )
    assert isinstance(result.error_in_exec, MagicCellError), result.error_in_exec
    assert "cannot be given as arrow" in str(result.error_in_exec)
    assert "--out-format pandas" in str(result.error_in_exec)
    assert ok(ip, "%pgmonkey --out-format arrow SELECT 1 AS one").to_pydict() == {"one": [1]}


@pytest.mark.parametrize("special", ["NaN", "Infinity", "-Infinity"])
def test_a_numeric_an_arrow_decimal_cannot_hold_is_a_cell_error(
    shell_magics: tuple[InteractiveShell, PgMonkeyMagics], password_config: Path, special: str
) -> None:
    # Arrow would store numeric NaN as null: not silently.
    from pgmonkey.errors import MagicCellError

    ip, magics = shell_magics
    connect(ip, password_config)
    magics.decimal = True
    query = f"SELECT 1 AS n, v::numeric AS n FROM (VALUES ('1.5'), ('{special}')) AS t(v)"
    frame = ok(ip, f"%pgmonkey {query}")
    assert [str(v) for v in frame.iloc[:, 1]] == ["1.5", special]
    result = run(ip, f"%pgmonkey --out-format arrow {query}")
    assert isinstance(result.error_in_exec, MagicCellError), result.error_in_exec
    assert f"column 'n' holds numeric {special}" in str(result.error_in_exec)
    magics.decimal = False
    table = ok(ip, f"%pgmonkey --out-format arrow {query}")
    assert [str(v) for v in table.column(1).to_pylist()] == [
        "1.5",
        {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[special],
    ]
    # In an array too: decimal mode reads its items as Decimal; without it, Arrow gets the
    # array as PostgreSQL's text.
    array = f"ARRAY['1.5', '{special}']::numeric[] AS a"
    assert ok(ip, f"%pgmonkey --out-format arrow SELECT {array}").to_pydict() == {
        "a": [f"{{1.5,{special}}}"]
    }
    magics.decimal = True
    result = run(ip, f"%pgmonkey --out-format arrow SELECT {array}")
    assert isinstance(result.error_in_exec, MagicCellError), result.error_in_exec
    assert f"column 'a' holds numeric {special}" in str(result.error_in_exec)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--out-format csv SELECT 1", "invalid choice: 'csv'"),
        ("--out-format arrow --dask SELECT 1", "does not go with --dask"),
    ],
)
def test_bad_out_formats_are_refused_before_anything_runs(
    shell_magics: tuple[InteractiveShell, PgMonkeyMagics],
    password_config: Path,
    line: str,
    message: str,
) -> None:
    ip, _ = shell_magics
    connect(ip, password_config)
    result = run(ip, f"%pgmonkey {line}")
    assert result.error_in_exec is not None
    assert message in str(result.error_in_exec)
