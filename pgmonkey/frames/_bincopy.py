"""The binary engine: ``COPY ... (FORMAT binary)`` of fixed-width columns, decoded by numpy.

Used when every result column is an integer, ``float8``, ``bool``, ``date``, ``timestamp``
or ``timestamptz``: the server sends values as they are stored instead of writing them as
text (its float-to-text conversion is slower than the whole client side), and numpy reads
whole blocks of rows at once.

Every row has the same size, so a block of rows is a numpy structured array: NULLs would
break that (a NULL field has no bytes), so each value leaves the server through
``coalesce`` and the NULLs travel in ``int8`` bitmask columns, as in the CSV engine.

Values are those the text engines give:

- ``float8`` in binary is the stored double; the text engines parse the server's text,
  which is the same double unless ``extra_float_digits`` is below 1 (rounded output), in
  which case the server rounds through text for us;
- dates and timestamps outside years 1 to 9999 (BC, infinity) raise the error psycopg's own
  loader raises for them, as the text engines do;
- ``float4`` is not read here: its shortest text (``0.1``) read as a double is not the
  float4 value widened (``0.10000000149011612``), so float4 results take a text engine.
"""

from __future__ import annotations

import mmap
import sys
from typing import TYPE_CHECKING, Any, Final

from psycopg import sql

from ._arrow import frame_of, utc_array
from ._read import (
    _MASK_BITS,
    BOOL,
    DATE,
    FLOAT,
    INT,
    TIMESTAMP,
    TIMESTAMPTZ,
    Column,
    Plan,
    copy_select,
    masks_fit,
)
from ._sqltext import bc_years

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from numpy.typing import NDArray

    # One spelling for every numpy release: a bare ndarray is an error under numpy 2.0's stubs.
    Array = NDArray[Any]

# Wire type of each fixed-width column, by type OID.
_WIRE: Final[dict[int, str]] = {
    20: ">i8",  # int8
    21: ">i2",  # int2
    23: ">i4",  # int4
    26: ">u4",  # oid
    701: ">f8",  # float8
    16: "u1",  # bool
    1082: ">i4",  # date: days since 2000-01-01
    1114: ">i8",  # timestamp: microseconds since 2000-01-01
    1184: ">i8",  # timestamptz: the same, in UTC
}
# What a NULL is sent as (its bitmask says it is NULL): a valid value of every such type.
_FILLER: Final = {INT: "0", FLOAT: "0", BOOL: "f", DATE: "2000-01-01"}
_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00"
_TRAILER: Final = b"\xff\xff"
_READ: Final = 1 << 22
_MAPPED: Final = 1 << 16  # a Growing with room for 64 KiB lives in a memory map of its own
_KEPT_MAPPED: Final = 1 << 18  # ... and keeps it when done if it holds 256 KiB, else is copied
# ... where a private memory map grows in place (mremap): Linux. Elsewhere Python's resize
# of an anonymous map copies it (Windows) or is not there (macOS).
_REMAP: Final = sys.platform.startswith("linux")
_EPOCH_DAYS: Final = 10957  # 2000-01-01 - 1970-01-01
_EPOCH_US: Final = _EPOCH_DAYS * 86_400_000_000
# Years 1 to 9999, as days and microseconds from 2000-01-01 (psycopg's range).
_MIN_DAYS: Final = -730119
_MAX_DAYS: Final = 2921939
_MIN_US: Final = _MIN_DAYS * 86_400_000_000
_MAX_US: Final = (_MAX_DAYS + 1) * 86_400_000_000 - 1


def usable(plan: Plan) -> bool:
    """Whether every column of ``plan`` is fixed-width on the wire (and there is one), and
    their NULL masks fit beside them."""
    n = len(plan.columns)
    return (
        n > 0
        and masks_fit(n, n)
        and all(
            c.oid in _WIRE and c.kind in (INT, FLOAT, BOOL, DATE, TIMESTAMP, TIMESTAMPTZ)
            for c in plan.columns
        )
    )


class FloatRounding:
    """float8 in binary is the stored double; the text engines read the server's text of
    it, the same double unless ``extra_float_digits`` is below 1 (rounded output). So the
    binary engines are told that setting (:meth:`configure`, with the describe row of
    ``_read.describe_and_settings``) and then have such values rounded through text."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.round_floats = False

    def configure(self, row: Any) -> None:
        """Takes the row whose first value is the session's ``extra_float_digits``."""
        self.round_floats = row is not None and int(row[0]) < 1

    def column(self, i: int) -> sql.Composable:
        """The query's column ``i`` as the binary engines select it."""
        ref: sql.Composable = sql.SQL(f"_q.c{i}")
        if self.plan.columns[i].kind == FLOAT and self.round_floats:
            return sql.SQL("{}::text::float8").format(ref)
        return ref


class BinaryPlan(FloatRounding):
    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.n_masks = -(-len(plan.columns) // _MASK_BITS)
        import numpy as np

        fields: list[tuple[str, str]] = [("count", ">i2")]
        for i, col in enumerate(plan.columns):
            fields += [(f"l{i}", ">i4"), (f"c{i}", _WIRE[col.oid])]
        for j in range(self.n_masks):
            fields += [(f"lm{j}", ">i4"), (f"m{j}", ">i8")]
        self.row = np.dtype(fields)
        self.widths = [np.dtype(_WIRE[c.oid]).itemsize for c in plan.columns] + [8] * (self.n_masks)

    def copy_statement(self, query: str) -> sql.Composed:
        exprs: list[sql.Composable] = []
        for i, col in enumerate(self.plan.columns):
            ref = self.column(i)
            filler = _FILLER.get(col.kind, "2000-01-01")
            exprs.append(sql.SQL("coalesce({}, {})").format(ref, sql.Literal(filler)))
        for start in range(0, len(self.plan.columns), _MASK_BITS):
            group = range(start, min(start + _MASK_BITS, len(self.plan.columns)))
            # Scalars only here, so IS NULL is the column's own NULL; a sum of CASEs is the
            # cheapest bitmask for the server to compute, and one num_nulls() call skips it
            # for a row without NULL (20 float8 columns: 40% less server time).
            bits = [
                sql.SQL(f"CASE WHEN _q.c{i} IS NULL THEN {1 << b}::int8 ELSE 0::int8 END")
                for b, i in enumerate(group)
            ]
            exprs.append(
                sql.SQL("CASE WHEN pg_catalog.num_nulls({}) = 0 THEN 0::int8 ELSE {} END").format(
                    sql.SQL(", ").join(sql.SQL(f"_q.c{i}") for i in group),
                    sql.SQL(" + ").join(bits),
                )
            )
        return copy_select(query, exprs, len(self.plan.columns), "binary")

    def decode(self, source: Any) -> tuple[list[Array], list[Array | None]]:
        """The columns (native numpy arrays of the wire values) and their NULL masks.

        ``source`` is a ``_read.CopyReader`` or the list of all its blocks; a mask is ``None``
        where a column has no NULL.
        """
        import numpy as np

        n_cols = len(self.plan.columns)
        names = [f"c{i}" for i in range(n_cols)] + [f"m{j}" for j in range(self.n_masks)]
        columns = [Growing(self.row[name].newbyteorder("=")) for name in names]
        stride = self.row.itemsize
        blocks = iter(source) if isinstance(source, list) else source.blocks()
        head = b""
        pending: list[bytes] = []
        size = 0
        for block in blocks:
            if len(head) < 19 or len(head) < 19 + int.from_bytes(head[15:19], "big"):
                head += block
                if len(head) < 19 or len(head) < 19 + int.from_bytes(head[15:19], "big"):
                    continue
                if head[:11] != _SIGNATURE:
                    raise ValueError("not binary COPY data")
                block = head[19 + int.from_bytes(head[15:19], "big") :]
            pending.append(block)
            size += len(block)
            if size < _READ:
                continue
            buf = b"".join(pending)
            n = len(buf) // stride
            self._take(buf, n, names, columns)
            rest = buf[n * stride :]
            pending, size = [rest], len(rest)
        buf = b"".join(pending)
        n = (len(buf) - len(_TRAILER)) // stride
        if n < 0 or buf[n * stride :] != _TRAILER:
            raise ValueError("binary COPY data ends in the middle of a row")
        self._take(buf, n, names, columns)
        arrays = [column.done() for column in columns]
        masks = arrays[n_cols:]
        isnull: list[Array | None] = []
        for i in range(n_cols):
            mask = masks[i // _MASK_BITS]
            bits = np.bitwise_and(mask, np.int64(1 << (i % _MASK_BITS)))
            isnull.append(bits != 0 if bits.any() else None)
        return arrays[:n_cols], isnull

    def _take(self, buf: bytes, n: int, names: list[str], columns: list[Growing]) -> None:
        import numpy as np

        if n <= 0:
            return
        rows = np.frombuffer(buf, dtype=self.row, count=n)
        self._check(rows)
        for name, column in zip(names, columns, strict=True):
            column.extend(rows[name])

    def _check(self, rows: Array) -> None:
        n_fields = len(self.widths)
        ok = bool((rows["count"] == n_fields).all())
        names = [f"l{i}" for i in range(len(self.plan.columns))] + [
            f"lm{j}" for j in range(self.n_masks)
        ]
        for name, width in zip(names, self.widths, strict=True):
            ok = ok and bool((rows[name] == width).all())
        if not ok:
            raise ValueError("binary COPY rows are not of the expected layout")

    def parse(self, source: Any) -> pd.DataFrame:
        """The binary stream as the DataFrame the text engines give for it."""
        columns, isnull = self.decode(source)
        rows = len(columns[0]) if columns else 0
        values = [
            column_array(_values(columns[i], isnull[i], col), isnull[i], col)
            for i, col in enumerate(self.plan.columns)
        ]
        del columns
        return frame_of(self.plan, values, rows)

    def read_arrow(self, source: Any) -> pa.Table:
        """The binary stream as an Arrow table (NULLs as nulls, NaN as NaN)."""
        import pyarrow as pa

        columns, isnull = self.decode(source)
        arrays = []
        for i, col in enumerate(self.plan.columns):
            values = _values(columns[i], isnull[i], col)
            if col.kind in (TIMESTAMP, TIMESTAMPTZ):
                values = values.view("int64")
            arrays.append(pa.array(values, mask=isnull[i], type=_arrow_type(col)))
        return pa.table(arrays, names=[c.name for c in self.plan.columns])


class Growing:
    """A numpy array that grows in place as rows arrive (one per column).

    Small arrays are numpy's own, resized with ``realloc`` (numpy zero-fills what it adds).
    From ``_MAPPED`` bytes of room on (on Linux), the array lives in an anonymous memory map
    of its own, grown by ``mremap``: its pages are neither copied nor zero-filled when it
    grows, and the room not yet written takes no memory, so the peak memory of a read is
    its data, not the data plus what the last growth added. Either way a column never
    exists twice (pieces plus their concatenation would double the peak memory of a read).
    Room not yet written reads as zeros in both (the compiled decoder writes only the 1s of
    a column's NULL flags).

    No view of the array may be alive when it grows: a memory map refuses to move under one
    (``BufferError``), numpy's own array would be moved from under it.
    """

    def __init__(self, dtype: Any) -> None:
        import numpy as np

        self._array = np.empty(0, dtype=dtype)
        self._map: mmap.mmap | None = None
        self._size = 0

    def extend(self, values: Array) -> None:
        self.room(len(values))[:] = values  # byte order converted while copying
        self.commit(len(values))

    def room(self, n: int, back: int = 0) -> Array:
        """A view of the next ``n`` items (and the ``back`` last ones) to write in place;
        :meth:`commit` then counts what was written."""
        end = self._size + n
        if end > len(self._array):  # the first call sizes it exactly: a small result stays small
            self._grow(max(end, len(self._array) + len(self._array) // 4))
        return self._array[self._size - back : end]

    def _grow(self, items: int) -> None:
        import numpy as np

        dtype = self._array.dtype
        nbytes = items * dtype.itemsize
        if self._map is None and (nbytes < _MAPPED or not _REMAP):
            self._array.resize(items, refcheck=False)
            return
        if self._map is None:  # moves into a map of its own, once
            self._map = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            self._map[: self._size * dtype.itemsize] = self._array[: self._size].tobytes()
        else:
            self._array = np.empty(0, dtype=dtype)  # the map's own view, given up to grow it
            self._map.resize(nbytes)
        self._array = np.frombuffer(self._map, dtype=dtype)

    def commit(self, n: int) -> None:
        self._size += n

    def last(self) -> Any:
        return self._array[self._size - 1]

    def __len__(self) -> int:
        return self._size

    def done(self) -> Array:
        """The array of what was committed, exactly that long (the Growing is done with)."""
        import numpy as np

        dtype = self._array.dtype
        if self._map is None:
            self._array.resize(self._size, refcheck=False)
            array = self._array
        else:
            self._array = np.empty(0, dtype=dtype)
            nbytes = self._size * dtype.itemsize
            if nbytes >= _KEPT_MAPPED:
                self._map.resize(nbytes)
                array = np.frombuffer(self._map, dtype=dtype)
            else:
                # A map costs the process one of its limited mappings (vm.max_map_count,
                # 65530 by default) for as long as the column lives: a small column, which
                # may be kept by the thousand, leaves it for numpy's memory.
                array = np.frombuffer(self._map, dtype=dtype, count=self._size).copy()
                self._map.close()
            self._map = None
        self._array = array[:0]
        self._size = 0
        return array


def _values(raw: Array, isnull: Array | None, col: Column) -> Array:
    """Native values of one column: int64, float64, bool, int32 days or datetime64[us].

    ``raw`` is the decoder's own array: dates and timestamps move to the Unix epoch in place
    (a second array as large as the column would raise the peak memory of the read).
    """
    import numpy as np

    if col.kind == INT:
        return raw.astype(np.int64, copy=False)
    if col.kind == FLOAT:
        return raw
    if col.kind == BOOL:
        return raw.astype(bool)
    if col.kind == DATE:
        _check_range(raw, isnull, col, _MIN_DAYS, _MAX_DAYS)
        raw += np.int32(_EPOCH_DAYS)
        return raw.astype(np.int32, copy=False)
    _check_range(raw, isnull, col, _MIN_US, _MAX_US)
    raw += np.int64(_EPOCH_US)
    return raw.view("datetime64[us]")


def _check_range(raw: Array, isnull: Array | None, col: Column, low: int, high: int) -> None:
    import numpy as np

    bad = (raw < low) | (raw > high)
    if isnull is not None:
        bad &= ~isnull
    if not np.count_nonzero(bad):  # one C call (any() goes through numpy's Python wrapper)
        return
    import psycopg
    from psycopg.types.datetime import DateLoader, TimestampLoader

    # The text engines hand such a value's text to psycopg's loader: so do we, for its error.
    text = _pg_text(int(raw[np.argmax(bad)]), col)
    loader = (DateLoader if col.kind == DATE else TimestampLoader)(col.oid)
    loader.load(text.encode())
    raise psycopg.DataError(f"{text!r} is outside years 1 to 9999")  # pragma: no cover


def _pg_text(raw: int, col: Column) -> str:
    """How PostgreSQL writes a date or timestamp of the wire value ``raw`` (ISO DateStyle)."""
    import numpy as np

    limit = (1 << 31) - 1 if col.kind == DATE else (1 << 63) - 1
    if raw == limit:
        return "infinity"
    if raw == -limit - 1:
        return "-infinity"
    if col.kind == DATE:
        return bc_years(np.datetime_as_string(np.datetime64(raw + _EPOCH_DAYS, "D"), unit="D"))
    # In seconds: microseconds since 1970 overflow int64 in PostgreSQL's last 30 years.
    seconds, micros = divmod(raw + _EPOCH_US, 1_000_000)
    day, _, whole = np.datetime_as_string(np.datetime64(seconds, "s"), unit="s").partition("T")
    fraction = f"{micros:06d}".rstrip("0")
    return bc_years(f"{day} {whole}.{fraction}" if fraction else f"{day} {whole}")


def column_array(values: Array, isnull: Array | None, col: Column) -> Any:
    """One column as the array (numpy, or a pandas extension array) of the text engines'
    dtype; ``values`` (ours alone) is reused, not copied."""
    import numpy as np
    import pandas as pd

    if col.kind == INT:
        return values if isnull is None else pd.arrays.IntegerArray(values, isnull)
    if col.kind == BOOL:
        return values if isnull is None else pd.arrays.BooleanArray(values, isnull)
    if col.kind == DATE:
        values = (values.astype(np.int64) * 86_400).view("datetime64[s]")
    if isnull is not None:
        values[isnull] = np.datetime64("NaT") if col.kind != FLOAT else np.nan
    if col.kind == TIMESTAMPTZ:
        return utc_array(values)
    return values


def _arrow_type(col: Column) -> pa.DataType:
    import pyarrow as pa

    if col.kind == INT:
        return pa.int64()
    if col.kind == FLOAT:
        return pa.float64()
    if col.kind == BOOL:
        return pa.bool_()
    if col.kind == DATE:
        return pa.date32()
    if col.kind == TIMESTAMPTZ:
        return pa.timestamp("us", tz="UTC")
    return pa.timestamp("us")
