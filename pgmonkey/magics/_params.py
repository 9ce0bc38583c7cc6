"""SQL text for the magics: split a cell into statements and bind ``:name`` parameters.

The lexer of :mod:`pgmonkey.frames._sqltext` finds the characters that matter (``;``
between statements, ``:name`` placeholders) and leaves everything else alone: strings,
quoted identifiers, comments, dollar-quoted bodies, ``::`` casts, ``$1`` parameters.

``:name`` becomes psycopg's ``%(name)s`` placeholder, so the value is adapted and quoted by
psycopg, never pasted as raw text. When a statement has placeholders every literal
``%`` is doubled, because psycopg scans the whole query for ``%`` (it does not know SQL
quoting). A statement without placeholders is sent as written, with no parameters.

A known ambiguity (shared with SQLAlchemy's ``text()``): in an array slice ``arr[lo:hi]``
the ``:hi`` reads as a parameter; write ``arr[lo : hi]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pgmonkey.errors import MagicError
from pgmonkey.frames._sqltext import Token, tokenize

# Statement keywords whose statements always return rows.
_ROW_KEYWORDS: Final = frozenset({"select", "values", "table", "show", "explain", "fetch"})
# The main statement of a WITH query.
_MAIN_KEYWORDS: Final = frozenset(
    {"select", "values", "table", "insert", "update", "delete", "merge"}
)


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


def parse(sql: str, *, standard_strings: bool = True) -> list[Statement]:
    """Split *sql* into statements and rewrite their ``:name`` placeholders.

    Statements that hold only whitespace and comments are dropped. Semicolons inside
    strings, identifiers, comments, dollar-quoted bodies and ``BEGIN ATOMIC ... END``
    function bodies do not split. ``standard_strings=False`` reads ``'...'`` strings as a
    session with ``standard_conforming_strings = off`` does (a backslash escapes the quote),
    so a ``:name`` is only ever found where that server sees code, not text.
    """
    statements: list[Statement] = []
    current: list[Token] = []
    words: list[str] = []  # lowercased words at parenthesis depth 0, in order
    depth = 0
    atomic = 0  # BEGIN ... END nesting inside CREATE FUNCTION / PROCEDURE
    for tok in tokenize(sql, standard_strings=standard_strings):
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
