"""CSV import: the review step, then the file streamed into ``COPY ... FROM STDIN``.

The server parses the CSV (PostgreSQL's CSV rules: an unquoted empty field is NULL, a quoted
one an empty string); Python only moves bytes, 1 MiB at a time. Table creation and COPY run
in one transaction, so a failed import leaves neither rows nor a new table behind.
"""

from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql

from pgmonkey import _connect, _psycopg
from pgmonkey.errors import TransferError

from ._csvscan import Dialect, Unterminated, collapse, read_record, unquote
from ._progress import Progress
from ._settings import (
    _TYPE_RE,
    IF_EXISTS,
    ColumnSpec,
    ImportSettings,
    find_legacy_settings,
    import_settings_path,
    load_import_settings,
    logger,
    pg_encoding,
    write_import_settings,
)
from ._sql import TableName, copy_options, parse_table, rows_text

CHUNK: Final = 1 << 20
_PREVIEW_WIDTH: Final = 24
_HEADER_BYTES: Final = 1 << 20
_LINE_END: Final = re.compile(r"\r\n|\n|\r")
_LINE_END_BYTES: Final = re.compile(rb"\r\n|\n|\r")


@dataclass(frozen=True)
class ImportResult:
    """What an import did, or (``review_needed``) what it detected and will do next time."""

    path: Path
    table: str
    settings: ImportSettings
    settings_path: Path | None
    review_needed: bool
    rows: int = 0
    created: bool = False

    @property
    def message(self) -> str:
        """One line for the user: what happened, or what to do next."""
        if self.review_needed:
            return (
                f"wrote the detected settings to {os.fspath(self.settings_path or '')!r}; "
                "review them, then run the import again to load the data (nothing imported yet)"
            )
        made = "created and filled" if self.created else "filled"
        source = os.fspath(self.path)
        return f"imported {rows_text(self.rows)} from {source!r} ({made} {self.table})"

    def preview_text(self) -> str:
        """The columns it will create (name and type) over the first data rows."""
        columns = self.settings.columns
        head = [f"{c.name} ({c.type})" for c in columns]
        rows = [[_cell(v) for v in row] for row in self.settings.preview]
        widths = [
            max([len(h)] + [len(r[i]) for r in rows if i < len(r)]) for i, h in enumerate(head)
        ]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        for row in rows:
            lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)).rstrip())
        return "\n".join(lines)

    def evidence_text(self) -> str:
        """What detection based each choice on (the lines that decided), for the review."""
        s = self.settings
        ev = s.evidence
        why = ev.columns if ev is not None and len(ev.columns) == len(s.columns) else ()
        mapping = []
        for i, c in enumerate(s.columns):
            head = f"  {c.csv!r} -> {c.name}" if c.csv is not None else f"  {c.name}"
            mapping.append(f"{head} {why[i]}" if why else f"{head} {c.type}")
        lines = [
            f"detected in {os.fspath(self.path)!r}: encoding {s.encoding}, "
            f"delimiter {_delimiter_text(s)}, quotechar {s.quotechar!r}, "
            f"header row {'yes' if s.has_headers else 'no'}"
            + (f", skip_lines {s.skip_lines}" if s.skip_lines else ""),
        ]
        if ev is not None:
            lines += ev.lines()
        lines += [f"columns of {self.table} (type: why):" if why else f"columns of {self.table}:"]
        lines += mapping
        if ev is not None and ev.notes:
            lines += ["check:", *(f"  - {note}" for note in ev.notes)]
        return "\n".join(lines)

    def report(self) -> str:
        """The full text the CLI prints (detection, evidence, preview and next step on a review)."""
        if not self.review_needed:
            return self.message
        return "\n".join([self.evidence_text(), "", self.preview_text(), "", self.message])

    def __str__(self) -> str:
        return self.report()


def import_csv(
    path: str | os.PathLike[str],
    table: str | tuple[str, str],
    con: Any,
    *,
    settings: ImportSettings | str | os.PathLike[str] | None = None,
    if_exists: str | None = None,
    progress: bool | None = None,
    resolve_env: bool = False,
) -> ImportResult:
    """Import a CSV file into ``table`` through ``COPY FROM STDIN``, all rows or none.

    Without ``settings`` the file's ``<csv>.import.yaml`` is used, else 4.0's
    ``<csv stem>.yaml`` (settings keys only). When neither exists this is the review step:
    the detected settings are written to ``<csv>.import.yaml`` and the result has
    ``review_needed=True`` and a preview; nothing is imported and ``con`` is not used.

    ``con``: a psycopg connection, a pgmonkey connection object, or a config path or dict.
    ``if_exists`` overrides the settings' ``fail`` (the default: refuse a table that holds
    rows; an empty existing table is filled), ``append`` or ``replace``.
    ``progress``: a byte progress bar; by default only on a terminal or in a notebook.
    ``resolve_env``: interpolate ``${VAR}`` references when ``con`` is a config path or dict.
    Raises :class:`~pgmonkey.TransferError` for a bad row, naming the line and the column.
    """
    p = Path(path)
    if not p.is_file():
        raise TransferError(f"csv file not found: {os.fspath(p)!r}")
    target = parse_table(table)
    if if_exists is not None and if_exists not in IF_EXISTS:
        raise TransferError(f"if_exists must be one of {', '.join(IF_EXISTS)}, got {if_exists!r}")

    resolved, settings_path, review = _resolve_settings(p, settings)
    if review:
        return ImportResult(p, str(target), resolved, settings_path, review_needed=True)
    if if_exists is not None:
        resolved = replace(resolved, if_exists=if_exists)
    _check_header(p, resolved)

    with _connect.connection(con, resolve_env=resolve_env) as conn:
        rows, created = _load(conn, p, target, resolved, progress, if_exists is not None)
    return ImportResult(
        p, str(target), resolved, settings_path, review_needed=False, rows=rows, created=created
    )


def _resolve_settings(
    p: Path, given: ImportSettings | str | os.PathLike[str] | None
) -> tuple[ImportSettings, Path | None, bool]:
    """(settings with columns, the file they came from, whether this is the review step)."""
    if isinstance(given, ImportSettings):
        return _complete(p, given), given.source, False
    if given is not None:
        loaded = load_import_settings(given)
        return _complete(p, loaded), loaded.source, False
    own = import_settings_path(p)
    if own.is_file():
        return _complete(p, load_import_settings(own)), own, False
    legacy = find_legacy_settings(p)
    if legacy is not None:
        logger.info("using 4.0 settings file %s for %s", legacy, p)
        return _complete(p, load_import_settings(legacy)), legacy, False
    from ._detect import detect_csv  # detection is for the review step only: not loaded after

    detected = detect_csv(p)
    write_import_settings(detected, own)
    return replace(detected, source=own), own, True


def _complete(p: Path, s: ImportSettings) -> ImportSettings:
    """Settings without a column list (4.0's file) get the detected columns."""
    if s.columns:
        return s
    from ._detect import detect_csv  # as in _resolve_settings: loaded only when needed

    found = detect_csv(
        p,
        encoding=s.encoding,
        delimiter=s.delimiter,
        quotechar=s.quotechar,
        has_headers=s.has_headers,
        enforce_lowercase=s.enforce_lowercase,
        null_string=s.null_string,
    )
    return replace(
        s,
        columns=found.columns,
        preview=found.preview,
        skip_lines=s.skip_lines or found.skip_lines,
        normalise_newlines=s.normalise_newlines or found.normalise_newlines,
    )


def _delimiter_text(s: ImportSettings) -> str:
    return "runs of spaces (aligned columns)" if s.collapse_whitespace else repr(s.delimiter)


def _check_header(p: Path, s: ImportSettings) -> None:
    """The header must be the one the settings were made for (same columns, same order)."""
    if not s.has_headers:
        return
    line = s.skip_lines + 1
    try:
        header = _header_row(p, s)
    except (OSError, UnicodeError, LookupError) as exc:
        raise TransferError(f"{os.fspath(p)!r}: cannot read the header row: {exc}") from None
    # Leading columns without a header cell (R's row names) are not in the header row.
    unnamed = 0
    while unnamed < len(s.columns) and s.columns[unnamed].csv is None:
        unnamed += 1
    expected = s.columns
    if unnamed and len(header) == len(s.columns) - unnamed:
        expected = s.columns[unnamed:]
    if len(header) != len(expected):
        raise TransferError(
            f"{os.fspath(p)!r}: line {line}: the header has {len(header)} columns, "
            f"the settings list {len(s.columns)}{_from(s)}"
        )
    for got, col in zip(header, expected, strict=True):
        if col.csv is not None and got != col.csv:
            raise TransferError(
                f"{os.fspath(p)!r}: line {line}: header {got!r} where the settings expect "
                f"{col.csv!r}{_from(s)}"
            )


def _header_row(p: Path, s: ImportSettings) -> list[str]:
    """The header's values, read as COPY reads them (after ``skip_lines``)."""
    with open(p, "rb") as f:
        head = f.read(_HEADER_BYTES)
    text = codecs.getincrementaldecoder(s.encoding)(errors="replace").decode(head)
    text = text.removeprefix("\ufeff")
    pos = _skip_lines_at(text, s.skip_lines)
    if pos is None:
        return []
    d = Dialect(s.delimiter, s.quotechar, "\n", s.collapse_whitespace)
    if s.collapse_whitespace:
        text = collapse(text[pos:], s.quotechar)
        pos = 0
    try:
        rec = read_record(text, pos, d, len(head) < _HEADER_BYTES)
    except Unterminated:
        rec = None
    if rec is None:
        return []
    return [unquote(f, s.quotechar) for f in rec[0]]


def _skip_lines_at(text: Any, k: int, final: bool = True) -> int | None:
    """The offset after the first ``k`` lines of ``text`` (str or bytes); None when it
    holds fewer (or, not ``final``, ends on a CR that a LF may follow)."""
    line_end = _LINE_END_BYTES if isinstance(text, bytes) else _LINE_END
    pos = 0
    for _ in range(k):
        m = line_end.search(text, pos)
        if m is None:
            return None
        pos = m.end()
    cr = b"\r" if isinstance(text, bytes) else "\r"
    if not final and pos == len(text) and text[-1:] == cr:
        return None
    return pos


def _from(s: ImportSettings) -> str:
    return f" (in {os.fspath(s.source)!r})" if s.source is not None else ""


def _load(
    conn: psycopg.Connection[Any],
    p: Path,
    target: TableName,
    s: ImportSettings,
    progress: bool | None,
    if_exists_given: bool = False,
) -> tuple[int, bool]:
    """Create or check the table and COPY the file in, in one transaction."""
    file_encoding = pg_encoding(s.encoding)
    # Aligned columns reach COPY split by single spaces (see _csvscan.collapse).
    sent = replace(s, delimiter=" ") if s.collapse_whitespace else s
    try:
        with conn.transaction():
            created = _prepare_table(conn, target, s, if_exists_given)
            if not created:
                s = _named_as_in(conn, target, s)
            columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in s.columns)
            stmt = sql.SQL("COPY {} ({}) FROM STDIN {}").format(
                target.ident, columns, copy_options(sent)
            )
            with conn.cursor() as cur:
                try:
                    with cur.copy(stmt) as copy:
                        _stream(p, s, file_encoding, copy.write, progress)
                except BaseException:
                    # Ctrl-C, SIGTERM: the server's COPY (a slow trigger, say) is cancelled,
                    # not left running, and the connection is left usable for the rollback.
                    _psycopg.cancel_and_drain(conn)
                    raise
                rows = cur.rowcount
    except psycopg.Error as exc:
        err = _data_error(exc, p, target, s)
        if err is None:
            raise
        raise err from exc
    return rows, created


def _named_as_in(
    conn: psycopg.Connection[Any], target: TableName, s: ImportSettings
) -> ImportSettings:
    """``s`` with each column named as the existing table names it.

    Detection writes names folded to lower case and made plain (``UserID`` is ``userid``,
    ``First Name`` is ``first_name``), as a new table gets them; a table made beforehand
    (an export's source, say) may have the header's own names. A name the table lacks is
    matched to the header's name, then to a column that differs only in case; one matched
    by neither stays, for the server to refuse by name.
    """
    found = conn.execute(_COLUMNS_OF, [target.ident.as_string(conn)]).fetchall()
    have = [str(r[0]) for r in found]
    folded: dict[str, list[str]] = {}
    for name in have:
        folded.setdefault(name.lower(), []).append(name)

    def named(c: ColumnSpec) -> str:
        if c.name in have:
            return c.name
        if c.csv is not None and c.csv in have:
            return c.csv
        for word in (c.csv, c.name):
            if word is not None and len(folded.get(word.lower(), [])) == 1:
                return folded[word.lower()][0]
        return c.name

    columns = tuple(replace(c, name=named(c)) for c in s.columns)
    return s if columns == s.columns else replace(s, columns=columns)


_COLUMNS_OF: Final = (
    "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass(%s)"
    " AND attnum > 0 AND NOT attisdropped"
)

_SCHEMA_OF: Final = (
    "SELECT n.nspname FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)"
)


def _prepare_table(
    conn: psycopg.Connection[Any], target: TableName, s: ImportSettings, if_exists_given: bool
) -> bool:
    """Apply ``if_exists`` and ``auto_create_table``; True when the table is created here.
    ``if_exists_given``: the caller's ``if_exists`` overrode the settings file's."""
    quoted = target.ident.as_string(conn)
    found = conn.execute(_SCHEMA_OF, [quoted]).fetchone()
    if found is not None:
        if s.if_exists == "replace":
            # Re-created where it was: an unqualified CREATE TABLE goes to the search_path's
            # first schema, which need not be the one the table was found (and dropped) in.
            target = TableName(found[0], target.name)
            conn.execute(sql.SQL("DROP TABLE {}").format(target.ident))
        else:
            if s.if_exists == "fail":
                query = sql.SQL("SELECT EXISTS (SELECT FROM {})").format(target.ident)
                has_rows = conn.execute(query).fetchone()
                if has_rows is not None and has_rows[0]:
                    where = " (given for this run)" if if_exists_given else _from(s)
                    raise TransferError(
                        f"table {str(target)!r} already holds rows and if_exists is 'fail'"
                        f"{where}: set it to 'append' or 'replace' to load into it"
                    )
            return False
    elif not s.auto_create_table:
        raise TransferError(
            f"table {str(target)!r} does not exist and auto_create_table is false{_from(s)}"
        )
    for c in s.columns:
        # Types are SQL text: settings files are checked on load, settings built in Python here.
        if not _TYPE_RE.fullmatch(c.type):
            raise TransferError(f"column {c.name!r} has an invalid type {c.type!r}{_from(s)}")
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.type)) for c in s.columns
    )
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(target.ident, definition))
    return True


def _stream(
    p: Path,
    s: ImportSettings,
    file_encoding: str | None,
    write: Any,
    progress: bool | None,
) -> None:
    """Feed the file to COPY in chunks: as it is, or transcoded (what PostgreSQL cannot read)
    and rewritten (``skip_lines``, ``normalise_newlines``, ``collapse_whitespace``) chunk by
    chunk, never row by row. The file must keep its size while it is read: a file truncated
    or grown meanwhile fails the import (nothing is committed)."""
    with open(p, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        read = _send(f, p, s, file_encoding, write, size, progress)
        now = os.fstat(f.fileno()).st_size
    if read != size or now != size:
        raise TransferError(
            f"{os.fspath(p)!r}: the file changed while it was imported ({size} bytes when the "
            f"import started, {read} bytes read, {now} bytes now): nothing was imported"
        )


def _send(
    f: Any,
    p: Path,
    s: ImportSettings,
    file_encoding: str | None,
    write: Any,
    size: int,
    progress: bool | None,
) -> int:
    """Write the open file to COPY; return the number of bytes read."""
    with Progress(size, p.name, progress) as bar:
        read = 0
        if file_encoding == "UTF8":
            bom = f.read(len(codecs.BOM_UTF8))
            if bom == codecs.BOM_UTF8:  # COPY would take a BOM for data
                read = len(bom)
            else:
                f.seek(0)
        plain = file_encoding is not None and not (
            s.skip_lines or s.normalise_newlines or s.collapse_whitespace
        )
        if plain:
            while chunk := f.read(CHUNK):
                read += len(chunk)
                write(chunk)
                bar.update(len(chunk))
        else:
            read += _rewrite(f, p, s, file_encoding is None, write, bar)
    return read


def _rewrite(f: Any, p: Path, s: ImportSettings, transcode: bool, write: Any, bar: Progress) -> int:
    """Stream the file rewritten; return the bytes read. A bad byte names its line."""
    decoder = codecs.getincrementaldecoder(s.encoding)() if transcode else None
    lines = 1
    read = 0
    to_skip = s.skip_lines
    tail: Any = "" if transcode else b""
    last = False
    while not last:
        chunk = f.read(CHUNK)
        read += len(chunk)
        last = not chunk
        if decoder is not None:
            state = decoder.getstate()
            try:
                text: Any = decoder.decode(chunk, last)
            except UnicodeDecodeError as exc:
                # Decode the good part again from the same state, only to count its lines
                # (exc.start counts from the bytes the decoder held back from the last chunk).
                again = codecs.getincrementaldecoder(s.encoding)(errors="replace")
                again.setstate(state)
                good = again.decode(chunk[: max(0, exc.start - len(state[0]))])
                raise TransferError(
                    f"{os.fspath(p)!r}: line {lines + good.count(chr(10))}: "
                    f"not valid {s.encoding!r} ({exc.reason}; set encoding in the settings file); "
                    "nothing was imported"
                ) from None
            lines += text.count("\n")
        else:
            text = chunk
        buf = tail + text
        if to_skip:
            pos = _skip_lines_at(buf, to_skip, last)
            if pos is None:
                tail = buf if not last else buf[:0]
                bar.update(len(chunk))
                continue
            buf = buf[pos:]
            to_skip = 0
        # Whole lines only (a CRLF or an aligned line is never cut in two), except at the end.
        if last:
            cut = len(buf)
        elif s.collapse_whitespace:
            cut = buf.rfind("\n" if transcode else b"\n") + 1
        elif s.normalise_newlines and buf[-1:] == ("\r" if transcode else b"\r"):
            cut = len(buf) - 1
        else:
            cut = len(buf)
        out, tail = buf[:cut], buf[cut:]
        if s.normalise_newlines:
            out = out.replace("\r\n", "\n") if transcode else out.replace(b"\r\n", b"\n")
        if s.collapse_whitespace:
            out = collapse(out, s.quotechar)
        if out:
            write(out.encode("utf-8") if transcode else out)
        bar.update(len(chunk))
    return read


_LINE_RE: Final = re.compile(r", line (\d+)(.*)", re.DOTALL)
_ENCODING_STATES: Final = frozenset({"22021", "22P05"})  # bad byte sequence, untranslatable


def _data_error(
    exc: psycopg.Error, p: Path, target: TableName, s: ImportSettings
) -> TransferError | None:
    """A TransferError naming the file, line and column for an error in the CSV data.

    The server's context line reads ``COPY t, line 3, column x: "abc"`` (lines count from
    1 with the header, embedded newlines included, so they are the file's own lines).
    """
    context = exc.diag.context or ""
    copy_line = next((ln for ln in context.splitlines() if ln.startswith("COPY ")), None)
    if copy_line is None:
        return None
    rest = copy_line.removeprefix(f"COPY {target.name}")
    m = _LINE_RE.match(rest) or _LINE_RE.search(rest)
    where = f"{os.fspath(p)!r}"
    if m is not None:
        # COPY counts the lines it was sent: skipped lines come before them.
        where += f": line {int(m.group(1)) + s.skip_lines}"
        tail = m.group(2)
        if tail.startswith(", column "):
            named = tail[len(", column ") :]
            matches = [c for c in s.columns if named == c.name or named.startswith(c.name + ": ")]
            if matches:
                col = max(matches, key=lambda c: len(c.name))
                where += f", column {col.name!r}"
                if col.csv is not None and col.csv != col.name:
                    where += f" (csv header {col.csv!r})"
            else:
                where += f", column {named.split(': ', 1)[0]!r}"
    message = exc.diag.message_primary or str(exc)
    if exc.sqlstate in _ENCODING_STATES:
        message += f" (is the file really {s.encoding!r}? set encoding in the settings file)"
    return TransferError(f"{where}: {message}; nothing was imported into {str(target)!r}")


def _cell(value: str) -> str:
    # What a terminal would act on (escape sequences, line breaks, bidi overrides) is shown
    # escaped, as repr() escapes it: a file's content never drives the terminal.
    text = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in value)
    return text if len(text) <= _PREVIEW_WIDTH else text[: _PREVIEW_WIDTH - 1] + "…"
