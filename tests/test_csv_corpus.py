"""A corpus of real-world-shaped CSV files, each imported and compared with ``psql \\copy``.

Each file is written here the way a tool writes it (pandas, R, Excel, numpy, hand-made
reports), goes through the review step and the import, and is loaded again by ``psql
\\copy`` into all-text columns with the options the file really has (the ground truth, told
by the generator, never by detection). Then: the same row count, and no changed value (a
text, bigint, numeric or date column holds exactly the file's text; other types hold a value
equal to the file's text cast to the type). The review step's evidence is checked too.

Run ``python tests/test_csv_corpus.py DIR`` to write the corpus to DIR and print what the
review step says for each file.
"""

from __future__ import annotations

import csv
import io
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pgmonkey.transfer import ColumnSpec, detect_csv, import_csv

Conn = psycopg.Connection[tuple[Any, ...]]
PSQL = "/usr/bin/psql"


@dataclass
class Shape:
    """One corpus file and the truth about it."""

    name: str
    data: bytes
    columns: int
    header: bool = True
    delimiter: str = ","
    quote: str = '"'
    encoding: str = "UTF8"  # as psql's \copy is told
    program: str = ""  # a command that gives psql the file it can load ({path})
    says: list[str] = field(default_factory=list)  # in the review step's text
    types: list[str] | None = None  # the detected column types


def _csv(rows: list[list[Any]], **fmt: Any) -> str:
    out = io.StringIO()
    csv.writer(out, **fmt).writerows(rows)
    return out.getvalue()


def _pandas_index() -> Shape:
    import pandas as pd

    rng = random.Random(1)
    n = 200
    df = pd.DataFrame(
        {
            "name": [rng.choice(["Ada", "Grace", "Linus", "Zoë", None]) for _ in range(n)],
            "score": [round(rng.uniform(0, 1000), 2) for _ in range(n)],
            "joined": [
                f"20{rng.randint(10, 24)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
                for _ in range(n)
            ],
            "active": [rng.random() < 0.5 for _ in range(n)],
            "zip": [f"{rng.randint(0, 99999):05d}" for _ in range(n)],
        }
    )
    df.loc[5, "score"] = None
    return Shape(
        "pandas_index",
        df.to_csv().encode(),
        6,
        says=[
            "index column",
            "header: line 1: ",
            "'zip' -> zip text: line 17: '07623' has a leading zero",
        ],
        types=["bigint", "text", "numeric", "date", "boolean", "text"],
    )


def _pandas_numbered_columns() -> Shape:
    import numpy as np
    import pandas as pd

    df = pd.DataFrame(np.random.default_rng(2).random((60, 8)))
    return Shape(
        "pandas_numbered_columns",
        df.to_csv().encode(),
        9,
        says=["0..7 count up across the columns"],
        types=["bigint"] + ["numeric"] * 8,
    )


def _pandas_numbered_columns_no_index() -> Shape:
    import numpy as np
    import pandas as pd

    df = pd.DataFrame(np.random.default_rng(3).integers(0, 1000, (40, 5)))
    return Shape(
        "pandas_numbered_columns_no_index",
        df.to_csv(index=False).encode(),
        5,
        says=["0..4 count up across the columns"],
        types=["bigint"] * 5,
    )


def _r_write_csv() -> Shape:
    # write.csv(mtcars-like): quoted "" over the row names, NA for missing, strings quoted.
    rng = random.Random(4)
    lines = ['"","mpg","cyl","model","am"']
    for i in range(30):
        mpg = "NA" if i == 7 else f"{rng.uniform(10, 35):.1f}"
        lines.append(
            f'"Car {i}",{mpg},{rng.choice([4, 6, 8])},"M{i}",{rng.choice(["TRUE", "FALSE"])}'
        )
    return Shape(
        "r_write_csv",
        ("\n".join(lines) + "\n").encode(),
        5,
        says=["index column", "set null_string: 'NA'"],
        types=["text", "text", "bigint", "text", "boolean"],
    )


def _r_write_table() -> Shape:
    # write.table(df): space-separated, quoted strings, a header without the row-name column.
    rng = random.Random(5)
    lines = ['"mpg" "cyl" "disp"']
    for i in range(25):
        lines.append(
            f'"Model {i}" {rng.uniform(10, 35):.1f} {rng.choice([4, 6])} {rng.randint(70, 400)}'
        )
    return Shape(
        "r_write_table",
        ("\n".join(lines) + "\n").encode(),
        4,
        delimiter=" ",
        says=["' ' (a single space)", "one name fewer"],
        types=["text", "numeric", "bigint", "bigint"],
    )


def _excel_utf8_bom_crlf() -> Shape:
    # Excel's "CSV UTF-8": a BOM, CRLF, and a cell with Alt+Enter (LF) inside quotes.
    rows = [["Product", "Note", "Price", "Date"]]
    for i in range(40):
        note = f"line one\nline two {i}" if i % 7 == 0 else f"plain, with comma {i}"
        rows.append([f"Prod {i}", note, f"{i * 1.25:.2f}", f"2024-02-{i % 28 + 1:02d}"])
    return Shape(
        "excel_utf8_bom_crlf",
        b"\xef\xbb\xbf" + _csv(rows).encode(),
        4,
        says=["utf-8-sig", "CRLF", "values span lines"],
        types=["text", "text", "numeric", "date"],
    )


def _excel_cp1252_semicolon() -> Shape:
    # A European Excel export: semicolons, decimal commas, dd.mm.yyyy, cp1252, CRLF.
    rows = [["Kunde", "Betrag", "Datum", "Währung"]]
    for i in range(30):
        rows.append([f"Müller {i}", f"{i},5{i % 10}", f"{i % 28 + 1:02d}.03.2024", "€"])
    return Shape(
        "excel_cp1252_semicolon",
        _csv(rows, delimiter=";").encode("cp1252"),
        4,
        delimiter=";",
        encoding="WIN1252",
        says=["cp1252", "';'"],
        types=["text"] * 4,
    )


def _numeric_header_years() -> Shape:
    rng = random.Random(6)
    years = list(range(1960, 1976))
    rows: list[list[Any]] = [["Country Name", "Country Code", *years]]
    for c in ("Aruba", "Chad", "Peru", "Fiji", "Oman", "Togo"):
        rows.append(
            [c, c[:3].upper(), *(rng.choice(["", f"{rng.uniform(0, 99):.3f}"]) for _ in years)]
        )
    return Shape(
        "numeric_header_years",
        _csv(rows, lineterminator="\n").encode(),
        18,
        says=["1960..1975 count up across the columns"],
    )


def _world_bank_metadata() -> Shape:
    # The World Bank's API_*.csv: metadata lines, blank lines, quoted years, trailing commas.
    rng = random.Random(7)
    years = [str(y) for y in range(2000, 2010)]
    head = '"Data Source","World Development Indicators",\n\n"Last Updated Date","2024-06-28",\n\n'
    lines = [
        '"Country Name","Country Code","Indicator Name",' + ",".join(f'"{y}"' for y in years) + ","
    ]
    for c in ("Aruba", "Angola", "Albania", "Andorra"):
        values = ",".join(
            f'"{rng.uniform(1, 100):.4f}"' if rng.random() < 0.8 else '""' for _ in years
        )
        lines.append(f'"{c}","{c[:3].upper()}","GDP",{values},')
    return Shape(
        "world_bank_metadata",
        (head + "\n".join(lines) + "\n").encode(),
        14,
        program="tail -n +5 {path}",
        says=["lines 1-4 (skip_lines: 4)", "2000..2009 count up"],
    )


def _late_outlier() -> Shape:
    rng = random.Random(8)
    rows: list[list[Any]] = [["id", "reading", "count", "day"]]
    for i in range(1, 50_001):
        reading = f"{rng.uniform(0, 500):.2f}"
        count = str(rng.randint(0, 99))
        day = f"2023-{i % 12 + 1:02d}-{i % 28 + 1:02d}"
        if i == 39_459:  # line 39,460 of the file
            reading = "nil"
        if i == 45_000:
            count = "2.5"
        if i == 49_000:
            day = "2023-02-30"
        rows.append([str(i), reading, count, day])
    return Shape(
        "late_outlier",
        _csv(rows, lineterminator="\n").encode(),
        4,
        says=[
            "line 39460: 'nil' is not a number (numeric); lines 2-39459 fit numeric",
            "set null_string: 'nil'",
            "numeric from line 45001 '2.5'",
            "line 49001: '2023-02-30' is not an ISO date",
        ],
        types=["bigint", "text", "numeric", "text"],
    )


def _whitespace_aligned() -> Shape:
    # DataFrame.to_string(index=False): columns aligned with spaces, numbers right-aligned.
    import pandas as pd

    rng = random.Random(9)
    df = pd.DataFrame(
        {
            "station": [rng.choice(["OSLO", "BERGEN", "TROMSO"]) for _ in range(30)],
            "temp": [round(rng.uniform(-20, 30), 1) for _ in range(30)],
            "rain_mm": [rng.randint(0, 250) for _ in range(30)],
        }
    )
    return Shape(
        "whitespace_aligned",
        (df.to_string(index=False) + "\n").encode(),
        3,
        delimiter="\t",
        program=r"sed -E 's/^[ \t]+//; s/[ \t]+$//; s/[ \t]+/\t/g' {path}",
        says=["runs of spaces (aligned columns)"],
        types=["text", "numeric", "bigint"],
    )


def _space_delimited_numbers() -> Shape:
    # numpy.savetxt(..., fmt="%.5f"): one space between values, no header.
    import numpy as np

    out = io.BytesIO()
    np.savetxt(out, np.random.default_rng(10).random((30, 4)), fmt="%.5f")
    return Shape(
        "space_delimited_numbers",
        out.getvalue(),
        4,
        header=False,
        delimiter=" ",
        says=["' ' (a single space)", "none: line 1 is data"],
        types=["numeric"] * 4,
    )


def _iris_metadata_line() -> Shape:
    # scikit-learn's iris.csv: a first line of counts and class names above the data.
    rng = random.Random(11)
    lines = ["150,4,setosa,versicolor,virginica"]
    for i in range(150):
        lines.append(",".join(f"{rng.uniform(0.1, 7.9):.1f}" for _ in range(4)) + f",{i // 50}")
    return Shape(
        "iris_metadata_line",
        ("\n".join(lines) + "\n").encode(),
        5,
        says=["header: line 1: 'setosa' is not numeric like the values below it"],
        types=["numeric"] * 4 + ["bigint"],
    )


def _title_lines() -> Shape:
    lines = [
        "Quarterly sales report",
        "Generated 2024-04-01 by the finance team",
        "",
        "region,amount,units",
    ]
    rng = random.Random(12)
    for r in ("North", "South", "East", "West") * 5:
        lines.append(f"{r},{rng.uniform(100, 999):.2f},{rng.randint(1, 50)}")
    return Shape(
        "title_lines",
        ("\r\n".join(lines) + "\r\n").encode(),
        3,
        program="tail -n +4 {path}",
        says=["lines 1-3 (skip_lines: 3)", "CRLF"],
        types=["text", "numeric", "bigint"],
    )


def _latin1() -> Shape:
    rows = [["ville", "habitants"]] + [
        [v, str(i * 1000)] for i, v in enumerate(["Orléans", "Besançon", "Nîmes", "Angoulême"] * 5)
    ]
    return Shape(
        "latin1",
        _csv(rows, lineterminator="\n").encode("latin-1"),
        2,
        encoding="LATIN1",
        says=["latin-1: not UTF-8 (line 2: byte 0xe9)"],
        types=["text", "bigint"],
    )


def _mixed_line_endings() -> Shape:
    rows = [["id", "city"]] + [[str(i), f"town {i}"] for i in range(1, 30)]
    text = _csv(rows)  # CRLF everywhere
    text = text[:-2] + "\n"  # the last line ends with LF
    return Shape(
        "mixed_line_endings",
        text.encode(),
        2,
        program=r"sed 's/\r$//' {path}",
        says=["mixed: CRLF, but line 30 ends with LF", "normalise_newlines: true"],
        types=["bigint", "text"],
    )


def _headerless_words() -> Shape:
    words = ["apple", "banana", "cherry", "damson", "elder", "fig"]
    return Shape(
        "headerless_words",
        ("\n".join(words) + "\n").encode(),
        1,
        header=False,
        says=["none (unsure)", "may be a header"],
        types=["text"],
    )


def _one_column_with_header() -> Shape:
    return Shape(
        "one_column_with_header",
        ("value\n" + "".join(f"{i}\n" for i in range(20))).encode(),
        1,
        says=["'value' is not bigint"],
        types=["bigint"],
    )


def _boolean_named_header() -> Shape:
    rng = random.Random(13)
    lines = ["id,t,n,f"]
    for i in range(20):
        lines.append(
            f"{i},{rng.choice(['t', 'f'])},{rng.randint(0, 9)},{rng.choice(['true', 'false'])}"
        )
    return Shape(
        "boolean_named_header",
        ("\n".join(lines) + "\n").encode(),
        4,
        says=["'id' is not bigint", "'n' is not bigint"],
        types=["bigint", "boolean", "bigint", "boolean"],
    )


def _quoted_empty_in_numbers() -> Shape:
    rows = [["id", "amount", "label"]]
    for i in range(20):
        rows.append([str(i), "" if i == 3 else f"{i}.5", "" if i == 4 else f"L{i}"])
    return Shape(
        "quoted_empty_in_numbers",
        _csv(rows, quoting=csv.QUOTE_ALL, lineterminator="\n").encode(),
        3,
        says=['a quoted empty string ""'],
        types=["bigint", "text", "text"],
    )


def _utf16_tab() -> Shape:
    # Excel's "Unicode text": UTF-16 with a BOM, tabs, CRLF.
    rows = [["Name", "Qty", "When"]] + [
        [f"Ítem {i}", str(i), f"2024-05-{i + 1:02d} 10:00:00"] for i in range(20)
    ]
    return Shape(
        "utf16_tab",
        _csv(rows, delimiter="\t").encode("utf-16"),
        3,
        delimiter="\t",
        program="iconv -f UTF-16 -t UTF-8 {path}",
        says=["utf-16", "'\\t'"],
        types=["text", "bigint", "timestamp"],
    )


def _caret_delimited() -> Shape:
    rows = [["code", "label", "value"]] + [[f"C{i}", f"label, {i}", str(i * 3)] for i in range(15)]
    return Shape(
        "caret_delimited",
        _csv(rows, delimiter="^", lineterminator="\n").encode(),
        3,
        delimiter="^",
        says=["'^'"],
        types=["text", "text", "bigint"],
    )


def _mixed_types() -> Shape:
    rows = [["code", "big", "ratio", "at", "at_tz"]]
    for i in range(25):
        rows.append(
            [
                f"{i:04d}",  # leading zeros: text
                str(2**63 + i),  # beyond bigint: numeric
                f"{(i + 1) * 1.5e-7:.3e}",  # exponents: numeric, exactly as written
                f"2024-01-{i + 1:02d}T08:30:00",
                f"2024-01-{i + 1:02d} 08:30:00+02:00",
            ]
        )
    return Shape(
        "mixed_types",
        _csv(rows, lineterminator="\n").encode(),
        5,
        says=["'0000' has a leading zero", "double precision"],
        types=["text", "numeric", "numeric", "timestamp", "timestamptz"],
    )


def _apostrophes() -> Shape:
    # Apostrophes inside values, one pair of them around a word: no quoting at all. With '
    # taken for the quote, COPY would drop every apostrophe ("rock n roll").
    rows = [["id", "title", "artist"]]
    for i in range(20):
        rows.append([str(i), ["rock 'n' roll", "He said 'hi' there", "it's"][i % 3], "O'Brien"])
    return Shape(
        "apostrophes",
        _csv(rows, lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar="\\").encode(),
        3,
        says=["quotechar '\"'"],
        types=["bigint", "text", "text"],
    )


def _long_decimals_and_exponents() -> Shape:
    # Decimals longer than a double holds beside values written with an exponent: numeric
    # keeps both exactly (the column used to widen to double precision and round them).
    rows = [["x"]]
    for i in range(30):
        rows.append([f"3.14159265358979323846264338327950{i:03d}" if i % 2 else f"{i + 1}e-7"])
    return Shape(
        "long_decimals_and_exponents",
        _csv(rows, lineterminator="\n").encode(),
        1,
        types=["numeric"],
    )


def _excel_sep_line() -> Shape:
    # Excel's "sep=;" first line names the delimiter; Excel reads it and leaves it out. It
    # used to be imported as a row (and the header as data).
    rows = [["Kunde", "Menge", "Datum"]]
    for i in range(12):
        rows.append([f"Müller {i}", str(i * 7), f"2024-03-{i + 1:02d}"])
    return Shape(
        "excel_sep_line",
        ("sep=;\r\n" + _csv(rows, delimiter=";")).encode(),
        3,
        delimiter=";",
        program="tail -n +2 {path}",
        says=["line 1 names it (sep=;", "line 1 (skip_lines: 1)"],
        types=["text", "bigint", "date"],
    )


SHAPES: list[Callable[[], Shape]] = [
    _pandas_index,
    _pandas_numbered_columns,
    _pandas_numbered_columns_no_index,
    _r_write_csv,
    _r_write_table,
    _excel_utf8_bom_crlf,
    _excel_cp1252_semicolon,
    _numeric_header_years,
    _world_bank_metadata,
    _late_outlier,
    _whitespace_aligned,
    _space_delimited_numbers,
    _apostrophes,
    _long_decimals_and_exponents,
    _excel_sep_line,
    _iris_metadata_line,
    _title_lines,
    _latin1,
    _mixed_line_endings,
    _headerless_words,
    _one_column_with_header,
    _boolean_named_header,
    _quoted_empty_in_numbers,
    _utf16_tab,
    _caret_delimited,
    _mixed_types,
]


def _psql_env(dsn: str) -> dict[str, str]:
    names = {
        "host": "PGHOST",
        "port": "PGPORT",
        "user": "PGUSER",
        "password": "PGPASSWORD",
        "dbname": "PGDATABASE",
        "sslmode": "PGSSLMODE",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for key, value in conninfo_to_dict(dsn).items():
        if key in names and value is not None:
            env[names[key]] = str(value)
    return env


def _ground_truth(shape: Shape, path: Path, dsn: str, schema: str) -> str:
    """Load the file with psql's \\copy into all-text columns; return the table's name."""
    table = f"{shape.name}_truth"
    cols = ", ".join(f"c{i} text" for i in range(1, shape.columns + 1))
    delim = shape.delimiter.replace("'", "''")
    source = f"'{path}'"
    if shape.program:  # in a script: psql's \copy quoting is not the shell's
        script = path.with_suffix(".sh")
        script.write_text(shape.program.format(path=path) + "\n")
        source = f"program 'sh {script}'"
    options = (
        f"format csv, header {'true' if shape.header else 'false'}, delimiter E'{_escape(delim)}', "
        f"quote E'{_escape(shape.quote)}', encoding '{shape.encoding}'"
    )
    subprocess.run(
        [
            PSQL,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            f'CREATE TABLE "{schema}"."{table}" ({cols})',
            "-c",
            f'\\copy "{schema}"."{table}" from {source} ({options})',
        ],
        env=_psql_env(dsn),
        check=True,
        capture_output=True,
    )
    return table


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("'", "\\'")


@pytest.fixture(scope="module")
def corpus_schema(superuser_dsn: str) -> Iterator[str]:
    name = f"corpus_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield name
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.mark.parametrize("make", SHAPES, ids=[f.__name__.lstrip("_") for f in SHAPES])
def test_corpus_file_imports_as_psql_loads_it(
    make: Callable[[], Shape],
    tmp_path: Path,
    db_conn: Conn,
    superuser_dsn: str,
    corpus_schema: str,
) -> None:
    shape = make()
    path = tmp_path / f"{shape.name}.csv"
    path.write_bytes(shape.data)

    review = import_csv(path, f"{corpus_schema}.{shape.name}", db_conn)
    assert review.review_needed
    said = review.report()
    for fragment in shape.says:
        assert fragment in said, f"{fragment!r} not in the review:\n{said}"
    detected = review.settings.columns
    assert len(detected) == shape.columns, said
    if shape.types is not None:
        assert [c.type for c in detected] == shape.types, said

    result = import_csv(path, f"{corpus_schema}.{shape.name}", db_conn)
    _compare(shape, path, result.rows, detected, db_conn, superuser_dsn, corpus_schema, said)


def _compare(
    shape: Shape,
    path: Path,
    rows: int,
    columns: Sequence[ColumnSpec],
    db_conn: Conn,
    dsn: str,
    schema: str,
    said: str = "",
) -> None:
    """The imported table ``shape.name`` against psql's load of ``path`` into text."""
    truth = _ground_truth(shape, path, dsn, schema)
    row = db_conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, truth))
    ).fetchone()
    assert row is not None
    assert rows == row[0], said

    checks = []
    for i, c in enumerate(columns, 1):
        ours, theirs = sql.Identifier("a", c.name), sql.Identifier("b", f"c{i}")
        # What the server stores from psql's text, as the server writes it back: a numeric
        # keeps its scale (1.50), and reads an exponent exactly (1e-7 is 0.0000001).
        checks.append(
            sql.SQL("{}::text IS NOT DISTINCT FROM {}::{}::text").format(
                ours, theirs, sql.SQL(c.type)
            )
        )
    query = sql.SQL(
        "WITH a AS (SELECT row_number() OVER (ORDER BY ctid) AS n_, * FROM {ours}), "
        "b AS (SELECT row_number() OVER (ORDER BY ctid) AS n_, * FROM {truth}) "
        "SELECT n_, to_jsonb(a), to_jsonb(b) FROM a FULL JOIN b USING (n_) "
        "WHERE NOT ({checks}) OR a.n_ IS NULL OR b.n_ IS NULL ORDER BY n_ LIMIT 3"
    ).format(
        ours=sql.Identifier(schema, shape.name),
        truth=sql.Identifier(schema, truth),
        checks=sql.SQL(" AND ").join(checks),
    )
    changed = db_conn.execute(query).fetchall()
    assert changed == [], f"values differ from psql's:\n{changed}\n{said}"


def main(out: Path) -> None:
    """Write the corpus to ``out`` and print the review step of each file."""
    out.mkdir(parents=True, exist_ok=True)
    for make in SHAPES:
        shape = make()
        path = out / f"{shape.name}.csv"
        path.write_bytes(shape.data)
        for old in (path.with_name(path.name + ".import.yaml"),):
            old.unlink(missing_ok=True)
        print(f"=== {shape.name}")
        try:
            print(import_csv(path, f"corpus.{shape.name}", object()).evidence_text())
        except Exception as exc:  # a tool: show what failed and go on
            print(f"refused: {exc}")
        print()


if __name__ == "__main__":
    main(Path(sys.argv[1]))


# -- random tables of awkward values: detection and import agree with psql -------------------

_RAW = [
    "",
    '""',
    "1",
    "-2",
    "007",
    "1.5",
    "742.94",
    "1e5",
    "-0",
    "+3",
    "9223372036854775808",
    "2024-01-31",
    "2024-02-30",
    "2024-01-31 10:00:00",
    "2024-01-31T10:00:00+02:00",
    "true",
    "f",
    "NA",
    "nil",
    "Zoë",
    "a b",
    " 1",
    '"x, y"',
    '"two\nlines"',
    '"say ""hi"""',
    '"5"',
]


@st.composite
def _tables(draw: st.DrawFn) -> tuple[list[list[str]], str, str]:
    width = draw(st.integers(2, 4))
    rows = draw(
        st.lists(
            st.lists(st.sampled_from(_RAW), min_size=width, max_size=width), min_size=1, max_size=12
        )
    )
    return rows, draw(st.sampled_from([",", ";", "\t", "|"])), draw(st.sampled_from(["\n", "\r\n"]))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(table=_tables(), header=st.booleans())
def test_random_tables_import_as_psql_loads_them(
    tmp_path_factory: pytest.TempPathFactory,
    db_conn: Conn,
    superuser_dsn: str,
    corpus_schema: str,
    table: tuple[list[list[str]], str, str],
    header: bool,
) -> None:
    rows, delimiter, eol = table
    width = len(rows[0])
    lines = [delimiter.join(f"h{i}" for i in range(width))] if header else []
    lines += [delimiter.join(r) for r in rows]
    name = f"r_{uuid.uuid4().hex[:10]}"
    shape = Shape(name, (eol.join(lines) + eol).encode(), width, header, delimiter)
    path = tmp_path_factory.mktemp("rnd") / f"{name}.csv"
    path.write_bytes(shape.data)
    # The header is the one guess random data can defeat: tell it; find the rest.
    found = detect_csv(path, has_headers=header)
    assert found.delimiter == delimiter
    result = import_csv(path, f"{corpus_schema}.{name}", db_conn, settings=found)
    _compare(shape, path, result.rows, found.columns, db_conn, superuser_dsn, corpus_schema)
