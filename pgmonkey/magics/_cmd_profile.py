"""``profile``: per-column statistics of a table, computed by the server.

``%pgmonkey profile TABLE [--schema S]`` sends one aggregate statement for the whole table
(every column's count, nulls, distinct, min/max, mean/stddev and quartiles side by side in
one ``SELECT``), plus, when the table has text-like columns, one ``GROUPING SETS`` statement
for their most frequent values (one scan for all of them). Only the aggregates travel.

Distinct counts are exact (``count(DISTINCT ...)``) on tables the planner believes smaller
than ``--exact-below`` rows; above, they come from ``pg_stats`` (what ``ANALYZE`` sampled)
where it has them, and the ``distinct_estimated`` column says which.

The statements are built by one generator (:func:`_steps`) that yields queries and receives
their rows, run by the shared drivers of :mod:`._steps`.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

from psycopg import sql

from ._args import ArgumentParser, expander
from ._steps import Query, drive

if TYPE_CHECKING:
    import pandas as pd

    from ._magic import PgMonkeyMagics

#: Tables estimated below this many rows get exact distinct counts.
EXACT_BELOW = 1_000_000
QUARTILES = (0.25, 0.5, 0.75)
COLUMNS = (
    "column",
    "type",
    "count",
    "nulls",
    "distinct",
    "distinct_estimated",
    "min",
    "max",
    "mean",
    "std",
    "p25",
    "p50",
    "p75",
    "top",
)

_CATALOG = """\
SELECT n.nspname, c.relname, c.reltuples::float8,
       a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory, t.typname, s.n_distinct
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_stats s
       ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = a.attname
      AND NOT s.inherited
WHERE c.oid = %s::regclass
ORDER BY a.attnum"""

_TIMES = frozenset({"date", "timestamp", "timestamptz"})
_ORDERED = frozenset("NDSTE")  # numbers, times, strings, intervals, enums: min/max exist
_TOP = frozenset("SBE")  # strings, booleans, enums: their most frequent values
_EQUALITY = frozenset("NDSTEB")  # categories whose types all have "=" for DISTINCT


def profile(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
    p = ArgumentParser(prog="%pgmonkey profile")
    expand = expander(magics.shell, ns)
    p.add_argument("table", type=expand, help="table or view (resolved like in SQL)")
    p.add_argument("--schema", type=expand, help="schema of the table")
    p.add_argument("--top", type=int, default=3, help="most frequent text values (default 3)")
    p.add_argument(
        "--exact-below",
        type=int,
        default=EXACT_BELOW,
        help=f"exact distinct counts below this many rows (default {EXACT_BELOW:,})",
    )
    p.add_argument("--conn", help="connection name (default: the current one)")
    opts = p.parse_args(args)
    name = f"{opts.schema}.{opts.table}" if opts.schema else opts.table

    import pandas as pd

    records = drive(magics, opts.conn, lambda: _steps(name, opts.top, opts.exact_below))
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))


Step = tuple[Query, Any]


def _steps(
    name: str, top: int, exact_below: int
) -> Generator[Step, list[Any], list[dict[str, Any]]]:
    """Queries to run (yielded) and their rows (sent back); returns one record per column."""
    catalog = yield _CATALOG, [name]
    if not catalog:  # a relation without columns
        return []
    schema, relname, reltuples = catalog[0][0], catalog[0][1], catalog[0][2]
    table = sql.Identifier(schema, relname)
    exact = reltuples < exact_below  # -1 (never analyzed) counts as small
    records: list[dict[str, Any]] = []
    exprs: list[sql.Composable] = [sql.SQL("count(*)")]
    plan: list[tuple[dict[str, Any], list[str]]] = []  # record, names of its aggregates
    for _s, _r, _t, col, typ, category, typname, n_distinct in catalog:
        c = sql.Identifier(col)
        rec: dict[str, Any] = dict.fromkeys(COLUMNS)
        rec.update(column=col, type=typ)
        names = ["count"]
        exprs.append(sql.SQL("count({})").format(c))
        estimate = _estimated_distinct(n_distinct, reltuples) if not exact else None
        if estimate is None:
            distinct = c if category in _EQUALITY else sql.SQL("{}::text").format(c)
            exprs.append(sql.SQL("count(DISTINCT {})").format(distinct))
            names.append("distinct")
            rec["distinct_estimated"] = False
        else:
            rec["distinct"], rec["distinct_estimated"] = estimate, True
        if category in _ORDERED:
            exprs += [sql.SQL("min({})").format(c), sql.SQL("max({})").format(c)]
            names += ["min", "max"]
        quartiles = sql.Literal(list(QUARTILES))
        if category == "N":
            x = sql.SQL("{}::float8").format(c)
            exprs += [
                sql.SQL("avg({})").format(x),
                sql.SQL("stddev_samp({})").format(x),
                sql.SQL("percentile_cont({}::float8[]) WITHIN GROUP (ORDER BY {})").format(
                    quartiles, x
                ),
            ]
            names += ["mean", "std", "quartiles"]
        elif typname in _TIMES:
            epoch = sql.SQL("extract(epoch FROM {})").format(c)
            mean = sql.SQL("to_timestamp(avg({})::float8)").format(epoch)
            if typname != "timestamptz":  # a wall-clock mean for wall-clock times
                mean = sql.SQL("({} AT TIME ZONE 'UTC')").format(mean)
            exprs += [
                mean,
                sql.SQL("make_interval(secs => stddev_samp({})::float8)").format(epoch),
                sql.SQL("percentile_disc({}::float8[]) WITHIN GROUP (ORDER BY {})").format(
                    quartiles, c
                ),
            ]
            names += ["mean", "std", "quartiles"]
        records.append(rec)
        plan.append((rec, names))
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(exprs), table)
    (row,) = yield query, None
    total, values = row[0], iter(row[1:])
    for rec, names in plan:
        for key in names:
            value = next(values)
            if key == "quartiles":
                rec["p25"], rec["p50"], rec["p75"] = value or (None, None, None)
            else:
                rec[key] = value
        rec["nulls"] = total - rec["count"]
    texts = [
        (rec, sql.Identifier(col))
        for rec, (_s, _r, _t, col, _ty, category, *_rest) in zip(records, catalog, strict=True)
        if category in _TOP
    ]
    if top > 0 and total:
        for rec, _c in texts:
            rec["top"] = ""
        # GROUPING() takes at most 31 arguments: wider tables take one scan per 31 columns.
        for start in range(0, len(texts), 31):
            chunk = texts[start : start + 31]
            found = yield _top_query(table, [c for _rec, c in chunk], top), None
            for index, value, count in found:
                rec = chunk[index][0]
                rec["top"] += f"{', ' if rec['top'] else ''}{value}: {count:,}"
    return records


def _top_query(table: sql.Composable, cols: list[sql.Composable], top: int) -> sql.Composed:
    """The *top* most frequent non-NULL values of each column, in one scan (GROUPING SETS).

    ``GROUPING(c1, ..., ck)`` tells the grouping set of a row: for the set ``(ci)`` every
    bit is set but the one of ``ci`` (the first argument is the most significant bit).
    """
    k = len(cols)
    which = sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(sql.Literal((1 << k) - 1 - (1 << (k - 1 - i))), i)
        for i in range(k)
    )
    value = sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}::text").format(sql.Literal(i), c) for i, c in enumerate(cols)
    )
    sets = sql.SQL(", ").join(sql.SQL("({})").format(c) for c in cols)
    notnull = sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {} IS NOT NULL").format(sql.Literal(i), c) for i, c in enumerate(cols)
    )
    # Aliases that no user column is likely to shadow in the inner query.
    return sql.SQL(
        "SELECT pgm_set, pgm_value, pgm_n FROM ("
        " SELECT pgm_set, pgm_value, pgm_n,"
        "  row_number() OVER (PARTITION BY pgm_set ORDER BY pgm_n DESC, pgm_value) AS pgm_rank"
        " FROM ("
        "  SELECT pgm_set, CASE pgm_set {value} END AS pgm_value, pgm_n FROM ("
        "   SELECT CASE GROUPING({all}) {which} END AS pgm_set, {all}, count(*) AS pgm_n"
        "   FROM {table} GROUP BY GROUPING SETS ({sets})) g"
        "  WHERE CASE pgm_set {notnull} END) h) t "
        "WHERE pgm_rank <= {top} ORDER BY pgm_set, pgm_rank"
    ).format(
        value=value,
        all=sql.SQL(", ").join(cols),
        which=which,
        table=table,
        sets=sets,
        notnull=notnull,
        top=sql.Literal(top),
    )


def _estimated_distinct(n_distinct: float | None, reltuples: float) -> int | None:
    """``pg_stats.n_distinct`` as a count: negative values are a fraction of the rows."""
    if n_distinct is None:
        return None
    return round(-n_distinct * reltuples) if n_distinct < 0 else round(n_distinct)
