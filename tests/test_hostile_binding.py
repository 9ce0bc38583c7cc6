"""Values bound client-side stay values, whatever the session's SQL dialect settings.

``read_sql(params=...)`` and the magics' ``:name`` bind values as quoted literals (``COPY``
takes no parameters). With ``standard_conforming_strings = off`` a backslash escapes a quote
inside ``'...'``, so ``SELECT 'C:\\' || :name`` used to let the value's own quotes end the
server's string: the value ran as SQL. Now a placeholder is bound only where the server reads
code; elsewhere the query is refused (read_sql) or sent as text (the magics), as server-side
binding would. Fuzzed over both settings and several client encodings, SJIS included (whose
two-byte characters can end in the byte of a backslash).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.interactiveshell import InteractiveShell

import pgmonkey
from pgmonkey.errors import TransferError
from pgmonkey.frames._sqltext import check_placeholders
from tests._conn_support import derive_config
from tests.fix_magics import fresh_magics

VICTIM = "hostile_binding_victim"
ATTACK = f"'; DROP TABLE {VICTIM}; --"

# client_encoding -> characters a value may hold in it
ENCODINGS = {
    "UTF8": st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    "LATIN1": st.characters(min_codepoint=1, max_codepoint=255),
    "SJIS": st.sampled_from(list("abc'\\\"; -ソ表能予\n")),
}
_NASTY = [ATTACK, "\\'; DROP TABLE x; --", "\\", "'", "''", "\\\\'", "ソ'", "表\\'", "%s", ":v"]
PYTHON_CODECS = {"UTF8": "utf-8", "LATIN1": "latin-1", "SJIS": "shift_jis"}


def _values(encoding: str) -> st.SearchStrategy[str]:
    def fits(value: str) -> bool:
        try:
            value.encode(PYTHON_CODECS[encoding])
        except UnicodeEncodeError:
            return False
        return True

    nasty = [v for v in _NASTY if fits(v)]
    return st.one_of(st.text(ENCODINGS[encoding], max_size=20).filter(fits), st.sampled_from(nasty))


@pytest.fixture(scope="module")
def victim(superuser_dsn: str) -> Iterator[None]:
    with psycopg.connect(superuser_dsn, autocommit=True) as c:
        c.execute(f"CREATE TABLE IF NOT EXISTS {VICTIM} (a int)")
        c.execute(f"GRANT ALL ON {VICTIM} TO PUBLIC")
    yield
    with psycopg.connect(superuser_dsn, autocommit=True) as c:
        c.execute(f"DROP TABLE IF EXISTS {VICTIM}")


def _victim_alive(superuser_dsn: str) -> bool:
    with psycopg.connect(superuser_dsn) as c:
        row = c.execute("SELECT to_regclass(%s)", (VICTIM,)).fetchone()
    return row is not None and row[0] is not None


@pytest.fixture(scope="module", params=["on", "off"])
def sco(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def configs(
    password_config: Path, tmp_path_factory: pytest.TempPathFactory, sco: str
) -> dict[str, Path]:
    out = {}
    for encoding in ENCODINGS:
        settings_ = {"standard_conforming_strings": sco, "client_encoding": encoding}
        out[encoding] = derive_config(
            password_config,
            tmp_path_factory.mktemp(f"cfg-{sco}-{encoding}"),
            sync_settings=settings_,
            async_settings=settings_,
        )
    return out


def test_read_sql_refuses_a_placeholder_the_server_reads_as_text(
    configs: dict[str, Path], sco: str, victim: None, superuser_dsn: str
) -> None:
    cfg = configs["UTF8"]
    # Inside '...' as written (any session) ...
    with pytest.raises(TransferError, match="inside a string literal"):
        pgmonkey.read_sql("SELECT 'x%sy' AS v", cfg, params=[ATTACK])
    # ... and after 'C:\' when backslashes escape quotes (standard_conforming_strings off).
    query = "SELECT 'C:\\' || %s AS v"
    if sco == "off":
        with pytest.raises(TransferError, match="standard_conforming_strings = off"):
            pgmonkey.read_sql(query, cfg, params=[ATTACK])
    else:
        df = pgmonkey.read_sql(query, cfg, params=[ATTACK])
        assert df["v"].tolist() == ["C:\\" + ATTACK]
    assert _victim_alive(superuser_dsn)


def test_check_placeholders_leaves_code_and_percent_alone() -> None:
    check_placeholders("SELECT %s, %(a)s, '100%%', $$%%$$ -- %%\n", standard_strings=True)
    with pytest.raises(TransferError, match="inside a comment"):
        check_placeholders("SELECT 1 -- %s\n", standard_strings=True)
    with pytest.raises(TransferError, match="dollar-quoted"):
        check_placeholders("SELECT $$%(a)s$$", standard_strings=True)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_read_sql_values_round_trip(
    configs: dict[str, Path], encoding: str, victim: None, superuser_dsn: str
) -> None:
    cfg = configs[encoding]
    values = _values(encoding)

    @settings(max_examples=25, deadline=None, database=None)
    @given(value=values)
    def check(value: str) -> None:
        df = pgmonkey.read_sql("SELECT %s::text AS v, 'a\\b' AS w", cfg, params=[value])
        assert df["v"].tolist() == [value]

    check()
    assert _victim_alive(superuser_dsn)


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    with fresh_magics() as (shell, _magics):
        yield shell


def _cell(ip: InteractiveShell, text: str, **ns: Any) -> Any:
    ip.user_ns.update(ns)
    result = ip.run_cell(text, store_history=False)
    return result


def test_magics_never_run_a_value_as_sql(
    ip: InteractiveShell, configs: dict[str, Path], sco: str, victim: None, superuser_dsn: str
) -> None:
    assert _cell(ip, f"%pgmonkey connect {configs['UTF8']} --name h").error_in_exec is None
    result = _cell(ip, "%pgmonkey SELECT 'C:\\' || :name AS v", name=ATTACK)
    if sco == "off":
        # The server reads ':name' as part of an unterminated string: an error, never a DROP.
        assert result.error_in_exec is not None
        assert "unterminated" in str(result.error_in_exec)
    else:
        assert result.error_in_exec is None, result.error_in_exec
        assert result.result["v"].tolist() == ["C:\\" + ATTACK]
    assert _victim_alive(superuser_dsn)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_magics_values_round_trip(
    ip: InteractiveShell, configs: dict[str, Path], encoding: str, victim: None, superuser_dsn: str
) -> None:
    assert _cell(ip, f"%pgmonkey connect {configs[encoding]} --name h").error_in_exec is None
    values = _values(encoding)

    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(value=values)
    def check(value: str) -> None:
        result = _cell(ip, "%pgmonkey SELECT :v::text AS v, E'a\\\\b' AS w", v=value)
        assert result.error_in_exec is None, result.error_in_exec
        assert result.result["v"].tolist() == [value]
        assert result.result["w"].tolist() == ["a\\b"]

    check()
    assert _victim_alive(superuser_dsn)
