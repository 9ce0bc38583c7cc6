"""Recommendations: the pg_hba.conf lines and postgresql.conf settings a config needs.

:func:`recommend` reads only the config (no server): ``max_connections`` with headroom for
every pool, ``ssl = on`` when the client requires SSL, ``hostssl`` lines scoped to the
config's database and user, ``clientcert=verify-full`` only with a client certificate.
"""

from __future__ import annotations

import getpass
import itertools
import math
import os
import shutil
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from ._hba import (
    HbaLine,
    hba_addresses,
    quote_hba_name,
)

if TYPE_CHECKING:
    import pandas


Status = Literal["OK", "MISMATCH", "REVIEW", "UNKNOWN"]

SSL_REQUIRED_MODES: Final = frozenset({"require", "verify-ca", "verify-full"})
DEFAULT_SUPERUSER_RESERVED: Final = 3
HBA_HEADER: Final = ("TYPE", "DATABASE", "USER", "ADDRESS", "METHOD", "OPTIONS")
RULE: Final = "─"
# psycopg_pool's defaults, for a pool section that leaves the sizes out.
_POOL_DEFAULT_MIN: Final = 4


# --- recommendations ----------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One recommended postgresql.conf setting."""

    name: str
    value: str
    comment: str = ""
    # File names are examples (the server's defaults): any file name will do.
    is_file: bool = False

    def conf_line(self) -> str:
        value = f"'{self.value}'" if self.is_file else self.value
        line = f"{self.name} = {value}"
        return f"{line}  # {self.comment}" if self.comment else line


@dataclass(frozen=True)
class _Profile:
    """What the server will see of a client using this config."""

    hosts: tuple[str, ...]
    dbname: str
    user: str
    sslmode: str
    has_password: bool
    has_client_cert: bool

    @property
    def ssl_required(self) -> bool:
        return self.sslmode in SSL_REQUIRED_MODES

    @property
    def needs_ssl(self) -> bool:
        # Client certificates only exist inside TLS.
        return self.ssl_required or self.has_client_cert

    @property
    def method(self) -> str:
        return "cert" if self.has_client_cert and not self.has_password else "scram-sha-256"


def _set(value: Any) -> bool:
    return value not in (None, "")


def _profile(config: Mapping[str, Any]) -> _Profile:
    s: Mapping[str, Any] = config.get("connection_settings") or {}
    # libpq's defaults when a key is missing: PG* variables, then the OS user name.
    user = str(s.get("user") or os.environ.get("PGUSER") or getpass.getuser())
    dbname = str(s.get("dbname") or os.environ.get("PGDATABASE") or user)
    hostaddr = str(s.get("hostaddr") or "")
    host = str(s.get("host") or "")
    # hostaddr is what libpq connects to when given; host then only names the server.
    entries = (hostaddr or host).split(",")
    return _Profile(
        hosts=tuple(e.strip() for e in entries),
        dbname=dbname,
        user=user,
        sslmode=str(s.get("sslmode") or "prefer").lower(),
        has_password=_set(s.get("password")),
        has_client_cert=_set(s.get("sslcert")) or _set(s.get("sslkey")),
    )


def _pool_max(section: Any) -> int:
    if not isinstance(section, Mapping):
        return 0
    size = section.get("max_size", section.get("min_size", _POOL_DEFAULT_MIN))
    try:
        return int(size)
    except (TypeError, ValueError):
        return 0


def _hba_lines(p: _Profile) -> tuple[HbaLine, ...]:
    lines: list[HbaLine] = []
    options = "clientcert=verify-full" if p.has_client_cert else ""
    db, user = quote_hba_name(p.dbname), quote_hba_name(p.user)
    for host in p.hosts:
        for address in hba_addresses(host):
            if not address:
                # A Unix socket: no TLS there, so no client certificate either.
                method = "scram-sha-256" if p.has_password or not p.has_client_cert else "peer"
                line = HbaLine("local", db, user, "", method)
            else:
                rtype = "hostssl" if p.needs_ssl else "host"
                line = HbaLine(rtype, db, user, address, p.method, options)
            if line not in lines:
                lines.append(line)
    return tuple(lines)


def _max_connections(config: Mapping[str, Any], reserved: int) -> Setting:
    pool = _pool_max(config.get("pool_settings"))
    apool = _pool_max(config.get("async_pool_settings"))
    pools = pool + apool
    # Room for the normal/async connections, psql sessions and maintenance next to the pools.
    margin = max(2, math.ceil(pools / 10))
    comment = (
        f"at least: pools {pools} (pool {pool} + async_pool {apool})"
        f" + reserved {reserved} + margin {margin}"
    )
    return Setting("max_connections", str(pools + reserved + margin), comment)


def _settings(config: Mapping[str, Any], p: _Profile, reserved: int) -> tuple[Setting, ...]:
    items = [_max_connections(config, reserved)]
    if p.needs_ssl:
        items += [
            Setting("ssl", "on"),
            Setting("ssl_cert_file", "server.crt", is_file=True),
            Setting("ssl_key_file", "server.key", is_file=True),
        ]
        if p.has_client_cert:
            # The CA that signed the clients' certificates: needed to verify them.
            items.append(Setting("ssl_ca_file", "ca.crt", is_file=True))
    if p.method == "scram-sha-256":
        items.append(Setting("password_encryption", "scram-sha-256"))
    return tuple(items)


def _notes(p: _Profile) -> tuple[str, ...]:
    notes: list[str] = []
    if any(_is_remote(h) for h in p.hosts):
        notes.append(
            "ADDRESS is the client's address as the server sees it: the lines above use the "
            "config's host; when the server is on another machine, put your client's address "
            "or network there"
        )
    if p.has_client_cert and not p.ssl_required:
        notes.append(
            f"sslmode {p.sslmode!r} does not require SSL: use 'verify-full' with client "
            "certificates"
        )
    if not p.needs_ssl and any(_is_remote(h) for h in p.hosts):
        notes.append(
            f"sslmode {p.sslmode!r} does not require SSL: passwords and data may travel "
            "unencrypted; use 'require' or better 'verify-full'"
        )
    return tuple(notes)


def _is_remote(host: str) -> bool:
    addresses = hba_addresses(host)
    return not all(a in ("", "127.0.0.1/32", "::1/128") for a in addresses)


@dataclass(frozen=True)
class Advice:
    """The server settings a config needs: pg_hba.conf lines and postgresql.conf settings."""

    hba: tuple[HbaLine, ...]
    settings: tuple[Setting, ...]
    notes: tuple[str, ...] = ()

    def rows(self) -> list[dict[str, str]]:
        """One dict per line: file, setting (or pg_hba TYPE..OPTIONS as ``line``), value."""
        out = [
            {"file": "pg_hba.conf", "setting": "hba line", "value": str(line), "note": ""}
            for line in self.hba
        ]
        out += [
            {"file": "postgresql.conf", "setting": s.name, "value": s.value, "note": s.comment}
            for s in self.settings
        ]
        return out

    def to_frame(self) -> pandas.DataFrame:
        import pandas

        return pandas.DataFrame(self.rows(), columns=["file", "setting", "value", "note"])

    def hba_text(self, width: int | None = None) -> str:
        return text_table([HBA_HEADER, *(line.fields() for line in self.hba)], width)

    def conf_text(self, width: int | None = None) -> str:
        """The settings as postgresql.conf lines; a comment that would make a line wider
        than *width* goes on comment lines of its own above it (still pasteable)."""
        lines: list[str] = []
        for s in self.settings:
            line = s.conf_line()
            if width is not None and len(line) > width and s.comment:
                lines += wrap(s.comment, width, "# ", "# ")
                line = Setting(s.name, s.value, is_file=s.is_file).conf_line()
            lines.append(line)
        return "\n".join(lines)

    def to_text(self, width: int | None = None) -> str:
        """The 4.0 layout of ``pgmonkey pgserverconfig``.

        *width*: fit the table, comments and notes to it (postgresql.conf lines stay whole,
        to be pasted); None: the terminal's width when stdout is one, else no wrapping.
        """
        width = width if width is not None else terminal_width()
        parts = [
            "1) Database type detected: PostgreSQL",
            "",
            "2) Minimal database server settings needed for this config file:",
            "",
            "a) pg_hba.conf:",
            self.hba_text(width),
            "",
            "b) postgresql.conf:",
            self.conf_text(width),
        ]
        if self.notes:
            parts += ["", "Notes:"]
            for note in self.notes:
                parts += wrap(note, width, "- ")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.to_text()


def recommend(
    config: Mapping[str, Any], *, reserved_connections: int = DEFAULT_SUPERUSER_RESERVED
) -> Advice:
    """The pg_hba.conf lines and postgresql.conf settings the server needs for *config*.

    *reserved_connections*: connections the server keeps back from applications
    (``superuser_reserved_connections``, 3 by default), added to ``max_connections``.
    """
    p = _profile(config)
    return Advice(_hba_lines(p), _settings(config, p, reserved_connections), _notes(p))


def terminal_width() -> int | None:
    """The width to fit text to: the terminal's when writing to one (or $COLUMNS), else None."""
    stdout = sys.stdout
    if os.environ.get("COLUMNS") or (stdout is not None and stdout.isatty()):
        return shutil.get_terminal_size().columns
    return None


# A word up to this long (a setting name, a short path) is never broken when a column shrinks.
_WHOLE_WORD: Final = 20
_GAP: Final = "  "


def column_widths(
    rows: Sequence[Sequence[str]], width: int | None, whole_word: int = _WHOLE_WORD
) -> list[int] | None:
    """Each column's width: its longest cell, narrowed (widest first) until *width* fits.

    A column narrows no further than its header and its longest word (up to *whole_word*
    characters of it); None when the table cannot fit *width* that way.
    """
    natural = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    widths = list(natural)
    over = sum(widths) + len(_GAP) * (len(widths) - 1) - (width or 0)
    if width is None or over <= 0:
        return widths
    floor = [
        min(n, max(len(rows[0][i]), *(min(len(w), whole_word) for r in rows for w in r[i].split())))
        for i, n in enumerate(natural)
    ]
    while over > 0:
        shrinkable = [i for i, w in enumerate(widths) if w > floor[i]]
        if not shrinkable:
            return None
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
        over -= 1
    return widths


def text_table(rows: Sequence[Sequence[str]], width: int | None = None) -> str:
    """Rows as aligned columns; with *width*, long cells wrap inside their column to fit it.

    A table that cannot fit even so is given one line per row (cells separated by a space,
    like pg_hba.conf itself), wrapped with an indent.
    """
    widths = column_widths(rows, width)
    if widths is None:
        lines: list[str] = []
        for row in rows:
            lines += wrap(" ".join(c for c in row if c), width, "", "    ")
        return "\n".join(lines)
    lines = []
    for row in rows:
        cells = [
            textwrap.wrap(c, w, break_on_hyphens=False) or [""]
            for c, w in zip(row, widths, strict=True)
        ]
        for parts in itertools.zip_longest(*cells, fillvalue=""):
            lines.append(_GAP.join(p.ljust(w) for p, w in zip(parts, widths, strict=True)).rstrip())
    return "\n".join(lines)


def wrap(text: str, width: int | None, indent: str = "", hanging: str = "  ") -> list[str]:
    """*text* as lines of at most *width* (when given): *indent* first, *hanging* after."""
    if width is None:
        return [indent + text]
    return textwrap.wrap(
        text,
        max(width, len(indent) + 20, len(hanging) + 20),
        initial_indent=indent,
        subsequent_indent=hanging,
        break_on_hyphens=False,
    ) or [indent]
