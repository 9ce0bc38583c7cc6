"""Hostile ``:name`` values and SQL around them, beyond ``test_magics_params.py``.

1. Random statements assembled from fragments the lexer must leave alone (string literals
   holding ``:x`` and ``;``, dollar quotes, escape strings, quoted identifiers, comments,
   ``::casts``) and placeholders bound to random values of several types: the row the
   server returns must be exactly the expected one, with server-side and client-side
   (what the magics use) binding alike.
2. The same through the real ``%%pgmonkey`` magic (the read_sql COPY path into a
   DataFrame), with random text values in a two-statement cell: values stay values, the
   cell's literals and casts are intact, and nothing else in the database changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.interactiveshell import InteractiveShell

from pgmonkey.magics._params import parse
from tests.fix_magics import fresh_magics

Conn = psycopg.Connection[tuple[Any, ...]]

_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)
_nasty = st.sampled_from(
    [
        "'; DROP TABLE fuzz_magics_victim; --",
        "$$; DROP TABLE fuzz_magics_victim; $$",
        '"; SELECT 1; --',
        "%s %(v0)s %% :v0 ::text",
        "\\'; SELECT 1; --",
        "E'\\\\'",
        "*/ SELECT 1 /*",
        "\n-- ;\n",
        ":v1",
        "",
        "NULL",
        "NaN",
        "nan",
        "None",
        "\\N",
        "1",
        "  ",
        "True",
        "\r\n",
        '""',
    ]
)
_values = st.one_of(
    _text,
    _nasty,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)

# Fragments the lexer must leave alone: (SQL text, expected value).
_LITERALS: list[tuple[str, Any]] = [
    ("':v0'", ":v0"),
    ("'it''s :v1; ok'", "it's :v1; ok"),
    ("E'\\':v0;'", "':v0;"),
    ("$$ :v0 ; $$", " :v0 ; "),
    ("$t$ $$ :v1 ; $t$", " $$ :v1 ; "),
    ("'5'::int", 5),
    ("12::text", "12"),
    ("'{1,2}'::int[]", [1, 2]),
    ("(ARRAY[10,20,30])[2:3]", [20, 30]),
    ("'100%'", "100%"),
    ("'%s'", "%s"),
    ("'%(v0)s'", "%(v0)s"),
]
_COMMENTS = ["/* :v0 ; */", "-- :v1 ;\n", "/* /* :v0 */ ; */", ""]


@st.composite
def statements(draw: st.DrawFn) -> tuple[str, dict[str, Any], list[Any]]:
    """``(sql, namespace, expected row)`` for a SELECT of literals and placeholders."""
    namespace = {f"v{i}": draw(_values) for i in range(3)}
    columns: list[str] = []
    expected: list[Any] = []
    for j in range(draw(st.integers(1, 6))):
        comment = draw(st.sampled_from(_COMMENTS))
        if draw(st.booleans()):
            name = draw(st.sampled_from(sorted(namespace)))
            value = namespace[name]
            # Text needs a type: psycopg sends str as unknown; a cast also tests '::' after ':v'.
            cast = "::text" if isinstance(value, str) else ""
            columns.append(f'{comment} :{name}{cast} AS "c{j}:{name}"')
            expected.append(value)
        else:
            text, value = draw(st.sampled_from(_LITERALS))
            columns.append(f'{comment} {text} AS "c{j}"')
            expected.append(value)
    return "SELECT " + ",".join(columns), namespace, expected


@pytest.fixture(scope="module")
def conn(superuser_dsn: str) -> Iterator[Conn]:
    with psycopg.connect(superuser_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS fuzz_magics_victim (a int)")
        yield c
        assert c.execute("SELECT to_regclass('fuzz_magics_victim')").fetchone() == (
            "fuzz_magics_victim",
        )
        c.execute("DROP TABLE fuzz_magics_victim")


def _same(got: Any, want: Any) -> bool:
    if want is None:
        return got is None
    if isinstance(want, float):
        # Client-side binding sends an untyped literal (numeric): equal as a number is enough.
        return isinstance(got, float | Decimal) and float(got) == want
    return bool(got == want) and type(got) is type(want)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=statements())
def test_random_statements_bind_values_and_keep_literals(
    conn: Conn, case: tuple[str, dict[str, Any], list[Any]]
) -> None:
    sql, namespace, expected = case
    [stmt] = parse(sql)  # no ';' in a value or a protected fragment splits the statement
    params = stmt.params(namespace)
    server = conn.execute(stmt.query, params).fetchone()
    with psycopg.ClientCursor(conn) as cur:
        client = cur.execute(stmt.query, params).fetchone()
    assert server is not None and client is not None
    for got_s, got_c, want in zip(server, client, expected, strict=True):
        assert _same(got_s, want), (sql, got_s, want)
        assert _same(got_c, want), (sql, got_c, want)


# -- through the magic ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ip(password_config: Path) -> Iterator[InteractiveShell]:
    with fresh_magics() as (shell, _magics):
        cell = f"%pgmonkey connect {password_config} --name fuzz"
        result = shell.run_cell(cell, store_history=False)
        assert result.error_in_exec is None, result.error_in_exec
        yield shell


_CELL = (
    "%%pgmonkey --conn fuzz\n"
    "INSERT INTO fuzz_magics_t (v) VALUES (:v); -- :v ;\n"
    "SELECT v, :v::text = v AS same, ':v;' AS lit, '7'::int AS seven, $$:v$$ AS body,\n"
    "       v IS NULL AS isnull, (SELECT count(*) FROM fuzz_magics_victim) AS victims\n"
    "FROM fuzz_magics_t"
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=st.one_of(_text, _nasty))
def test_magic_cell_with_hostile_values(ip: InteractiveShell, conn: Conn, value: str) -> None:
    conn.execute("DROP TABLE IF EXISTS fuzz_magics_t")
    conn.execute("CREATE TABLE fuzz_magics_t (v text)")
    conn.execute("TRUNCATE fuzz_magics_victim")
    ip.user_ns["v"] = value
    try:
        result = ip.run_cell(_CELL, store_history=False)
        assert result.error_in_exec is None, result.error_in_exec
        df = result.result
        assert df.shape == (1, 7)
        row = df.iloc[0]
        assert row["v"] == value, (value, row["v"])  # not NaN, not None, not converted
        assert row["same"] is True or row["same"] == True  # noqa: E712 (numpy bool)
        assert row["lit"] == ":v;"
        assert row["seven"] == 7
        assert row["body"] == ":v"
        assert not row["isnull"]
        assert row["victims"] == 0
        stored = conn.execute("SELECT v FROM fuzz_magics_t").fetchall()
        assert stored == [(value,)]
    finally:
        conn.execute("DROP TABLE IF EXISTS fuzz_magics_t")
