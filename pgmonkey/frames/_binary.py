"""DataFrame chunks -> PostgreSQL binary COPY, built with numpy (no per-value Python).

Used by ``to_sql`` when every column has a binary form here (bigint, real, double
precision, boolean, timestamp, timestamptz, text); frames with other types go through CSV.
Each column is encoded to (lengths, bytes) arrays: fixed-width values by numpy, text joined
and encoded once (or, for pandas' Arrow-backed strings in a UTF-8 session, taken as Arrow
holds them: UTF-8 bytes and offsets). The rows are then assembled in one pass by
``_binencode.c`` when it is built, else by scattering the bytes at computed offsets with
numpy, into one buffer per chunk: the same bytes either way.
"""

from __future__ import annotations

import codecs
import functools
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import psycopg

from ._write import Rejected

if TYPE_CHECKING:
    import pandas as pd

BINARY_TYPES: Final = frozenset(
    {"bigint", "real", "double precision", "boolean", "timestamp", "timestamptz", "text"}
)
HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER: Final = b"\xff\xff"
_PG_EPOCH_US: Final = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970
_FIXED: Final = {"bigint": ">i8", "real": ">f4", "double precision": ">f8", "boolean": "u1"}
# PostgreSQL's timestamps run from 4714-11-24 BC to the end of 294276 AD.
_PG_MIN_US: Final = -211_813_488_000_000_000  # its first, in microseconds since 2000
_PG_END_US: Final = 9_223_371_331_200_000_000  # the first past its last
_PER_MICRO: Final = {"s": 1_000_000, "ms": 1_000, "us": 1}  # microseconds in one unit
_NAT: Final = np.iinfo(np.int64).min  # NaT as int64, in every unit
_INT64_MAX: Final = int(np.iinfo(np.int64).max)


def chunks(df: pd.DataFrame, types: list[str], rows: int, encoding: str) -> Iterator[bytes]:
    """The whole binary COPY stream: header, rows in chunks of ``rows``, trailer."""
    yield HEADER
    for start in range(0, len(df), rows):
        yield _chunk(df.iloc[start : start + rows], types, encoding, start)
    yield TRAILER


@functools.cache
def _encoder() -> Any:
    if os.environ.get("PGMONKEY_IMPL", "").lower() == "python":
        return None
    try:
        from . import _binencode
    except ImportError:  # built without a C compiler
        return None
    return _binencode.encode


def _chunk(part: pd.DataFrame, types: list[str], encoding: str, first: int) -> bytes:
    n = len(part)
    encoded = []
    for i, pg in enumerate(types):
        try:
            encoded.append(_encode(part.iloc[:, i], pg, encoding))
        except Rejected as rejected:
            raise Rejected(rejected.kind, rejected.message, i, first + rejected.row) from None
    encode = _encoder()
    if encode is not None:
        fields = [
            (lengths, *data, 0) if isinstance(data, tuple) else (lengths, data, None, data.shape[1])
            for lengths, data in encoded
        ]
        result: bytes = encode(n, fields)
        return result
    return _assemble(n, encoded)


def _assemble(n: int, encoded: list[tuple[Any, Any]]) -> bytes:
    """The rows of :func:`_chunk`, put together by numpy (without the compiled encoder)."""
    # Field sizes per row: 4 length bytes, plus the data when not NULL.
    size = np.full(n, 2, dtype=np.int64)
    for lengths, _ in encoded:
        size += 4 + np.maximum(lengths, 0)
    start = np.zeros(n, dtype=np.int64)
    np.cumsum(size[:-1], out=start[1:])
    buf = np.empty(int(size.sum()), dtype=np.uint8)
    _scatter(buf, start, np.full((n, 1), len(encoded), dtype=">i2").view(np.uint8))
    pos = start + 2
    for lengths, data in encoded:
        _scatter(buf, pos, lengths.astype(">i4").reshape(n, 1).view(np.uint8))
        pos += 4
        valid = lengths >= 0
        if isinstance(data, tuple):  # variable width: (bytes, where each row's value starts)
            flat, starts = data
            lens = lengths[valid].astype(np.int64)
            total = int(lens.sum())
            if total:
                within = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
                buf[np.repeat(pos[valid], lens) + within] = flat[
                    np.repeat(starts[valid], lens) + within
                ]
        elif valid.all():
            _scatter(buf, pos, data)
        else:
            _scatter(buf, pos[valid], data[valid])
        pos += np.maximum(lengths, 0)
    return buf.tobytes()


def _scatter(buf: Any, pos: Any, data: Any) -> None:
    """Write row ``i`` of the 2-D uint8 array ``data`` at ``buf[pos[i]:]``."""
    width = data.shape[1]
    buf[pos[:, None] + np.arange(width)] = data


def _pg_micros(series: pd.Series) -> Any:
    """PostgreSQL's timestamps: microseconds since 2000 (int64; a NULL's value is not sent).

    Nanoseconds are rounded as the server rounds text: it reads a fraction of a second with
    ``rint(strtod(fraction) * 1e6)``, and the same double arithmetic here gives the same
    microsecond (ties to even). Seconds and milliseconds are scaled in their own unit (numpy's
    cast between units wraps around silently), after a check against PostgreSQL's range that
    the server would make too, so no value wraps around into another.
    """
    unit = series.dt.unit
    if unit == "ns":  # years 1677 to 2262: within range, and no overflow below
        ns = series.to_numpy(dtype="datetime64[ns]").view(np.int64)
        seconds = ns // 1_000_000_000  # floor: the fraction of a time before 1970 is positive
        fraction = ns - seconds * 1_000_000_000
        micros = np.rint((fraction / 1e9) * 1e6).astype(np.int64)
        return seconds * 1_000_000 + micros - _PG_EPOCH_US
    values = series.to_numpy(dtype=f"datetime64[{unit}]").view(np.int64)
    per = _PER_MICRO[unit]
    epoch = _PG_EPOCH_US // per
    # PostgreSQL's range in the column's unit since 1970 (Python ints: no overflow here).
    first = -(-(_PG_MIN_US + _PG_EPOCH_US) // per)
    end = -(-(_PG_END_US + _PG_EPOCH_US) // per)  # the first value past it
    valid = values != _NAT
    outside = values < first
    if end <= _INT64_MAX:  # in microseconds, every int64 is below the end
        outside |= values >= end
    beyond = np.flatnonzero(valid & outside)
    if len(beyond):
        raise Rejected(
            psycopg.errors.DatetimeFieldOverflow, "timestamp out of range", 0, int(beyond[0])
        )
    return (np.where(valid, values, epoch) - epoch) * per


def _encode(series: pd.Series, pg: str, encoding: str) -> tuple[Any, Any]:
    """(int32 lengths with -1 for NULL, data): data is 2-D uint8 (a row a value), or (bytes,
    int64 start of each row's value in them) for text."""
    isnull = series.isna().to_numpy()
    n = len(series)
    if pg in _FIXED:
        width = np.dtype(_FIXED[pg]).itemsize
        if pg == "boolean":
            values = series.to_numpy(dtype=bool, na_value=False).astype(np.uint8)
        elif pg == "bigint":
            values = series.to_numpy(dtype=np.int64, na_value=0).astype(">i8")
        else:  # a float16 widens to the real exactly
            native = np.float64 if pg == "double precision" else np.float32
            values = series.to_numpy(dtype=native, na_value=np.nan).astype(_FIXED[pg])
        lengths = np.where(isnull, -1, width).astype(np.int32)
        return lengths, values.reshape(n, 1).view(np.uint8).reshape(n, width)
    if pg in ("timestamp", "timestamptz"):
        if pg == "timestamptz":
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        values = _pg_micros(series).astype(">i8")
        lengths = np.where(isnull, -1, 8).astype(np.int32)
        return lengths, values.reshape(n, 1).view(np.uint8).reshape(n, 8)
    # text
    held = _arrow_text(series, isnull, encoding)
    if held is not None:
        return held
    strings = series[~isnull].tolist() if isnull.any() else series.tolist()
    if not all(type(s) is str for s in strings):
        strings = [str(s) for s in strings]
    rows = np.flatnonzero(~isnull)
    joined = "".join(strings)
    try:
        flat_bytes = joined.encode(encoding)
    except UnicodeEncodeError as error:
        chars = np.cumsum(np.fromiter(map(len, strings), dtype=np.int64, count=len(strings)))
        at = int(np.searchsorted(chars, error.start, side="right"))
        raise Rejected.unencodable(0, int(rows[at]), encoding) from None
    if len(flat_bytes) == len(joined):  # one byte a character: byte lengths are lengths
        lens = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    else:
        lens = np.fromiter(
            (len(s.encode(encoding)) for s in strings), dtype=np.int64, count=len(strings)
        )
    sizes = np.zeros(n, dtype=np.int64)
    sizes[~isnull] = lens
    starts = np.cumsum(sizes) - sizes  # a NULL starts where the next value does, as in Arrow
    lengths = np.where(isnull, -1, sizes).astype(np.int32)
    flat = np.frombuffer(flat_bytes, dtype=np.uint8)
    return _text(lengths, flat, starts, 0, len(flat))


def _arrow_text(series: pd.Series, isnull: Any, encoding: str) -> tuple[Any, Any] | None:
    """A text column as Arrow holds it (pandas' ``str`` dtype) when the session is UTF-8:
    its bytes and offsets as they are, no string made; None when it is held otherwise
    (Python strings, which converting to Arrow would only slow down)."""
    import pandas as pd

    if codecs.lookup(encoding).name != "utf-8" or not isinstance(
        series.array, pd.arrays.ArrowExtensionArray
    ):
        return None
    import pyarrow as pa

    arr = series.array.__arrow_array__()
    if isinstance(arr, pa.ChunkedArray):
        if arr.num_chunks > 1 and pa.types.is_string(arr.type):
            arr = arr.cast(pa.large_string())  # 32-bit offsets may not span every chunk
        arr = arr.combine_chunks()
    if pa.types.is_string(arr.type):
        width: Any = np.int32
    elif pa.types.is_large_string(arr.type):
        width = np.int64
    else:
        return None
    _, offsets_buffer, data_buffer = arr.buffers()
    if not len(arr) or offsets_buffer is None:  # no rows (Arrow may give no buffers then)
        return np.empty(0, np.int32), (np.empty(0, np.uint8), np.empty(0, np.int64))
    offsets = np.frombuffer(offsets_buffer, dtype=width)[arr.offset : arr.offset + len(arr) + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(data_buffer if data_buffer is not None else b"", dtype=np.uint8)
    lengths = np.where(isnull, -1, np.diff(offsets)).astype(np.int32)
    return _text(lengths, data, offsets[:-1], int(offsets[0]), int(offsets[-1]))


def _text(lengths: Any, data: Any, starts: Any, low: int, high: int) -> tuple[Any, Any]:
    """A text column's (lengths, (data, starts)), ``starts`` never decreasing, its values in
    ``data[low:high]``: refused at the first value holding a NUL (bytes Arrow may keep
    under a NULL are no value)."""
    nul = np.flatnonzero(data[low:high] == 0) + low
    if len(nul):
        row = np.searchsorted(starts, nul, side="right") - 1
        inside = (lengths[row] > 0) & (nul < starts[row] + lengths[row])
        if inside.any():
            raise Rejected.nul(0, int(row[np.argmax(inside)]))
    return lengths, (data, starts)
