"""CSV detection, settings files and table names: no database needed."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pgmonkey.errors import TransferError
from pgmonkey.transfer import (
    ExportSettings,
    ImportSettings,
    column_names,
    detect_csv,
    detect_encoding,
    import_settings_path,
    load_import_settings,
    write_import_settings,
)
from pgmonkey.transfer._settings import find_legacy_settings, pg_encoding
from pgmonkey.transfer._sql import default_csv_name, parse_table


def _write(tmp_path: Path, data: bytes, name: str = "data.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a,b\n1,2\n", "utf-8"),
        ("name\nZoë\n".encode(), "utf-8"),
        (codecs.BOM_UTF8 + b"a,b\n1,2\n", "utf-8-sig"),
        ("a,b\n1,é\n".encode("utf-16"), "utf-16"),
        ("name\nZoë\n".encode("latin-1"), "latin-1"),
        ("name\n\u201cquoted\u201d \u20ac\n".encode("cp1252"), "cp1252"),
    ],
)
def test_detect_encoding(tmp_path: Path, data: bytes, expected: str) -> None:
    assert detect_encoding(_write(tmp_path, data)) == expected


def test_detect_encoding_reads_the_whole_file(tmp_path: Path) -> None:
    # One Latin-1 byte after 3 MiB of ASCII: a sample-only check would say UTF-8.
    data = b"a,b\n" + b"x,1\n" * (3 << 18) + "é,2\n".encode("latin-1")
    assert detect_encoding(_write(tmp_path, data)) == "latin-1"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_detect_delimiter_and_header(tmp_path: Path, delimiter: str) -> None:
    rows = [["Name", "Age", "City"], ["Alice", "30", "Paris"], ["Bob", "41", "Rome"]]
    text = "".join(delimiter.join(r) + "\n" for r in rows)
    s = detect_csv(_write(tmp_path, text.encode()))
    assert s.delimiter == delimiter
    assert s.has_headers is True
    assert [(c.csv, c.name, c.type) for c in s.columns] == [
        ("Name", "name", "text"),
        ("Age", "age", "bigint"),
        ("City", "city", "text"),
    ]
    assert s.preview == (("Alice", "30", "Paris"), ("Bob", "41", "Rome"))


def test_detect_quotechar_and_no_header(tmp_path: Path) -> None:
    text = "'a,1',1,2024-01-01\n'b,2',2,2024-01-02\n'c,3',3,2024-01-03\n"
    s = detect_csv(_write(tmp_path, text.encode()))
    assert (s.delimiter, s.quotechar) == (",", "'")
    assert s.has_headers is False  # the first row holds numbers and dates: data
    assert [c.name for c in s.columns] == ["column_1", "column_2", "column_3"]
    assert [c.type for c in s.columns] == ["text", "bigint", "date"]
    assert all(c.csv is None for c in s.columns)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "-2", "", "300"], "bigint"),
        (["007", "8"], "text"),  # leading zeros would be lost
        (["1", "2.50"], "numeric"),
        (["1", "2.5", "1e5"], "numeric"),  # numeric reads exponents exactly
        # A double would round the long decimal (it used to widen to double precision).
        (["3.14159265358979323846264338327950288", "1e3"], "numeric"),
        (["9223372036854775808"], "numeric"),  # beyond bigint
        (["true", "False", "t"], "boolean"),
        (["1", "0"], "bigint"),
        (["2024-01-31", "1999-12-01"], "date"),
        (["2024-02-30"], "text"),  # not a date
        (["2024-01-31", "2024-01-31 10:00:00"], "timestamp"),
        (["2024-01-31T10:00:00.5"], "timestamp"),
        (["2024-01-31 10:00:00+02", "2024-01-31T10:00:00Z"], "timestamptz"),
        (["2024-01-31 10:00:00", "2024-01-31 10:00:00+02"], "text"),
        (["1", "x"], "text"),
        (["", ""], "text"),
        ([" 1"], "text"),
        (["NaN"], "text"),
    ],
)
def test_type_inference_is_conservative(tmp_path: Path, values: list[str], expected: str) -> None:
    text = "v\n" + "".join(f'"{v}"\n' if v.startswith(" ") else f"{v}\n" for v in values)
    s = detect_csv(_write(tmp_path, text.encode()), has_headers=True)
    assert s.columns[0].type == expected


def test_null_string_values_do_not_decide_the_type(tmp_path: Path) -> None:
    p = _write(tmp_path, b"n\n1\nNULL\n3\n")
    assert detect_csv(p, null_string="NULL").columns[0].type == "bigint"
    assert detect_csv(p).columns[0].type == "text"


def test_column_names_are_safe_and_unique() -> None:
    headers = ["Prénom", "Total (EUR)", "1st", "", None, "a", "A", "x" * 80, 'q"; DROP', "  "]
    names = column_names(headers)
    assert names == [
        "prenom",
        "total_eur",
        "c_1st",
        "column_4",
        "column_5",
        "a",
        "a_2",
        "x" * 63,
        "q_drop",
        "column_10",
    ]
    assert column_names(["Keep Me", "Keep Me"], enforce_lowercase=False) == ["Keep Me", "Keep Me_2"]


def test_settings_file_round_trip(tmp_path: Path) -> None:
    p = _write(tmp_path, b"A\tB\n1\tx\n")
    detected = detect_csv(p)
    target = write_import_settings(detected, import_settings_path(p))
    assert target.name == "data.csv.import.yaml"
    loaded = load_import_settings(target)
    assert loaded == detected
    assert loaded.source == target
    raw = yaml.safe_load(target.read_text(encoding="utf-8"))
    assert raw["delimiter"] == "\t"
    assert raw["columns"] == [
        {"csv": "A", "name": "a", "type": "bigint"},
        {"csv": "B", "name": "b", "type": "text"},
    ]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ({"delimiter": ",,"}, "delimiter must be a single ASCII character"),
        ({"delimiter": "'", "quotechar": "'"}, "must differ"),
        ({"if_exists": "merge"}, "if_exists must be one of"),
        ({"encoding": "klingon"}, "unknown encoding 'klingon'"),
        # Codecs of bytes, not text: they used to pass, then fail with a TypeError.
        ({"encoding": "rot13"}, "unknown encoding 'rot13'"),
        ({"encoding": "base64"}, "unknown encoding 'base64'"),
        ({"has_headers": "yes"}, "has_headers must be true or false"),
        ({"connection_settings": {}}, "unknown settings key 'connection_settings'"),
        ({"columns": [{"name": "a", "type": "text); DROP TABLE x; --"}]}, "invalid type"),
        ({"columns": [{"name": "a"}, {"name": "a"}]}, "appears twice"),
    ],
)
def test_bad_settings_are_refused(
    tmp_path: Path, content: dict[str, object], fragment: str
) -> None:
    p = tmp_path / "s.import.yaml"
    p.write_text(yaml.safe_dump(content), encoding="utf-8")
    with pytest.raises(TransferError, match=r".*") as info:
        load_import_settings(p)
    assert fragment in str(info.value)
    assert str(p) in str(info.value)


@pytest.mark.parametrize(
    "ctype", ["numeric(10,2)", "timestamp with time zone", "int[]", "character varying(20)"]
)
def test_type_names_users_write_are_accepted(tmp_path: Path, ctype: str) -> None:
    p = tmp_path / "s.import.yaml"
    p.write_text(yaml.safe_dump({"columns": [{"csv": "a", "name": "a", "type": ctype}]}))
    assert load_import_settings(p).columns[0].type == ctype


def test_legacy_settings_only_when_they_hold_only_settings_keys(tmp_path: Path) -> None:
    csv_path = _write(tmp_path, b"a\n1\n")
    assert find_legacy_settings(csv_path) is None
    legacy = tmp_path / "data.yaml"
    legacy.write_text(yaml.safe_dump({"delimiter": ";", "has_headers": True}))
    assert find_legacy_settings(csv_path) == legacy
    legacy.write_text(yaml.safe_dump({"connection_type": "normal", "connection_settings": {}}))
    assert find_legacy_settings(csv_path) is None
    legacy.write_text("not: [valid")
    assert find_legacy_settings(csv_path) is None


def test_pg_encoding_names() -> None:
    assert pg_encoding("utf8") == "UTF8"
    assert pg_encoding("latin1") == "LATIN1"
    assert pg_encoding("ISO-8859-1") == "LATIN1"
    assert pg_encoding("windows-1252") == "WIN1252"
    assert pg_encoding("utf-16") is None  # transcoded in Python


@pytest.mark.parametrize(
    ("text", "schema", "name"),
    [
        ("my_table", None, "my_table"),
        ("public.my_table", "public", "my_table"),
        ('"My.Schema"."a ""b"""', "My.Schema", 'a "b"'),
        ('we"ird; DROP TABLE x; --', None, 'we"ird; DROP TABLE x; --'),
        (("s.x", "t.y"), "s.x", "t.y"),
    ],
)
def test_parse_table(text: str | tuple[str, str], schema: str | None, name: str) -> None:
    t = parse_table(text)
    assert (t.schema, t.name) == (schema, name)


@pytest.mark.parametrize("bad", ["", "a.b.c", "a.", '"open'])
def test_parse_table_refuses(bad: str) -> None:
    with pytest.raises(TransferError, match="table name"):
        parse_table(bad)


def test_default_csv_name_is_the_table_name() -> None:
    assert default_csv_name(parse_table("public.my_table")) == "my_table.csv"
    assert default_csv_name(parse_table("a/b")) == "a_b.csv"


def test_detect_refuses_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="not found"):
        detect_csv(tmp_path / "nope.csv")
    with pytest.raises(TransferError, match="empty"):
        detect_csv(_write(tmp_path, b""))


def test_import_settings_defaults() -> None:
    s = ImportSettings()
    assert (s.delimiter, s.quotechar, s.encoding, s.if_exists, s.null_string) == (
        ",",
        '"',
        "utf-8",
        "fail",
        "",
    )


# -- detection from evidence across the whole file ---------------


def _review(settings: ImportSettings) -> str:
    assert settings.evidence is not None
    return "\n".join([*settings.evidence.lines(), *settings.evidence.columns])


@pytest.mark.parametrize(
    ("data", "line", "what"),
    [
        (b"a,b\n1,x\n2,y\n3,c,EXTRA\n4,d\n", 4, "the line has 3 fields where the table has 2"),
        (b"a,b\n1,x\n2\n3,y\n", 3, "the line has 1 fields where the table has 2"),
        (b"a,b\n1,x\n\n3,y\n", 3, "the line is empty where the table has 2"),
        (b"a,b\n1,x\n2,y\n\n", 4, "the line is empty"),
    ],
)
def test_a_ragged_row_is_named_and_detection_stops_there(
    tmp_path: Path, data: bytes, line: int, what: str
) -> None:
    p = _write(tmp_path, data)
    with pytest.raises(TransferError) as info:
        detect_csv(p)
    message = str(info.value)
    assert f"{str(p)!r}: line {line}: " in message and what in message
    assert "detection stopped here" in message


def test_a_ragged_row_far_into_the_file_is_found(tmp_path: Path) -> None:
    rows = b"".join(b"%d,x\n" % i for i in range(30000))
    p = _write(tmp_path, b"a,b\n" + rows + b"1,2,3\n" + rows)
    with pytest.raises(TransferError, match="line 30002: the line has 3 fields"):
        detect_csv(p)


def test_header_with_names_like_booleans_is_a_header(tmp_path: Path) -> None:
    # id,t,n,f was taken for data because t, n, f read as booleans.
    p = _write(tmp_path, b"id,t,n,f\n1,true,2,f\n2,false,5,t\n3,true,7,t\n")
    s = detect_csv(p)
    assert s.has_headers is True
    assert [(c.name, c.type) for c in s.columns] == [
        ("id", "bigint"),
        ("t", "boolean"),
        ("n", "bigint"),
        ("f", "boolean"),
    ]
    assert "'id' is not bigint like the values below it" in _review(s)


def test_decimals_are_numeric_and_the_review_says_why(tmp_path: Path) -> None:
    p = _write(tmp_path, b"price\n742.94\n0.1\n1.50\n")
    s = detect_csv(p)
    assert s.columns[0].type == "numeric"
    assert s.evidence is not None
    assert any("change a column's type to double precision" in n for n in s.evidence.notes)
    # The settings file chooses: double precision is a type like any other there.
    target = write_import_settings(s, import_settings_path(p))
    text = target.read_text(encoding="utf-8").replace("type: numeric", "type: double precision")
    target.write_text(text, encoding="utf-8")
    assert load_import_settings(target).columns[0].type == "double precision"


def test_a_late_value_sets_the_type_and_the_review_names_it(tmp_path: Path) -> None:
    lines = [f"{i},{i}.25,2024-01-{i % 28 + 1:02d}" for i in range(60000)]
    lines[45000] = "45000,nil,2024-01-01"
    lines[50000] = "50000.5,1.25,2024-01-01 10:00:00"
    p = _write(tmp_path, ("n,x,d\n" + "\n".join(lines) + "\n").encode())
    s = detect_csv(p)
    assert [c.type for c in s.columns] == ["numeric", "text", "timestamp"]
    review = _review(s)
    assert "text: line 45002: 'nil' is not a number (numeric); lines 2-45001 fit numeric" in review
    assert "set null_string: 'nil'" in review
    assert "numeric from line 50002 '50000.5'" in review
    assert "timestamp from line 50002 '2024-01-01 10:00:00'" in review
    assert "60,000 rows, lines 2-60001, every value read" in review


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('id,n\n1,"5"\n2,""\n', "text"),  # "" is '' to COPY: only text holds it
        ("id,n\n1,5\n2,\n", "bigint"),  # unquoted empty: NULL
        ('id,n\n1,"5"\n2,"7"\n', "bigint"),  # quoted numbers are numbers
        ('id,n\n1,5"0"\n2,7\n', "text"),  # COPY reads 5"0" as 50: typed only when plain
    ],
)
def test_quoted_empty_string_agrees_with_copy(tmp_path: Path, text: str, expected: str) -> None:
    s = detect_csv(_write(tmp_path, text.encode()))
    assert s.columns[1].type == expected, _review(s)


def test_partly_quoted_field_is_text(tmp_path: Path) -> None:
    # A quote in the middle of a field quotes from there, as COPY reads it: a,"b,c"d is 2 fields.
    s = detect_csv(_write(tmp_path, b'k,v\n1,a"b,c"d\n2,e\n'))
    assert len(s.columns) == 2
    assert s.preview[0] == ("1", "ab,cd")


def test_empty_first_header_cell_is_an_index_column(tmp_path: Path) -> None:
    # What DataFrame.to_csv() and R's write.csv write.
    for head in (b",name,score\n", b'"","name","score"\n'):
        p = _write(tmp_path, head + b"0,Ada,1.5\n1,Bob,2.25\n2,Cy,3.0\n")
        s = detect_csv(p)
        assert s.has_headers is True
        assert [(c.name, c.type) for c in s.columns] == [
            ("column_1", "bigint"),
            ("name", "text"),
            ("score", "numeric"),
        ]
        assert s.evidence is not None and any("index column" in n for n in s.evidence.notes)


def test_numbers_as_column_names(tmp_path: Path) -> None:
    p = _write(tmp_path, b"Country,2001,2002,2003\nPeru,1.5,2.5,\nChad,,0.5,7.25\n")
    s = detect_csv(p)
    assert s.has_headers is True
    assert [c.name for c in s.columns] == ["country", "c_2001", "c_2002", "c_2003"]
    assert "2001..2003 count up across the columns" in _review(s)
    # The same numbers below do not make a header: a table of counting numbers.
    s = detect_csv(_write(tmp_path, b"1,2,3\n4,5,6\n7,8,9\n"))
    assert s.has_headers is False


def test_when_unsure_every_line_is_kept_and_the_review_says_so(tmp_path: Path) -> None:
    s = detect_csv(_write(tmp_path, b"apple\nbanana\ncherry\n"))
    assert s.has_headers is False and s.preview[0] == ("apple",)
    assert s.evidence is not None
    assert "none (unsure)" in s.evidence.header
    assert any("may be a header" in n for n in s.evidence.notes)
    # One line: a header over no rows (an empty table's export: pandas' read_csv reads it
    # so) when it is distinct names; numbers, or a name twice, are data. Unsure either way.
    s = detect_csv(_write(tmp_path, b"a,b,c\n"))
    assert s.has_headers is True and s.evidence is not None
    assert [c.name for c in s.columns] == ["a", "b", "c"]
    assert any("if line 1 is data, set has_headers: false" in n for n in s.evidence.notes)
    for data in (b"a,b,a\n", b"a,1,c\n", b"a,,c\n", b"2024-01-01,x\n"):
        s = detect_csv(_write(tmp_path, data))
        assert s.has_headers is False and s.evidence is not None, data
        assert "none (unsure)" in s.evidence.header


def test_lines_before_the_table_are_skipped_and_named(tmp_path: Path) -> None:
    p = _write(tmp_path, b"Sales report\nQ1 2024\n\nregion,amount\nNorth,1.5\nSouth,2.5\n")
    s = detect_csv(p)
    assert (s.skip_lines, s.has_headers) == (3, True)
    assert [c.name for c in s.columns] == ["region", "amount"]
    assert s.evidence is not None
    assert s.evidence.skipped.startswith("lines 1-3 (skip_lines: 3)")
    assert "'Sales report'" in s.evidence.skipped


def test_a_metadata_first_line_of_the_same_width_is_not_data(tmp_path: Path) -> None:
    body = "".join(f"{i % 7}.{i % 10},{i % 5}.5,{i % 3}\n" for i in range(40))
    s = detect_csv(_write(tmp_path, ("40,3,setosa\n" + body).encode()))
    assert s.has_headers is True
    assert [c.type for c in s.columns] == ["numeric", "numeric", "bigint"]


@pytest.mark.parametrize(
    ("text", "delimiter", "aligned"),
    [
        ("a b c\n1 2 3\n4 5 6\n", " ", False),
        ('"x" "y"\n"r1" 1 2\n"r2" 3 4\n', " ", False),  # R's write.table
        ("  id  name   temp\n   1  oslo   -3.5\n  10  rome   21.0\n", " ", True),
        ("a^b^c\n1^x, y^3\n4^z, w^6\n", "^", False),
        ("a~b\n1~2\n3~4\n", "~", False),
        ("a\x1fb\n1\x1f2\n", "\x1f", False),
        ("Kunde;Betrag\nMüller;1,5\nSchmidt;2,25\n", ";", False),
        ("when\n2024-01-01 10:00:00\n2024-01-02 11:00:00\n", ",", False),  # one column
    ],
)
def test_delimiters_any_consistent_character(
    tmp_path: Path, text: str, delimiter: str, aligned: bool
) -> None:
    s = detect_csv(_write(tmp_path, text.encode()))
    assert (s.delimiter, s.collapse_whitespace) == (delimiter, aligned), _review(s)


def test_aligned_columns(tmp_path: Path) -> None:
    text = "station   temp  rain\nOSLO      -3.5    12\nBERGEN    10.0     0\n"
    s = detect_csv(_write(tmp_path, text.encode()))
    assert s.collapse_whitespace and s.has_headers
    assert [(c.name, c.type) for c in s.columns] == [
        ("station", "text"),
        ("temp", "numeric"),
        ("rain", "bigint"),
    ]
    assert s.preview == (("OSLO", "-3.5", "12"), ("BERGEN", "10.0", "0"))


def test_mixed_line_endings_are_normalised_when_safe(tmp_path: Path) -> None:
    s = detect_csv(_write(tmp_path, b"a,b\r\n1,x\r\n2,y\r\n3,z\n"))
    assert s.normalise_newlines is True
    assert s.evidence is not None
    assert s.evidence.line_endings.startswith("mixed: CRLF, but line 4 ends with LF")
    assert detect_csv(_write(tmp_path, b"a,b\r\n1,x\r\n")).normalise_newlines is False


def test_mixed_line_endings_with_a_line_break_in_a_value_are_refused(tmp_path: Path) -> None:
    p = _write(tmp_path, b'a,b\r\n1,"two\r\nlines"\r\n3,z\n')
    with pytest.raises(TransferError, match=r"line 4: the line ends with LF .* line 2 has a line"):
        detect_csv(p)


def test_a_lone_carriage_return_is_refused_naming_the_line(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match=r"line 3: the line ends with CR where"):
        detect_csv(_write(tmp_path, b"a,b\n1,x\n2,y\r3,z\n"))


def test_a_line_of_backslash_dot_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match=r"line 3: the line is only '\\\.'"):
        detect_csv(_write(tmp_path, b"a\n1\n\\.\n2\n"))


def test_an_unclosed_quote_is_named(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match=r"line 3: a quoted field starts on this line"):
        detect_csv(_write(tmp_path, b'a,b\n1,x\n2,"y\n3,z\n'))


def test_settings_with_the_new_keys_round_trip(tmp_path: Path) -> None:
    p = _write(tmp_path, b"title\n\nx    y\n1    2\n3    4\r\n")
    s = detect_csv(p)
    assert (s.skip_lines, s.collapse_whitespace, s.normalise_newlines) == (2, True, True)
    target = write_import_settings(s, import_settings_path(p))
    raw = yaml.safe_load(target.read_text(encoding="utf-8"))
    assert (raw["skip_lines"], raw["collapse_whitespace"], raw["normalise_newlines"]) == (
        2,
        True,
        True,
    )
    assert load_import_settings(target) == s
    plain = detect_csv(_write(tmp_path, b"a\n1\n", "plain.csv"))
    assert not {"skip_lines", "collapse_whitespace", "normalise_newlines"} & set(plain.to_dict())
    bad = tmp_path / "bad.import.yaml"
    bad.write_text("skip_lines: -1\n")
    with pytest.raises(TransferError, match="skip_lines must be a whole number"):
        load_import_settings(bad)


def test_detection_does_not_depend_on_where_chunks_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgmonkey.transfer import _csvscan
    from tests.test_csv_corpus import SHAPES

    for make in SHAPES:
        shape = make()
        p = _write(tmp_path, shape.data, f"{shape.name}.csv")
        whole = detect_csv(p)
        with monkeypatch.context() as m:
            m.setattr(_csvscan, "SCAN_CHUNK", 7)  # records, CRLFs and characters cut in two
            small = detect_csv(p)
        assert small == whole, shape.name
        assert small.evidence == whole.evidence, shape.name


_PLAIN = st.text(alphabet="0123456789-+.:eETZtruefalsNyo ", max_size=26)
_TRICKY = st.sampled_from(
    [
        "",
        "0",
        "-0",
        "-0.0",
        "-0.05",
        "007",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "1" * 38 + ".5",
        "1" * 39,
        "1e99",
        "1e100",
        "2024-02-29",
        "2023-02-29",
        "2000-02-29",
        "1900-02-29",
        "0000-01-01",
        "2024-12-31 23:59:59.123456",
        "2024-12-31 24:00:00",
        "2024-01-01T00:00Z",
        "2024-01-01 00:00:00+14:00",
        "2024-01-01 00:00:00+15",
        "TRUE",
        "No",
        "NaN",
    ]
)


@st.composite
def _raw_field(draw: st.DrawFn) -> str:
    value = draw(st.one_of(_TRICKY, _PLAIN, st.text(max_size=8)))
    if draw(st.booleans()):
        return '"' + value.replace('"', '""') + '"'
    return "".join(c for c in value if c not in ',"\r\n')


@given(raws=st.lists(_raw_field(), min_size=1, max_size=3), as_bytes=st.booleans())
def test_the_whole_file_scan_and_the_value_check_agree(raws: list[str], as_bytes: bool) -> None:
    # The scan's one regex per record and the per-value check (which explains a refusal)
    # must agree on every value, or a refused record would never be explained.
    from pgmonkey.transfer._csvscan import NULL_ONLY, TYPES, Dialect, accepts, records_pattern

    d = Dialect(",", '"', "\n", False)
    record = ",".join(raws) + "\n"
    for ctype in (NULL_ONLY, *TYPES):
        pattern = records_pattern(d, (ctype,) * len(raws), "", True, False, as_bytes)
        data = record.encode() if as_bytes else record
        m = pattern.match(data)  # zero or more records: all of it, or nothing
        assert m is not None
        scanned = m.end() == len(data)
        assert scanned == all(accepts(ctype, r, '"', "") for r in raws), (ctype, raws)


@pytest.mark.parametrize(
    ("text", "header", "sure"),
    [
        ("5,3\n2.5,1.75\n0.5,4.25\n", False, False),  # whole numbers over decimals alone: data
        ("name\nAlice\nBob\n", False, False),  # one weak sign: kept as data
        ("name,city\nAlice,Paris\nBob,Rome\n", True, False),  # two: a header, said to be weak
        ("Name,Age\nAlice,30\nBob,41\n", True, True),
        ("x,1\n2,3\n4,5\n", True, False),  # a name over numbers, but a number beside it
    ],
)
def test_header_evidence_and_doubt(tmp_path: Path, text: str, header: bool, sure: bool) -> None:
    s = detect_csv(_write(tmp_path, text.encode()))
    assert s.has_headers is header, _review(s)
    assert s.evidence is not None
    doubt = any("has_headers" in n for n in s.evidence.notes)
    assert doubt is not sure, s.evidence.notes


def test_a_short_first_row_of_data_is_no_header(tmp_path: Path) -> None:
    # One field fewer than the rows below, and values like theirs: not R's header over row
    # names (which it used to be taken for, the row's values becoming column names), but a
    # data row with a field missing, left out and said so.
    s = detect_csv(_write(tmp_path, b"1,2\n3,4,5\n6,7,8\n9,10,11\n"))
    assert (s.has_headers, s.skip_lines) == (False, 1)
    assert [c.name for c in s.columns] == ["column_1", "column_2", "column_3"]
    assert any("line 1 has one field fewer" in n for n in s.evidence.notes), s.evidence.notes
    # R's header, one name short over row names, is still one: names of text, quoted
    # numbers (R quotes every name), and whatever it holds when a header is said to be there.
    for data, said, names in (
        (b'"a","b"\n"1",3,4\n"2",5,6\n"3",7,8\n', None, [None, "a", "b"]),
        (b'"2019","2020"\n"A",1,2\n"B",4,5\n"C",7,8\n', None, [None, "2019", "2020"]),
        (b"1,2\n3,4,5\n6,7,8\n9,10,11\n", True, [None, "1", "2"]),
    ):
        r = detect_csv(_write(tmp_path, data), has_headers=said)
        assert (r.has_headers, r.skip_lines) == (True, 0)
        assert [c.csv for c in r.columns] == names
        assert len(r.preview) == 3  # every data row


@pytest.mark.parametrize("encoding", ["rot13", "base64", "hex", "zlib"])
def test_a_codec_of_bytes_is_no_text_encoding(tmp_path: Path, encoding: str) -> None:
    p = _write(tmp_path, b"a\n1\n")
    with pytest.raises(TransferError, match=f"unknown encoding '{encoding}'"):
        detect_csv(p, encoding=encoding)
    with pytest.raises(TransferError, match=f"unknown encoding '{encoding}'"):
        ExportSettings(encoding=encoding)


@pytest.mark.parametrize("encoding", ["undefined", "idna", "punycode"])
def test_a_codec_of_names_is_no_file_encoding(tmp_path: Path, encoding: str) -> None:
    # They raised a bare UnicodeError ("Unsupported error handling replace") or read the
    # file as empty.
    p = _write(tmp_path, b"a\n1\n")
    with pytest.raises(TransferError, match=f"'{encoding}'.*a text encoding: utf-8"):
        detect_csv(p, encoding=encoding)
    with pytest.raises(TransferError, match=f"'{encoding}'.*a text encoding: utf-8"):
        ExportSettings(encoding=encoding)
    ebcdic = _write(tmp_path, "id,name\n1,x\n".encode("cp037"))  # a file's encoding
    assert [c.name for c in detect_csv(ebcdic, encoding="cp037").columns] == ["id", "name"]


@pytest.mark.parametrize(
    "text",
    [
        "id,name\n1,'Smith, John'\n2,'O''Brien, Pat'\n",
        "id, name\n1, 'Smith, John'\n2, 'Doe, Jane'\n",  # a space after the comma
        "id,t\n1,'line one\nline two'\n2,'x'\n",  # a value over two lines
        # Only values over lines quoted (csv.writer's minimal quoting): without the quote
        # the lines would not line up.
        "id,note\n1,'first line\nsecond line'\n2,plain\n3,'a\nb'\n",
        "1 'a b'\n2 'c d'\n3 'e'\n",  # fields separated by spaces
    ],
)
def test_single_quotes_around_whole_fields_are_the_quote(tmp_path: Path, text: str) -> None:
    assert detect_csv(_write(tmp_path, text.encode())).quotechar == "'"


@pytest.mark.parametrize(
    "text",
    [
        "id,note\n1,rock 'n' roll\n2,it's\n3,He said 'hi' there\n",
        "a b\nrock 'n' roll\nfoo bar\nbaz qux\n",
        "a,b\n1,'x'\n2,it's\n",  # one apostrophe inside a value: ' would drop it
        "id,label\n1,'90s\n2,Parents'\n3,kids\n",  # ' would merge lines 2 and 3 into a row
        "id,note,extra\n1,'90s,x\n2,Parents',y\n3,'',z\n",  # and an empty '' beside them
    ],
)
def test_apostrophes_in_values_are_no_quote(tmp_path: Path, text: str) -> None:
    assert detect_csv(_write(tmp_path, text.encode())).quotechar == '"'


def test_a_sample_cut_inside_a_quoted_field(tmp_path: Path) -> None:
    # Past the first MiB the sample stops where it stops: inside a quoted field, its lone
    # opening quote made every other single quote of the file count for nothing.
    from pgmonkey.transfer._detect import SAMPLE_BYTES

    rows = "".join(f"{i},'Smith, John {i}','New York'\n" for i in range(40_000))
    for pad in range(40):
        text = f"id,name,city{' ' * pad}\n" + rows
        if text[:SAMPLE_BYTES].count("'") % 2:  # the cut falls inside a quoted field
            break
    s = detect_csv(_write(tmp_path, text.encode()))
    assert (s.quotechar, len(s.columns)) == ("'", 3)
