"""``explain``: a query plan as a tree to look at, not a wall of text to read.

``%pgmonkey explain [--analyze] [--buffers] SQL`` (or ``%%pgmonkey explain`` over a cell)
runs ``EXPLAIN (FORMAT JSON, ...)`` in a transaction that is always rolled back, so
``EXPLAIN ANALYZE`` of an ``UPDATE`` runs it and changes nothing. The result is a
:class:`Plan`: an HTML tree in a notebook, a plain-text tree on a terminal and in
``text/plain``, and the JSON document PostgreSQL returned in :attr:`Plan.json`.

Per node: the time spent in the node and below it (*inclusive*) and in the node alone
(*exclusive*: inclusive minus the children's inclusive time), both as bars scaled to the
whole execution; rows estimated vs actual, a misestimate above 10x flagged; loops; buffers
(as PostgreSQL counts them: the node and its children); the slowest node (largest exclusive
time) marked. Without ``--analyze`` nothing ran, so the bars show the planner's cost.

PostgreSQL reports a node's times and rows per loop: totals here are multiplied by the
loops, as a reader of the plan would do by hand.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from pgmonkey.errors import MagicCellError, MagicError

from ._args import check_out_name
from ._display import error_message
from ._params import parse

if TYPE_CHECKING:
    from ._magic import PgMonkeyMagics

# The time bars: the node alone (dark), the node with its children (light).
_DARK = "#1f5fbf"
_LIGHT = "#bcd4f6"

#: A node whose row estimate is off by more than this factor (either way) is flagged.
MISESTIMATE = 10.0

_OPTION = re.compile(r"\s*(--(?:analyze|buffers|verbose)\b|--(?:conn|out)(?:=|\s+)(\S+))")

# ``EXPLAIN (ANALYZE) ...``, ``EXPLAIN ANALYZE ...``: PostgreSQL's syntax, not this command's.
_SQL_SYNTAX = re.compile(r"\s*(\(|(analy[sz]e|verbose)\b)", re.IGNORECASE)

_USAGE = (
    "usage: %pgmonkey explain [--analyze] [--buffers] [--verbose] [--conn NAME] [--out VAR] SQL"
)


def split_options(text: str) -> tuple[dict[str, Any], str]:
    """Leading ``--options`` of an explain line, and the SQL after them (kept as written)."""
    opts: dict[str, Any] = {"analyze": False, "buffers": False, "verbose": False}
    opts.update(conn=None, out=None)
    pos = 0
    while True:
        m = _OPTION.match(text, pos)
        if m is None:
            break
        word = m.group(1)
        if word.startswith(("--conn", "--out")):
            opts[word[2:].split("=")[0].split()[0]] = m.group(2)
        else:
            opts[word[2:]] = True
        pos = m.end()
    rest = text[pos:]
    if rest.lstrip().startswith("--") and not rest.lstrip().startswith("-- "):
        raise MagicError(f"explain: unknown option {rest.split()[0]!r}\n{_USAGE}")
    return opts, rest


def explain(
    magics: PgMonkeyMagics, text: str, cell: str | None, ns: Mapping[str, Any]
) -> Plan | None:
    """``%pgmonkey explain ...`` / ``%%pgmonkey explain ...``: the plan of one statement."""
    if cell is None and _SQL_SYNTAX.match(text):
        # EXPLAIN written the SQL way stays SQL: PostgreSQL's own text plan, as a DataFrame.
        return magics.query("EXPLAIN" + text, ns, conn_name=None, out=None)  # type: ignore[no-any-return]
    opts, sql = split_options(text)
    if cell is not None:
        if sql.strip():
            raise MagicError(f"%%pgmonkey explain: the SQL goes in the cell body\n{_USAGE}")
        sql = cell
    if opts["out"] is not None:
        check_out_name(opts["out"])
    statements = parse(sql)
    if len(statements) != 1:
        raise MagicError(f"explain takes one SQL statement, not {len(statements)}\n{_USAGE}")
    st = statements[0]
    params = st.params(ns)
    flags = ["FORMAT JSON"] + [
        name.upper() for name in ("analyze", "buffers", "verbose") if opts[name]
    ]
    query = f"EXPLAIN ({', '.join(flags)}) {st.query}"

    def sync(conn: psycopg.Connection[Any]) -> Any:
        # force_rollback: whatever ANALYZE executed (an UPDATE, a DELETE) is undone.
        try:
            with conn.transaction(force_rollback=True), psycopg.ClientCursor(conn) as cur:
                cur.execute(query, params)
                row = cur.fetchone()
        except psycopg.Error as exc:
            raise MagicCellError(error_message(exc)) from exc
        return None if row is None else row[0]

    async def async_(conn: psycopg.AsyncConnection[Any]) -> Any:
        try:
            async with (
                conn.transaction(force_rollback=True),
                psycopg.AsyncClientCursor(conn) as cur,
            ):
                await cur.execute(query, params)
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise MagicCellError(error_message(exc)) from exc
        return None if row is None else row[0]

    document = magics.using(magics.entry(opts["conn"]), sync, async_)
    if isinstance(document, str):  # a json column read as text by a custom loader
        document = json.loads(document)
    plan = Plan(document)
    if opts["out"] is not None and magics.shell is not None:
        magics.shell.user_ns[opts["out"]] = plan
    return plan


# -- the tree ------------------------------------------------------------------------------


@dataclass
class Node:
    """One plan node with the totals a reader wants (times in ms, over all loops)."""

    raw: dict[str, Any]
    depth: int
    children: list[Node] = field(default_factory=list)
    inclusive: float = 0.0
    exclusive: float = 0.0
    slowest: bool = False

    @property
    def label(self) -> str:
        r = self.raw
        kind = r.get("Node Type", "?")
        if r.get("Strategy") and kind == "Aggregate":
            kind = f"{r['Strategy']} {kind}".replace("Plain ", "").replace("Hashed", "Hash")
        if r.get("Join Type") and r["Join Type"] != "Inner":
            kind = f"{kind} ({r['Join Type']})"
        if r.get("Parallel Aware"):
            kind = f"Parallel {kind}"
        if r.get("Index Name"):
            kind += f" using {r['Index Name']}"
        if r.get("Relation Name"):
            rel = r["Relation Name"]
            kind += f" on {rel}" + (f" {r['Alias']}" if r.get("Alias", rel) != rel else "")
        elif r.get("CTE Name"):
            kind += f" on {r['CTE Name']}"
        if r.get("Subplan Name"):
            kind = f"{r['Subplan Name']}: {kind}"
        return str(kind)

    @property
    def detail(self) -> str:
        """The node's condition or key, if any (one line)."""
        r = self.raw
        parts = []
        for key in ("Hash Cond", "Merge Cond", "Join Filter", "Index Cond", "Recheck Cond"):
            if r.get(key):
                parts.append(f"{key.split()[0].lower()}: {r[key]}")
        if r.get("Filter"):
            removed = r.get("Rows Removed by Filter")
            parts.append(f"filter: {r['Filter']}" + (f" (removed {removed:,})" if removed else ""))
        for key in ("Sort Key", "Group Key"):
            if r.get(key):
                parts.append(f"{key.lower()}: {', '.join(r[key])}")
        return "; ".join(parts)

    @property
    def analyzed(self) -> bool:
        return "Actual Loops" in self.raw

    @property
    def loops(self) -> int:
        return int(self.raw.get("Actual Loops", 1))

    @property
    def estimated_rows(self) -> float:
        """Rows the planner expected per loop."""
        return float(self.raw.get("Plan Rows", 0))

    @property
    def actual_rows(self) -> float:
        """Rows produced per loop (PostgreSQL's own average)."""
        return float(self.raw.get("Actual Rows", 0))

    @property
    def misestimate(self) -> float:
        """How far off the estimate is, as a factor >= 1 (1 when not analyzed)."""
        if not self.analyzed or self.loops == 0:
            return 1.0
        est, act = max(self.estimated_rows, 1.0), max(self.actual_rows, 1.0)
        return max(est / act, act / est)

    @property
    def buffers(self) -> dict[str, int]:
        names = {
            "Shared Hit Blocks": "hit",
            "Shared Read Blocks": "read",
            "Shared Dirtied Blocks": "dirtied",
            "Shared Written Blocks": "written",
            "Temp Read Blocks": "temp read",
            "Temp Written Blocks": "temp written",
        }
        return {short: int(self.raw[k]) for k, short in names.items() if self.raw.get(k)}

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


def _build(raw: dict[str, Any], depth: int, analyzed: bool) -> Node:
    node = Node(raw, depth, [_build(c, depth + 1, analyzed) for c in raw.get("Plans", [])])
    if analyzed:
        node.inclusive = float(raw.get("Actual Total Time", 0.0)) * node.loops
    else:
        node.inclusive = float(raw.get("Total Cost", 0.0))
    # A node's own share; never negative (parallel workers and InitPlans can make the
    # children's sum exceed the parent's figure).
    node.exclusive = max(node.inclusive - sum(c.inclusive for c in node.children), 0.0)
    return node


class Plan:
    """An EXPLAIN result: ``.json`` as PostgreSQL returned it, shown as a tree."""

    def __init__(self, document: list[dict[str, Any]]) -> None:
        self.json = document
        top = document[0] if document else {}
        self.analyzed = "Actual Loops" in top.get("Plan", {})
        self.root = _build(top.get("Plan", {}), 0, self.analyzed)
        self.planning_time: float | None = top.get("Planning Time")
        self.execution_time: float | None = top.get("Execution Time")
        nodes = list(self.root.walk())
        self.slowest = max(nodes, key=lambda n: n.exclusive)
        if self.slowest.exclusive > 0 and len(nodes) > 1:
            self.slowest.slowest = True
        self.scale = max(self.root.inclusive, max(n.inclusive for n in nodes), 1e-9)

    @property
    def nodes(self) -> list[Node]:
        """Every node, depth first (the order of the tree)."""
        return list(self.root.walk())

    # -- text ----------------------------------------------------------------------------

    def _summary(self) -> str:
        parts = []
        if self.planning_time is not None:
            parts.append(f"planning {self.planning_time:.3f} ms")
        if self.execution_time is not None:
            parts.append(f"execution {self.execution_time:.3f} ms")
        if not self.analyzed:
            parts.append(f"total cost {self.root.inclusive:,.2f} (not run: add --analyze)")
        return " · ".join(parts)

    def _figures(self, node: Node) -> str:
        unit = "ms" if self.analyzed else "cost"
        # Ten cells: the node's own share dark, the rest of its inclusive share light.
        own = round(10 * node.exclusive / self.scale)
        inc = max(round(10 * node.inclusive / self.scale), own)
        bar = "█" * own + "▒" * (inc - own) + "·" * (10 - inc)
        if self.analyzed:
            parts = [f"{bar} {node.inclusive:.3f} ms (self {node.exclusive:.3f} {unit})"]
            rows = f"rows {node.actual_rows:,.0f} of est {node.estimated_rows:,.0f}"
            if node.misestimate > MISESTIMATE:
                rows += f" ⚠ x{node.misestimate:,.0f}"
            parts.append(rows)
            parts.append(f"loops {node.loops:,}")
        else:
            parts = [f"{bar} cost {node.inclusive:,.2f} (self {node.exclusive:,.2f})"]
            parts.append(f"est rows {node.estimated_rows:,.0f}")
        if node.buffers:
            parts.append("buffers " + " ".join(f"{k}={v:,}" for k, v in node.buffers.items()))
        if node.slowest:
            parts.append("◀ slowest")
        return "  ".join(parts)

    def text(self) -> str:
        """The plain-text tree (what ``print(plan)`` shows)."""
        lines = [self._summary()]

        def walk(node: Node, prefix: str, last: bool, top: bool) -> None:
            branch = "" if top else ("└─ " if last else "├─ ")
            lines.append(f"{prefix}{branch}{node.label}  {self._figures(node)}")
            inner = prefix + ("" if top else ("   " if last else "│  "))
            if node.detail:
                lines.append(f"{inner}{'│  ' if node.children else '   '}{node.detail}")
            for i, child in enumerate(node.children):
                walk(child, inner, i == len(node.children) - 1, False)

        walk(self.root, "", True, True)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text())

    # -- HTML ----------------------------------------------------------------------------

    def _repr_html_(self) -> str:
        unit = "ms" if self.analyzed else "cost"

        def swatch(colour: str) -> str:
            return (
                '<span style="display:inline-block;width:10px;height:10px;'
                f'background:{colour};margin:0 3px"></span>'
            )

        what = "time" if self.analyzed else "cost"
        head = [
            "node",
            f"{what}:{swatch(_DARK)}self{swatch(_LIGHT)}with children",
            f"self ({unit})",
            f"inclusive ({unit})",
        ]
        head += ["rows (actual / est)", "loops"] if self.analyzed else ["est rows"]
        head.append("buffers")
        out = [
            '<div class="pgmonkey-plan">',
            f'<div style="margin-bottom:4px">{html.escape(self._summary())}</div>',
            '<table style="border-collapse:collapse;font-size:12px">',
            "<thead><tr>"
            + "".join(f'<th style="text-align:left;padding:2px 8px">{h}</th>' for h in head)
            + "</tr></thead><tbody>",
        ]
        for node in self.nodes:
            out.append(self._html_row(node))
        out.append("</tbody></table></div>")
        return "".join(out)

    def _html_row(self, node: Node) -> str:
        style = "padding:2px 8px;text-align:left;vertical-align:top"
        row_style = ' style="background:#fff3cd"' if node.slowest else ""
        label = html.escape(node.label)
        if node.slowest:
            label = f"<b>{label}</b> <span style='color:#b45309'>◀ slowest</span>"
        if node.detail:
            label += f"<br><span style='color:#666'>{html.escape(node.detail)}</span>"
        indent = f"padding-left:{8 + 18 * node.depth}px"
        tree_mark = "└ " if node.depth else ""
        inc_w = 100.0 * node.inclusive / self.scale
        exc_w = 100.0 * node.exclusive / self.scale
        bar = (
            '<div style="position:relative;width:160px;height:12px;background:#f1f1f1">'
            f'<div style="position:absolute;left:0;top:0;height:12px;width:{inc_w:.1f}%;'
            f'background:{_LIGHT}"></div>'
            f'<div style="position:absolute;left:0;top:0;height:12px;width:{exc_w:.1f}%;'
            f'background:{_DARK}"></div></div>'
        )
        fmt = "{:.3f}" if self.analyzed else "{:,.2f}"
        cells = [
            f'<td style="{style};{indent}">{tree_mark}{label}</td>',
            f'<td style="{style}">{bar}</td>',
            f'<td style="{style}">{fmt.format(node.exclusive)}</td>',
            f'<td style="{style}">{fmt.format(node.inclusive)}</td>',
        ]
        if self.analyzed:
            rows = f"{node.actual_rows:,.0f} / {node.estimated_rows:,.0f}"
            if node.misestimate > MISESTIMATE:
                rows = (
                    f'<span style="color:#b91c1c;font-weight:bold" title="estimate off by '
                    f'{node.misestimate:,.0f}x">{rows} ⚠ x{node.misestimate:,.0f}</span>'
                )
            cells.append(f'<td style="{style}">{rows}</td>')
            cells.append(f'<td style="{style}">{node.loops:,}</td>')
        else:
            cells.append(f'<td style="{style}">{node.estimated_rows:,.0f}</td>')
        buffers = " ".join(f"{k}={v:,}" for k, v in node.buffers.items())
        cells.append(f'<td style="{style}">{html.escape(buffers)}</td>')
        return f"<tr{row_style}>{''.join(cells)}</tr>"
