"""The magics' SQL lexer: statement splitting and ``:name`` parameters."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgmonkey.errors import MagicError
from pgmonkey.frames._sqltext import tokenize
from pgmonkey.magics._params import parse


def queries(sql: str) -> list[str]:
    return [s.query for s in parse(sql)]


# -- what is left alone -------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT ':x'",
        "SELECT 'it''s :x'",
        "SELECT E'\\' :x'",
        "SELECT e'a\\\\' || ':x'",
        "SELECT U&':x'",
        'SELECT 1 AS ":x"',
        'SELECT 1 AS "a"":x"',
        "SELECT 1 -- :x",
        "SELECT 1 /* :x */",
        "SELECT 1 /* /* :x */ :y */",
        "SELECT $$ :x $$",
        "SELECT $tag$ :x $$ :y $tag$",
        "SELECT 1::int",
        "SELECT '1'::text::int",
        "SELECT $1",
        "SELECT a$b FROM t",
        "SELECT 100 % 7",
        "SELECT arr[1:2] FROM t",
        "SELECT arr[lo : hi] FROM t",
        "SELECT f(a := 1)",
    ],
)
def test_no_placeholder(sql: str) -> None:
    [stmt] = parse(sql)
    assert stmt.names == ()
    assert stmt.query == sql  # sent exactly as written, without parameters
    assert stmt.params({}) is None


def test_placeholders_rewritten_in_order_of_first_use() -> None:
    [stmt] = parse("SELECT :b, :a, :b::int, ':c', 10 % 3")
    assert stmt.names == ("b", "a")
    assert stmt.query == "SELECT %(b)s, %(a)s, %(b)s::int, ':c', 10 %% 3"
    assert stmt.params({"a": 1, "b": 2, "c": 3}) == {"b": 2, "a": 1}


def test_percent_doubled_everywhere_when_bound() -> None:
    # psycopg scans the whole text for % when there are parameters, quotes included.
    [stmt] = parse("SELECT :x, '%s', \"a%b\", $$%$$ -- 100%")
    assert stmt.query == "SELECT %(x)s, '%%s', \"a%%b\", $$%%$$ -- 100%%"


def test_unicode_names() -> None:
    [stmt] = parse("SELECT :größe, :_x1")
    assert stmt.names == ("größe", "_x1")


def test_missing_variable_is_named() -> None:
    [stmt] = parse("SELECT :present, :absent, :gone")
    with pytest.raises(MagicError, match=r":absent, :gone"):
        stmt.params({"present": 1})


# -- splitting ----------------------------------------------------------------------------


def test_split_respects_quotes_comments_and_bodies() -> None:
    sql = """
    CREATE TABLE t (a text);  -- first; still a comment
    INSERT INTO t VALUES ('a;b'), ("x;y"), (E'\\';'), ($$;$$), ($q$ $$; $q$);
    /* ; */ SELECT * FROM t;
    ;;
    -- only a comment
    """
    texts = [s.text for s in parse(sql)]
    assert texts == [
        "CREATE TABLE t (a text)",
        "INSERT INTO t VALUES ('a;b'), (\"x;y\"), (E'\\';'), ($$;$$), ($q$ $$; $q$)",
        "SELECT * FROM t",  # leading comments are not part of a statement
    ]
    for s in parse(sql):
        assert sql[s.start : s.start + len(s.text)] == s.text


def test_split_begin_atomic_body() -> None:
    sql = (
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql\n"
        "BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;\n"
        "BEGIN; SELECT 1; END"
    )
    texts = [s.text for s in parse(sql)]
    assert len(texts) == 4
    assert texts[0].endswith("END; END")
    assert texts[1:] == ["BEGIN", "SELECT 1", "END"]


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("SELECT 1", True),
        ("  values (1)", True),
        ("TABLE t", True),
        ("(SELECT 1) UNION (SELECT 2)", True),
        ("SHOW work_mem", True),
        ("EXPLAIN INSERT INTO t VALUES (1)", True),
        ("WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", True),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", False),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x RETURNING a", True),
        ("INSERT INTO t VALUES (1)", False),
        ("INSERT INTO t VALUES (1) RETURNING id", True),
        ("UPDATE t SET a = 'returning'", False),
        ("DELETE FROM t RETURNING *", True),
        ("CREATE TABLE returning_t (a int)", False),
        ("-- note\nSELECT 1", True),
        ("VACUUM", False),
    ],
)
def test_returns_rows(sql: str, rows: bool) -> None:
    [stmt] = parse(sql)
    assert stmt.returns_rows is rows


def test_source_offset_maps_server_positions_back() -> None:
    # The server sees "SELECT $1, $2, $1 + bad" (psycopg numbers names by first use).
    [stmt] = parse("SELECT :long_name, :b, :long_name + bad")
    server = "SELECT $1, $2, $1 + bad"
    for i, ch in enumerate(server):
        if "$" in server[max(i - 1, 0) : i + 1]:
            # inside a placeholder: the position of its ':'
            assert stmt.text[stmt.source_offset(i + 1)] == ":"
        else:
            assert stmt.text[stmt.source_offset(i + 1)] == ch
    assert stmt.text[stmt.source_offset(server.index("$2") + 1)] == ":"


# -- properties ---------------------------------------------------------------------------

_names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
_noise = st.text(alphabet=st.characters(exclude_characters="'\"$:-/*%;\\"), max_size=10)


@st.composite
def _protected(draw: st.DrawFn) -> str:
    """A fragment that hides ``:name`` and ``;`` from the lexer."""
    inner = draw(_names)
    kind = draw(st.sampled_from(["str", "estr", "ident", "line", "block", "dollar", "tag"]))
    return {
        "str": f"'a;:{inner}''x'",
        "estr": f"E'\\';:{inner}'",
        "ident": f'"{inner}"";:{inner}"',
        "line": f"-- ;:{inner}\n",
        "block": f"/* ; /* :{inner} */ */",
        "dollar": f"$$ ; :{inner} ' \" $$",
        "tag": f"$t$ $$ ; :{inner} $t$",
    }[kind]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_noise, _protected(), st.one_of(st.none(), _names)), max_size=6))
def test_only_bare_placeholders_are_found(parts: list[tuple[str, str, str | None]]) -> None:
    sql = "SELECT " + " ".join(
        f"{noise} {hidden} {'' if name is None else ':' + name}" for noise, hidden, name in parts
    )
    expected = list(dict.fromkeys(name for _, _, name in parts if name is not None))
    stmts = parse(sql)
    assert len(stmts) == 1  # every ; was hidden
    assert list(stmts[0].names) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_lexer_total_and_lossless(sql: str) -> None:
    tokens = list(tokenize(sql))
    assert "".join(sql[t.start : t.end] for t in tokens) == sql
    assert all(t.end > t.start for t in tokens)
    for stmt in parse(sql):  # never raises, statements are slices of the input
        assert sql[stmt.start : stmt.start + len(stmt.text)] == stmt.text


# -- against the server: values stay values -----------------------------------------------

_HOSTILE = [
    "'; DROP TABLE magics_victim; --",
    "' OR '1'='1",
    '"; DROP TABLE magics_victim; --',
    "$$; DROP TABLE magics_victim; $$",
    "%s %(x)s %% :x ::text \\' \\\\",
    "Robert'); DROP TABLE magics_victim;--",
]


def _roundtrip(conn: psycopg.Connection[Any], sql: str, ns: dict[str, Any]) -> Any:
    """The value through server-side binding, checked equal through client-side binding."""
    [stmt] = parse(sql)
    row = conn.execute(stmt.query, stmt.params(ns)).fetchone()
    with psycopg.ClientCursor(conn) as cur:  # what the magics and read_sql use
        client = cur.execute(stmt.query, stmt.params(ns)).fetchone()
    assert row is not None
    assert client == row
    return row[0]


@pytest.mark.parametrize("value", _HOSTILE)
def test_hostile_values_are_values(db_conn: psycopg.Connection[Any], value: str) -> None:
    db_conn.execute("CREATE TABLE IF NOT EXISTS magics_victim (a int)")
    try:
        assert _roundtrip(db_conn, "SELECT :v::text", {"v": value}) == value
        assert _roundtrip(db_conn, "SELECT ':v' || :v || '%'", {"v": value}) == f":v{value}%"
        assert db_conn.execute("SELECT to_regclass('magics_victim')").fetchone() == (
            "magics_victim",
        )
    finally:
        db_conn.execute("DROP TABLE IF EXISTS magics_victim")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40))
def test_any_text_value_roundtrips(db_conn: psycopg.Connection[Any], value: str) -> None:
    assert _roundtrip(db_conn, "SELECT :v::text /* :v */ -- :v", {"v": value}) == value


def test_typed_values(db_conn: psycopg.Connection[Any]) -> None:
    ns = {"n": 41, "f": 1.5, "flag": True, "xs": [1, 2, 3], "nothing": None}
    assert _roundtrip(db_conn, "SELECT :n + 1", ns) == 42
    assert _roundtrip(db_conn, "SELECT :f::numeric * 2", ns) == 3
    assert _roundtrip(db_conn, "SELECT :flag AND true", ns) is True
    assert _roundtrip(db_conn, "SELECT 2 = ANY(:xs)", ns) is True
    assert _roundtrip(db_conn, "SELECT :nothing::int IS NULL", ns) is True
    assert _roundtrip(db_conn, "SELECT (:xs::int[])[2:3]", ns) == [2, 3]
