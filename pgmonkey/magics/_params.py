"""SQL text for the magics: split a cell into statements and bind ``:name`` parameters.

A small lexer that knows just enough PostgreSQL syntax to find the characters that matter
(``;`` between statements, ``:name`` placeholders) and to leave everything else alone:
``'...'`` strings (``''`` escapes; ``E'...'`` strings also ``\\'``), ``"..."`` quoted
identifiers, ``--`` and nested ``/* */`` comments, ``$$...$$`` / ``$tag$...$tag$`` bodies,
``::`` casts, ``$1`` positional parameters and ``$`` inside identifiers.

``:name`` becomes psycopg's ``%(name)s`` placeholder, so the value is adapted and quoted by
psycopg, never pasted as raw text. When a statement has placeholders every literal
``%`` is doubled, because psycopg scans the whole query for ``%`` (it does not know SQL
quoting). A statement without placeholders is sent as written, with no parameters.

A known ambiguity (shared with SQLAlchemy's ``text()``): in an array slice ``arr[lo:hi]``
the ``:hi`` reads as a parameter; write ``arr[lo : hi]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from pgmonkey.errors import MagicError

_IDENT_WORD: Final = re.compile(r"[^\W\d][\w$]*")
_PARAM_NAME: Final = re.compile(r"[^\W\d]\w*")
_NUMBER: Final = re.compile(r"[0-9][\w.]*")
_DOLLAR_TAG: Final = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_POSITIONAL: Final = re.compile(r"\$[0-9]+")
_SINGLE: Final = {";": "semi", "(": "lparen", ")": "rparen"}

# Statement keywords whose statements always return rows.
_ROW_KEYWORDS: Final = frozenset({"select", "values", "table", "show", "explain", "fetch"})
# The main statement of a WITH query.
_MAIN_KEYWORDS: Final = frozenset(
    {"select", "values", "table", "insert", "update", "delete", "merge"}
)


class Token(NamedTuple):
    """One lexical token: its kind and its span in the scanned text."""

    # word, number, param, cast, string, ident, dollar, comment, space, semi, lparen, rparen, other
    kind: str
    start: int
    end: int


def tokenize(sql: str) -> Iterator[Token]:
    """Yield the tokens of *sql*; unterminated quotes or comments run to the end."""
    i = 0
    while i < len(sql):
        kind, end = _next_token(sql, i)
        yield Token(kind, i, end)
        i = end


def _next_token(sql: str, i: int) -> tuple[str, int]:
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
        return "string", _quoted_end(sql, i, "'", backslash=False)
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


@dataclass(frozen=True)
class Statement:
    """One statement of a cell, ready for psycopg.

    ``text`` is the statement as written (no trailing ``;``), starting at ``start`` in the
    cell; ``query`` is what goes to psycopg (placeholders rewritten); ``names`` are the
    distinct ``:name`` parameters in order of first appearance.
    """

    text: str
    start: int
    query: str
    names: tuple[str, ...]
    keyword: str
    returns_rows: bool
    # (offset in text, length in text, name) of each placeholder
    _params_at: tuple[tuple[int, int, str], ...] = ()

    def params(self, namespace: Mapping[str, Any]) -> dict[str, Any] | None:
        """The values of this statement's parameters, looked up in *namespace*.

        Return None for a statement without parameters (psycopg then leaves ``%`` alone).
        """
        if not self.names:
            return None
        missing = [name for name in self.names if name not in namespace]
        if missing:
            shown = ", ".join(f":{name}" for name in missing)
            raise MagicError(
                f"undefined variable{'s' if len(missing) > 1 else ''} {shown}: "
                "define it in the notebook first"
            )
        return {name: namespace[name] for name in self.names}

    def source_offset(self, position: int, sent: Mapping[str, int] | None = None) -> int:
        """Offset in ``text`` of a server error position (1-based, in the query as sent).

        psycopg sends each ``%(name)s`` as ``$n`` and ``%%`` as ``%``, so only the
        placeholders change length between the text and what the server saw. *sent* gives
        other lengths per name, for values bound client-side (as quoted literals).
        """
        target = max(position - 1, 0)
        shift = 0  # text offset minus server offset, up to the current placeholder
        for at, text_len, name in self._params_at:
            if sent is not None and name in sent:
                sent_len = sent[name]
            else:
                sent_len = len(f"${self.names.index(name) + 1}")
            sent_at = at - shift
            if target < sent_at:
                break
            if target < sent_at + sent_len:
                return at
            shift += text_len - sent_len
        return min(target + shift, len(self.text))


def parse(sql: str) -> list[Statement]:
    """Split *sql* into statements and rewrite their ``:name`` placeholders.

    Statements that hold only whitespace and comments are dropped. Semicolons inside
    strings, identifiers, comments, dollar-quoted bodies and ``BEGIN ATOMIC ... END``
    function bodies do not split.
    """
    statements: list[Statement] = []
    current: list[Token] = []
    words: list[str] = []  # lowercased words at parenthesis depth 0, in order
    depth = 0
    atomic = 0  # BEGIN ... END nesting inside CREATE FUNCTION / PROCEDURE
    for tok in tokenize(sql):
        if tok.kind == "semi" and depth <= 0 and atomic <= 0:
            _flush(sql, current, words, statements)
            current, words, depth, atomic = [], [], 0, 0
            continue
        current.append(tok)
        if tok.kind == "lparen":
            depth += 1
        elif tok.kind == "rparen":
            depth -= 1
        elif tok.kind == "word":
            word = sql[tok.start : tok.end].lower()
            if depth == 0:
                words.append(word)
            if _is_routine(words):
                if word == "begin" or (word == "case" and atomic > 0):
                    atomic += 1
                elif word == "end" and atomic > 0:
                    atomic -= 1
    _flush(sql, current, words, statements)
    return statements


def _is_routine(words: list[str]) -> bool:
    head = [w for w in words[:4] if w not in ("or", "replace")]
    return len(head) >= 2 and head[0] == "create" and head[1] in ("function", "procedure")


def _flush(sql: str, tokens: list[Token], words: list[str], out: list[Statement]) -> None:
    meaningful = [t for t in tokens if t.kind not in ("space", "comment")]
    if not meaningful:
        return
    # The text runs from the first meaningful token to the last one (comments in between
    # and a trailing comment on the same statement are kept: the server ignores them).
    start = meaningful[0].start
    end = max(t.end for t in tokens if t.kind != "space")
    text = sql[start:end]
    names: dict[str, int] = {}
    params_at: list[tuple[int, int, str]] = []
    for t in tokens:
        if t.kind == "param":
            name = sql[t.start + 1 : t.end]
            names.setdefault(name, len(names) + 1)
            params_at.append((t.start - start, t.end - t.start, name))
    if names:
        parts: list[str] = []
        for t in tokens:
            if t.start < start or t.end > end:
                continue
            piece = sql[t.start : t.end]
            if t.kind == "param":
                parts.append(f"%({piece[1:]})s")
            else:
                parts.append(piece.replace("%", "%%"))
        query = "".join(parts)
    else:
        query = text
    keyword = sql[meaningful[0].start : meaningful[0].end].lower()
    if meaningful[0].kind == "lparen":
        keyword = "("
    elif meaningful[0].kind != "word":
        keyword = ""
    out.append(
        Statement(
            text=text,
            start=start,
            query=query,
            names=tuple(names),
            keyword=keyword,
            returns_rows=_returns_rows(keyword, words),
            _params_at=tuple(params_at),
        )
    )


def _returns_rows(keyword: str, words: list[str]) -> bool:
    """Whether the statement returns rows, judged from its top-level words.

    A guess for the fast path only: the caller still checks the cursor's description for
    statements judged not to return rows (``CALL`` with OUT parameters, for example).
    """
    if keyword == "select" and "into" in words:
        return False  # SELECT ... INTO new_table creates a table
    if keyword == "(" or keyword in _ROW_KEYWORDS:
        return True
    if keyword == "with":
        main = next((w for w in words[1:] if w in _MAIN_KEYWORDS), "")
        if main in ("select", "values", "table"):
            return True
    elif keyword not in ("insert", "update", "delete", "merge"):
        return False
    return "returning" in words
