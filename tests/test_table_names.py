"""Table names read the same everywhere: to_sql, persist, CSV import and export.

``to_sql``/``persist`` used to split 'schema.table' at the first dot: 's."x.y"' created a
table literally named '"x.y"' and 'a.b.c' was accepted as schema 'a', table 'b.c'.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import psycopg
import pytest

import pgmonkey
from pgmonkey.errors import TransferError
from pgmonkey.transfer._sql import parse_table


@pytest.fixture
def schema(db_conn: psycopg.Connection[Any]) -> Iterator[str]:
    name = f"names_{uuid.uuid4().hex[:8]}"
    db_conn.execute(f'CREATE SCHEMA "{name}"')
    db_conn.commit()
    yield name
    db_conn.execute(f'DROP SCHEMA "{name}" CASCADE')
    db_conn.commit()


def _tables(db_conn: psycopg.Connection[Any], schema: str) -> list[str]:
    rows = db_conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
    ).fetchall()
    return sorted(r[0] for r in rows)


@pytest.mark.parametrize(
    ("written", "stored"),
    [('"x.y"', "x.y"), ("plain", "plain"), ('"Mixed Case"', "Mixed Case")],
)
def test_to_sql_reads_quoted_names_as_import_does(
    db_conn: psycopg.Connection[Any], schema: str, written: str, stored: str
) -> None:
    df = pd.DataFrame({"a": [1, 2]})
    pgmonkey.to_sql(df, f"{schema}.{written}", db_conn)
    db_conn.commit()
    assert _tables(db_conn, schema) == [stored]
    assert parse_table(f"{schema}.{written}").name == stored  # the import's own reading


def test_three_part_names_are_refused(db_conn: psycopg.Connection[Any], schema: str) -> None:
    with pytest.raises(TransferError, match="invalid table name"):
        pgmonkey.to_sql(pd.DataFrame({"a": [1]}), f"{schema}.b.c", db_conn)
    db_conn.rollback()
    assert _tables(db_conn, schema) == []
