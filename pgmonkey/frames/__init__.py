"""DataFrames in and out of PostgreSQL through ``COPY``: the idea of the frames package.

- :func:`read_sql` / :func:`read_sql_async`: a query's result as a DataFrame, streamed from
  ``COPY (query) TO STDOUT`` with one dtype per column chosen from the result description
  (``_read``: the plan and the parse).
- :func:`to_sql` / :func:`to_sql_async`: a DataFrame into a table through ``COPY ... FROM
  STDIN`` in one transaction (``_write``: column types and the text path; ``_binary``: the
  binary COPY encoder for fixed-width columns).

- :func:`read_arrow` / :func:`read_polars` (and async twins): the same result as a
  ``pyarrow.Table`` or a ``polars.DataFrame``, without a pandas step.

``_api`` holds the entry points and how they reach a connection; ``_engines`` picks how a
result is read: binary COPY decoded by numpy (``_bincopy``) for fixed-width columns, Arrow's
CSV reader (``_arrow``) otherwise, pandas' CSV reader (``_read``) for non-UTF-8 sessions.
With ``partition_on=`` and ``partitions=``, the readers plan ranges of a column
(``_partition``, the planner ``pgmonkey.dask`` uses too) and read them over several
connections at once (``_parallel``).

:func:`to_sql` stores what PostgreSQL itself would store for the same values bound to an
``INSERT``: a column is a value of its natural type (the reverse of the table below;
``uint64`` is ``numeric``, an object column takes the type of its first value, a numpy
scalar its dtype's), missing values (``pandas.isna``) are NULL, and appending into columns
of other types lets the server cast them as it casts parameters, in the session's
``TimeZone`` and ``client_encoding``. A value the server refuses raises psycopg's error
naming the column, row and value; nothing is written.

Dtypes of :func:`read_sql`:

==========================  =============================================================
PostgreSQL                  pandas
==========================  =============================================================
int2, int4, int8, oid       ``int64`` (``Int64`` when a NULL occurs)
float4, float8              ``float64`` (NULL and NaN are both NaN)
numeric                     ``float64``; ``decimal=True``: ``object`` of ``Decimal``
bool                        ``bool`` (``boolean`` when a NULL occurs)
text, varchar, char, name   pandas' default string dtype (``str`` on pandas 3); NULL is NA
timestamptz                 ``datetime64[us, UTC]``
timestamp                   ``datetime64[us]``
date                        ``datetime64[s]``
anything else               ``object`` of the values psycopg loads (json, arrays, bytea, ...)
==========================  =============================================================
"""

from __future__ import annotations

from ._api import (
    read_arrow,
    read_arrow_async,
    read_polars,
    read_polars_async,
    read_sql,
    read_sql_async,
    to_sql,
    to_sql_async,
)

__all__ = [
    "read_arrow",
    "read_arrow_async",
    "read_polars",
    "read_polars_async",
    "read_sql",
    "read_sql_async",
    "to_sql",
    "to_sql_async",
]
