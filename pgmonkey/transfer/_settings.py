"""Import and export settings: the dataclasses, their YAML files and 4.0's settings files.

Files beside the CSV:

- ``data.csv.import.yaml``: written by the first import (the review step), read by later ones.
- ``out.csv.export.yaml``: optional, read by an export.
- ``data.yaml`` (4.0's name, the CSV's stem): honoured when the file above is missing and it
  holds only 4.0 settings keys. A connection config of the same stem holds other keys
  (``connection_settings``, ``connection_type``, ...) and is never taken for settings.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from pgmonkey.errors import TransferError

from ._files import write_text

logger = logging.getLogger("pgmonkey.transfer")

# libyaml's safe loader where PyYAML has it: a tenth of the pure-Python one's time.
_SAFE_LOADER: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

IF_EXISTS: Final = ("fail", "append", "replace")

# The keys of 4.0's settings file (``<csv stem>.yaml``).
LEGACY_KEYS: Final = frozenset(
    {
        "delimiter",
        "quotechar",
        "encoding",
        "has_headers",
        "auto_create_table",
        "enforce_lowercase",
    }
)
IMPORT_KEYS: Final = LEGACY_KEYS | {
    "columns",
    "if_exists",
    "null_string",
    "skip_lines",
    "normalise_newlines",
    "collapse_whitespace",
}
EXPORT_KEYS: Final = frozenset(
    {"delimiter", "quotechar", "encoding", "has_headers", "null_string", "force_quote"}
)

# A PostgreSQL type name as a user may write it in a settings file: words, an optional
# modifier list and array brackets ("numeric(10,2)", "timestamp with time zone", "int[]").
# Anything else is refused, so a settings file cannot smuggle SQL into CREATE TABLE.
_TYPE_RE: Final = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(?: [A-Za-z_][A-Za-z0-9_]*)*"
    r"(?: ?\(\s*\d+\s*(?:,\s*-?\d+\s*)?\))?(?: [A-Za-z_][A-Za-z0-9_]*)*(?:\[\d*\])*"
)

# Python codec name (as codecs.lookup() spells it) -> PostgreSQL encoding name.
# COPY converts from these itself; any other codec is transcoded to UTF-8 in Python.
_PG_ENCODINGS: Final = {
    "utf-8": "UTF8",
    "utf-8-sig": "UTF8",
    "ascii": "UTF8",  # a subset of UTF-8
    "iso8859-1": "LATIN1",
    "iso8859-2": "LATIN2",
    "iso8859-3": "LATIN3",
    "iso8859-4": "LATIN4",
    "iso8859-9": "LATIN5",
    "iso8859-10": "LATIN6",
    "iso8859-13": "LATIN7",
    "iso8859-14": "LATIN8",
    "iso8859-15": "LATIN9",
    "iso8859-16": "LATIN10",
    "iso8859-5": "ISO_8859_5",
    "iso8859-6": "ISO_8859_6",
    "iso8859-7": "ISO_8859_7",
    "iso8859-8": "ISO_8859_8",
    "cp866": "WIN866",
    "cp874": "WIN874",
    "cp1250": "WIN1250",
    "cp1251": "WIN1251",
    "cp1252": "WIN1252",
    "cp1253": "WIN1253",
    "cp1254": "WIN1254",
    "cp1255": "WIN1255",
    "cp1256": "WIN1256",
    "cp1257": "WIN1257",
    "cp1258": "WIN1258",
    "koi8-r": "KOI8R",
    "koi8-u": "KOI8U",
    "euc_jp": "EUC_JP",
    "euc_kr": "EUC_KR",
    "gb18030": "GB18030",
    "gbk": "GBK",
    "big5": "BIG5",
    "shift_jis": "SJIS",
    "cp949": "UHC",
}


@dataclass(frozen=True)
class ColumnSpec:
    """One CSV column: its header in the file (None without headers), column name and type."""

    csv: str | None
    name: str
    type: str = "text"


@dataclass(frozen=True)
class Evidence:
    """What detection based its choices on, line by line, for the review step (not saved).

    Each text names the lines that decided; ``columns`` holds one text per column (its type
    and the value that set it); ``notes`` what a person should check (unsure choices, hints).
    """

    encoding: str = ""
    delimiter: str = ""
    line_endings: str = ""
    header: str = ""
    skipped: str = ""
    rows: str = ""
    columns: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The evidence as indented lines (without the columns)."""
        out = []
        for label, text in (
            ("encoding", self.encoding),
            ("delimiter", self.delimiter),
            ("line endings", self.line_endings),
            ("skipped", self.skipped),
            ("header", self.header),
            ("rows", self.rows),
        ):
            if text:
                out.append(f"  {label}: {text}")
        return out


@dataclass(frozen=True)
class ImportSettings:
    """How to read a CSV and which table columns it fills (the ``.import.yaml`` file).

    ``skip_lines``: lines before the header (or the first row) that are not part of the
    table (a title, notes). ``normalise_newlines``: the file mixes CRLF and LF line endings
    (and no quoted value holds one): CRLF is sent as LF. ``collapse_whitespace``: columns are
    aligned with spaces: each run of spaces or tabs separates two fields, spaces at the
    start and end of a line are dropped (``delimiter`` is then unused). These three are
    written to the settings file only when detection sets them.
    """

    delimiter: str = ","
    quotechar: str = '"'
    encoding: str = "utf-8"
    has_headers: bool = True
    columns: tuple[ColumnSpec, ...] = ()
    if_exists: str = "fail"
    null_string: str = ""
    auto_create_table: bool = True
    enforce_lowercase: bool = True
    skip_lines: int = 0
    normalise_newlines: bool = False
    collapse_whitespace: bool = False
    # Not saved: the file the settings came from, the first data rows and what detection
    # based its choices on (detection only).
    source: Path | None = field(default=None, compare=False)
    preview: tuple[tuple[str, ...], ...] = field(default=(), compare=False, repr=False)
    evidence: Evidence | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_encoding(self.encoding, "import settings")

    def to_dict(self) -> dict[str, Any]:
        """The settings as written to ``<csv>.import.yaml``."""
        out: dict[str, Any] = {
            "delimiter": self.delimiter,
            "quotechar": self.quotechar,
            "encoding": self.encoding,
            "has_headers": self.has_headers,
        }
        # Only when set: a plain file's settings read as they always have.
        if self.skip_lines:
            out["skip_lines"] = self.skip_lines
        if self.normalise_newlines:
            out["normalise_newlines"] = True
        if self.collapse_whitespace:
            out["collapse_whitespace"] = True
        out.update(
            {
                "null_string": self.null_string,
                "if_exists": self.if_exists,
                "auto_create_table": self.auto_create_table,
                "columns": [{"csv": c.csv, "name": c.name, "type": c.type} for c in self.columns],
            }
        )
        return out


@dataclass(frozen=True)
class ExportSettings:
    """How to write a CSV (``<out>.export.yaml``); the defaults round-trip NULL vs ''."""

    delimiter: str = ","
    quotechar: str = '"'
    encoding: str = "utf-8"
    has_headers: bool = True
    null_string: str = ""
    force_quote: bool = False
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_encoding(self.encoding, "export settings")


def import_settings_path(csv_path: str | os.PathLike[str]) -> Path:
    """``data.csv`` -> ``data.csv.import.yaml`` (a name no connection config uses)."""
    p = Path(csv_path)
    return p.with_name(p.name + ".import.yaml")


def export_settings_path(csv_path: str | os.PathLike[str]) -> Path:
    """``out.csv`` -> ``out.csv.export.yaml``."""
    p = Path(csv_path)
    return p.with_name(p.name + ".export.yaml")


def legacy_settings_path(csv_path: str | os.PathLike[str]) -> Path:
    """4.0's settings file name: ``data.csv`` -> ``data.yaml``."""
    return Path(csv_path).with_suffix(".yaml")


def pg_encoding(encoding: str) -> str | None:
    """The PostgreSQL name of a Python codec, or None if the server does not know it."""
    return _PG_ENCODINGS.get(codecs.lookup(encoding).name)


def load_import_settings(path: str | os.PathLike[str]) -> ImportSettings:
    """Read and validate a ``.import.yaml`` (or 4.0) settings file."""
    p = Path(path)
    data = _read_mapping(p)
    _check_keys(data, IMPORT_KEYS, p)
    common = _common_values(data, p)
    if_exists = data.get("if_exists", "fail")
    if if_exists not in IF_EXISTS:
        raise TransferError(
            f"{os.fspath(p)!r}: if_exists must be one of {', '.join(IF_EXISTS)}, got {if_exists!r}"
        )
    columns = _columns(data.get("columns"), p)
    skip_lines = data.get("skip_lines", 0)
    if isinstance(skip_lines, bool) or not isinstance(skip_lines, int) or skip_lines < 0:
        raise TransferError(
            f"{os.fspath(p)!r}: skip_lines must be a whole number >= 0, got {skip_lines!r}"
        )
    return ImportSettings(
        **common,
        columns=columns,
        if_exists=if_exists,
        auto_create_table=_bool(data, "auto_create_table", True, p),
        enforce_lowercase=_bool(data, "enforce_lowercase", True, p),
        skip_lines=skip_lines,
        normalise_newlines=_bool(data, "normalise_newlines", False, p),
        collapse_whitespace=_bool(data, "collapse_whitespace", False, p),
        source=p,
    )


def load_export_settings(path: str | os.PathLike[str]) -> ExportSettings:
    """Read and validate a ``.export.yaml`` (or 4.0) settings file."""
    p = Path(path)
    data = _read_mapping(p)
    # A 4.0 file may hold its import-only keys too; they mean nothing to an export.
    _check_keys(data, EXPORT_KEYS | LEGACY_KEYS, p)
    return ExportSettings(
        **_common_values(data, p),
        force_quote=_bool(data, "force_quote", False, p),
        source=p,
    )


def write_import_settings(settings: ImportSettings, path: str | os.PathLike[str]) -> Path:
    """Write ``settings`` as a commented YAML file; return its path."""
    p = Path(path)
    header = (
        "# pgmonkey CSV import settings, written by the first import of this file.\n"
        "# Review them (column names and types especially), then run the import again.\n"
        "#   if_exists: fail (the default: refuse a table that already holds rows;\n"
        "#              an existing empty table is filled), append, or replace\n"
        "#              (drop and re-create the table, in the import's transaction).\n"
        "#   null_string: the unquoted text that means NULL ('' = an unquoted empty field;\n"
        '#              a quoted empty field "" is always an empty string).\n'
        "#   columns: one entry per CSV column, in file order: csv header, column name,\n"
        "#              PostgreSQL type (used when the table is created).\n"
    )
    body = yaml.safe_dump(settings.to_dict(), sort_keys=False, allow_unicode=True, width=1000)
    try:
        write_text(p, header + body)  # never through a symlink (_files)
    except OSError as exc:
        raise TransferError(f"cannot write {os.fspath(p)!r}: {exc.strerror or exc}") from None
    return p


def find_legacy_settings(csv_path: str | os.PathLike[str]) -> Path | None:
    """4.0's ``<csv stem>.yaml`` if it exists and holds only 4.0 settings keys."""
    p = legacy_settings_path(csv_path)
    if p == Path(csv_path) or not p.is_file():
        return None
    try:
        with open(p, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_SAFE_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(data, Mapping) or not data:
        return None
    if not set(data) <= LEGACY_KEYS:
        logger.debug("%s is not a 4.0 settings file (other keys); ignored", p)
        return None
    return p


def _read_mapping(p: Path) -> Mapping[str, Any]:
    try:
        with open(p, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_SAFE_LOADER)
    except FileNotFoundError:
        raise TransferError(f"settings file not found: {os.fspath(p)!r}") from None
    except yaml.YAMLError as exc:
        raise TransferError(f"{os.fspath(p)!r}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise TransferError(f"{os.fspath(p)!r}: expected a mapping of settings")
    return data


def _check_keys(data: Mapping[str, Any], allowed: frozenset[str], p: Path) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise TransferError(
            f"{os.fspath(p)!r}: unknown settings key {unknown[0]!r}: "
            f"expected some of {', '.join(sorted(allowed))}"
        )


def check_encoding(encoding: str, where: str) -> None:
    """TransferError unless ``encoding`` is a text codec Python knows (not rot13, base64)."""
    known = "(a text encoding: utf-8, cp1252, ...)"
    try:
        # LookupError for an unknown codec and for one of bytes; UnicodeError for 'undefined'.
        encoded = _PROBE.encode(encoding)
    except (LookupError, UnicodeError, ValueError):
        raise TransferError(f"{where}: unknown encoding {encoding!r} {known}") from None
    # Files are read in pieces, bad bytes replaced (detection) or refused (import): a codec
    # of names (idna, punycode) cannot, or gives other text than it was given.
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        pieces = [decoder.decode(encoded[i : i + 1]) for i in range(len(encoded))]
        same = "".join(pieces) + decoder.decode(b"", final=True) == _PROBE
    except (UnicodeError, ValueError, TypeError):
        same = False
    if not same:
        raise TransferError(f"{where}: {encoding!r} is no encoding of a text file {known}")


# CSV's own characters: names, digits, every usual delimiter and quote, both line breaks.
_PROBE: Final = "id,name;x\t|y \"a\" 'b' 1.5\r\n"


def _common_values(data: Mapping[str, Any], p: Path) -> dict[str, Any]:
    delimiter = _char(data, "delimiter", ",", p)
    quotechar = _char(data, "quotechar", '"', p)
    if delimiter == quotechar:
        raise TransferError(f"{os.fspath(p)!r}: delimiter and quotechar must differ")
    encoding = data.get("encoding", "utf-8")
    if not isinstance(encoding, str):
        raise TransferError(f"{os.fspath(p)!r}: encoding must be a string, got {encoding!r}")
    check_encoding(encoding, repr(os.fspath(p)))
    null_string = data.get("null_string", "")
    if null_string is None:
        null_string = ""
    if not isinstance(null_string, str):
        raise TransferError(f"{os.fspath(p)!r}: null_string must be a string, got {null_string!r}")
    return {
        "delimiter": delimiter,
        "quotechar": quotechar,
        "encoding": encoding,
        "has_headers": _bool(data, "has_headers", True, p),
        "null_string": null_string,
    }


def _char(data: Mapping[str, Any], key: str, default: str, p: Path) -> str:
    value = data.get(key, default)
    # COPY takes a single one-byte character, and neither may be a line break.
    if not isinstance(value, str) or len(value.encode("utf-8")) != 1 or value in "\r\n":
        raise TransferError(
            f"{os.fspath(p)!r}: {key} must be a single ASCII character, got {value!r}"
        )
    return value


def _bool(data: Mapping[str, Any], key: str, default: bool, p: Path) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise TransferError(f"{os.fspath(p)!r}: {key} must be true or false, got {value!r}")
    return value


def _columns(value: Any, p: Path) -> tuple[ColumnSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TransferError(f"{os.fspath(p)!r}: columns must be a list, got {value!r}")
    out: list[ColumnSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(value, 1):
        if not isinstance(item, Mapping) or not set(item) <= {"csv", "name", "type"}:
            raise TransferError(
                f"{os.fspath(p)!r}: columns entry {i} must map csv, name and type, got {item!r}"
            )
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise TransferError(f"{os.fspath(p)!r}: columns entry {i} needs a name")
        if name in seen:
            raise TransferError(f"{os.fspath(p)!r}: column name {name!r} appears twice")
        seen.add(name)
        ctype = item.get("type", "text")
        if not isinstance(ctype, str) or not _TYPE_RE.fullmatch(ctype.strip()):
            raise TransferError(f"{os.fspath(p)!r}: column {name!r} has an invalid type {ctype!r}")
        csv_name = item.get("csv")
        out.append(
            ColumnSpec(
                csv=None if csv_name is None else str(csv_name), name=name, type=ctype.strip()
            )
        )
    return tuple(out)
