"""SQL text as PostgreSQL reads it: a small lexer, and where parameters may stand.

The lexer knows just enough PostgreSQL syntax to tell code from text: ``'...'`` strings
(``''`` escapes; ``E'...'`` strings, and plain ones when ``standard_conforming_strings`` is
off, also ``\\'``), ``"..."`` quoted identifiers, ``--`` and nested ``/* */`` comments,
``$$...$$`` / ``$tag$...$tag$`` bodies, ``::`` casts, ``$1`` positional parameters and ``$``
inside identifiers. The magics find ``:name`` parameters with it; :func:`read_sql` checks
with it that psycopg's ``%s`` placeholders stand where the server reads code: values are
bound client-side there (``COPY`` takes no parameters), so a placeholder inside a string
would otherwise let a value's quotes end the string. :func:`bind` binds them so.

Dates and timestamps before the year 1 are written as PostgreSQL writes and reads them, with
``BC`` (:func:`bc_years`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, NamedTuple

import psycopg
from psycopg import sql

from pgmonkey.errors import TransferError

__all__ = ["Token", "bc_years", "bind", "check_placeholders", "standard_strings", "tokenize"]

_IDENT_WORD: Final = re.compile(r"[^\W\d][\w$]*")
_PARAM_NAME: Final = re.compile(r"[^\W\d]\w*")
_NUMBER: Final = re.compile(r"[0-9][\w.]*")
_DOLLAR_TAG: Final = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_POSITIONAL: Final = re.compile(r"\$[0-9]+")
_SINGLE: Final = {";": "semi", "(": "lparen", ")": "rparen"}


class Token(NamedTuple):
    """One lexical token: its kind and its span in the scanned text."""

    # word, number, param, cast, string, ident, dollar, comment, space, semi, lparen, rparen, other
    kind: str
    start: int
    end: int


def tokenize(sql: str, *, standard_strings: bool = True) -> Iterator[Token]:
    """Yield the tokens of *sql*; unterminated quotes or comments run to the end.

    ``standard_strings=False``: ``'...'`` strings take backslash escapes, as they do in a
    session with ``standard_conforming_strings = off``.
    """
    i = 0
    while i < len(sql):
        kind, end = _next_token(sql, i, standard_strings)
        yield Token(kind, i, end)
        i = end


def _next_token(sql: str, i: int, standard_strings: bool = True) -> tuple[str, int]:
    n = len(sql)
    c = sql[i]
    if c.isspace():
        j = i + 1
        while j < n and sql[j].isspace():
            j += 1
        return "space", j
    if sql.startswith("--", i):
        j = sql.find("\n", i)
        return "comment", n if j < 0 else j
    if sql.startswith("/*", i):
        return "comment", _block_comment_end(sql, i)
    if c == "'":
        return "string", _quoted_end(sql, i, "'", backslash=not standard_strings)
    if c == '"':
        return "ident", _quoted_end(sql, i, '"', backslash=False)
    if c == "$":
        m = _DOLLAR_TAG.match(sql, i)
        if m:
            close = sql.find(m.group(), m.end())
            return "dollar", n if close < 0 else close + len(m.group())
        m = _POSITIONAL.match(sql, i)
        return "other", m.end() if m else i + 1
    if c == ":":
        if sql.startswith("::", i):
            return "cast", i + 2
        m = _PARAM_NAME.match(sql, i + 1)
        return ("param", m.end()) if m else ("other", i + 1)
    if c in _SINGLE:
        return _SINGLE[c], i + 1
    if c.isdigit():
        m = _NUMBER.match(sql, i)
        return "number", m.end() if m else i + 1
    m = _IDENT_WORD.match(sql, i)
    if m is None:
        return "other", i + 1
    j = m.end()
    word = m.group()
    if j < n and sql[j] == "'":
        # Prefixed strings: E'..' has backslash escapes; B'..', X'..', N'..' do not.
        return "string", _quoted_end(sql, j, "'", backslash=word in ("e", "E"))
    if word in ("u", "U") and sql.startswith(("&'", '&"'), j):
        q = sql[j + 1]
        return ("string" if q == "'" else "ident"), _quoted_end(sql, j + 1, q, backslash=False)
    return "word", j


def _block_comment_end(sql: str, i: int) -> int:
    """End of the (nested, as in PostgreSQL) block comment starting at *i*."""
    depth = 0
    n = len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _quoted_end(sql: str, i: int, quote: str, backslash: bool) -> int:
    """End of the quoted token whose opening *quote* is at *i* (doubled quote = escape)."""
    n = len(sql)
    j = i + 1
    while j < n:
        c = sql[j]
        if backslash and c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


# psycopg's placeholders: %s, %b, %t, with an optional (name); %% is a literal percent.
_PLACEHOLDER: Final = re.compile(r"%(?:\([^)]*\))?[sbt]|%%")
_TEXT_KINDS: Final = {
    "string": "a string literal",
    "ident": "a quoted identifier",
    "comment": "a comment",
    "dollar": "a dollar-quoted string",
}


def standard_strings(conn: Any) -> bool:
    """Whether the session reads ``'...'`` strings without backslash escapes (the default)."""
    return bool(conn.info.parameter_status("standard_conforming_strings") != "off")


def check_placeholders(query: str, *, standard_strings: bool = True) -> None:
    """Refuse a psycopg placeholder that stands inside text as the server reads the query.

    Bound server-side, such a placeholder would be plain text (or an error); bound
    client-side, the quoted value would end the string early. Either way it is not what the
    query says, so refuse it, naming where it is.
    """
    for tok in tokenize(query, standard_strings=standard_strings):
        where = _TEXT_KINDS.get(tok.kind)
        if where is None:
            continue
        for m in _PLACEHOLDER.finditer(query, tok.start, tok.end):
            if m.group() == "%%":
                continue
            hint = (
                " (this session has standard_conforming_strings = off: a backslash escapes "
                "a quote inside '...')"
                if not standard_strings and tok.kind == "string"
                else ""
            )
            raise TransferError(
                f"parameter placeholder {m.group()!r} at offset {m.start()} is inside {where}"
                f"{hint}: PostgreSQL would not bind it there; put it outside quotes "
                "(WHERE name = %s, not '%s')"
            )


def bind(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
    query: str | sql.Composable,
    params: Sequence[Any] | Mapping[str, Any] | None,
) -> str:
    """The query with ``params`` bound client-side by psycopg (COPY takes no parameters).

    Only where the server reads code: a placeholder inside a string, comment or quoted
    identifier (as this session reads them) is refused before any value is pasted.
    """
    if not isinstance(query, str):
        query = query.as_string(conn)
    if params is None:
        return query
    check_placeholders(query, standard_strings=standard_strings(conn))
    cur: psycopg.ClientCursor[Any] | psycopg.AsyncClientCursor[Any]
    if isinstance(conn, psycopg.AsyncConnection):
        cur = psycopg.AsyncClientCursor(conn)
    else:
        cur = psycopg.ClientCursor(conn)
    for float_type in (float, "numpy.float64"):
        cur.adapters.register_dumper(float_type, _Float8Literal)
    return cur.mogrify(query, params)


def note_unbound(error: BaseException, text: str) -> None:
    """Add a hint to the server's syntax error at a placeholder of a query run without params.

    ``%s`` or ``%(name)s`` with no ``params`` reaches the server as it is, which reports a
    syntax error at "%"; the hint says what is missing.
    """
    if not isinstance(error, psycopg.errors.SyntaxError):
        return
    position = error.diag.statement_position  # 1-based, in characters of the text as sent
    if not position or not position.isdigit():
        return
    m = _PLACEHOLDER.match(text, int(position) - 1)
    if m is not None and m.group() != "%%":
        error.add_note(
            f"{m.group()!r} is a parameter placeholder and no params were given: pass them "
            "with params="
        )


class _Float8Literal(psycopg.adapt.Dumper):
    """A float bound as the ``float8`` psycopg sends when the server binds it.

    psycopg's client-side binding writes a bare number, which the server reads as a
    ``numeric``: ``-0.0`` lost its sign, ``%s * 10.0`` was exact decimal arithmetic.
    """

    oid = psycopg.adapters.types["float8"].oid

    def dump(self, obj: Any) -> bytes:
        return repr(float(obj)).encode()

    def quote(self, obj: Any) -> bytes:
        text = repr(float(obj))  # the shortest text that reads back as the same double
        return f"'{_FLOAT_WORDS.get(text, text)}'::float8".encode()


_FLOAT_WORDS: Final = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}


def bc_years(iso: str) -> str:
    """numpy's ISO text of a date or timestamp, a year before 1 in PostgreSQL's form.

    numpy counts years as astronomers do and signs them (``0000`` is 1 BC, ``-0001`` 2 BC);
    PostgreSQL reads and writes ``0001-01-01 BC``.
    """
    negative = iso.startswith("-")
    year, rest = iso.lstrip("-").split("-", 1)
    astronomical = -int(year) if negative else int(year)
    return iso if astronomical >= 1 else f"{1 - astronomical:04d}-{rest} BC"
