"""DataFrame chunks -> PostgreSQL binary COPY, built with numpy (no per-value Python).

Used by ``to_sql`` when every column has a binary form here (bigint, double precision,
boolean, timestamp, timestamptz, text); frames with other types go through CSV.
Each column is encoded to (lengths, bytes) arrays; rows are assembled by scattering those
bytes at computed offsets in one buffer per chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ._write import Rejected

if TYPE_CHECKING:
    import pandas as pd

BINARY_TYPES: Final = frozenset(
    {"bigint", "double precision", "boolean", "timestamp", "timestamptz", "text"}
)
HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER: Final = b"\xff\xff"
_PG_EPOCH_US: Final = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970
_FIXED: Final = {"bigint": ">i8", "double precision": ">f8", "boolean": "u1"}


def chunks(df: pd.DataFrame, types: list[str], rows: int, encoding: str) -> Iterator[bytes]:
    """The whole binary COPY stream: header, rows in chunks of ``rows``, trailer."""
    yield HEADER
    for start in range(0, len(df), rows):
        yield _chunk(df.iloc[start : start + rows], types, encoding, start)
    yield TRAILER


def _chunk(part: pd.DataFrame, types: list[str], encoding: str, first: int) -> bytes:
    n = len(part)
    encoded = []
    for i, pg in enumerate(types):
        try:
            encoded.append(_encode(part.iloc[:, i], pg, encoding))
        except Rejected as rejected:
            raise Rejected(rejected.kind, rejected.message, i, first + rejected.row) from None
    # Field sizes per row: 4 length bytes, plus the data when not NULL.
    size = np.full(n, 2, dtype=np.int64)
    for lengths, _ in encoded:
        size += 4 + np.maximum(lengths, 0)
    start = np.zeros(n, dtype=np.int64)
    np.cumsum(size[:-1], out=start[1:])
    buf = np.empty(int(size.sum()), dtype=np.uint8)
    _scatter(buf, start, np.full((n, 1), len(types), dtype=">i2").view(np.uint8))
    pos = start + 2
    for lengths, data in encoded:
        _scatter(buf, pos, lengths.astype(">i4").reshape(n, 1).view(np.uint8))
        pos += 4
        valid = lengths >= 0
        if isinstance(data, tuple):  # variable width: (flat bytes, lengths of valid rows)
            flat, lens = data
            if len(flat):
                src = np.zeros(len(lens), dtype=np.int64)
                np.cumsum(lens[:-1], out=src[1:])
                dest = np.repeat(pos[valid] - src, lens) + np.arange(len(flat))
                buf[dest] = flat
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


def _micros(series: pd.Series) -> Any:
    """Microseconds since 1970 (int64), nanoseconds rounded as the server rounds text.

    PostgreSQL reads a fraction of a second with ``rint(strtod(fraction) * 1e6)``; the same
    double arithmetic here gives the same microsecond (ties to even).
    """
    unit = getattr(series.dtype, "unit", "ns")
    if unit != "ns":
        return series.to_numpy(dtype="datetime64[us]").view(np.int64)
    ns = series.to_numpy(dtype="datetime64[ns]").view(np.int64)
    seconds = ns // 1_000_000_000  # floor: the fraction of a time before 1970 is positive
    fraction = ns - seconds * 1_000_000_000
    micros = np.rint((fraction / 1e9) * 1e6).astype(np.int64)
    return seconds * 1_000_000 + micros


def _encode(series: pd.Series, pg: str, encoding: str) -> tuple[Any, Any]:
    """(int32 lengths with -1 for NULL, data): data is 2-D uint8, or (flat, lengths)."""
    isnull = series.isna().to_numpy()
    n = len(series)
    if pg in _FIXED:
        width = np.dtype(_FIXED[pg]).itemsize
        if pg == "boolean":
            values = series.to_numpy(dtype=bool, na_value=False).astype(np.uint8)
        elif pg == "bigint":
            values = series.to_numpy(dtype=np.int64, na_value=0).astype(">i8")
        else:
            values = series.to_numpy(dtype=np.float64, na_value=np.nan).astype(">f8")
        lengths = np.where(isnull, -1, width).astype(np.int32)
        return lengths, values.reshape(n, 1).view(np.uint8).reshape(n, width)
    if pg in ("timestamp", "timestamptz"):
        if pg == "timestamptz":
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        values = (_micros(series) - _PG_EPOCH_US).astype(">i8")
        lengths = np.where(isnull, -1, 8).astype(np.int32)
        return lengths, values.reshape(n, 1).view(np.uint8).reshape(n, 8)
    # text
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
    flat = np.frombuffer(flat_bytes, dtype=np.uint8)
    nul = np.flatnonzero(flat == 0)
    if len(nul):
        at = int(np.searchsorted(np.cumsum(lens), nul[0], side="right"))
        raise Rejected.nul(0, int(rows[at]))
    lengths = np.full(n, -1, dtype=np.int32)
    lengths[~isnull] = lens
    return lengths, (flat, lens)
