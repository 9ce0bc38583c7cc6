"""The compiled binary engine (frames/_bincompiled.py, frames/_bindecode.c) on its own.

tests/test_frames_engines.py holds it to the other engines on fixed queries; here random
values are held to ground truth (Python's correctly rounded ``float(Decimal)`` for numeric,
psycopg's ``fetchall`` for text), rows longer than many receive blocks are read whole, and
streams no server sends (cut, corrupt, too long) are refused with a clear error.
"""

from __future__ import annotations

import decimal
import math
import os
import random
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

import pgmonkey
from pgmonkey.frames import _bincompiled, _bincopy, _engines
from pgmonkey.frames._read import Plan

pytestmark = pytest.mark.skipif(
    _bincompiled._decoder() is None, reason="the compiled decoder is not built here"
)
HYPOTHESIS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def conn(superuser_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(superuser_dsn, autocommit=True) as c:
        yield c


def _plan(conn: psycopg.Connection[Any], query: str) -> Plan:
    description = conn.execute(f"SELECT * FROM ({query}) AS s LIMIT 0").description or []
    return Plan.build([(c.name, c.type_code) for c in description], conn, decimal=False)


def _compiled(conn: psycopg.Connection[Any], query: str) -> None:
    assert isinstance(_engines.choose_engine(_plan(conn, query)), _engines.CompiledBinaryEngine)


@HYPOTHESIS
@given(
    values=st.lists(
        st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**300), max_value=10**300)
        | st.none(),
        max_size=40,
    )
)
def test_numeric_is_the_nearest_double(
    conn: psycopg.Connection[Any], values: list[decimal.Decimal | None]
) -> None:
    _assert_nearest_doubles(conn, values)


# Numerics the decoder reads without text: a significand of at most 2^53 (at most four
# base-10000 digits) times a power of ten of at most 22 (a multiple of 4, as the digits
# are). Past either edge one IEEE operation is no longer enough: the values below the
# 2^53 ones are rounded wrongly by a double significand times or over the double power,
# and so is 1E-24 over the double nearest 10^24.
_FAST_EDGES = [
    decimal.Decimal(text)
    for text in (
        "9007199254740992",
        "9007199254740993",
        "9088752301146065E12",
        "-9495438621188955E4",
        "9059646049931665E12",
        "1E20",
        "-1E-20",
        "1E-24",
        "-4E-24",
        "3E24",
        "12345.67",
        "-0.01",
        "9999999999.99",
    )
]


@HYPOTHESIS
@given(
    values=st.lists(
        st.builds(
            lambda negative, significand, exponent: decimal.Decimal(
                (negative, tuple(int(d) for d in str(significand)), exponent)
            ),
            st.booleans(),
            st.integers(0, 2**53 - 2**20) | st.integers(2**53 - 2**20, 2**53 + 2**20),
            st.integers(-30, 30),
        )
        | st.none(),
        max_size=40,
    )
)
def test_numeric_of_a_few_digits_is_the_nearest_double(
    conn: psycopg.Connection[Any], values: list[decimal.Decimal | None]
) -> None:
    _assert_nearest_doubles(conn, values)


def test_numeric_at_the_edges_of_the_exact_path_is_the_nearest_double(
    conn: psycopg.Connection[Any],
) -> None:
    _assert_nearest_doubles(conn, list(_FAST_EDGES))


def _assert_nearest_doubles(
    conn: psycopg.Connection[Any], values: list[decimal.Decimal | None]
) -> None:
    query = (
        sql.SQL("SELECT v FROM unnest({}::numeric[]) WITH ORDINALITY AS t(v, n) ORDER BY n")
        .format(sql.Literal([None if v is None else str(v) for v in values]))
        .as_string(conn)
    )
    _compiled(conn, query)
    got = pgmonkey.read_sql(query, conn)["v"].tolist()
    # What PostgreSQL stores, as the nearest double (the value parsing its text gives).
    stored = [r[0] for r in conn.execute(query).fetchall()]
    want = [math.nan if v is None else float(v) for v in stored]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (math.isnan(g) and math.isnan(w)) or (
            g == w and math.copysign(1, g) == math.copysign(1, w)
        )
    table = pgmonkey.read_arrow(query, conn)
    assert table.column(0).to_pylist() == [None if v is None else float(v) for v in stored]


@HYPOTHESIS
@given(
    values=st.lists(
        st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=200) | st.none(),
        max_size=40,
    )
)
def test_text_is_what_psycopg_fetches(
    conn: psycopg.Connection[Any], values: list[str | None]
) -> None:
    query = (
        sql.SQL(
            "SELECT v, n, v::varchar AS w FROM unnest({}::text[]) WITH ORDINALITY AS t(v, n)"
            " ORDER BY n"
        )
        .format(sql.Literal(values))
        .as_string(conn)
    )
    _compiled(conn, query)
    rows = conn.execute(query).fetchall()
    frame = pgmonkey.read_sql(query, conn)
    assert [[None if pd.isna(v) else v for v in row] for row in frame.itertuples(index=False)] == [
        list(row) for row in rows
    ]
    assert str(frame["v"].dtype) == "str"
    table = pgmonkey.read_arrow(query, conn)
    assert [tuple(r.values()) for r in table.to_pylist()] == rows


def test_rows_longer_than_many_blocks(conn: psycopg.Connection[Any]) -> None:
    query = """SELECT i, CASE WHEN i IN (3, 7) THEN repeat(md5(i::text), 400000)
                              ELSE md5(i::text) END AS s, i / 7.0 AS n
               FROM generate_series(1, 20000) i"""
    _compiled(conn, query)
    frame = pgmonkey.read_sql(query, conn)
    rows = conn.execute(query).fetchall()
    assert frame["s"].tolist() == [r[1] for r in rows]
    assert frame["i"].tolist() == [r[0] for r in rows]
    assert len(frame["s"].iloc[2]) == 32 * 400000


HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
TRAILER = b"\xff\xff"


def _row(*fields: bytes | None) -> bytes:
    out = struct.pack(">h", len(fields))
    for f in fields:
        out += struct.pack(">i", -1) if f is None else struct.pack(">i", len(f)) + f
    return out


@pytest.fixture
def int_text(conn: psycopg.Connection[Any]) -> _bincompiled.CompiledBinaryPlan:
    return _bincompiled.CompiledBinaryPlan(_plan(conn, "SELECT 1::int8 AS a, 'x'::text AS b"))


def test_a_stream_cut_anywhere_decodes_alike(int_text: _bincompiled.CompiledBinaryPlan) -> None:
    stream = HEADER + b"".join(
        _row(struct.pack(">q", i), None if i % 3 == 0 else f"v{i}é".encode()) for i in range(50)
    )
    stream += TRAILER
    whole = int_text.read_arrow([stream])
    assert whole.column(0).to_pylist() == list(range(50))
    assert whole.column(1).to_pylist() == [None if i % 3 == 0 else f"v{i}é" for i in range(50)]
    for cut in range(1, len(stream)):
        assert int_text.read_arrow([stream[:cut], stream[cut:]]).equals(whole), cut
    assert int_text.read_arrow([bytes([b]) for b in stream]).equals(whole)


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"PGCOPX\n\xff\r\n\x00" + b"\x00" * 8 + TRAILER, "not binary COPY data"),
        (HEADER + _row(struct.pack(">q", 1), b"x"), "ends in the middle of a row"),
        (HEADER + _row(struct.pack(">q", 1), b"x")[:-1] + TRAILER, "ends in the middle of a row"),
        (HEADER + _row(struct.pack(">q", 1)) + TRAILER, "row of 1 fields, expected 2"),
        (HEADER + _row(struct.pack(">i", 1), b"x") + TRAILER, "value of 4 bytes"),
        (HEADER + TRAILER + b"\x00", "goes on after its trailer"),
        (HEADER + _row(struct.pack(">q", 1), b"\xff\xfe") + TRAILER, "UTF8|utf-8|UTF-8"),
        # A negative length other than -1 (NULL) is no length at all.
        (HEADER + b"\x00\x02\xff\xff\xff\xfe" + TRAILER, "value of -2 bytes"),
        # OIDs included (bit 16 of the flags), or an extension no server sends.
        (HEADER[:11] + b"\x00\x01\x00\x00" + b"\x00" * 4 + TRAILER, "header"),
        (HEADER[:15] + b"\x7f\xff\xff\xff" + TRAILER, "header"),
    ],
)
def test_a_stream_no_server_sends_is_refused(
    int_text: _bincompiled.CompiledBinaryPlan, stream: bytes, message: str
) -> None:
    with pytest.raises(Exception, match=message) as info:
        int_text.read_arrow([stream])
    assert isinstance(info.value, ValueError)  # pyarrow.ArrowInvalid is one too


def test_a_long_row_cut_anywhere_decodes_alike(conn: psycopg.Connection[Any]) -> None:
    # One row longer than the first block: the blocks after it wait for the row to be whole,
    # and those still waiting when the stream ends are decoded too.
    plan = _bincompiled.CompiledBinaryPlan(_plan(conn, "SELECT 'x'::text AS t"))
    stream = HEADER + _row(b"a" * 100) + _row(None) + TRAILER
    for cut in range(1, len(stream)):
        table = plan.read_arrow([stream[:cut], stream[cut:]])
        assert table.column(0).to_pylist() == ["a" * 100, None], cut
        for second in range(cut + 1, len(stream), 7):
            parts = [stream[:cut], stream[cut:second], stream[second:]]
            assert plan.read_arrow(parts).column(0).to_pylist() == ["a" * 100, None]


def test_one_huge_value_grows_its_own_column_only(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Room is made per text column: eight NULL text columns beside a 20 MB value do not
    # each get room for it. tracemalloc sees numpy's allocations (its peak is counted in
    # bytes allocated, whatever else the machine does), not memory maps: every column
    # stays numpy's here.
    import tracemalloc

    monkeypatch.setattr(_bincopy, "_MAPPED", 1 << 62)

    names = ", ".join(f"NULL::text AS t{i}" for i in range(8))
    plan = _bincompiled.CompiledBinaryPlan(_plan(conn, f"SELECT 'x'::text AS big, {names}"))
    size = 20_000_000
    stream = HEADER + _row(b"x" * size, *[None] * 8) + TRAILER
    blocks = [stream[i : i + (1 << 18)] for i in range(0, len(stream), 1 << 18)]
    tracemalloc.start()
    try:
        table = plan.read_arrow(blocks)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert table.column(0)[0].as_py() == "x" * size
    assert table.column(8).to_pylist() == [None]
    # The blocks joined, the value's column, and some room: not nine times the value.
    assert peak < 2 * size + 16_000_000, peak


def _rss() -> int:
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


@pytest.mark.parametrize("dtype", ["int64", "uint8"])
@pytest.mark.parametrize("size", [_bincopy._KEPT_MAPPED // 2, 2 * _bincopy._KEPT_MAPPED])
def test_a_growing_column_is_its_pieces_across_the_memory_map(dtype: str, size: int) -> None:
    # Pieces of random sizes, from numpy's own array into a memory map of its own and on
    # (then copied out of it, or kept in it): the whole is their concatenation, and room
    # not yet written reads as zeros.
    rng = random.Random(5)
    column = _bincopy.Growing(np.dtype(dtype))
    pieces = []
    while len(column) * np.dtype(dtype).itemsize < size:
        n = rng.randrange(1, 40_000)
        room = column.room(n + 1000)
        assert not room.any()
        room[:n] = np.arange(len(column), len(column) + n) % 251 + 1
        pieces.append(room[:n].copy())
        del room
        column.commit(n)
    whole = column.done()
    assert np.array_equal(whole, np.concatenate(pieces))
    whole[:3] = 0  # the caller's to change
    assert np.array_equal(whole[3:], np.concatenate(pieces)[3:])


@pytest.mark.skipif(not _bincopy._REMAP, reason="numpy's own arrays where maps cannot grow")
def test_a_growing_column_refuses_to_move_under_a_view() -> None:
    column = _bincopy.Growing(np.dtype("int64"))
    view = column.room(_bincopy._MAPPED)  # mapped from its first growth
    with pytest.raises(BufferError):
        column.room(4 * _bincopy._MAPPED)
    del view
    assert len(column.room(4 * _bincopy._MAPPED)) == 4 * _bincopy._MAPPED


@pytest.mark.skipif(not _bincopy._REMAP, reason="numpy's own arrays where maps cannot grow")
def test_room_not_written_takes_no_memory() -> None:
    # A gigabyte of room in a memory map, one megabyte of it written: the process grows
    # by about that megabyte, not the gigabyte (numpy's own array would zero-fill it all).
    column = _bincopy.Growing(np.dtype("uint8"))
    before = _rss()
    room = column.room(1 << 30)
    room[: 1 << 20] = 7
    grown = _rss() - before
    del room
    column.commit(1 << 20)
    assert grown < 64 << 20, grown
    assert len(column.done()) == 1 << 20


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="counts Linux's mappings")
def test_small_columns_kept_by_the_thousand_take_no_mapping_each(
    conn: psycopg.Connection[Any],
) -> None:
    # A process has a limited number of memory mappings (vm.max_map_count, 65530 by
    # default): a column whose room was mapped but which holds little is copied out of its
    # map once done, so results of many small columns can be kept without running out.
    names = ", ".join(f"'x'::text AS c{i}" for i in range(1000))
    query = f"SELECT {names}, g::int8 AS n FROM generate_series(1, 20) AS g"
    _compiled(conn, query)

    def mappings() -> int:
        with open("/proc/self/maps") as maps:
            return sum(1 for _ in maps)

    before = mappings()
    kept = [pgmonkey.read_arrow(query, conn) for _ in range(10)]
    kept += [pgmonkey.read_sql(query, conn) for _ in range(10)]
    assert mappings() - before < 1000  # one per column would be 20,020
    assert kept[0].column(999).to_pylist() == ["x"] * 20
    assert kept[-1]["n"].tolist() == list(range(1, 21))


def test_null_flags_across_cut_rows_and_the_memory_map(
    int_text: _bincompiled.CompiledBinaryPlan,
) -> None:
    # The decoder writes only the 1s of NULL flags: a row cut by a block's end is decoded
    # again from its start, and flags of rows past the map's first growth are the stream's.
    n = 300_000
    ints = [None if i % 11 == 0 else i for i in range(n)]
    texts = [None if i % 7 == 0 else f"t{i}" for i in range(n)]
    stream = HEADER + b"".join(
        _row(None if a is None else struct.pack(">q", a), None if b is None else b.encode())
        for a, b in zip(ints, texts, strict=True)
    )
    stream += TRAILER
    blocks = [stream[i : i + 65_537] for i in range(0, len(stream), 65_537)]
    table = int_text.read_arrow(blocks)
    assert table.column(0).to_pylist() == ints
    assert table.column(1).to_pylist() == texts


def test_the_decoder_refuses_a_start_outside_its_data() -> None:
    from pgmonkey.frames import _bindecode

    for start in (-1, 3):
        with pytest.raises(ValueError, match="out of range"):
            _bindecode.decode(b"ab", start, b"", [], 1)


@pytest.mark.parametrize(
    "numeric",
    [
        struct.pack(">hhHh", 1, 0, 0, 0) + struct.pack(">h", 10000),  # a digit past 9999
        struct.pack(">hhHh", 1, 0, 0x1234, 0) + struct.pack(">h", 1),  # no such sign
        struct.pack(">hhHh", 2, 0, 0, 0) + struct.pack(">h", 1),  # fewer digits than said
    ],
)
def test_a_corrupt_numeric_is_refused(conn: psycopg.Connection[Any], numeric: bytes) -> None:
    plan = _bincompiled.CompiledBinaryPlan(_plan(conn, "SELECT 1.5::numeric AS n"))
    with pytest.raises(ValueError, match="not a valid 'n'"):
        plan.read_arrow([HEADER + _row(numeric) + TRAILER])


def test_pgmonkey_impl_python_leaves_the_compiled_engine_out(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGMONKEY_IMPL", "python")
    _bincompiled._decoder.cache_clear()
    try:
        engine = _engines.choose_engine(_plan(conn, "SELECT 1::int8 AS a, 'x'::text AS b"))
        assert isinstance(engine, _engines.ArrowCsvEngine)
    finally:
        monkeypatch.undo()
        _bincompiled._decoder.cache_clear()
    assert _bincompiled._decoder() is not None
