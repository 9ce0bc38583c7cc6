"""Detecting how a CSV file is written: encoding, dialect, header, column names and types.

Every choice rests on evidence the review step shows, line by line:

- encoding: a byte-order mark, else a full-file UTF-8 check, else cp1252 or Latin-1;
- delimiter and quoting: the character that splits the sampled lines (quoted parts aside)
  into the same number of fields; comma, tab, semicolon and pipe first, then a single space,
  then runs of spaces (aligned columns), then any other character used the same way on every
  line;
- lines before the table (a title, notes) whose field counts differ from the table's;
- the header: the first row is compared with the column values below it: a name where a
  number is (``Age`` over integers), whole numbers counting up across the columns over other
  data (years, pandas' column numbers), text written unlike the values below. An empty first
  cell (the index column pandas and R write) is neutral. With no evidence either way the row
  is taken as data, so that no line is lost, and the review says so;
- column types: the whole file is read, the way COPY will read it (see ``_csvscan``), and a
  column gets a type other than text only when every value of it is written the way
  PostgreSQL reads that type back unchanged (no leading zeros, ISO dates). The review names
  the line and value that decided each type.

Decimals (``742.94``) become ``numeric``, not ``double precision``: numeric keeps every digit
as written (``0.1`` stays ``0.1``, ``1.50`` stays ``1.50``), so the table holds exactly what
the file says; double precision rounds to about 15 significant digits and sums inexactly.
A file of measurements may prefer double precision: change the column's type in the settings
file (values with an exponent, ``1e-05``, are typed double precision from the start).
"""

from __future__ import annotations

import codecs
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pgmonkey.errors import TransferError

from ._csvscan import (
    NULL_ONLY,
    TEXT,
    WIDER,
    Change,
    Dialect,
    ScanResult,
    Unterminated,
    accepts,
    collapse,
    eol_name,
    na_hint,
    narrowest,
    read_record,
    scan_file,
    special_reason,
    unquote,
    why_text,
    widen,
)
from ._settings import ColumnSpec, Evidence, ImportSettings, check_encoding

SAMPLE_BYTES: Final = 1 << 20  # what the dialect, header and preview are judged on
SNIFF_LINES: Final = 2000
SAMPLE_ROWS: Final = 1000
HEADER_ROWS: Final = 500  # the rows a first row is compared with
PREVIEW_ROWS: Final = 10
MAX_META: Final = 50  # lines before the table, at most
_CHUNK: Final = 1 << 20
_MAX_IDENT: Final = 63  # NAMEDATALEN - 1

# Bytes 0x80-0x9f: C1 controls in Latin-1, printable characters in cp1252 (except five).
_NOT_C1: Final = bytes(b for b in range(256) if not 0x80 <= b < 0xA0)
_CP1252_UNDEFINED: Final = frozenset(b"\x81\x8d\x8f\x90\x9d")

_COMMON_DELIMITERS: Final = (",", "\t", ";", "|")
# Quoted fields: with double quotes anywhere; with single quotes, whole fields only (see
# _sniff_quote), beside a usual delimiter or a line's ends, or between spaces.
_DOUBLE_QUOTED: Final = re.compile(r'(?:^|(?<=[^\w"]))"[^"\r\n]*"(?=[^\w"]|$)', re.M)
_QUOTED_FIELD: Final = re.compile(r"(?:^|(?<=[,;\t|]))[ ]*'(?:[^']++|'')*+'[ ]*(?=[,;\t|]|$)", re.M)
_OPENS_FIELD: Final = re.compile(r"(?:^|(?<=[,;\t|]))[ ]*'[^']*\Z", re.M)
_SPACED_FIELD: Final = re.compile(r"(?:^|(?<= ))'(?:[^'\r\n]|'')*'(?= |$)", re.M)
# Characters values are written with: never taken for a delimiter on consistency alone.
_VALUE_CHARS: Final = frozenset(".-:/+_@%'\"\\()[]{}")
_LINE_BREAK: Final = re.compile(r"\r\n|\n|\r")
# Excel's first line naming the delimiter (``sep=;``): Excel reads it, and leaves it out.
_EXCEL_SEP: Final = re.compile(r'"?sep=([^\r\n])"?[ \t]*(?:\r\n|\n|\r)')


def detect_encoding(path: str | os.PathLike[str]) -> str:
    """A byte-order mark first, then a full-file UTF-8 check, then cp1252 or Latin-1."""
    return _detect_encoding(Path(path))[0]


def _detect_encoding(p: Path) -> tuple[str, str]:
    """(encoding, why)."""
    with open(p, "rb") as f:
        head = f.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig", "the file starts with a UTF-8 byte-order mark"
        if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            return "utf-32", "the file starts with a UTF-32 byte-order mark"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16", "the file starts with a UTF-16 byte-order mark"
        f.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        lines = 1
        bad_line = 0
        bad_byte = 0
        try:
            while chunk := f.read(_CHUNK):
                pending = decoder.getstate()[0]
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    data = pending + chunk
                    bad_line = lines + data.count(b"\n", 0, exc.start)
                    bad_byte = data[exc.start]
                    raise
                lines += chunk.count(b"\n")
            decoder.decode(b"", final=True)
            return "utf-8", "the whole file is valid UTF-8"
        except UnicodeDecodeError:
            pass
        # Not UTF-8: an 8-bit encoding. Bytes 0x80-0x9f are control characters in Latin-1,
        # which real text does not hold, and curly quotes, dashes, the euro sign in cp1252.
        f.seek(0)
        c1: set[int] = set()
        while chunk := f.read(_CHUNK):
            c1.update(chunk.translate(None, _NOT_C1))
        where = f"not UTF-8 (line {bad_line}: byte 0x{bad_byte:02x})" if bad_line else "not UTF-8"
        if c1 and not c1 & _CP1252_UNDEFINED:
            return "cp1252", f"{where}; bytes 0x80-0x9f are cp1252 punctuation"
        return "latin-1", f"{where}; read as Latin-1 (set encoding if it is another)"


# -- the sample ---------------------------------------------------------------------------


@dataclass
class _Row:
    fields: list[str]  # raw, quotes included
    line: int
    eol: str


def _sample_text(p: Path, encoding: str) -> tuple[str, bool]:
    """The first SAMPLE_BYTES decoded (BOM dropped), and whether that is the whole file."""
    with open(p, "rb") as f:
        raw = f.read(SAMPLE_BYTES + 1)
    complete = len(raw) <= SAMPLE_BYTES
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    text = decoder.decode(raw[:SAMPLE_BYTES], final=complete)
    return text.removeprefix("\ufeff"), complete


def _sample_rows(text: str, complete: bool, d: Dialect, limit: int) -> list[_Row]:
    """The sample's records, PostgreSQL's way (aligned columns rewritten with tabs first)."""
    if d.whitespace:
        if not complete:
            cut = max(text.rfind("\n"), text.rfind("\r"))
            text = text[: cut + 1] if cut >= 0 else text
        text = collapse(text, d.quotechar)
    rows: list[_Row] = []
    pos, line = 0, 1
    while pos < len(text) and len(rows) < limit:
        try:
            rec = read_record(text, pos, d, complete)
        except Unterminated:
            if not rows:
                raise TransferError(
                    "line 1: a quoted field starts here and is never closed"
                ) from None
            break
        if rec is None:
            break  # the sample cut this record in two
        fields, end, eol = rec
        rows.append(_Row(fields, line, eol))
        line += sum(1 for _ in _LINE_BREAK.finditer(text, pos, end))
        pos = end
    return rows


# -- delimiter and quoting ----------------------------------------------------------------


@dataclass
class _Fit:
    """How well one way of splitting fits the sampled lines."""

    mode: int  # the usual number of separators per line
    prefix: int  # lines before the table
    bad: int  # lines of the table with another count
    total: int  # lines of the table
    name: str = ""
    short: bool = False  # the table's first line has one field fewer (a header)
    first_line: int = 1  # where the table starts (counting quoted line breaks as none)

    @property
    def ok(self) -> bool:
        return self.mode >= 1 and self.total >= 1 and self.bad <= max(1, self.total // 100)


def _fit(counts: Sequence[int], blank: Sequence[bool]) -> _Fit:
    filled = [c for c, b in zip(counts, blank, strict=True) if not b]
    if not filled:
        return _Fit(0, 0, 0, 0)
    tally = Counter(filled)
    mode = max(tally, key=lambda c: (tally[c], c))
    idx = [i for i, b in enumerate(blank) if not b]
    prefix = 0
    for k, i in enumerate(idx[: MAX_META + 1]):
        if counts[i] == mode and (k + 1 == len(idx) or counts[idx[k + 1]] == mode):
            prefix = k
            break
    else:
        prefix = 0
    # A header with one field fewer (R's write.table: no name over the row names).
    short = prefix >= 1 and counts[idx[prefix - 1]] == mode - 1
    if short:
        prefix -= 1
        body = idx[prefix + 1 :]
        total = len(body) + 1
    else:
        body = idx[prefix:]
        total = len(body)
    bad = sum(1 for i in body if counts[i] != mode)
    return _Fit(mode, prefix, bad, total, short=short, first_line=idx[prefix] + 1)


def _sniff_quote(text: str, complete: bool) -> str:
    """``'`` only when it quotes whole fields, ``"`` never does, and no other ``'`` is left.

    PostgreSQL's CSV reader takes a quote character anywhere in a field as the start of a
    quoted part: with ``'`` as the quote, ``O'Brien`` or ``rock 'n' roll`` would lose their
    apostrophes. So every ``'`` of the sample must open or close a whole field: beside a
    usual delimiter (spaces around it allowed) or a line's ends, over lines if the lines
    need it to line up; or, in a file of space-separated fields, do so on most of its lines.
    """
    if _DOUBLE_QUOTED.search(text):
        return '"'
    fields, spans, stray, end = 0, 0, 0, 0
    for m in _QUOTED_FIELD.finditer(text):
        stray += text.count("'", end, m.start())
        fields += 1
        spans += bool(_LINE_BREAK.search(m[0]))
        end = m.end()
    tail = text.count("'", end)
    if tail == 1 and not complete and _OPENS_FIELD.search(text, end):
        tail = 0  # the sample stops inside a quoted field
    # A span over lines counts only when the lines do not line up without it: in
    # "1,'90s" / "2,Parents'" / "3,kids" each line is a row of two fields as it stands.
    if fields and not stray and not tail and not (spans and _lines_up(text, complete)):
        return "'"
    lines = [line for line in _LINE_BREAK.split(text) if line.strip()]
    spaced = [line for line in lines if _SPACED_FIELD.search(line)]
    if len(spaced) >= max(2, len(lines) / 2) and "'" not in _SPACED_FIELD.sub("", text):
        return "'"
    return '"'


def _lines_up(text: str, complete: bool) -> bool:
    """Whether every line of the sample holds a usual delimiter the same number of times."""
    lines = _LINE_BREAK.split(text)
    if not complete and len(lines) > 1:
        lines.pop()  # the sample may have cut it
    lines = [line for line in lines if line.strip()]
    return bool(lines) and any(
        len({line.count(c) for line in lines}) == 1 and c in lines[0] for c in _COMMON_DELIMITERS
    )


def _sniff_delimiter(text: str, complete: bool, quote: str) -> tuple[str, bool, str]:
    """(delimiter, whitespace-aligned, evidence) from the sampled lines, quoted parts aside."""
    q = re.escape(quote)
    plain = re.sub(f"{q}(?:[^{q}]|{q}{q})*{q}", "\0", text)
    lines = _LINE_BREAK.split(plain)
    if not complete and len(lines) > 1:
        lines.pop()  # the sample may have cut it
    elif lines and lines[-1] == "":
        lines.pop()  # after the last line break
    lines = lines[:SNIFF_LINES]
    blank = [line == "" for line in lines]
    used = set("".join(lines))

    def fit(c: str) -> _Fit:
        found = _fit([line.count(c) for line in lines], blank)
        found.name = c
        return found

    def said(f: _Fit, what: str) -> str:
        counted = f"{f.mode + 1} fields"
        lines = f"{f.total:,} sampled {'line' if f.total == 1 else 'lines'}"
        since = f" from line {f.first_line}" if f.first_line > 1 else ""
        if f.bad:
            return f"{what}: {counted} on {f.total - f.bad:,} of the {lines}{since}"
        return f"{what}: {counted} on each of the {lines}{since}"

    # Candidates by tier: the usual delimiters, a single space, runs of spaces, any other
    # character. The best splits the most lines the same way from the earliest line on.
    found: list[tuple[_Fit, int, int, str]] = []
    for i, c in enumerate(_COMMON_DELIMITERS):
        if c in used and (f := fit(c)).ok:
            found.append((f, 0, i, repr(c)))
    if " " in used:
        space = fit(" ")
        # Values hold spaces too ("2024-01-31 10:00"): a single space is the delimiter only
        # from the first line on, or under a header of quoted names one fewer (R's
        # write.table, whose row names have no name).
        if space.ok and space.prefix == 0 and (not space.short or _quoted_names(text, quote)):
            found.append((space, 1, 0, "' ' (a single space)"))
        elif re.search(r"\S(?: {2,}|\t)\S", plain):
            runs = _fit([len(re.findall(r"[ \t]+", line.strip(" \t"))) for line in lines], blank)
            runs.name = " "
            if runs.ok:
                found.append((runs, 2, 0, "runs of spaces (aligned columns)"))
    for c in sorted(used):
        if (
            c.isascii()
            and not c.isalnum()
            and c not in _VALUE_CHARS
            and c not in _COMMON_DELIMITERS
            and c not in " \0\r\n"
            and (f := fit(c)).ok
            and f.bad == 0
            and f.total >= 2
        ):
            found.append((f, 3, ord(c), repr(c)))
    if found:
        best, tier, _, what = min(
            found, key=lambda t: (t[0].prefix, t[0].short, t[0].bad, t[1], t[2])
        )
        return best.name, tier == 2, said(best, what)
    # No character splits the lines the same way: one column. Its delimiter must not occur
    # (checked over the whole file by the scan, which would call a line holding it ragged).
    for c in (",", "\t", "|", ";", "\x1f"):
        if c not in used:
            return c, False, "none found: one column"
    return ",", False, "none found: one column"


def _quoted_names(text: str, quote: str) -> bool:
    """Is the first line made of quoted names only, separated by spaces?"""
    first = _LINE_BREAK.split(text, maxsplit=1)[0]
    q = re.escape(quote)
    return re.fullmatch(f"{q}[^{q}]*{q}(?: {q}[^{q}]*{q})*", first) is not None


# -- header -------------------------------------------------------------------------------


@dataclass
class _Verdict:
    header: bool
    sure: bool
    reasons: list[str] = field(default_factory=list)


def _join(a: str | None, b: str) -> str:
    if a is None or a == b:
        return b
    if b in WIDER.get(a, ()):
        return b
    if a in WIDER.get(b, ()):
        return a
    return TEXT


def _classes(value: str) -> frozenset[str]:
    out = set()
    for ch in value:
        if ch.isupper():
            out.add("upper")
        elif ch.islower():
            out.add("lower")
        elif ch.isdigit():
            out.add("digit")
        elif ch.isspace():
            out.add("space")
        else:
            out.add("other")
    return frozenset(out)


_CLASS_NAMES: Final = {
    "upper": "capital letters",
    "lower": "lowercase letters",
    "digit": "digits",
    "space": "spaces",
    "other": "punctuation",
}


def _written_unlike(mine: frozenset[str], union: frozenset[str], common: frozenset[str]) -> str:
    """How a header cell is written unlike every value below it."""
    if extra := sorted(mine - union):
        return f"has {' and '.join(_CLASS_NAMES[c] for c in extra)}, unlike every value below it"
    missing = sorted(common - mine)
    return f"has no {' or '.join(_CLASS_NAMES[c] for c in missing)}, unlike every value below it"


def _progressions(cells: Sequence[int | None]) -> list[tuple[int, int, int]]:
    """Runs (start, stop, step) of whole numbers going up or down by one step: three or
    more, or two that differ by one."""
    runs = []
    i = 0
    while i + 1 < len(cells):
        a, b = cells[i], cells[i + 1]
        if a is None or b is None or a == b:
            i += 1
            continue
        step, j, last = b - a, i + 1, b
        while j + 1 < len(cells) and (c := cells[j + 1]) is not None and c - last == step:
            j, last = j + 1, c
        if j - i + 1 >= 3 or step == 1:
            runs.append((i, j + 1, step))
        i = j
    return runs


def _as_int(raw: str, quote: str, null: str) -> int | None:
    if narrowest(raw, quote, null) != "bigint":
        return None
    return int(unquote(raw, quote))


def _lone_line(cells: Sequence[str], quote: str, null: str) -> _Verdict:
    """A file of one line: a header over no rows (an empty table's export, as pandas reads
    it), when its cells are distinct names; otherwise data. Either way the review says so."""
    values = [unquote(c, quote) for c in cells]
    names = all(
        v != "" and c != null and narrowest(c, quote, null) == TEXT
        for c, v in zip(cells, values, strict=True)
    )
    if names and len(set(values)) == len(values):
        return _Verdict(True, False, ["it is the only line, and its cells are distinct names"])
    return _Verdict(False, False, ["there is no other line to compare it with"])


def _judge_header(first: _Row, rows: Sequence[_Row], n: int, quote: str, null: str) -> _Verdict:
    """Is ``first`` a header over ``rows``? The evidence, cell by cell."""
    rows = [r for r in rows if len(r.fields) == n][:HEADER_ROWS]
    if not rows:
        return _lone_line(first.fields[:n], quote, null)
    cache: dict[str, str | None] = {}

    def kind(raw: str) -> str | None:
        if raw not in cache:
            cache[raw] = narrowest(raw, quote, null)
        return cache[raw]

    header_points = 0.0
    supporting = 0.0  # whole numbers over decimals: a header's sign only beside another
    data_points = 0.0
    for_header: list[str] = []
    weak: list[str] = []  # listed after the strong signs
    for_data: list[str] = []
    cells = first.fields[:n]
    # Whole numbers counting up across the columns, where the rows below do not: numbers
    # used as column names (years, pandas' default column labels).
    counted: set[int] = set()
    ints = [_as_int(c, quote, null) for c in cells]
    for start, stop, step in _progressions(ints):
        under = [[_as_int(r.fields[i], quote, null) for i in range(start, stop)] for r in rows[:5]]
        if any(_progressions(u) == [(0, stop - start, step)] for u in under):
            continue
        header_points += 2
        counted.update(range(start, stop))
        way = "up" if step > 0 else "down"
        for_header.append(
            f"{unquote(cells[start], quote)}..{unquote(cells[stop - 1], quote)} count {way} "
            "across the columns (numbers as column names)"
        )
    for i, raw in enumerate(cells):
        if i in counted:
            continue
        value = unquote(raw, quote)
        if value == "" or raw == null:
            continue  # an empty name: an index column, as pandas and R write it
        kinds = [kind(r.fields[i]) for r in rows]
        values = [k for k in kinds if k is not None]
        if not values:
            continue
        texts = values.count(TEXT)
        profile: str | None = None
        if texts <= 0.05 * len(values) and texts < len(values):
            for k in values:
                if k != TEXT:
                    profile = _join(profile, k)
        else:
            profile = TEXT
        assert profile is not None
        shown = repr(value) if len(value) <= 30 else repr(value[:29] + "…")
        if profile != TEXT:
            if not accepts(profile, raw, quote, null):
                header_points += 2
                for_header.append(f"{shown} is not {profile} like the values below it")
            elif (
                profile == "numeric"
                and kind(raw) == "bigint"
                and values.count("bigint") <= 0.1 * len(values)
            ):
                supporting += 0.5
                weak.append(f"{shown} is a whole number over decimals")
            elif profile == "boolean":
                data_points += 0.5  # t, f, yes, no: short names too
                for_data.append(f"{shown} is boolean like the values below it")
            else:
                data_points += 1
                for_data.append(f"{shown} is {profile} like the values below it")
        else:
            below = {unquote(r.fields[i], quote) for r in rows}
            if value in below:
                data_points += 1
                for_data.append(f"{shown} is also a value below it")
                continue
            mine = _classes(value)
            seen = [_classes(v) for v in below if v]
            if seen:
                union = frozenset().union(*seen)
                common = frozenset.intersection(*seen)
                if mine - union or common - mine:
                    header_points += 0.5
                    weak.append(f"{shown} {_written_unlike(mine, union, common)}")
    for_header += weak
    if header_points:
        header_points += supporting
    # Two signs at least (a name over numbers is two); one weak sign is not enough to
    # drop a line from the data: then the row is kept as data and the review says so.
    if header_points >= 2 and header_points > 2 * data_points:
        return _Verdict(True, True, for_header)
    if header_points >= 1 and header_points > data_points:
        return _Verdict(True, False, for_header)
    if data_points > header_points:
        return _Verdict(False, True, for_data)
    return _Verdict(False, False, for_header + for_data)


# -- putting it together ------------------------------------------------------------------


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
    type), a preview of the first data rows (``settings.preview``) and what each choice rests
    on (``settings.evidence``). Raises :class:`TransferError` naming the line when the file
    cannot be imported as it is (a ragged row, mixed line endings inside quoted values, ...).
    """
    p = Path(path)
    if not p.is_file():
        raise TransferError(f"csv file not found: {os.fspath(p)!r}")
    name = os.fspath(p)

    def where(line: int) -> str:
        return f"{name!r}: line {line}"

    if encoding is None:
        encoding, encoding_why = _detect_encoding(p)
    else:
        encoding_why = "as given"
    check_encoding(encoding, repr(name))
    text, complete = _sample_text(p, encoding)
    if not text.strip():
        raise TransferError(f"{name!r}: the file is empty")

    declared = _EXCEL_SEP.match(text)
    quote = quotechar or _sniff_quote(text[declared.end() :] if declared else text, complete)
    if delimiter is None and declared:
        delim, whitespace = declared.group(1), False
        delimiter_why = f"{delim!r}: line 1 names it ({declared.group(0).strip()}, as Excel writes)"
    elif delimiter is None:
        delim, whitespace, delimiter_why = _sniff_delimiter(text, complete, quote)
    else:
        delim, whitespace, delimiter_why = delimiter, False, "as given"
    if delim == quote:
        raise TransferError(f"{name!r}: delimiter and quotechar must differ (both {delim!r})")
    dialect = Dialect(delim, quote, "\n", whitespace)
    try:
        rows = _sample_rows(text, complete, dialect, SAMPLE_ROWS + MAX_META + 1)
    except TransferError as exc:
        raise TransferError(f"{name!r}: {exc}") from None
    if declared:
        rows = rows[1:]  # Excel's sep= line: not part of the table
    if not rows:
        raise TransferError(f"{name!r}: no rows found")

    n, start, short_header, short_data = _table(rows, has_headers, quote, null_string)
    skipped = rows[:start]
    first = rows[start]
    notes: list[str] = []
    if short_data:
        notes.append(
            f"line {skipped[-1].line} has one field fewer than the {n} of the rows below, "
            "and values like theirs: a data row with a field missing? It is left out of "
            f"the import (skip_lines: {first.line - 1}); mend the line to import it"
        )
    dialect = Dialect(delim, quote, first.eol or "\n", whitespace)

    if short_header:
        has_headers = True
        header_why = (
            f"line {first.line}, with one name fewer than the {n} fields of the rows: "
            "the first column has no name (row names, as R's write.table writes them)"
        )
        verdict = _Verdict(True, True)
    elif has_headers is None:
        verdict = _judge_header(first, rows[start + 1 :], n, quote, null_string)
        has_headers = verdict.header
        header_why = _header_text(first.line, verdict)
        if not verdict.sure:
            if verdict.header:
                notes.append(
                    f"the header was judged on weak evidence: if line {first.line} is data, "
                    "set has_headers: false"
                )
            else:
                why = "; ".join(verdict.reasons[:2]) or "nothing tells it from the lines below"
                notes.append(
                    f"line {first.line} may be a header ({why}): it is imported as data so "
                    "that no line is lost; if it is a header, set has_headers: true"
                )
    else:
        verdict = _Verdict(has_headers, True)
        header_why = f"line {first.line}, as given" if has_headers else "none, as given"

    width = n
    if has_headers:
        cells = [unquote(f, quote) for f in first.fields]
        headers: list[str | None] = ([None] if short_header else []) + list(cells)
        headers = headers[:width] + [None] * (width - len(headers))
    else:
        headers = [None] * width
    if has_headers and any(h == "" or h is None for h in headers):
        notes.append(
            "a column without a name in the header (an index column, as pandas and R "
            "write it) is named column_N: rename it in the settings file if you like"
        )
    names = column_names(headers, enforce_lowercase=enforce_lowercase)

    data = rows[start + 1 :] if has_headers else rows[start:]
    seed, changes = _seed_types(data, width, quote, null_string)
    try:
        before = start + (1 if has_headers else 0) + (1 if declared else 0)
        scan = scan_file(p, encoding, dialect, null_string, seed, before, where)
    except UnicodeError as exc:
        raise TransferError(f"{name!r}: cannot be read as {encoding!r}: {exc}") from None
    for i, early in enumerate(changes):
        scan.changes[i][:0] = early
    line_endings = _line_endings(scan, dialect, name)
    types = [TEXT if t == NULL_ONLY else t for t in scan.types]

    preview = tuple(tuple(unquote(f, quote) for f in r.fields) for r in data[:PREVIEW_ROWS])
    evidence = Evidence(
        encoding=f"{encoding}: {encoding_why}",
        delimiter=(
            f"{delimiter_why}; quotechar {quote!r}"
            if delimiter is None
            else f"{delim!r}, as given; quotechar {quote!r}"
        ),
        line_endings=line_endings,
        header=header_why,
        skipped=_skipped_text(skipped, first.line, n, dialect, declared is not None),
        rows=_rows_text(scan),
        columns=tuple(
            _type_text(t, ch, quote, null_string) for t, ch in zip(types, scan.changes, strict=True)
        ),
        notes=tuple(notes + _type_notes(types)),
    )
    return ImportSettings(
        delimiter=delim,
        quotechar=quote,
        encoding=encoding,
        has_headers=bool(has_headers),
        columns=tuple(
            ColumnSpec(csv=h, name=nm, type=t)
            for h, nm, t in zip(headers, names, types, strict=True)
        ),
        null_string=null_string,
        enforce_lowercase=enforce_lowercase,
        skip_lines=first.line - 1,
        normalise_newlines=scan.mixed_eol_line is not None,
        collapse_whitespace=whitespace,
        preview=preview,
        evidence=evidence,
    )


def _table(
    rows: Sequence[_Row], has_headers: bool | None, quote: str, null: str
) -> tuple[int, int, bool, bool]:
    """(fields per row, index of the table's first row, whether that row is a header with
    one name fewer, whether the row before the table is a data row one field short).

    Rows before the table have other field counts: a title, notes, blank lines.
    """
    counts = [len(r.fields) for r in rows]
    filled = [len(r.fields) for r in rows if r.fields != [""]] or [1]
    tally = Counter(filled)
    n = max(tally, key=lambda c: (tally[c], c))
    start = 0
    if n > 1:
        for i in range(min(len(rows), MAX_META + 1)):
            if counts[i] == n and (i + 1 == len(rows) or counts[i + 1] == n):
                start = i
                break
    if start >= 1 and counts[start - 1] == n - 1 and rows[start - 1].fields != [""]:
        # One field short: R's write.table header over row names, unless the row after it
        # is the header and it only a title of that width; or, unquoted values like the
        # ones under them (R quotes its names, "2019" too), a data row with a field missing.
        short = rows[start - 1]
        if has_headers is not True and not any(f.startswith(quote) for f in short.fields):
            as_names = _judge_header(
                _Row(["", *short.fields], short.line, short.eol), rows[start:], n, quote, null
            )
            if not as_names.header and as_names.sure:
                return n, start, False, True
        verdict = _judge_header(rows[start], rows[start + 1 :], n, quote, null)
        if has_headers is not False and not (verdict.header and verdict.sure):
            return n, start - 1, True, False
    return n, start, False, False


def _skipped_text(
    skipped: Sequence[_Row], first_line: int, n: int, d: Dialect, excel_sep: bool
) -> str:
    if not skipped and not excel_sep:
        return ""
    last = first_line - 1
    span = "line 1" if last == 1 else f"lines 1-{last}"
    why = ["line 1 names the delimiter, as Excel writes it"] if excel_sep else []
    if skipped:
        counts = ", ".join(str(len(r.fields)) for r in skipped[:6]) + (
            ", ..." if len(skipped) > 6 else ""
        )
        shown = ", ".join(repr(_shorten(_join_fields(r.fields, d))) for r in skipped[:3])
        more = ", ..." if len(skipped) > 3 else ""
        why.append(f"their field counts ({counts}) are not its {n}: {shown}{more}")
    return f"{span} (skip_lines: {last}): not part of the table; " + "; ".join(why)


def _seed_types(
    rows: Sequence[_Row], width: int, quote: str, null: str
) -> tuple[list[str], list[list[Change]]]:
    """Types of the first rows, with the changes that set them (the scan goes on from there)."""
    types = [NULL_ONLY] * width
    changes: list[list[Change]] = [[] for _ in range(width)]
    for r in rows:
        if len(r.fields) != width:
            break  # the scan names the line
        for i, raw in enumerate(r.fields):
            before = types[i]
            if before == TEXT:
                continue
            after = widen(before, raw, quote, null)
            if after != before:
                types[i] = after
                changes[i].append(Change(r.line, raw, before, after))
    return types, changes


def _line_endings(scan: ScanResult, d: Dialect, name: str) -> str:
    own = eol_name(d.eol)
    if scan.mixed_eol_line is None:
        return own
    other = eol_name(scan.mixed_eol)
    if scan.quoted_newline_line is not None:
        raise TransferError(
            f"{name!r}: line {scan.mixed_eol_line}: the line ends with {other} where the lines "
            f"before it end with {own} (PostgreSQL refuses mixed line endings), and line "
            f"{scan.quoted_newline_line} has a line break inside a quoted value, so they cannot "
            "be made the same safely: save the file with one kind of line ending"
        )
    return (
        f"mixed: {own}, but line {scan.mixed_eol_line} ends with {other} (PostgreSQL would "
        "refuse the file there): CRLF is sent as LF on import (normalise_newlines: true; "
        "no quoted value holds a line break, so no value changes)"
    )


def _rows_text(scan: ScanResult) -> str:
    first, last = scan.first_data_line, scan.lines
    if last < first:
        return "none: the file holds no data row"
    if scan.quoted_newline_line is not None:
        return (
            f"lines {first}-{last} (some values span lines, from line {scan.quoted_newline_line})"
        )
    rows = scan.records
    return f"{rows:,} {'row' if rows == 1 else 'rows'}, lines {first}-{last}, every value read"


_TYPE_WORDS: Final = {
    "bigint": "is a whole number",
    "numeric": "is a number, kept exactly as written",
    "boolean": "is true or false",
    "date": "is an ISO date",
    "timestamp": "is an ISO timestamp",
    "timestamptz": "is an ISO timestamp with a time zone",
}


def _type_notes(types: Sequence[str]) -> list[str]:
    if "numeric" not in types:
        return []
    return [
        "numeric columns keep every digit as written (0.1 stays 0.1, 1.50 stays 1.50); for "
        "floating point (faster sums, about 15 significant digits), change a column's type "
        "to double precision"
    ]


def _type_text(ctype: str, changes: Sequence[Change], quote: str, null: str) -> str:
    """Why a column has its type: the lines and values that set it."""
    if not changes:
        return "text: no value on any line (every field is NULL)"
    first, last = changes[0], changes[-1]
    if ctype == TEXT:
        if last.before == NULL_ONLY:
            special = special_reason(last.raw, quote, null)
            if special is not None:
                return f"text: line {last.line}: {special}"
            hint = na_hint(last.raw, quote)
            return f"text: from line {last.line} ({_value(last, quote)})" + (
                f"; {hint}" if hint else ""
            )
        text = f"text: line {last.line}: {why_text(last.raw, quote, null, last.before)}"
        if last.line - 1 > first.line:
            text += f"; lines {first.line}-{last.line - 1} fit {last.before}"
        elif last.line - 1 == first.line:
            text += f"; line {first.line} fits {last.before}"
        hint = na_hint(last.raw, quote)
        return text + (f"; {hint}" if hint else "")
    if len(changes) == 1:
        shown = _value(first, quote)
        return f"{ctype}: every value {_TYPE_WORDS[ctype]} (first: line {first.line} {shown})"
    steps = ", ".join(f"{c.after} from line {c.line} {_value(c, quote)}" for c in changes)
    return f"{ctype}: every value fits ({steps})"


def _value(c: Change, quote: str) -> str:
    return _show(unquote(c.raw, quote))


def _show(value: str) -> str:
    return repr(_shorten(value))


def _shorten(value: str, width: int = 40) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def _join_fields(fields: Sequence[str], d: Dialect) -> str:
    return (" " if d.whitespace else d.delimiter).join(fields)


def _header_text(line: int, verdict: _Verdict) -> str:
    reasons = verdict.reasons[:3]
    more = f" (and {len(verdict.reasons) - 3} more)" if len(verdict.reasons) > 3 else ""
    because = "; ".join(reasons) + more
    if verdict.header:
        how = "" if verdict.sure else ", on weak evidence"
        return f"line {line}{how}: {because}"
    if not verdict.sure:
        return f"none (unsure): line {line} is taken as data" + (f": {because}" if because else "")
    return f"none: line {line} is data: {because}"


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
            name = _cut((header or "").strip(), _MAX_IDENT)
        if not name:
            name = f"column_{i}"
        base, n = name, 2
        while name in used:
            suffix = f"_{n}"
            name = _cut(base, _MAX_IDENT - len(suffix)) + suffix
            n += 1
        used.add(name)
        names.append(name)
    return names


def _cut(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` bytes of UTF-8 at a character's end, as the server cuts an
    identifier (by bytes): two names it would cut the same are then told apart here."""
    return name.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _safe_identifier(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if name and name[0].isdigit():
        name = "c_" + name
    return name[:_MAX_IDENT].rstrip("_")
