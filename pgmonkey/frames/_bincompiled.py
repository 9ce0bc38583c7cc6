"""The compiled binary engine: ``COPY ... (FORMAT binary)`` decoded by ``_bindecode.c``.

Used, when the extension is built, for results whose every column is an integer,
``float8``, ``bool``, ``date``, ``timestamp``, ``timestamptz``, ``numeric`` (read as float)
or text (``text``, ``varchar``, ``char(n)``, ``name``, in a UTF-8 session). The server
sends values as stored (no float, timestamp or numeric to text, no CSV quoting), NULLs as
NULLs (no ``coalesce`` or bitmask columns, as the numpy engine of ``_bincopy`` needs), and
one C pass puts each field into its column: numbers in numpy arrays, text in Arrow's
string layout.

Values are those the text engines give, as in ``_bincopy``: ``float8`` rounded through
text when ``extra_float_digits`` is below 1, dates and timestamps outside years 1 to 9999
raising psycopg's own error, and ``numeric`` as the double nearest its exact value (which
is what parsing its text gives; NaN and infinities as themselves). ``read_arrow`` gives the
Arrow CSV engine's types; for pandas, numbers and dates go from numpy to pandas as in the
numpy binary engine, and text through Arrow as in the Arrow CSV engine, dtype for dtype.
"""

from __future__ import annotations

import functools
import itertools
import os
from typing import TYPE_CHECKING, Any, Final

from psycopg import sql

from ._arrow import frame_of, to_values
from ._bincopy import FloatRounding, Growing, _arrow_type, _values, column_array
from ._read import (
    _KIND_BY_OID,
    NUMERIC,
    TEXT,
    TIMESTAMP,
    TIMESTAMPTZ,
    Column,
    Plan,
    copy_select,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd
    import pyarrow as pa

# The decoder's kind of each type it reads, by type OID (see _bindecode.c).
_CODES: Final[dict[int, bytes]] = {
    21: b"h",  # int2
    23: b"i",  # int4
    20: b"q",  # int8
    26: b"I",  # oid
    701: b"d",  # float8
    16: b"?",  # bool
    1082: b"D",  # date
    1114: b"T",  # timestamp
    1184: b"T",  # timestamptz
    1700: b"n",  # numeric
    25: b"t",  # text
    1043: b"t",  # varchar
    1042: b"t",  # bpchar: sent with its padding, as its text is
    19: b"t",  # name
}
# numpy dtype of each kind's values (a text column's values are its end offsets).
_DTYPES: Final = {
    b"h": "int64",
    b"i": "int64",
    b"q": "int64",
    b"I": "int64",
    b"d": "float64",
    b"?": "uint8",
    b"D": "int32",
    b"T": "int64",
    b"n": "float64",
    b"t": "int64",
}
_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00"
_HEADER: Final = 19  # signature, flags, extension length
_MAX_EXTENSION: Final = 1 << 20  # PostgreSQL sends none: anything large is not its header
_ROWS_PER_CALL: Final = 1 << 16  # rows of room each decoder call gets, at most
_TEXT_ROOM: Final = 1 << 18  # bytes of room per text column and call, unless a value needs more


@functools.cache
def _decoder() -> Any:
    if os.environ.get("PGMONKEY_IMPL", "").lower() == "python":
        return None
    try:
        from . import _bindecode
    except ImportError:  # built without a C compiler
        return None
    return _bindecode.decode


def usable(plan: Plan) -> bool:
    """Whether the compiled decoder is there and reads every column of ``plan``."""
    if not plan.columns or _decoder() is None:
        return False
    utf8 = plan.encoding.replace("-", "").replace("_", "").lower() == "utf8"
    for col in plan.columns:
        code = _CODES.get(col.oid)
        # The type's own kind: numeric in decimal mode, or dates in a DateStyle other than
        # ISO, are read value by value by the text engines instead (their kind is OTHER).
        if code is None or col.kind != _KIND_BY_OID[col.oid] or (code == b"t" and not utf8):
            return False
    return True


class CompiledBinaryPlan(FloatRounding):
    """Reads one result through ``COPY ... (FORMAT binary)`` into Arrow, then pandas."""

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.codes = [_CODES[c.oid] for c in plan.columns]

    def copy_statement(self, query: str) -> sql.Composed:
        n = len(self.plan.columns)
        if not self.round_floats:  # the columns as they are: one piece of SQL for all
            names = sql.SQL(", ".join(f"_q.c{i}" for i in range(n)))
            return copy_select(query, [names], n, "binary")
        return copy_select(query, [self.column(i) for i in range(n)], n, "binary")

    def _decode(self, source: Any) -> tuple[list[Any], list[Any], list[Any], int]:
        """Every column's values (or end offsets), NULL flags and text bytes, and the rows."""
        import numpy as np

        values = [_grow(code) for code in self.codes]
        nulls = [Growing(np.dtype("uint8")) for _ in self.codes]
        texts = [Growing(np.dtype("uint8")) if c == b"t" else None for c in self.codes]
        rows = 0
        blocks = iter(source) if isinstance(source, list) else source.blocks()
        rest = b""
        waiting: list[bytes] = []  # blocks kept until a row cut by a block's end is whole
        wanted = 0
        started = finished = False
        for block in itertools.chain(blocks, [None]):
            if block is None:  # the end of the stream: decode what still waits
                if not waiting:
                    break
            elif finished:
                raise ValueError("binary COPY data goes on after its trailer")
            else:
                waiting.append(block)
                wanted -= len(block)
                if wanted > 0:
                    continue
            data = b"".join([rest, *waiting]) if rest or len(waiting) > 1 else waiting[0]
            rest, waiting = b"", []  # not held while data is decoded
            start = 0
            if not started:
                if len(data) >= 11 and data[:11] != _SIGNATURE:
                    raise ValueError("not binary COPY data")
                if len(data) < _HEADER:
                    rest = data
                    continue
                flags, extension = int.from_bytes(data[11:15], "big"), data[15:19]
                # Bits 0-15: incompatible format changes; 16: OIDs included (never asked).
                if flags & 0x1FFFF or int.from_bytes(extension, "big") > _MAX_EXTENSION:
                    raise ValueError("binary COPY data with a header this reader does not know")
                start = _HEADER + int.from_bytes(extension, "big")
                if len(data) < start:
                    rest = data
                    continue
                started = True
            end, taken, finished = self._take(data, start, values, nulls, texts)
            rows += taken
            rest = data[end:]
            # A row longer than what is here: wait for twice as much before trying again,
            # so that a very long row is not joined again for every block.
            wanted = len(rest) if not taken and rest and not finished else 0
        if not finished:
            raise ValueError("binary COPY data ends in the middle of a row")
        if rest:
            raise ValueError("binary COPY data goes on after its trailer")
        return (
            [v.done() for v in values],
            [n.done() for n in nulls],
            [None if t is None else t.done() for t in texts],
            rows,
        )

    def _take(
        self,
        data: bytes,
        start: int,
        values: list[Growing],
        nulls: list[Growing],
        texts: list[Growing | None],
    ) -> tuple[int, int, bool]:
        """Decode the whole rows of ``data`` from ``start`` into the columns' buffers: where
        the rest begins, the rows taken, whether the trailer came. Each call of the decoder
        gets room for a bounded number of rows and bytes per text column (one huge value
        grows its own column only) and is called again where it stopped for want of room."""
        decode = _decoder()
        kinds = b"".join(self.codes)
        least_row = 2 + 4 * len(self.codes)  # its field count and one length per field
        taken = 0
        need: dict[int, int] = {}  # text column -> the room a value of it needs
        while True:
            capacity = min((len(data) - start) // least_row + 1, _ROWS_PER_CALL)
            text_room = min(len(data) - start, _TEXT_ROOM)
            outputs = _rooms(values, nulls, texts, capacity, text_room, need)
            start, rows, finished, short, size = decode(data, start, kinds, outputs, capacity)
            del outputs  # no view of a column may be alive when it grows
            for value, null, text in zip(values, nulls, texts, strict=True):
                value.commit(rows)
                null.commit(rows)
                if text is not None:  # its bytes end where its last offset says
                    text.commit(int(value.last()) - len(text))
            taken += rows
            if short >= 0:
                need[short] = size
            elif finished or rows < capacity:
                return start, taken, finished

    def _columns(self, source: Any) -> Iterator[tuple[Column, Any, Any]]:
        """Each column once decoded: its native values (numpy; a text column's values as an
        Arrow string array) and NULL flags (None where it has no NULL), freed as it goes."""
        import numpy as np
        import pyarrow as pa

        values, nulls, texts, rows = self._decode(source)
        for i, col in enumerate(self.plan.columns):
            flags = nulls[i].view(bool)
            isnull = flags if np.count_nonzero(flags) else None  # a C call: any() is Python
            code = self.codes[i]
            if code == b"t":
                validity = (
                    None
                    if isnull is None
                    else pa.py_buffer(np.packbits(~isnull, bitorder="little"))
                )
                native: Any = pa.LargeStringArray.from_buffers(
                    rows,
                    pa.py_buffer(values[i]),
                    pa.py_buffer(texts[i]),
                    validity,
                    0 if isnull is None else int(isnull.sum()),
                )
                native.validate(full=True)  # valid UTF-8, as Arrow's CSV reader checks
            elif code == b"n":
                native = values[i]  # NULLs are NaN already
            else:
                native = _values(values[i], isnull, col)
            values[i] = nulls[i] = texts[i] = None
            yield col, native, isnull

    def read_arrow(self, source: Any) -> pa.Table:
        """The binary stream as an Arrow table, of the types the Arrow CSV engine gives."""
        import pyarrow as pa

        arrays = []
        for col, native, isnull in self._columns(source):
            if col.kind == TEXT:
                arrays.append(native)
                continue
            if col.kind in (TIMESTAMP, TIMESTAMPTZ):
                native = native.view("int64")
            kind = pa.float64() if col.kind == NUMERIC else _arrow_type(col)
            arrays.append(pa.array(native, mask=isnull, type=kind))
        return pa.table(arrays, names=[c.name for c in self.plan.columns])

    def parse(self, source: Any) -> pd.DataFrame:
        """The binary stream as the DataFrame the text engines give for it: numpy columns
        straight into pandas (as the numpy binary engine does), text through Arrow."""
        import pyarrow as pa

        arrays = []
        rows = 0
        for col, native, isnull in self._columns(source):
            rows = len(native)
            if col.kind == TEXT:
                arrays.append(to_values(pa.chunked_array([native]), TEXT))
            elif col.kind == NUMERIC:
                arrays.append(native)
            else:
                arrays.append(column_array(native, isnull, col))
        return frame_of(self.plan, arrays, rows)


def _rooms(
    values: list[Growing],
    nulls: list[Growing],
    texts: list[Growing | None],
    capacity: int,
    text_room: int,
    need: dict[int, int],
) -> list[tuple[Any, Any, Any]]:
    """Each column's views to decode into: room for ``capacity`` values (a text column's
    values: its end offsets, after the last one written) and NULL flags, and a text
    column's room for bytes. The list holds the only references to them."""
    outputs: list[tuple[Any, Any, Any]] = []
    for i, (value, null, text) in enumerate(zip(values, nulls, texts, strict=True)):
        if text is None:
            outputs.append((value.room(capacity), null.room(capacity), None))
        else:
            room = text.room(max(need.get(i, 0), text_room))
            outputs.append((value.room(capacity, 1), null.room(capacity), room))
    return outputs


def _grow(code: bytes) -> Growing:
    import numpy as np

    values = Growing(np.dtype(_DTYPES[code]))
    if code == b"t":  # end offsets start with the start of the first value
        values.room(1)[0] = 0
        values.commit(1)
    return values
