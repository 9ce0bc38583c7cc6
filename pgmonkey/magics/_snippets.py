"""Snippets: named queries of a notebook, composed into later queries as CTEs.

``%%pgmonkey --save NAME`` stores the cell's query (and runs it, unless ``--no-execute``);
``%%pgmonkey --with NAME`` puts saved snippets in front of the cell's query as
``WITH NAME AS (...)``, so the query reads ``FROM NAME`` like a table. A snippet saved with
``--with`` remembers what it was built on: using it brings its own snippets along, each
once, in an order where every CTE comes after those it reads. A cell that starts with its
own ``WITH`` gets the snippets in front of its CTEs. ``:name`` parameters in a snippet are
bound when the query that uses it runs. ``%pgmonkey snippets`` lists them.

Snippet names are SQL identifiers used unquoted, so ``FROM Big`` finds the snippet saved as
``Big`` exactly as it would find a table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgmonkey.errors import MagicError
from pgmonkey.frames._sqltext import tokenize

from ._args import ArgumentParser
from ._params import parse

if TYPE_CHECKING:
    import pandas as pd

    from ._magic import PgMonkeyMagics

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


@dataclass(frozen=True)
class Snippet:
    name: str
    sql: str
    uses: tuple[str, ...] = ()


def prepare(magics: PgMonkeyMagics, opts: Any, sql: str) -> tuple[str | None, int]:
    """Apply ``--save``/``--with`` of a query's options to its *sql*.

    Returns the SQL to run (None: saved only, nothing to run) and how many lines were put
    in front of the user's text (for error positions).
    """
    uses: list[str] = list(getattr(opts, "with_", None) or [])
    save: str | None = getattr(opts, "save", None)
    if not uses and save is None:
        return sql, 0
    statements = parse(sql)
    if len(statements) != 1:
        raise MagicError(f"--save/--with take one SQL statement, not {len(statements)}")
    text = statements[0].text
    store: dict[str, Snippet] = magics.snippets
    for name in uses:
        if name not in store:
            known = ", ".join(store) or "none"
            raise MagicError(f"--with: no snippet named {name!r} (snippets: {known})")
    if save is not None:
        if not _NAME.fullmatch(save):
            raise MagicError(f"--save: a snippet name is an SQL identifier, not {save!r}")
        if save in _closure(store, uses):
            raise MagicError(f"--save: {save!r} cannot be built on itself")
        store[save] = Snippet(save, text, tuple(uses))
        if getattr(opts, "no_execute", False):
            return None, 0
    if not uses:
        return sql, 0
    composed = compose(store, uses, text)
    return composed, composed.count("\n") - text.count("\n")


def _closure(store: Mapping[str, Snippet], names: list[str]) -> list[str]:
    """*names* and every snippet they are built on, each after the ones it reads."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in path:
            raise MagicError(f"snippets built on each other: {' -> '.join((*path, name))}")
        snippet = store.get(name)
        if snippet is None:
            raise MagicError(f"snippet {path[-1]!r} uses {name!r}, which is no longer saved")
        for dep in snippet.uses:
            visit(dep, (*path, name))
        order.append(name)

    for name in names:
        visit(name, ())
    return order


def compose(store: Mapping[str, Snippet], uses: list[str], sql: str) -> str:
    """*sql* with the snippets *uses* (and theirs) in front as CTEs."""
    ctes = ",\n".join(f"{n} AS (\n{store[n].sql}\n)" for n in _closure(store, uses))
    words = [
        (t.start, t.end, sql[t.start : t.end].lower()) for t in tokenize(sql) if t.kind == "word"
    ][:2]
    if words and words[0][2] == "with":
        # The cell's own CTEs follow the snippets (they may read them).
        end = words[1][1] if len(words) > 1 and words[1][2] == "recursive" else words[0][1]
        return f"{sql[:end]} {ctes},\n{sql[end:].lstrip()}"
    return f"WITH {ctes}\n{sql}"


def snippets(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
    """``%pgmonkey snippets [--delete NAME]``: the saved snippets as a table."""
    p = ArgumentParser(prog="%pgmonkey snippets")
    p.add_argument("--delete", metavar="NAME", help="forget this snippet")
    opts = p.parse_args(args)
    store: dict[str, Snippet] = magics.snippets
    if opts.delete is not None:
        if opts.delete not in store:
            raise MagicError(f"no snippet named {opts.delete!r}")
        users = [s.name for s in store.values() if opts.delete in s.uses]
        if users:
            raise MagicError(f"{opts.delete!r} is used by {', '.join(map(repr, users))}")
        del store[opts.delete]
    import pandas as pd

    return pd.DataFrame(
        [(s.name, ", ".join(s.uses), s.sql) for s in store.values()],
        columns=["name", "with", "sql"],
    )
