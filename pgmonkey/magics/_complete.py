"""Tab completion in ``%pgmonkey`` lines and ``%%pgmonkey`` cells (IPython's completer API).

What completes, by place:

- the first word after ``%pgmonkey`` / ``%%pgmonkey``: commands and query options;
- after ``use``, ``disconnect``, ``--conn``: connection names;
- after ``--with``, ``--delete``: snippet names;
- after ``--column``/``-c``/``--by``/``--y`` (plot): columns of the tables the line names;
- elsewhere (SQL, table arguments): ``schema.`` gives that schema's tables, ``table.`` its
  columns; a bare word gives the tables visible on the search path, schemas, snippets and
  the columns of the tables the statement names (before or after the cursor).

Names come from the current connection's catalog, read once and cached per connection; the
cache is dropped after any cell that may have changed the schema (DDL, import, persist,
to_sql) and when connections change. A catalog that cannot be read completes nothing: a
completion request never fails a notebook.

Uses IPython's matcher API v2 (IPython 8.6 and later); on older IPython there is no
completion from this module.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from ._magic import PgMonkeyMagics

_CATALOG = """\
SELECT n.nspname, c.relname, pg_catalog.pg_table_is_visible(c.oid), a.attname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a
       ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
  AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1, 2, a.attnum"""

QUERY_OPTIONS = ("--conn", "--out", "--save", "--with", "--no-execute")
_COMMAND_OPTIONS = {
    "explain": ("--analyze", "--buffers", "--verbose", "--conn", "--out"),
    "profile": ("--schema", "--top", "--exact-below", "--conn"),
    "plot": ("--column", "--by", "--bins", "--top", "--y", "--agg", "--conn"),
    "snippets": ("--delete",),
}
# Cells after which the catalog may have changed.
_DDL = re.compile(
    r"\b(create|alter|drop|rename|import|persist|to_sql|connect|disconnect|use)\b", re.I
)
_WORD = re.compile(r'[\w$."]*\Z')
_OPTION = re.compile(r"(?<!\S)--?[\w-]*\Z")
_NAME = re.compile(r'[\w$"]+(?:\.[\w$"]+)?')


@dataclass
class Catalog:
    """Relations and columns of one connection, outside the system schemas."""

    schemas: set[str] = field(default_factory=set)
    visible: set[str] = field(default_factory=set)
    columns: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def tables_in(self, schema: str) -> list[str]:
        return [t for s, t in self.columns if s == schema]

    def columns_of(self, name: str) -> list[str]:
        """Columns of *name* (``table`` on the search path, or ``schema.table``)."""
        parts = [p.strip('"') for p in name.split(".")]
        if len(parts) == 2:
            return self.columns.get((parts[0], parts[1]), [])
        if len(parts) == 1 and parts[0] in self.visible:
            return next((c for (_s, t), c in self.columns.items() if t == parts[0]), [])
        return []


def load_catalog(rows: list[tuple[str, str, bool, str | None]]) -> Catalog:
    cat = Catalog()
    for schema, table, visible, column in rows:
        cat.schemas.add(schema)
        cols = cat.columns.setdefault((schema, table), [])
        if visible:
            cat.visible.add(table)
        if column is not None:
            cols.append(column)
    return cat


class Completer:
    """The completion state of one :class:`PgMonkeyMagics` (its catalog cache)."""

    def __init__(self, magics: PgMonkeyMagics) -> None:
        self._magics = weakref.ref(magics)
        self.cache: dict[str, Catalog] = {}
        self.reads = 0  # how many times a catalog was read (tests check the cache)

    def forget(self, result: Any = None) -> None:
        """``post_run_cell``: drop the cache after a cell that may have changed the schema."""
        info = getattr(result, "info", None)
        cell = getattr(info, "raw_cell", None)
        if cell is None or _DDL.search(cell):
            self.cache.clear()

    def catalog(self) -> Catalog | None:
        magics = self._magics()
        if magics is None or magics.current is None:
            return None
        name = magics.current
        if name not in self.cache:
            entry = magics.registry[name]

            def sync(conn: psycopg.Connection[Any]) -> Any:
                return conn.execute(_CATALOG).fetchall()

            async def async_(conn: psycopg.AsyncConnection[Any]) -> Any:
                cur = await conn.execute(_CATALOG)
                return await cur.fetchall()

            try:
                rows = magics.using(entry, sync, async_)
            except Exception:
                return None
            self.reads += 1
            self.cache[name] = load_catalog(rows)
        return self.cache[name]

    def complete(self, full_text: str, line: int, column: int) -> tuple[str, list[str]] | None:
        """The fragment before the cursor and its completions, or None (not ours)."""
        magics = self._magics()
        if magics is None:
            return None
        lines = full_text.split("\n")
        current = lines[line][:column]
        head = re.match(r"\s*(?:[\w.]+\s*=\s*)?(%%?pgmonkey)\b", lines[0])
        on_magic_line = False
        if head and head.group(1) == "%%pgmonkey":
            on_magic_line = line == 0
            before = current[head.end() :] if on_magic_line else current
        else:
            m = re.match(r"\s*(?:[\w.]+\s*=\s*)?%pgmonkey\b", lines[line])
            if m is None or column < m.end():
                return None
            on_magic_line = True
            before = current[m.end() :]
        option = _OPTION.search(before)
        if option is not None:
            command = before.split()[0] if before.split() else ""
            known = _COMMAND_OPTIONS.get(command, QUERY_OPTIONS)
            return option.group(), _starting(list(known), option.group())
        fragment = _WORD.search(before)
        token = fragment.group() if fragment else ""
        words = before[: len(before) - len(token)].split()
        prev = words[-1] if words else ""
        if on_magic_line and not words and "." not in token:
            from ._magic import _COMMANDS, _SQL_COMMANDS

            names = sorted([*_COMMANDS, *_SQL_COMMANDS]) + list(QUERY_OPTIONS)
            return token, _starting(names, token)
        if prev in ("use", "disconnect", "--conn"):
            return token, _starting(sorted(magics.registry), token)
        if prev in ("--with", "--delete"):
            return token, _starting(sorted(magics.snippets), token)
        cat = self.catalog()
        if cat is None:
            return None
        # Tables named anywhere in the statement, before or after the cursor.
        in_cell = head is not None and head.group(1) == "%%pgmonkey"
        text = full_text if in_cell else lines[line]
        named = {w for w in _NAME.findall(text) if w.strip('"') in cat.visible or "." in w}
        mentioned = [c for n in sorted(named) for c in cat.columns_of(n)]
        if prev in ("--column", "-c", "--by", "--y"):
            return token, _starting(_unique(mentioned), token)
        if "." in token:
            qualifier, _dot, _rest = token.rpartition(".")
            bare = qualifier.strip('"')
            options = [f"{qualifier}.{t}" for t in sorted(cat.tables_in(bare))]
            options += [f"{qualifier}.{c}" for c in cat.columns_of(qualifier)]
            return token, _starting(_unique(options), token)
        options = sorted(cat.visible) + sorted(cat.schemas) + sorted(magics.snippets)
        return token, _starting(_unique(mentioned + options), token)


def _starting(names: list[str], prefix: str) -> list[str]:
    return [n for n in names if n.startswith(prefix)]


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def install(magics: PgMonkeyMagics) -> Completer | None:
    """Register completion for *magics* with its shell; None where IPython cannot."""
    shell = magics.shell
    try:
        from IPython.core.completer import SimpleCompletion, context_matcher
    except ImportError:  # IPython before 8.6: no matcher API v2
        return None
    completer = Completer(magics)
    ref = weakref.ref(completer)

    @context_matcher(identifier="pgmonkey")  # type: ignore[untyped-decorator,unused-ignore]
    def match(context: Any) -> Any:
        comp = ref()
        found = None
        if comp is not None:
            try:
                found = comp.complete(
                    context.full_text, context.cursor_line, context.cursor_position
                )
            except Exception:  # a completion request never fails the notebook
                found = None
        if found is None:
            return {"completions": [], "suppress": False}
        fragment, names = found
        return {
            "completions": [SimpleCompletion(text=n, type="pgmonkey") for n in names],
            "matched_fragment": fragment,
            "suppress": bool(names),
        }

    matchers = shell.Completer.custom_matchers
    # One pgmonkey matcher per shell: a new magics object (reload) replaces the old one.
    matchers[:] = [m for m in matchers if getattr(m, "matcher_identifier", "") != "pgmonkey"]
    matchers.append(match)
    callbacks = shell.events.callbacks["post_run_cell"]
    for old in [cb for cb in callbacks if isinstance(getattr(cb, "__self__", None), Completer)]:
        shell.events.unregister("post_run_cell", old)
    shell.events.register("post_run_cell", completer.forget)
    completer.match = match  # type: ignore[attr-defined]
    return completer
