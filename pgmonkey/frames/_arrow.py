"""The Arrow CSV engine: the COPY's CSV stream parsed by ``pyarrow.csv`` on Arrow's threads.

PostgreSQL's CSV writes NULL as an empty unquoted field and ``''`` as ``""``; Arrow's reader
tells the two apart (``quoted_strings_can_be_null=False``), so no NULL bitmask travels with
the data and strings stay in Arrow memory, which pandas' ``str`` dtype uses as is.

Every column is parsed to a type that cannot reject a value PostgreSQL writes (integers,
floats, booleans, strings); dates and timestamps arrive as strings and are cast by Arrow,
and a column whose values Arrow's ISO parser rejects (BC, infinity, year 10000 and beyond)
goes through psycopg's loaders exactly as in the CSV engine of ``_read``. Columns of other
types are loaded value by value by psycopg, as there.

The result is first the Arrow table ``read_arrow`` returns (its types are listed there);
:meth:`ArrowCsvPlan.to_pandas` turns it into the frame ``_read.Plan.parse`` would give, dtype
for dtype.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final

from psycopg import sql

from ._read import (
    _DATETIME_KINDS,
    BOOL,
    DATE,
    FLOAT,
    INT,
    NUMERIC,
    OTHER,
    TEXT,
    TIMESTAMP,
    TIMESTAMPTZ,
    Plan,
    _reload_datetimes,
    copy_select,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd
    import pyarrow as pa

# The stream is read after one line of our own, skipped: Arrow drops a UTF-8 byte order mark
# at the very start of its input, and there it would be the first value's own U+FEFF.
_LEAD: Final = b"-\n"
_BLOCK: Final = 1 << 20
_MAX_BLOCK: Final = (1 << 31) - 1  # Arrow's block size is an int32
_BATCH_ROWS: Final = 1 << 16  # from this many rows, Arrow converts the columns to pandas


# The pandas dtype each kind of column gets (as str(dtype)).
_DTYPES: Final = {
    INT: "int64",
    BOOL: "bool",
    FLOAT: "float64",
    NUMERIC: "float64",
    TEXT: "str",
    DATE: "datetime64[s]",
    TIMESTAMP: "datetime64[us]",
    TIMESTAMPTZ: "datetime64[us, UTC]",
}


def available() -> bool:
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return False
    return True


class ArrowCsvPlan:
    """Reads one result through ``COPY ... (FORMAT csv)`` into Arrow, then pandas or Arrow."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def copy_statement(self, query: str) -> sql.Composed:
        """``COPY (SELECT ... FROM (query) AS _q(c0, ...)) TO STDOUT (FORMAT csv)``."""
        exprs: list[sql.Composable] = []
        for i, col in enumerate(self.plan.columns):
            ref: sql.Composable = sql.SQL(f"_q.c{i}")
            if col.kind == TIMESTAMPTZ:
                ref = sql.SQL("({} AT TIME ZONE 'UTC')").format(ref)
            exprs.append(ref)
        return copy_select(query, exprs, len(self.plan.columns), "csv")

    def read_arrow(self, source: Any) -> pa.Table:
        """The CSV stream as an Arrow table (other types as text).

        ``source``: a file-like object, or the list of all its blocks.
        """
        import pyarrow as pa
        import pyarrow.csv as csv

        names = [f"c{i}" for i in range(len(self.plan.columns))]
        types = {
            name: _csv_type(col.kind) for name, col in zip(names, self.plan.columns, strict=True)
        }

        def read(stream: Any, block_size: int) -> pa.Table:
            return csv.read_csv(
                stream,
                read_options=csv.ReadOptions(
                    column_names=names, skip_rows=1, block_size=block_size, use_threads=True
                ),
                parse_options=csv.ParseOptions(
                    newlines_in_values=True, ignore_empty_lines=False, double_quote=True
                ),
                convert_options=csv.ConvertOptions(
                    column_types=types,
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    true_values=["t"],
                    false_values=["f"],
                ),
            )

        if isinstance(source, list):  # all of the stream, as received: no Python file to read
            longest = max((len(block) for block in source), default=0)
            table = read(pa.BufferReader(b"".join([_LEAD, *source])), _block_size(longest))
        else:
            tables = [read(part, size) for part, size in _segments(source.blocks())]
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        columns = [self._finish(table.column(i), col) for i, col in enumerate(self.plan.columns)]
        return pa.table(columns, names=[c.name for c in self.plan.columns])

    def parse(self, source: Any) -> pd.DataFrame:
        """The CSV stream as the DataFrame ``Plan.parse`` gives for it."""
        return self.to_pandas(self.read_arrow(source))

    def to_pandas(self, table: pa.Table) -> pd.DataFrame:
        import pyarrow as pa

        # Arrow converts the columns whose default pandas dtype is already the one we give,
        # on its threads and without consolidating them into blocks; the others (nullable
        # integers and booleans, loaded types) and any column an older pyarrow converts to
        # another dtype are converted one by one, as are all columns of a small result
        # (Table.to_pandas costs a fixed 0.2 ms or so).
        if table.num_rows < _BATCH_ROWS:
            return frame_of(
                self.plan,
                [self._values(table, i) for i in range(len(self.plan.columns))],
                table.num_rows,
            )
        values: list[Any] = [None] * table.num_columns
        batch: dict[str, Any] = {}
        for i, col in enumerate(self.plan.columns):
            column = table.column(i)
            if col.kind == OTHER:
                values[i] = self._objects(column, col)
            elif col.kind in (INT, BOOL) and column.null_count:
                values[i] = to_values(column, col.kind)
            elif col.kind == DATE:
                batch[str(i)] = column.cast(pa.timestamp("s"))
            else:
                batch[str(i)] = column
        if batch:
            converted = pa.table(batch).to_pandas(split_blocks=True, self_destruct=True)
            del batch
            for key in converted.columns:
                i = int(key)
                col = self.plan.columns[i]
                array = converted[key].array
                if str(array.dtype) != _DTYPES[col.kind]:
                    array = to_values(table.column(i), col.kind)
                values[i] = _owned(array)
        return frame_of(self.plan, values, table.num_rows)

    def _values(self, table: pa.Table, i: int) -> Any:
        col = self.plan.columns[i]
        if col.kind == OTHER:
            return self._objects(table.column(i), col)
        return to_values(table.column(i), col.kind)

    def _finish(self, column: pa.ChunkedArray, col: Any) -> pa.ChunkedArray:
        if col.kind in _DATETIME_KINDS:
            return _datetimes(column, col)
        return column

    def _objects(self, column: pa.ChunkedArray, col: Any) -> pd.Series:
        import pandas as pd

        load = self.plan.loaders[col.oid].load
        encoding = self.plan.encoding
        values = [None if v is None else load(v.encode(encoding)) for v in column.to_pylist()]
        # A Series, not an object array: the DataFrame constructor would infer a dtype
        # (timedelta64 for intervals) from an object array.
        return pd.Series(values, dtype=object)


def _csv_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    if kind == INT:
        return pa.int64()
    if kind in (FLOAT, NUMERIC):
        return pa.float64()
    if kind == BOOL:
        return pa.bool_()
    return pa.large_string()  # the string type pandas and Polars keep: no conversion


def _datetimes(column: pa.ChunkedArray, col: Any) -> pa.ChunkedArray:
    import pyarrow as pa
    import pyarrow.compute as pc

    target = pa.date32() if col.kind == DATE else pa.timestamp("us")
    try:
        cast = pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import pandas as pd

        # What Arrow's ISO parser rejects is decided by psycopg, as in the CSV engine.
        series = _reload_datetimes(pd.Series(column.to_pylist(), dtype=object), col)
        series = Plan._finish(series, col)
        if col.kind == DATE:
            return pa.chunked_array([pa.array(series.dt.date, type=pa.date32())])
        return pa.chunked_array([pa.array(series.dt.tz_localize(None), type=pa.timestamp("us"))])
    if col.kind == TIMESTAMPTZ:
        return cast.cast(pa.timestamp("us", tz="UTC"))
    return cast


def to_values(column: Any, kind: str) -> Any:
    """One Arrow column as the array (numpy or pandas) of the dtype ``Plan.parse`` gives."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if kind in (INT, BOOL):
        if not column.null_count:
            return _numpy(column, np.int64 if kind == INT else bool)
        values = column.fill_null(0 if kind == INT else False)
        mask = _numpy(column.is_null(), bool)
        if kind == INT:
            return pd.arrays.IntegerArray(_numpy(values, np.int64), mask)
        return pd.arrays.BooleanArray(_numpy(values, bool), mask)
    if kind in (FLOAT, NUMERIC):
        return _numpy(column, np.float64)
    if kind == TEXT:
        target = str_dtype()
        if target.storage == "pyarrow" and pa.types.is_large_string(column.type):
            # pandas' str dtype keeps exactly this: the Arrow memory, wrapped, not converted.
            return pd.arrays.ArrowStringArray(column, dtype=target)
        series = column.to_pandas()
        # pandas' default string dtype (``str``), as read_csv gives; older pyarrow releases
        # convert a column without any value to object.
        return (series if series.dtype == target else series.astype(target)).array
    if kind == DATE:
        return _numpy(column.cast(pa.timestamp("s")), "datetime64[s]")
    if kind == TIMESTAMP:
        return _numpy(column, "datetime64[us]")
    if kind == TIMESTAMPTZ:
        return utc_array(_numpy(column, "datetime64[us]"))
    raise AssertionError(kind)  # pragma: no cover


def _numpy(column: Any, dtype: Any) -> Any:
    """An Arrow column as a numpy array of ``dtype`` the frame can own: Arrow's own memory
    is read-only, and a frame of it refuses assignments ("assignment destination is
    read-only"), so what is not a copy already is copied."""
    values = column.to_numpy()
    return values.astype(dtype, copy=not values.flags.writeable)


def _owned(array: Any) -> Any:
    """A column Arrow converted to pandas, copied where it is a view of Arrow's read-only
    memory (``to_pandas`` lends the columns it can): see :func:`_numpy`."""
    import numpy as np

    array = _unwrapped(array)
    if isinstance(array, np.ndarray):
        return array if array.flags.writeable else array.copy()
    if array.dtype.kind == "M":  # datetime64, naive or with a time zone: a numpy array inside
        return array if array.view("i8").flags.writeable else array.copy()
    return array


def utc_array(values: Any) -> Any:
    """UTC wall times (``datetime64[us]``, ours alone) as a ``datetime64[us, UTC]`` pandas
    array of the same memory."""
    import pandas as pd

    return pd.array(values.view("int64"), dtype=_utc_dtype(), copy=False)


@functools.cache
def _utc_dtype() -> pd.DatetimeTZDtype:
    import pandas as pd

    return pd.DatetimeTZDtype(unit="us", tz="UTC")


def frame_of(plan: Plan, values: list[Any], rows: int) -> pd.DataFrame:
    """A DataFrame of one array per column, each its own block, taken as it is: not copied
    (``pd.concat`` would copy), not inferred again (the ``DataFrame`` constructor would, at
    a fixed cost that is most of a small read's)."""
    import numpy as np
    import pandas as pd

    if not values:
        frame = pd.DataFrame(index=pd.RangeIndex(rows))
        frame.columns = pd.Index([c.name for c in plan.columns])
        return frame
    from pandas.api.internals import create_dataframe_from_blocks

    places = np.arange(len(values))
    blocks = []
    for i, array in enumerate(map(_unwrapped, values)):
        # A numpy block is 2D, one row per column; an extension array stays 1D.
        blocks.append(
            (array.reshape(1, -1) if isinstance(array, np.ndarray) else array, places[i : i + 1])
        )
    return create_dataframe_from_blocks(blocks, index=pd.RangeIndex(rows), columns=_labels(plan))


def _unwrapped(array: Any) -> Any:
    """A column as a block takes it: a Series' array, and of a pandas array of a numpy
    dtype its ndarray (not of a subclass's: pandas' StringArray, a str column of Python
    storage, stays itself)."""
    import pandas as pd

    if isinstance(array, pd.Series):
        array = array.array
    return array.to_numpy() if type(array) is pd.arrays.NumpyExtensionArray else array


def _labels(plan: Plan) -> pd.Index:
    """The column labels, of the dtype pandas infers for names: pandas' str dtype, made
    straight from the names (inferring it is most of a small frame's making), or whatever
    ``pd.Index`` gives where the caller set pandas' options otherwise (the deprecated
    ``future.infer_string`` off: object; ``mode.string_storage`` python)."""
    import pandas as pd
    import pyarrow as pa

    names = [c.name for c in plan.columns]
    dtype = str_dtype()
    if not _infers_str() or dtype.storage != "pyarrow":
        return pd.Index(names)
    strings = pd.arrays.ArrowStringArray(pa.array(names, type=pa.large_string()), dtype=dtype)
    return pd.Index(strings, copy=False)


def _infers_str() -> bool:
    """Whether pandas infers its str dtype for strings: the function pandas itself asks
    (private; reading the option publicly warns of its deprecation). A pandas without it
    has no such option: str always."""
    try:
        from pandas._config import using_string_dtype
    except ImportError:  # pragma: no cover - a pandas after the option's removal
        return True
    return bool(using_string_dtype())


def str_dtype() -> pd.StringDtype:
    """pandas' default string dtype (``str``), as ``read_csv`` gives it (made at each call:
    its storage follows pandas' ``mode.string_storage`` option)."""
    import numpy as np
    import pandas as pd

    return pd.StringDtype(na_value=np.nan)


def _block_size(longest: int) -> int:
    """Arrow's block size for blocks of up to ``longest`` bytes: at least twice that.

    Every block of a COPY stream holds whole rows (the receive loop appends rows), so no row
    is longer than its block; Arrow's reader fails on a row longer than its block size
    ("straddling object straddles two block boundaries").
    """
    size = _BLOCK
    while size < 2 * longest and size < _MAX_BLOCK:
        size = min(size * 2, _MAX_BLOCK)
    return size


def _segments(blocks: Iterator[bytes]) -> Iterator[tuple[_Segment, int]]:
    """The stream as consecutive parts, each with the block size Arrow reads it with.

    A part ends before a block that wants another block size: a longer one (it may hold a
    row Arrow could not read with this size), or, after long rows, a short one again (so
    that Arrow's read-ahead of large blocks ends with them). Results without a long value
    are one part.
    """
    first: bytes | None = next(blocks, None)
    while True:
        size = _block_size(len(first or b""))
        part = _Segment(first, blocks, size)
        yield part, size
        if part.stopped_before is None:
            return
        first = part.stopped_before


class _Segment:
    """A file-like object: one line of ours (see ``_LEAD``), then ``first`` and the blocks
    that follow it, up to (not including) the first one that wants another block size than
    ``size``, which it keeps in :attr:`stopped_before`."""

    def __init__(self, first: bytes | None, blocks: Iterator[bytes], size: int) -> None:
        self._first = first
        self._blocks = blocks
        self._size = size
        self._head = _LEAD
        self._pos = 0
        self._ended = False
        self.stopped_before: bytes | None = None
        self.closed = False

    def _fetch(self) -> bytes | None:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        block = next(self._blocks, None)
        if block is not None and _block_size(len(block)) != self._size:
            self.stopped_before = block
            return None
        return block

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        got = 0
        while size < 0 or got < size:
            if self._pos >= len(self._head):
                block = None if self._ended else self._fetch()
                if block is None:
                    self._ended = True
                    break
                self._head, self._pos = block, 0
            left = len(self._head) - self._pos
            take = left if size < 0 else min(size - got, left)
            whole = take == len(self._head)
            parts.append(self._head if whole else self._head[self._pos : self._pos + take])
            self._pos += take
            got += take
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
