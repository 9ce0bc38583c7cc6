"""Arguments of the magics: words split like a shell, ``{expr}``/``$var`` expanded, parsed.

Command arguments (paths, names, tables) expand ``{expr}`` and ``$var`` as IPython expands
other magics' lines; SQL never does (it binds ``:name`` parameters instead).
"""

from __future__ import annotations

import argparse
import keyword
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from IPython.utils.text import DollarFormatter

from pgmonkey.errors import MagicError

# Leading options of a line query: %pgmonkey --conn NAME --out VAR [--dask ...] SELECT ...
LINE_OPTIONS = re.compile(
    r"\s*((?:--(?:conn|out-format|out|save|with|partition-on|partitions)(?:=|\s+)\S+\s*"
    r"|--no-execute\s+|--dask(?:\s+|\Z))+)(.*)",
    re.DOTALL,
)


# What a query cell returns: pgmonkey.read_sql, read_arrow or read_polars's result.
OUT_FORMATS = ("pandas", "arrow", "polars")


class HelpShown(Exception):
    """argparse printed the help of a subcommand: nothing else to do."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        raise MagicError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message)
        raise HelpShown


def query_parser(prog: str) -> ArgumentParser:
    p = ArgumentParser(prog=prog)
    p.add_argument("--out", help="also store the result in this variable")
    p.add_argument(
        "--out-format",
        choices=OUT_FORMATS,
        default="pandas",
        help="the result as a pandas DataFrame (default), a pyarrow Table or a polars DataFrame",
    )
    p.add_argument("--conn", help="connection name (default: the current one)")
    p.add_argument("--save", metavar="NAME", help="save the query as a snippet")
    p.add_argument(
        "--with",
        dest="with_",
        metavar="NAME",
        action="append",
        help="put a saved snippet in front as a CTE (repeatable)",
    )
    p.add_argument("--no-execute", action="store_true", help="with --save: only save")
    p.add_argument(
        "--dask", action="store_true", help="a Dask DataFrame (pgmonkey.dask.read_sql), lazy"
    )
    p.add_argument("--partition-on", help="with --dask: split by ranges of this column")
    p.add_argument("--partitions", type=int, help="with --dask: how many partitions")
    return p


_FORMATTER = DollarFormatter()


def expander(shell: Any, ns: Mapping[str, Any]) -> Callable[[str], str]:
    """``{expr}`` / ``$var`` expansion of one argument, as IPython expands other magics' lines.

    The same formatter and namespace as ``InteractiveShell.var_expand``: the notebook's
    variables, the caller's local ones first. As there, a failure (an undefined name, a
    path with literal braces) leaves the text unchanged; ``{{`` and ``$$`` escape.
    """

    def expand(text: str) -> str:
        if shell is None or ("{" not in text and "$" not in text):
            return text
        try:
            return str(_FORMATTER.vformat(text, args=[], kwargs=dict(ns)))
        except Exception:
            return text

    return expand


def split_words(text: str) -> list[str]:
    """Shell-like words, an unquoted ``{expr}`` kept whole (spaces and quotes included)."""
    if "{" not in text or "\ue000" in text:
        return split_args(text)
    groups: list[str] = []
    out: list[str] = []
    i, quote = 0, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"':
                out.append(text[i : i + 2])
                i += 2
                continue
        elif ch in "'\"":
            quote = ch
        elif ch == "\\":
            out.append(text[i : i + 2])
            i += 2
            continue
        elif ch == "{":
            end = _closing_brace(text, i)
            if end > 0:
                out.append(f"\ue000{len(groups)}\ue001")
                groups.append(text[i : end + 1])
                i = end + 1
                continue
        out.append(ch)
        i += 1
    words = split_args("".join(out))
    return [_GROUP.sub(lambda m: groups[int(m.group(1))], w) for w in words]


_GROUP = re.compile("\ue000(\\d+)\ue001")


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``{`` at *start* (Python strings skipped), or -1."""
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def split_args(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise MagicError(f"cannot parse arguments: {exc}") from None


# Names IPython keeps for itself in the user namespace (history, outputs, the shell).
_IPYTHON_NAMES = re.compile(r"In|Out|exit|quit|get_ipython|_+|_i{1,3}|_i\d+|_\d+|_oh|_ih|_dh")


def check_out_name(out: str) -> str:
    """*out* if a result may be stored under that name in the notebook, else a MagicError."""
    if not out.isidentifier():
        raise MagicError(f"--out: not a valid variable name: {out!r}")
    if keyword.iskeyword(out):
        raise MagicError(f"--out: {out!r} is a Python keyword, not a variable name")
    if out.startswith("__") and out.endswith("__"):
        raise MagicError(f"--out: {out!r} is a special name of Python's; choose another")
    if _IPYTHON_NAMES.fullmatch(out):
        raise MagicError(f"--out: {out!r} is one of IPython's own names; choose another")
    return out
