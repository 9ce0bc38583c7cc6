"""What the magics show: connection banners and rows, one-line errors with their position."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from pgmonkey.connections._probe import ConnectionFacts, probe, probe_async

from ._params import Statement


def describe_connection(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """What the banner and ``connections`` show (the probe ``pgconfig test`` uses too)."""
    return _shown(probe(conn))


async def describe_connection_async(conn: psycopg.AsyncConnection[Any]) -> dict[str, str]:
    return _shown(await probe_async(conn))


def _shown(facts: ConnectionFacts) -> dict[str, str]:
    return {
        "host": facts.host,
        "port": facts.port,
        "dbname": facts.database,
        "user": facts.user,
        "ssl": "on" if facts.ssl else "off",
    }


def cell_text(value: Any) -> str:
    return "" if value is None else str(value)


def error_message(
    exc: BaseException,
    sql: str | None = None,
    statement: Statement | None = None,
    sent: Mapping[str, int] | None = None,
    first_line: int = 1,
) -> str:
    """One short message: the server's error and where it is in the cell."""
    name = type(exc).__name__
    if not isinstance(exc, psycopg.Error):
        return f"{name}: {exc}"
    diag = exc.diag
    primary = diag.message_primary or (str(exc).splitlines() or [""])[0]
    lines = [f"{name}: {primary}"]
    position = diag.statement_position
    if sql is not None and statement is not None and position and position.isdigit():
        # read_sql reruns a failing query as written, so positions are in the user's text.
        offset = statement.start + statement.source_offset(int(position), sent)
        line_no = sql.count("\n", 0, offset) + first_line
        line_start = sql.rfind("\n", 0, offset) + 1
        line_end = sql.find("\n", offset)
        text = sql[line_start : len(sql) if line_end < 0 else line_end]
        column = offset - line_start + 1
        lines[0] += f" (line {line_no}, column {column})"
        lines.append(f"  {text.rstrip()}")
        lines.append("  " + " " * (column - 1) + "^")
    if diag.message_detail:
        lines.append(f"DETAIL: {diag.message_detail}")
    if diag.message_hint:
        lines.append(f"HINT: {diag.message_hint}")
    return "\n".join(lines)
