"""Dask DataFrames from and to PostgreSQL, from one pgmonkey config (``pgmonkey[dask]``).

- :func:`read_sql`: a query or a table as a Dask DataFrame, split by ranges of a column or
  by the table's blocks; each task reads its partition through pgmonkey's COPY path on its
  own connection, with the dtypes :func:`pgmonkey.read_sql` gives the whole result;
  ``consistent=True`` reads every partition in one snapshot, held until the frame is gone
  or :func:`release` ends it.
- :func:`to_sql`: a Dask DataFrame into a table, partitions in parallel through COPY into a
  staging table, made visible in one transaction; a failure leaves the target as it was.

Tasks carry the config's path (or a config dict whose secrets are references resolved on
the worker), never a password. ``import pgmonkey`` does not import this package, nor Dask.
"""

from __future__ import annotations

from ._read import read_sql, release
from ._write import to_sql

__all__ = ["read_sql", "release", "to_sql"]
