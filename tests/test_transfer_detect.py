"""CSV detection, settings files and table names: no database needed."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
import yaml

from pgmonkey.errors import TransferError
from pgmonkey.transfer import (
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
        (["1", "2.5", "1e5"], "double precision"),
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
