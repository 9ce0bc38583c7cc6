"""Detecting how a CSV file is written: encoding, dialect, header, column names and types.

Only the encoding check reads the whole file (streamed, in C); everything else looks at a
sample from the start. Type inference is conservative: a column gets a type other than
``text`` only when every sampled value is written the way PostgreSQL reads that type back
unchanged (no leading zeros, ISO dates), so the review step rarely has to correct it.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Final

from pgmonkey.errors import TransferError

from ._settings import ColumnSpec, ImportSettings

SAMPLE_BYTES: Final = 1 << 20  # what type inference looks at
SNIFF_BYTES: Final = 64 << 10  # what csv.Sniffer looks at
SAMPLE_ROWS: Final = 5000
PREVIEW_ROWS: Final = 10
_CHUNK: Final = 1 << 20
_MAX_IDENT: Final = 63  # NAMEDATALEN - 1

# Bytes 0x80-0x9f: C1 controls in Latin-1, printable characters in cp1252 (except five).
_C1: Final = bytes(range(0x80, 0xA0))
_NOT_C1: Final = bytes(b for b in range(256) if not 0x80 <= b < 0xA0)
_CP1252_UNDEFINED: Final = frozenset(b"\x81\x8d\x8f\x90\x9d")

_INT_RE: Final = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_DEC_RE: Final = re.compile(r"[+-]?(?:0|[1-9][0-9]*)\.[0-9]+")
_EXP_RE: Final = re.compile(r"[+-]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?[eE][+-]?[0-9]{1,3}")
_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TS_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
)
_TZ_RE: Final = re.compile(r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)")
_BOOLS: Final = frozenset({"true", "false", "t", "f", "yes", "no"})
_INT8_MIN: Final = -(2**63)
_INT8_MAX: Final = 2**63 - 1


def detect_encoding(path: str | os.PathLike[str]) -> str:
    """A byte-order mark first, then a full-file UTF-8 check, then cp1252 or Latin-1."""
    with open(path, "rb") as f:
        head = f.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            return "utf-32"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        f.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while chunk := f.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError:
            pass
        # Not UTF-8: an 8-bit encoding. Bytes 0x80-0x9f are control characters in Latin-1,
        # which real text does not hold, and curly quotes, dashes, the euro sign in cp1252.
        f.seek(0)
        c1: set[int] = set()
        while chunk := f.read(_CHUNK):
            c1.update(chunk.translate(None, _NOT_C1))
        if c1 and not c1 & _CP1252_UNDEFINED:
            return "cp1252"
        return "latin-1"


def detect_csv(
    path: str | os.PathLike[str],
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    quotechar: str | None = None,
    has_headers: bool | None = None,
    enforce_lowercase: bool = True,
    null_string: str = "",
) -> ImportSettings:
    """Detect how ``path`` is written; the keyword arguments fix what is already known.

    Returns settings with one :class:`ColumnSpec` per CSV column (normalised lowercase name,
    inferred type) and a preview of the first data rows (``settings.preview``).
    """
    p = Path(path)
    if not p.is_file():
        raise TransferError(f"csv file not found: {os.fspath(p)!r}")
    if encoding is None:
        encoding = detect_encoding(p)
    text, complete = _sample_text(p, encoding)
    if not text.strip():
        raise TransferError(f"{os.fspath(p)!r}: the file is empty")
    if delimiter is None or quotechar is None:
        sniffed_delim, sniffed_quote = _sniff(text)
        delimiter = delimiter or sniffed_delim
        quotechar = quotechar or sniffed_quote
    rows = _parse_sample(text, complete, delimiter, quotechar)
    if not rows:
        raise TransferError(f"{os.fspath(p)!r}: no rows found")
    if has_headers is None:
        has_headers = _looks_like_header(rows)
    width = max(len(r) for r in rows[: SAMPLE_ROWS + 1])
    data = rows[1:] if has_headers else rows
    headers: list[str | None] = list(rows[0]) if has_headers else [None] * width
    headers += [None] * (width - len(headers))
    names = column_names(headers, enforce_lowercase=enforce_lowercase)
    # Values equal to null_string are NULLs, not data (with the default '', empty fields).
    types = [
        _column_type(r[i] for r in data if i < len(r) and r[i] != null_string) for i in range(width)
    ]
    return ImportSettings(
        delimiter=delimiter,
        quotechar=quotechar,
        encoding=encoding,
        has_headers=has_headers,
        columns=tuple(
            ColumnSpec(csv=h, name=n, type=t) for h, n, t in zip(headers, names, types, strict=True)
        ),
        null_string=null_string,
        enforce_lowercase=enforce_lowercase,
        preview=tuple(tuple(r) for r in data[:PREVIEW_ROWS]),
    )


def column_names(headers: Sequence[str | None], *, enforce_lowercase: bool = True) -> list[str]:
    """Safe, unique column names: lowercase ASCII letters, digits and underscores.

    ``"Prénom"`` -> ``prenom``, ``"Total (EUR)"`` -> ``total_eur``, ``"1st"`` -> ``c_1st``,
    a missing or empty header -> ``column_N``. With ``enforce_lowercase=False`` (4.0's
    setting) the headers are kept as written, only made unique.
    """
    names: list[str] = []
    used: set[str] = set()
    for i, header in enumerate(headers, 1):
        if enforce_lowercase:
            name = _safe_identifier(header or "")
        else:
            name = (header or "").strip()[:_MAX_IDENT]
        if not name:
            name = f"column_{i}"
        base, n = name, 2
        while name in used:
            suffix = f"_{n}"
            name = base[: _MAX_IDENT - len(suffix)] + suffix
            n += 1
        used.add(name)
        names.append(name)
    return names


def _safe_identifier(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if name and name[0].isdigit():
        name = "c_" + name
    return name[:_MAX_IDENT].rstrip("_")


def _sample_text(p: Path, encoding: str) -> tuple[str, bool]:
    """The first SAMPLE_BYTES decoded, and whether that is the whole file."""
    with open(p, "rb") as f:
        raw = f.read(SAMPLE_BYTES + 1)
    complete = len(raw) <= SAMPLE_BYTES
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    text = decoder.decode(raw[:SAMPLE_BYTES], final=complete)
    return text, complete


def _sniff(text: str) -> tuple[str, str]:
    sample = text[:SNIFF_BYTES]
    if len(text) > SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]  # whole lines only
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return ",", '"'  # one column, or nothing to go on
    return dialect.delimiter, dialect.quotechar or '"'


def _parse_sample(text: str, complete: bool, delimiter: str, quotechar: str) -> list[list[str]]:
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=delimiter, quotechar=quotechar, strict=False
    )
    rows: list[list[str]] = []
    try:
        for row in reader:
            if row:
                rows.append(row)
            if len(rows) > SAMPLE_ROWS:
                return rows
    except csv.Error:
        pass  # a malformed line: decide on what came before (the import will say where)
    if not complete and len(rows) > 1:
        rows.pop()  # the sample may have cut the last record in two
    return rows


def _looks_like_header(rows: Sequence[Sequence[str]]) -> bool:
    """Most CSV files have a header; say no only when the first row looks like data."""
    first = rows[0]
    values = [v.strip() for v in first]
    if not all(values) or len({v.lower() for v in values}) != len(values):
        return False  # an empty or repeated name
    return all(_kind(v) == "text" for v in values)


def _kind(value: str) -> str:
    """The narrowest type ``value`` is written in (``text`` when none fits)."""
    v = value.strip()
    if v != value:
        return "text"  # surrounding spaces: keep them, as text
    if _INT_RE.fullmatch(v):
        return "bigint" if _INT8_MIN <= int(v) <= _INT8_MAX else "numeric"
    if _DEC_RE.fullmatch(v):
        return "numeric"
    if _EXP_RE.fullmatch(v):
        return "double precision"
    if v.lower() in _BOOLS:
        return "boolean"
    if _DATE_RE.fullmatch(v):
        return "date" if _valid(date.fromisoformat, v) else "text"
    if (m := _TS_RE.match(v)) is not None:
        rest = v[m.end() :]
        if not _valid(datetime.fromisoformat, v.replace("Z", "+00:00")):
            return "text"
        if not rest:
            return "timestamp"
        if _TZ_RE.fullmatch(rest):
            return "timestamptz"
    return "text"


def _valid(parse: Callable[[str], object], value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


# Kinds a column may mix, and the type that holds them all.
_WIDENINGS: Final = (
    (frozenset({"bigint"}), "bigint"),
    (frozenset({"bigint", "numeric"}), "numeric"),
    (frozenset({"bigint", "numeric", "double precision"}), "double precision"),
    (frozenset({"boolean"}), "boolean"),
    (frozenset({"date"}), "date"),
    (frozenset({"date", "timestamp"}), "timestamp"),
    (frozenset({"timestamptz"}), "timestamptz"),
)


def _column_type(values: Iterable[str]) -> str:
    kinds: set[str] = set()
    for value in values:
        if value == "":
            continue
        kind = _kind(value)
        if kind == "text":
            return "text"
        kinds.add(kind)
    if not kinds:
        return "text"
    for allowed, pgtype in _WIDENINGS:
        if kinds <= allowed:
            return pgtype
    return "text"
