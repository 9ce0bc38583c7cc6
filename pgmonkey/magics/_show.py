"""How query results render: a display limit and a footer, never a change to the value.

A DataFrame returned by ``%pgmonkey`` is remembered (weakly, by identity) with its shape,
the time the query took and the connection it ran on. IPython's display formatters, for
DataFrames only, then render:

- at most ``PgMonkeyMagics.displaylimit`` rows of it (0: no limit beyond pandas' own
  display options); the DataFrame itself keeps every row;
- with ``PgMonkeyMagics.footer`` on, a line under the table: rows x columns, elapsed time,
  connection.

Any other DataFrame (and a remembered one whose shape has since changed) renders exactly as
pandas renders it. The formatters are registered the first time a limit or the footer is
asked for, so a notebook that uses neither keeps whatever DataFrame rendering it had.
"""

from __future__ import annotations

import html
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._magic import PgMonkeyMagics


@dataclass(frozen=True)
class Shown:
    shape: tuple[int, int]
    elapsed: float
    connection: str

    def footer(self, limit: int) -> str:
        rows, cols = self.shape
        text = f"{rows:,} row{'' if rows == 1 else 's'} × {cols} column{'' if cols == 1 else 's'}"
        if 0 < limit < rows:
            text += f" (first {limit:,} shown)"
        return f"{text} · {_duration(self.elapsed)} · {self.connection}"


_SHOWN: dict[int, tuple[weakref.ref[Any], Shown]] = {}


def _duration(seconds: float) -> str:
    if seconds < 1.0:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def remember(magics: PgMonkeyMagics, result: Any, connection: str, elapsed: float) -> None:
    """Note how *result* was made, if it is a DataFrame (anything else is left alone)."""
    # pandas' only: a polars DataFrame (``--out-format polars``) renders as polars does.
    if type(result).__name__ != "DataFrame" or not type(result).__module__.startswith("pandas"):
        return
    if (magics.displaylimit > 0 or magics.footer) and magics.shell is not None:
        install(magics, type(result))
    key = id(result)
    _SHOWN[key] = (weakref.ref(result), Shown(result.shape, elapsed, connection))
    weakref.finalize(result, _SHOWN.pop, key, None)


def lookup(df: Any) -> Shown | None:
    entry = _SHOWN.get(id(df))
    if entry is None:
        return None
    ref, shown = entry
    # Another object that reused the id, or rows added or dropped since: no longer ours.
    if shown.shape != df.shape or ref() is not df:
        return None
    return shown


def install(magics: PgMonkeyMagics, frame_type: type) -> None:
    """Register the DataFrame formatters of *magics*' shell (the latest magics win)."""
    formatters = magics.shell.display_formatter.formatters
    ref = weakref.ref(magics)

    def settings(df: Any) -> tuple[Shown | None, int, bool]:
        m = ref()
        shown = lookup(df)
        if m is None or shown is None:
            return None, 0, False
        return shown, max(int(m.displaylimit), 0), bool(m.footer)

    def as_html(df: Any) -> str | None:
        shown, limit, footer = settings(df)
        if shown is None:
            return df._repr_html_()  # type: ignore[no-any-return]
        page = (df.head(limit) if 0 < limit < len(df) else df)._repr_html_()
        if page is None:  # pandas' own display.notebook_repr_html = False
            return None
        if footer:
            style = "color:#666;font-size:0.9em;margin-top:2px"
            page += f'<div style="{style}">{html.escape(shown.footer(limit))}</div>'
        return page  # type: ignore[no-any-return]

    def as_text(df: Any, p: Any, cycle: bool) -> None:
        shown, limit, footer = settings(df)
        if shown is None:
            p.text(repr(df))
            return
        text = repr(df.head(limit) if 0 < limit < len(df) else df)
        p.text(text + (f"\n{shown.footer(limit)}" if footer else ""))

    formatters["text/html"].for_type(frame_type, as_html)
    formatters["text/plain"].for_type(frame_type, as_text)
