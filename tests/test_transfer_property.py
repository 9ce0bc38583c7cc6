"""Property-based round trip: random small text tables through import and export."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from pgmonkey.transfer import ColumnSpec, ImportSettings, export_csv, import_csv

Conn = psycopg.Connection[tuple[Any, ...]]

# Any text PostgreSQL stores: no NUL, no lone surrogates.
_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
)
_value = st.one_of(st.none(), _text, st.sampled_from(['"', ",", "\n", "\r\n", "\\.", " ", ""]))


@st.composite
def tables(draw: st.DrawFn) -> tuple[int, list[tuple[str | None, ...]]]:
    width = draw(st.integers(1, 4))
    rows = draw(st.lists(st.tuples(*[_value] * width), max_size=8))
    return width, rows


@pytest.fixture(scope="module")
def conn(superuser_dsn: str) -> Iterator[Conn]:
    with psycopg.connect(superuser_dsn, autocommit=True) as c:
        yield c


def _field(v: str | None, quote: str) -> str:
    return "" if v is None else quote + v.replace(quote, quote * 2) + quote


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    table=tables(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    quote=st.sampled_from(['"', "'"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
)
def test_random_tables_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    conn: Conn,
    table: tuple[int, list[tuple[str | None, ...]]],
    delimiter: str,
    quote: str,
    encoding: str,
) -> None:
    width, rows = table
    names = [f"c{i}" for i in range(width)]
    tmp = tmp_path_factory.mktemp("prop")
    src = tmp / "in.csv"
    lines = [delimiter.join(names)] + [delimiter.join(_field(v, quote) for v in r) for r in rows]
    src.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    s = ImportSettings(
        delimiter=delimiter,
        quotechar=quote,
        encoding=encoding,
        columns=tuple(ColumnSpec(n, n) for n in names),
    )
    name = f"prop_{uuid.uuid4().hex[:12]}"
    ident = sql.Identifier(name)
    try:
        assert import_csv(src, name, conn, settings=s).rows == len(rows)
        select = sql.SQL("SELECT * FROM {} ORDER BY ctid").format(ident)
        assert conn.execute(select).fetchall() == rows

        out = tmp / "out.csv"
        assert export_csv(conn, out, table=name).rows == len(rows)
        back = ImportSettings(columns=s.columns)  # export defaults: comma, '"', UTF-8
        assert import_csv(out, name, conn, settings=back, if_exists="replace").rows == len(rows)
        assert conn.execute(select).fetchall() == rows
    finally:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
