"""``plot``: charts of a table or query whose aggregation runs in PostgreSQL.

``%pgmonkey plot hist|box|bar|line TABLE_OR_QUERY --column C [--by G] [--bins N]`` (or
``%%pgmonkey plot KIND --column C ...`` with the query as the cell's body) sends aggregate
queries only, so a table of millions of rows is never transferred: what travels is one row
per bin, box or bar. matplotlib draws; the command returns the Axes.

- ``hist``: ``min``/``max`` first, then the bins counted by ``width_bucket`` over the very
  edges ``numpy.histogram`` would use (same counts, value for value); ``--by G`` overlays one
  outline per group.
- ``box``: quartiles by ``percentile_cont`` and whiskers at 1.5 IQR (matplotlib's rule), per
  group with ``--by``; outliers are counted in the label, not fetched.
- ``bar``: rows per value of C, the ``--top`` most frequent; ``--by G`` splits each bar.
- ``line``: rows per value of C in C's order (at most 10,000 points), or per ``--bins``
  equal-width bins of C (numbers or times); ``--by G`` draws one line per group.

``--y COLUMN --agg avg|sum|min|max|count`` (bar, line) plots an aggregate of another column
instead of the row count.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgmonkey.errors import MagicError

from ._args import ArgumentParser, expander, split_words
from ._params import parse
from ._steps import drive

if TYPE_CHECKING:
    from ._magic import PgMonkeyMagics

KINDS = ("hist", "box", "bar", "line")
AGGREGATES = ("count", "sum", "avg", "min", "max")
#: A line without --bins draws at most this many points (x values times groups).
MAX_POINTS = 10_000
# A bare (possibly schema-qualified, possibly quoted) table name; anything else is a query.
_TABLE_NAME = re.compile(r'(?:"(?:[^"]|"")+"|[^\W\d][\w$]*)(?:\.(?:"(?:[^"]|"")+"|[^\W\d][\w$]*))?')
_TIME_TYPES = frozenset({"date", "timestamp without time zone", "timestamp with time zone"})


def quote_ident(name: str) -> str:
    """``name`` quoted as PostgreSQL's ``quote_ident`` would, always (exact spelling kept)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Source:
    """The rows to plot: ``WITH pgm_src AS (...)`` and the parameters of its query."""

    cte: str
    params: dict[str, Any] | None
    title: str

    def text(self, sql: str) -> str:
        """*sql* (over ``pgm_src``) ready for psycopg: ``%`` doubled when bound."""
        if self.params is not None:
            sql = sql.replace("%", "%%")
        return f"WITH pgm_src AS ({self.cte}) {sql}"


@dataclass
class Chart:
    """What the server computed, ready to draw."""

    kind: str
    column: str
    title: str
    by: str | None
    data: dict[Any, Any] = field(default_factory=dict)
    edges: Any = None
    ylabel: str = "rows"
    measure: str = ""  # what is plotted when it is not rows of the column


def plot(magics: PgMonkeyMagics, text: str, cell: str | None, ns: Mapping[str, Any]) -> Any:
    p = ArgumentParser(prog="%pgmonkey plot")
    expand = expander(magics.shell, ns)
    p.add_argument("kind", choices=KINDS)
    p.add_argument(
        "source", nargs="?", help="table name or query (in a %%%%pgmonkey cell: the body)"
    )
    p.add_argument("--column", "-c", required=True, type=expand, help="column to plot")
    p.add_argument("--by", type=expand, help="group column: one series per value")
    p.add_argument("--bins", type=int, help="bins (hist: default 20; line: bucket C)")
    p.add_argument("--top", type=int, default=20, help="bar: most frequent values (default 20)")
    p.add_argument("--y", type=expand, help="bar/line: aggregate this column instead of rows")
    p.add_argument("--agg", choices=AGGREGATES, help="bar/line: aggregate of --y (default avg)")
    p.add_argument("--conn", help="connection name (default: the current one)")
    opts = p.parse_args(split_words(text))
    if cell is not None:
        if opts.source is not None:
            raise MagicError("%%pgmonkey plot: the query goes in the cell body, not the line")
        opts.source = cell
    if opts.source is None or not opts.source.strip():
        raise MagicError("plot: give a table name or a query")
    if opts.bins is not None and opts.bins < 1:
        raise MagicError(f"--bins: must be at least 1, not {opts.bins}")
    source = _source(opts.source.strip(), ns)
    chart = drive(magics, opts.conn, lambda: _steps(opts, source))
    return _draw(chart)


def _source(text: str, ns: Mapping[str, Any]) -> Source:
    if _TABLE_NAME.fullmatch(text):
        return Source(f"TABLE {text}", None, text)
    statements = parse(text)
    if len(statements) != 1:
        raise MagicError(f"plot: give one query, not {len(statements)} statements")
    st = statements[0]
    return Source(st.query, st.params(ns), "")  # a query makes a poor title: none


def _steps(opts: Any, src: Source) -> Generator[Any, Any, Chart]:
    c = quote_ident(opts.column)
    g = quote_ident(opts.by) if opts.by else None
    chart = Chart(opts.kind, opts.column, src.title, opts.by)
    group = f"{g} AS grp" if g else "NULL::text AS grp"
    # The column's type (a scalar subquery keeps it even with no row); a wrong column name
    # fails here, with the server's message.
    ((typ,),) = yield (
        src.text(f"SELECT pg_typeof((SELECT {c} FROM pgm_src LIMIT 0))::text"),
        src.params,
    )
    if opts.kind in ("hist", "box") and typ in _TIME_TYPES:
        raise MagicError(f"{opts.kind}: {opts.column!r} is a {typ}; try line --bins N")
    if opts.kind == "hist":
        ((lo, hi),) = yield (
            src.text(f"SELECT min({c})::float8, max({c})::float8 FROM pgm_src"),
            src.params,
        )
        import numpy as np

        bins = opts.bins or 20
        chart.edges = np.histogram_bin_edges(
            np.array([lo, hi] if lo is not None else [0.0, 1.0]), bins=bins
        )
        # width_bucket over the lower edges: the number of edges <= v, so the maximum falls
        # in the last bin, as numpy's last bin is closed.
        lower = ", ".join(repr(float(e)) for e in chart.edges[:-1])
        rows = yield (
            src.text(
                f"SELECT {group}, width_bucket({c}::float8, ARRAY[{lower}]::float8[]) AS k,"
                f" count(*) FROM pgm_src WHERE {c} IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"
            ),
            src.params,
        )
        for grp, k, n in rows:
            counts = chart.data.setdefault(grp, np.zeros(bins, dtype=np.int64))
            counts[k - 1] = n
    elif opts.kind == "box":
        rows = yield (
            src.text(
                f"""SELECT q.grp, q.p[1], q.p[2], q.p[3], q.mean, q.n,
  min(s.v) FILTER (WHERE s.v >= q.p[1] - 1.5 * (q.p[3] - q.p[1])),
  max(s.v) FILTER (WHERE s.v <= q.p[3] + 1.5 * (q.p[3] - q.p[1])),
  count(*) FILTER (WHERE s.v < q.p[1] - 1.5 * (q.p[3] - q.p[1])
                      OR s.v > q.p[3] + 1.5 * (q.p[3] - q.p[1]))
FROM (SELECT {group}, {c}::float8 AS v FROM pgm_src WHERE {c} IS NOT NULL) s
JOIN (SELECT grp, avg(v) AS mean, count(*) AS n,
             percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY v) AS p
      FROM (SELECT {group}, {c}::float8 AS v FROM pgm_src WHERE {c} IS NOT NULL) t
      GROUP BY grp) q ON q.grp IS NOT DISTINCT FROM s.grp
GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1"""
            ),
            src.params,
        )
        for grp, q1, med, q3, mean, n, whislo, whishi, outliers in rows:
            chart.data[grp] = {
                "q1": q1,
                "med": med,
                "q3": q3,
                "mean": mean,
                "whislo": whislo,
                "whishi": whishi,
                "n": n,
                "outliers": outliers,
            }
    else:
        value = "count(*)"
        if opts.y:
            agg = opts.agg or "avg"
            value = f"{agg}({quote_ident(opts.y)})"
            chart.ylabel = f"{agg}({opts.y})"
            chart.measure = f"{agg}({opts.y}) per {opts.column}"
        elif opts.agg and opts.agg != "count":
            raise MagicError("--agg needs --y COLUMN (the column to aggregate)")
        x = c
        if opts.kind == "line" and opts.bins:
            x = yield from _bucketed(src, c, typ, opts.bins, chart)
        if opts.kind == "bar":
            # The --top values of C by rows (or by the aggregate) over all groups.
            query = (
                f"SELECT {x} AS x, {group}, {value} FROM pgm_src WHERE {x} IN ("
                f"SELECT {x} FROM pgm_src GROUP BY 1 ORDER BY {value} DESC NULLS LAST, 1 "
                f"LIMIT {int(opts.top)}) GROUP BY 1, 2"
            )
        else:
            # One more point than allowed tells that there are too many (never all of them).
            query = (
                f"SELECT {x} AS x, {group}, {value} FROM pgm_src GROUP BY 1, 2 ORDER BY 1, 2 "
                f"LIMIT {MAX_POINTS + 1}"
            )
        rows = yield src.text(query), src.params
        if len(rows) > MAX_POINTS:
            raise MagicError(
                f"line: more than {MAX_POINTS:,} points of {opts.column!r}: "
                "add --bins N to bucket them"
            )
        for xv, grp, v in rows:
            chart.data.setdefault(grp, {})[xv] = v
    return chart


def _bucketed(src: Source, c: str, typ: str, bins: int, chart: Chart) -> Generator[Any, Any, str]:
    """SQL for the lower edge of C's equal-width bin, for numbers and times alike."""
    is_time = typ in _TIME_TYPES
    x = f"extract(epoch FROM {c})::float8" if is_time else f"{c}::float8"
    ((lo, hi),) = yield src.text(f"SELECT min({x}), max({x}) FROM pgm_src"), src.params
    if lo is None:
        return c
    width = (hi - lo) / bins or 1.0
    edge = f"({lo!r} + least(floor(({x} - {lo!r}) / {width!r}), {bins - 1}) * {width!r})"
    chart.ylabel += f" per {_span(width)}" if is_time else f" per {width:g}"
    if typ == "timestamp with time zone":
        return f"to_timestamp({edge})"
    if is_time:
        return f"(to_timestamp({edge}) AT TIME ZONE 'UTC')"
    return edge


def _span(seconds: float) -> str:
    """A bin width in seconds, in the unit a reader thinks in."""
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} seconds"


def _draw(chart: Chart) -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise MagicError("plot draws with matplotlib: pip install 'pgmonkey[plot]'") from None

    _fig, ax = plt.subplots()
    title = f"{chart.kind} of {chart.measure or chart.column}"
    title += f" in {chart.title}" if chart.title else ""
    if chart.by:
        title += f" by {chart.by}"
    ax.set_title(title)
    groups = list(chart.data)
    if chart.kind == "hist":
        ax.set_xlabel(chart.column)
        ax.set_ylabel("rows")
        edges = chart.edges
        if chart.by is None:
            counts = chart.data.get(None, [0] * (len(edges) - 1))
            ax.bar(
                edges[:-1], counts, width=edges[1:] - edges[:-1], align="edge", edgecolor="white"
            )
        else:
            for grp in groups:
                ax.stairs(chart.data[grp], edges, label=str(grp))
            ax.legend(title=chart.by)
    elif chart.kind == "box":
        stats = []
        for grp in groups:
            d = chart.data[grp]
            label = "" if chart.by is None else str(grp)
            label += f"\nn={d['n']:,}\n{d['outliers']:,} outliers"
            stats.append({**d, "label": label.strip(), "fliers": []})
        ax.bxp(stats, showfliers=False, showmeans=True)
        ax.set_ylabel(chart.column)
    else:
        ax.set_xlabel(chart.column)
        ax.set_ylabel(chart.ylabel)
        if chart.kind == "bar":
            xs: list[Any] = []
            for grp in groups:
                for x in chart.data[grp]:
                    if x not in xs:
                        xs.append(x)
            totals = {x: sum(chart.data[g].get(x) or 0 for g in groups) for x in xs}
            xs.sort(key=lambda x: -totals[x])
            labels = [str(x) for x in xs]
            bottom = [0.0] * len(xs)
            for grp in groups:
                heights = [float(chart.data[grp].get(x) or 0) for x in xs]
                ax.bar(labels, heights, bottom=bottom, label=None if grp is None else str(grp))
                bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
            if chart.by:
                ax.legend(title=chart.by)
            ax.tick_params(axis="x", labelrotation=45 if len(xs) > 6 else 0)
        else:
            for grp in groups:
                points = sorted(
                    ((x, v) for x, v in chart.data[grp].items() if x is not None),
                    key=lambda p: p[0],
                )
                ax.plot([x for x, _ in points], [v for _, v in points], label=str(grp))
            if chart.by:
                ax.legend(title=chart.by)
            ax.figure.autofmt_xdate()  # dates and long numbers stay readable
    return ax
