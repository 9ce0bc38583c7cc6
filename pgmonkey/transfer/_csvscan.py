"""PostgreSQL's CSV rules as regular expressions: fields, records, line endings, typed values.

Detection must read a file the way ``COPY ... (FORMAT csv)`` will, not the way Python's
``csv`` module does:

- a quote character toggles quoting anywhere in a field (``a"b,c"d`` is one field, ``ab,cd``),
  and a doubled quote inside quotes is one quote;
- the first line ending decides the file's (LF, CRLF or CR); another one outside quotes is an
  error (``unquoted carriage return/newline found in data``);
- the unquoted ``null_string`` (by default the empty field) is NULL; a quoted empty field
  ``""`` is the empty string, which no column type but text can hold;
- a line holding only ``\\.`` ends the data (PostgreSQL before 18), whatever follows.

A column's type is a state that only widens: ``null`` (no value yet) -> the narrowest type
that holds the value -> a wider type of the same family -> ``text``. The families are
bigint < numeric < double precision, date < timestamp, and boolean and timestamptz alone.
One regular expression per (types, dialect) matches whole runs of records in C; a record it
refuses is read in Python (:func:`read_record`) to learn why, and the scan goes on with the
widened types. So every value of the file is checked, at the speed of the regex engine.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pgmonkey.errors import TransferError

NULL_ONLY: Final = "null"  # a column state: only NULLs seen so far
TEXT: Final = "text"
TYPES: Final = (
    "bigint",
    "numeric",
    "boolean",
    "date",
    "timestamp",
    "timestamptz",
)
# The types a column of this type may widen to, narrowest first (then text). No number is
# typed double precision: numeric holds each exactly as written, exponents included, where a
# double would round a long decimal (the settings file may still choose double precision).
WIDER: Final[dict[str, tuple[str, ...]]] = {
    "bigint": ("numeric",),
    "date": ("timestamp",),
}

SCAN_CHUNK: Final = 8 << 20
MAX_RECORD: Final = 64 << 20  # a record longer than this is an unclosed quote, not data


# Values PostgreSQL reads back unchanged (as text: no leading zeros, no plus sign, no -0).
_NOT_MINUS_ZERO: Final = r"(?!-0(?:\.0+)?(?![0-9.]))"
# Up to 18 digits, or 19 below 9e18: every such number fits bigint (the rest of bigint's
# range, 9e18 to 9.22e18, is typed numeric: exact too, and a far shorter pattern, which
# matters because the scan compiles a pattern for each change of a column's type).
_INT8: Final = _NOT_MINUS_ZERO + r"-?(?:0|[1-9][0-9]{0,17}|[1-8][0-9]{18})"
# Up to 38 digits each side of the point, and an exponent of up to two digits (numeric reads
# 1.5e-7 as 0.00000015): a bound that keeps the scan's patterns short, far inside numeric's.
_NUMERIC: Final = (
    _NOT_MINUS_ZERO + r"-?(?:0|[1-9][0-9]{0,37})(?:\.[0-9]{1,38})?(?:[eE][+-]?[0-9]{1,2})?"
)
_BOOLEAN: Final = r"(?i:true|false|yes|no|t|f)"
_YEAR: Final = r"(?!0000)[0-9]{4}"
_LEAP_YEAR: Final = (
    r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
)
_MONTH_DAY: Final = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_DATE: Final = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME: Final = r"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
_ZONE: Final = r"(?:Z|[+-](?:0[0-9]|1[0-4])(?::?[0-5][0-9])?)"

# What each column type accepts (its whole family below it included).
TOKENS: Final[dict[str, str]] = {
    "bigint": _INT8,
    "numeric": _NUMERIC,
    "boolean": _BOOLEAN,
    "date": _DATE,
    "timestamp": f"{_DATE}(?:[ T]{_TIME})?",
    "timestamptz": f"{_DATE}[ T]{_TIME}{_ZONE}",
}

_EOLS: Final = {"\n": "LF", "\r\n": "CRLF", "\r": "CR"}
NA_MARKERS: Final = frozenset(
    {"NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "nil", "-", ".", "#N/A"}
)


def eol_name(eol: str) -> str:
    return _EOLS.get(eol, "no line ending")


@dataclass(frozen=True)
class Dialect:
    """How records are written. ``whitespace``: each run of spaces/tabs separates fields
    (aligned columns); the scan then reads the file rewritten by :func:`collapse`."""

    delimiter: str = ","
    quotechar: str = '"'
    eol: str = "\n"
    whitespace: bool = False

    @property
    def copy_delimiter(self) -> str:
        return " " if self.whitespace else self.delimiter


# -- fields and records, read in Python ---------------------------------------------------


@functools.lru_cache(maxsize=64)
def _field_re(delimiter: str, quote: str, as_bytes: bool) -> re.Pattern[Any]:
    d, q = re.escape(delimiter), re.escape(quote)
    source = f"(?:[^{d}{q}\\r\\n]++|{q}(?:[^{q}]++|{q}{q})*+{q})*+"
    return re.compile(source.encode("ascii")) if as_bytes else re.compile(source)


class Unterminated(Exception):
    """A quoted field is still open at the end of the data."""


def read_record(buf: Any, pos: int, d: Dialect, final: bool) -> tuple[list[Any], int, str] | None:
    """The record at ``pos``: (raw fields, end offset, line ending), or None when ``buf``
    stops inside it and more data may follow (``final`` False).

    Raises :class:`Unterminated` when ``final`` and a quote is never closed.
    """
    as_bytes = isinstance(buf, bytes)
    pattern = _field_re(d.copy_delimiter, d.quotechar, as_bytes)
    delim: Any = d.copy_delimiter.encode() if as_bytes else d.copy_delimiter
    cr: Any = b"\r" if as_bytes else "\r"
    nl: Any = b"\n" if as_bytes else "\n"
    fields: list[Any] = []
    n = len(buf)
    while True:
        m = pattern.match(buf, pos)
        assert m is not None  # the pattern matches the empty string
        end = m.end()
        fields.append(buf[pos:end])
        if end >= n:
            if final:
                return fields, end, ""
            return None
        c = buf[end : end + 1]
        if c == delim:
            pos = end + 1
            continue
        if c == nl:
            return fields, end + 1, "\n"
        if c == cr:
            if end + 1 >= n and not final:
                return None  # a CR at the end of the buffer: CRLF or CR, not known yet
            if buf[end + 1 : end + 2] == nl:
                return fields, end + 2, "\r\n"
            return fields, end + 1, "\r"
        # An opening quote that no quote closes.
        if final or n - pos > MAX_RECORD:
            raise Unterminated
        return None


def unquote(raw: str, quote: str) -> str:
    """The value PostgreSQL reads from a raw field (quotes removed, doubled quotes halved)."""
    if quote not in raw:
        return raw
    q = re.escape(quote)
    return re.sub(
        f"{q}((?:[^{q}]|{q}{q})*){q}",
        lambda m: m.group(1).replace(quote * 2, quote),
        raw,
    )


def count_lines(buf: Any, start: int = 0, end: int | None = None) -> int:
    """Line endings in ``buf[start:end]`` (LF, CRLF and a lone CR each end one line)."""
    if end is None:
        end = len(buf)
    nl, cr, crnl = (b"\n", b"\r", b"\r\n") if isinstance(buf, bytes) else ("\n", "\r", "\r\n")
    found: int = buf.count(nl, start, end) + buf.count(cr, start, end) - buf.count(crnl, start, end)
    return found


# -- aligned columns ----------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _collapse_res(quote: str, as_bytes: bool) -> tuple[re.Pattern[Any], ...]:
    q = re.escape(quote)
    sources = (
        r"(?m)^[ \t]+",  # spaces at the start of a line
        r"[ \t]+(?=\r?\n|\r|\Z)",  # and at its end
        # Each token, whole (quoted parts included), marked at its end: re.sub moves on
        # token by token, never into a quoted part.
        f"(?:[^ \\t{q}\\r\\n\\x00]++|{q}(?:[^{q}]|{q}{q})*+{q})++",
        r"\x00[ \t]++(?=[^ \t\r\n])",  # a run between two tokens
    )
    return tuple(re.compile(s.encode("ascii") if as_bytes else s) for s in sources)


def collapse(text: Any, quote: str) -> Any:
    """Aligned columns to columns split by one space: each run of spaces/tabs between two
    tokens becomes one space; spaces at the start and end of a line go; quoted parts are
    kept whole. ``text`` holds whole lines."""
    as_bytes = isinstance(text, bytes)
    if (quote.encode() if as_bytes else quote) not in text:
        return _collapse_unquoted(text)
    lead, trail, token, run = _collapse_res(quote, as_bytes)
    if as_bytes:
        marked = token.sub(b"\\g<0>\x00", trail.sub(b"", lead.sub(b"", text)))
        return run.sub(b" ", marked).replace(b"\x00", b"")
    marked = token.sub("\\g<0>\x00", trail.sub("", lead.sub("", text)))
    return run.sub(" ", marked).replace("\x00", "")


def _collapse_unquoted(text: Any) -> Any:
    """:func:`collapse` without quotes to keep whole: plain replacements, in C (a regex
    substitution per run is several times slower than COPY)."""
    sp: Any
    tab: Any
    nl: Any
    cr: Any
    if isinstance(text, bytes):
        sp, tab, nl, cr = b" ", b"\t", b"\n", b"\r"
    else:
        sp, tab, nl, cr = " ", "\t", "\n", "\r"
    text = text.replace(tab, sp)
    while sp + sp in text:
        text = text.replace(sp + sp, sp)
    for before, after in ((nl + sp, nl), (sp + nl, nl), (sp + cr, cr), (cr + sp, cr)):
        text = text.replace(before, after)
    return text.removeprefix(sp).removesuffix(sp)


# -- typed values -------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _value_re(ctype: str, quote: str, null: str) -> re.Pattern[str]:
    return re.compile(_typed_field(ctype, quote, null, end=r"\Z"))


def _typed_field(ctype: str, quote: str, null: str, end: str) -> str:
    """A field of type ``ctype``: the NULL string unquoted, or a value, quoted or not."""
    alternatives = [re.escape(null) + end]
    if ctype != NULL_ONLY:
        token = TOKENS[ctype]
        q = re.escape(quote)
        alternatives += [f"(?:{token}){end}", f"{q}(?:{token}){q}{end}"]
    return "(?>" + "|".join(alternatives) + ")"


def accepts(ctype: str, raw: str, quote: str, null: str) -> bool:
    """Does a column of ``ctype`` load the raw field ``raw`` unchanged?"""
    if ctype == TEXT:
        return True
    return _value_re(ctype, quote, null).fullmatch(raw) is not None


def widen(ctype: str, raw: str, quote: str, null: str) -> str:
    """The type of a column of ``ctype`` once it also holds ``raw`` (itself if it fits)."""
    if accepts(ctype, raw, quote, null):
        return ctype
    for wider in TYPES if ctype == NULL_ONLY else WIDER.get(ctype, ()):
        if accepts(wider, raw, quote, null):
            return wider
    return TEXT


def narrowest(raw: str, quote: str, null: str) -> str | None:
    """The narrowest type of one raw field; None for NULL."""
    kind = widen(NULL_ONLY, raw, quote, null)
    return None if kind == NULL_ONLY else kind


# What a value of each type is, for messages.
A_TYPE: Final = {
    NULL_ONLY: "a number, boolean, date or timestamp",
    "bigint": "a whole number (bigint)",
    "numeric": "a number (numeric)",
    "boolean": "a boolean",
    "date": "an ISO date",
    "timestamp": "an ISO timestamp",
    "timestamptz": "an ISO timestamp with a time zone",
}


def special_reason(raw: str, quote: str, null: str) -> str | None:
    """Why a value that looks typed is still text (quoting, spaces, zeros), if it is so."""
    value = unquote(raw, quote)
    if raw == quote * 2:
        return f"a quoted empty string {raw} (COPY reads it as '', not NULL: only text holds '')"
    if value == "" and null != "":
        return f"an empty field (NULL is {null!r} here, so this is '', which only text holds)"
    shown = _show(value)
    if quote in raw and not (raw.startswith(quote) and raw.endswith(quote) and len(raw) > 1):
        return f"{_show(raw)} is quoted in part (COPY reads {shown}; kept as text)"
    if value != value.strip():
        return f"{shown} has spaces around it (kept as written, as text)"
    if re.fullmatch(r"-?0[0-9]+(?:\.[0-9]*)?", value):
        return f"{shown} has a leading zero (a number would drop it)"
    if re.fullmatch(r"\+[0-9.]+", value):
        return f"{shown} has a plus sign (a number would drop it)"
    return None


def na_hint(raw: str, quote: str) -> str:
    """A hint when a value that forces text may be a missing-value marker."""
    if raw in NA_MARKERS:
        return f"if {raw!r} means a missing value, set null_string: {raw!r}"
    return ""


def why_text(raw: str, quote: str, null: str, before: str) -> str:
    """Why a value makes a column of type ``before`` text, for the review step."""
    special = special_reason(raw, quote, null)
    if special is not None:
        return special
    return f"{_show(unquote(raw, quote))} is not {A_TYPE.get(before, before)}"


def _show(value: str, width: int = 40) -> str:
    text = value if len(value) <= width else value[: width - 1] + "…"
    return repr(text)


# -- whole-record patterns ----------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def records_pattern(
    d: Dialect,
    types: tuple[str, ...],
    null: str,
    quoted_newlines: bool,
    mixed_eol: bool,
    as_bytes: bool,
) -> re.Pattern[Any]:
    """Zero or more whole records of ``types``, possessively (one pass, no backtracking)."""
    delim = d.copy_delimiter
    dl, q = re.escape(delim), re.escape(d.quotechar)
    end = f"(?=[{dl}\\r\\n]|\\Z)"
    if quoted_newlines:
        text = f"(?:[^{dl}{q}\\r\\n]++|{q}(?:[^{q}]++|{q}{q})*+{q})*+"
    else:
        text = f"(?:[^{dl}{q}\\r\\n]++|{q}(?:[^{q}\\r\\n]++|{q}{q})*+{q})*+"
    fields = [text if t == TEXT else _typed_field(t, d.quotechar, null, end) for t in types]
    eol = r"\r?\n" if mixed_eol else re.escape(d.eol)
    # A line of only \. ends COPY's data: never let the fast path take it.
    record = r"(?!\\\.(?:\r|\n|\Z))" + dl.join(fields) + f"(?:{eol})"
    source = f"(?:{record})*+"
    return re.compile(source.encode("ascii")) if as_bytes else re.compile(source)


# -- reading a file -----------------------------------------------------------------------

# Encodings in which a byte below 0x80 is always that ASCII character: the scan reads their
# bytes as they are. Others (UTF-16, Shift-JIS, ...) are decoded first.
_ASCII_SAFE: Final = frozenset(
    {"utf-8", "utf-8-sig", "ascii", "latin-1", "iso8859-1", "cp1252", "euc_jp", "euc_kr"}
)


def ascii_safe(encoding: str) -> bool:
    name = codecs.lookup(encoding).name
    if name in _ASCII_SAFE:
        return True
    return name.startswith(("iso8859-", "cp125", "koi8-")) or name in {"cp866", "cp874"}


def pieces(
    path: Path, encoding: str, whitespace: bool, quote: str, chunk: int | None = None
) -> Iterator[tuple[Any, bool]]:
    """The file as (piece, last) pairs: bytes for an ASCII-safe encoding (BOM dropped), text
    otherwise; rewritten by :func:`collapse` for aligned columns (then in whole lines)."""
    as_bytes = ascii_safe(encoding)
    chunk = chunk or SCAN_CHUNK
    with open(path, "rb") as f:
        decoder = None if as_bytes else codecs.getincrementaldecoder(encoding)(errors="replace")
        head = b""
        if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
            head = f.read(len(codecs.BOM_UTF8))  # COPY is never sent a UTF-8 BOM
            if head == codecs.BOM_UTF8:
                head = b""
        tail: Any = b"" if as_bytes else ""
        while True:
            raw = head + f.read(chunk)
            head = b""
            last = not raw
            piece: Any = raw if decoder is None else decoder.decode(raw, final=last)
            if whitespace:
                buf = tail + piece
                cut = len(buf) if last else max(buf.rfind(b"\n" if as_bytes else "\n"), -1) + 1
                tail = buf[cut:]
                piece = collapse(buf[:cut], quote)
            yield piece, last
            if last:
                return


@dataclass
class Change:
    """A column's type changing at a line of the file, and the value that changed it."""

    line: int
    raw: str
    before: str
    after: str


@dataclass
class ScanResult:
    types: list[str]
    changes: list[list[Change]]
    lines: int = 0  # the number of the file's last line
    first_data_line: int = 0  # the line the data starts on
    mixed_eol_line: int | None = None
    mixed_eol: str = ""
    quoted_newline_line: int | None = None
    last_line_ends: bool = True
    records: int = 0  # data records (exact when no quoted value spans lines)


def scan_file(
    path: Path,
    encoding: str,
    d: Dialect,
    null: str,
    types: Sequence[str],
    skip_records: int,
    where: Callable[[int], str],
) -> ScanResult:
    """Check every record after the first ``skip_records`` against ``types``, widening them.

    Stops with a :class:`TransferError` (naming the line through ``where``) at a record
    COPY cannot load whatever the types: a ragged one, a stray line ending, an unclosed
    quote, a lone ``\\.``.
    """
    state = ScanResult(types=list(types), changes=[[] for _ in types])
    n = len(types)
    as_bytes = ascii_safe(encoding)
    buf: Any = b"" if as_bytes else ""
    pos = 0
    line = 1  # the line buf[pos] is on
    to_skip = skip_records
    stuck_at = -1
    for piece, last in pieces(path, encoding, d.whitespace, d.quotechar):
        buf = buf[pos:] + piece
        pos = 0
        while to_skip:
            rec = _read(buf, pos, d, last, line, where)
            if rec is None:
                break
            line += count_lines(buf, pos, rec[1])
            pos = rec[1]
            to_skip -= 1
            if pos >= len(buf):
                break
        if to_skip:
            continue
        if state.first_data_line == 0:
            state.first_data_line = line
        while pos < len(buf):
            pattern = records_pattern(
                d,
                tuple(state.types),
                null,
                state.quoted_newline_line is not None,
                state.mixed_eol_line is not None,
                as_bytes,
            )
            m = pattern.match(buf, pos)
            assert m is not None  # zero records match
            matched = count_lines(buf, pos, m.end())
            state.records += matched
            line += matched
            pos = m.end()
            if pos >= len(buf):
                break
            rec = _read(buf, pos, d, last, line, where)
            if rec is None:
                break  # the record goes on in the next piece
            fields = [f.decode(encoding, "replace") if as_bytes else f for f in rec[0]]
            if stuck_at == state.records and rec[2]:
                raise TransferError(f"{where(line)}: this line cannot be read as CSV")
            stuck_at = state.records
            _diagnose(state, fields, rec[2], line, n, d, null, where)
            if rec[2] == "":  # the last record, without a line ending: it fits now
                state.last_line_ends = False
                state.records += 1
                line += count_lines(buf, pos, rec[1])
                pos = rec[1]
    state.first_data_line = state.first_data_line or line
    state.lines = line - 1 if state.last_line_ends else line
    return state


def _read(
    buf: Any, pos: int, d: Dialect, last: bool, line: int, where: Callable[[int], str]
) -> tuple[list[Any], int, str] | None:
    try:
        return read_record(buf, pos, d, last)
    except Unterminated:
        raise TransferError(
            f"{where(line)}: a quoted field starts on this line and is never closed"
        ) from None


def _diagnose(
    state: ScanResult,
    raw: list[str],
    eol: str,
    line: int,
    n: int,
    d: Dialect,
    null: str,
    where: Callable[[int], str],
) -> None:
    """Learn from a record the pattern refused; raise when COPY could never load it."""
    if raw == ["\\."]:
        raise TransferError(
            f"{where(line)}: the line is only '\\.', which PostgreSQL takes for the end of the "
            'data: the lines after it would not be imported (quote it: "\\.")'
        )
    if len(raw) != n:
        if len(raw) == 1 and raw[0] == "":
            what = "is empty"
        else:
            what = f"has {len(raw)} fields"
        raise TransferError(
            f"{where(line)}: the line {what} where the table has {n} "
            f"{'column' if n == 1 else 'columns'} (a ragged row: COPY would refuse it); "
            "detection stopped here: fix the line, or set delimiter and quotechar "
            "in a settings file if they were taken wrongly"
        )
    changed = False
    if eol and eol != d.eol and state.mixed_eol_line is None:
        if {eol, d.eol} == {"\n", "\r\n"}:
            state.mixed_eol_line, state.mixed_eol = line, eol
            changed = True
        else:
            raise TransferError(
                f"{where(line)}: the line ends with {eol_name(eol)} where the file's lines end "
                f"with {eol_name(d.eol)} (PostgreSQL refuses mixed line endings)"
            )
    elif eol == "\r" and state.mixed_eol_line is not None:
        raise TransferError(
            f"{where(line)}: the line ends with CR where the file's lines end with "
            f"{eol_name(d.eol)} (PostgreSQL refuses mixed line endings)"
        )
    if state.quoted_newline_line is None and any("\n" in f or "\r" in f for f in raw):
        state.quoted_newline_line = line
        changed = True
    for i, f in enumerate(raw):
        before = state.types[i]
        after = widen(before, f, d.quotechar, null)
        if after != before:
            state.types[i] = after
            state.changes[i].append(Change(line, f, before, after))
            changed = True
    if not changed and eol:
        # The pattern and the Python reading disagree: never loop; take the safe way.
        for i, before in enumerate(state.types):
            if before != TEXT:
                state.types[i] = TEXT
                state.changes[i].append(Change(line, raw[i], before, TEXT))
        if state.quoted_newline_line is None:
            state.quoted_newline_line = line
