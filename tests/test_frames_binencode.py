"""The compiled binary COPY writer (frames/_binencode.c) and the text it takes from Arrow.

tests/test_frames_differential.py holds ``to_sql`` to what a parameterised ``INSERT``
stores, on whichever encoder is built. Here the compiled assembly is held, byte for byte, to
numpy's (the path without a C compiler) on random frames, the Arrow-held text to the same
text encoded from Python strings, the whole stream to what the server stores (read back
against the frame), and buffers no caller of ours builds are refused, never read past.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pgmonkey
from pgmonkey.frames import _binary
from pgmonkey.frames._write import pg_type

pytestmark = pytest.mark.skipif(
    _binary._encoder() is None, reason="the compiled encoder is not built here"
)
HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Text without NUL (refused apart, below): control characters, multi-byte UTF-8, empty.
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


def _column(draw: st.DrawFn, kind: str, n: int) -> pd.Series:
    maybe = st.booleans()
    if kind == "int64":
        return pd.Series([draw(st.integers(-(2**63), 2**63 - 1)) for _ in range(n)], dtype="int64")
    if kind == "Int64":
        values = [None if draw(maybe) else draw(st.integers(-(2**63), 2**63 - 1)) for _ in range(n)]
        return pd.Series(values, dtype="Int64")
    if kind == "float64":
        return pd.Series([draw(st.floats(width=64)) for _ in range(n)], dtype="float64")
    if kind == "boolean":
        return pd.Series(
            [None if draw(maybe) else draw(st.booleans()) for _ in range(n)], dtype="boolean"
        )
    if kind == "timestamptz":  # whole microseconds: PostgreSQL's resolution
        us = st.integers(
            pd.Timestamp.min.value // 1000 + 86_400 * 10**6, pd.Timestamp.max.value // 1000
        )
        values = [None if draw(maybe) else pd.Timestamp(draw(us) * 1000) for _ in range(n)]
        return pd.Series(values, dtype="datetime64[ns]").dt.tz_localize("UTC")
    values = [None if draw(maybe) else draw(TEXT) for _ in range(n)]
    if kind == "str":  # pandas' own: Arrow-backed
        return pd.Series(values, dtype="str")
    if kind == "large_string":
        return pd.Series(values, dtype=pd.ArrowDtype(pa.large_string()))
    return pd.Series(values, dtype=object)


KINDS = ["int64", "Int64", "float64", "boolean", "timestamptz", "str", "large_string", "object"]


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 30))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=6))
    frame = pd.DataFrame({f"c{i}": _column(draw, k, n) for i, k in enumerate(kinds)})
    # A slice of a bigger frame too: Arrow arrays with an offset into their buffers.
    start = draw(st.integers(0, n))
    return frame.iloc[start:] if draw(st.booleans()) else frame


def _stream(frame: pd.DataFrame, rows: int, compiled: Any) -> bytes:
    types = [pg_type(frame[c]) for c in frame.columns]
    saved = _binary._encoder
    _binary._encoder = lambda: compiled  # type: ignore[assignment]
    try:
        return b"".join(_binary.chunks(frame, types, rows, "utf-8"))
    finally:
        _binary._encoder = saved  # type: ignore[assignment]


@HYPOTHESIS
@given(frame=frames(), rows=st.integers(1, 40))
def test_the_compiled_rows_are_numpys_bytes(frame: pd.DataFrame, rows: int) -> None:
    compiled = _binary._encoder()
    assert _stream(frame, rows, compiled) == _stream(frame, rows, None)


@HYPOTHESIS
@given(values=st.lists(st.none() | TEXT, max_size=30), start=st.integers(0, 30))
def test_text_held_by_arrow_is_the_text_python_encodes(
    values: list[str | None], start: int
) -> None:
    held = pd.Series(values, dtype="str").iloc[start:]
    python = pd.Series(values, dtype=object).iloc[start:]
    assert _binary._arrow_text(python, python.isna().to_numpy(), "utf-8") is None
    assert _stream(held.to_frame(), 7, None) == _stream(python.to_frame(), 7, None)


@pytest.fixture(scope="module")
def conn(superuser_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(superuser_dsn, autocommit=True) as c:
        yield c


@HYPOTHESIS
@given(frame=frames())
def test_what_the_server_stores_reads_back_as_the_frame(
    conn: psycopg.Connection[Any], frame: pd.DataFrame
) -> None:
    frame = frame.reset_index(drop=True).assign(_row=lambda f: range(len(f)))
    pgmonkey.to_sql(frame, "binencode_roundtrip", conn, if_exists="replace")
    got = pgmonkey.read_sql("SELECT * FROM binencode_roundtrip ORDER BY _row", conn)
    for name in frame.columns:
        want = frame[name].astype(object).where(frame[name].notna(), None).tolist()
        have = got[name].astype(object).where(got[name].notna(), None).tolist()
        assert have == want, name


def test_a_nul_in_arrow_held_text_names_its_row(conn: psycopg.Connection[Any]) -> None:
    # Arrow may keep bytes under a NULL: the NUL there is no value, row 3's is.
    valid = np.packbits([1, 0, 1, 1], bitorder="little").tobytes()
    offsets = np.array([0, 1, 3, 4, 7], dtype=np.int32).tobytes()
    array = pa.Array.from_buffers(
        pa.string(), 4, [pa.py_buffer(valid), pa.py_buffer(offsets), pa.py_buffer(b"ab\x00cd\x00e")]
    )
    frame = pd.DataFrame({"s": pd.Series(pd.arrays.ArrowStringArray(array))})
    assert frame["s"].isna().tolist() == [False, True, False, False]
    with pytest.raises(psycopg.errors.CharacterNotInRepertoire, match="column 's', row 3"):
        pgmonkey.to_sql(frame, "binencode_nul", conn, if_exists="replace")


@pytest.mark.parametrize(
    ("field", "error"),
    [
        ((np.array([9], np.int32), np.zeros(8, np.uint8), None, 8), "row 0: length 9"),
        ((np.array([8], np.int32), np.zeros(4, np.uint8), None, 8), "data shorter"),
        ((np.array([-2], np.int32), np.zeros(8, np.uint8), None, 8), "row 0: length -2"),
        ((np.array([4], np.int32), np.zeros(3, np.uint8), np.array([0], np.int64), 0), "length 4"),
        ((np.array([1], np.int32), np.zeros(3, np.uint8), np.array([-1], np.int64), 0), "length 1"),
        ((np.array([1], np.int32), np.zeros(3, np.uint8), np.array([0, 1], np.int64), 0), "starts"),
        ((np.array([1, 1], np.int32), np.zeros(3, np.uint8), None, 1), "lengths for 1 rows"),
        ((np.array([1], np.int32), np.zeros(3, np.uint8), None, 0), "a width, or starts"),
    ],
)
def test_buffers_that_do_not_fit_are_refused(field: tuple[Any, ...], error: str) -> None:
    encode = _binary._encoder()
    with pytest.raises(ValueError, match=error):
        encode(1, [field])


def test_a_list_changed_by_a_width_leaves_the_call_unharmed() -> None:
    encode = _binary._encoder()
    columns: list[Any] = []

    class Width:
        def __index__(self) -> int:
            columns.clear()
            return 1

    columns.append((np.ones(1, np.int32), b"x", None, Width()))
    columns.append((np.ones(1, np.int32), b"y", None, 1))
    assert encode(1, columns) == b"\x00\x02" + b"\x00\x00\x00\x01x" + b"\x00\x00\x00\x01y"


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        (2**62, "bad row or column count"),
        (2**60, "bad row or column count"),
        (2**58, "lengths for"),
    ],
)
def test_row_counts_whose_sizes_would_wrap_are_refused(rows: int, error: str) -> None:
    encode = _binary._encoder()
    with pytest.raises(ValueError, match=error):
        encode(rows, [(np.empty(0, np.int32), b"", np.empty(0, np.int64), 0)])
    if error.startswith("bad"):
        with pytest.raises(ValueError, match=error):
            encode(rows, [])


@pytest.mark.parametrize("dtype", ["string[python]", pd.StringDtype("python", na_value=np.nan)])
def test_python_held_strings_are_encoded_by_python(
    conn: psycopg.Connection[Any], dtype: Any
) -> None:
    # Not through Arrow: a value Arrow cannot hold (a lone surrogate) is refused as any
    # unencodable value is, by column and row, a sensitive one not shown.
    series = pd.Series(["ok", "s3cr\udce9t"], dtype=dtype)
    assert _binary._arrow_text(series, series.isna().to_numpy(), "utf-8") is None
    with pytest.raises(psycopg.errors.UntranslatableCharacter) as info:
        pgmonkey.to_sql(pd.DataFrame({"password": series}), "binencode_py", conn)
    assert "column 'password', row 1" in str(info.value)
    assert "s3cr" not in str(info.value)


def test_text_in_several_arrow_chunks(conn: psycopg.Connection[Any]) -> None:
    for kind in (pa.string(), pa.large_string()):
        chunks = pa.chunked_array([["a", None, "bc"], ["", "dé"], ["f"]], type=kind)
        frame = pd.DataFrame({"s": pd.Series(pd.arrays.ArrowExtensionArray(chunks))})
        assert _stream(frame, 4, _binary._encoder()) == _stream(frame, 4, None)
        pgmonkey.to_sql(frame, "binencode_chunks", conn, if_exists="replace")
        got = conn.execute("SELECT s FROM binencode_chunks").fetchall()
        assert [r[0] for r in got] == ["a", None, "bc", "", "dé", "f"]


def test_no_rows_of_arrow_held_text(conn: psycopg.Connection[Any]) -> None:
    for series in (pd.Series([], dtype="str"), pd.Series(["a", "b"], dtype="str").iloc[2:]):
        held = _binary._arrow_text(series, series.isna().to_numpy(), "utf-8")
        assert held is not None
        assert [len(held[0]), len(held[1][0]), len(held[1][1])] == [0, 0, 0]
        pgmonkey.to_sql(series.to_frame("s"), "binencode_empty", conn, if_exists="replace")
        assert conn.execute("SELECT count(*) FROM binencode_empty").fetchone() == (0,)
