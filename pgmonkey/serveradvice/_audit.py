"""The audit: a config's recommendations against a live server, read-only.

:func:`audit` compares :func:`~pgmonkey.serveradvice.recommend`'s advice with the server's
``pg_settings`` and ``pg_hba_file_rules``, tells whether a current pg_hba rule would match this
client, and on a standby reports replication.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ._advice import (
    DEFAULT_SUPERUSER_RESERVED,
    HBA_HEADER,
    RULE,
    Advice,
    Setting,
    Status,
    column_widths,
    recommend,
    terminal_width,
    text_table,
    wrap,
)
from ._hba import (
    HbaClient,
    HbaLine,
    HbaMatch,
    HbaRule,
    first_match,
)

if TYPE_CHECKING:
    import pandas
    import psycopg

# Conservative methods ranked for the audit: what a current rule may use instead of ours.
_WEAK_METHODS: Final = {
    "trust": "trust: anyone reaching this rule connects without a password",
    "password": "password: the password travels in clear text (without SSL)",
    "md5": "md5: works, but scram-sha-256 is stronger (md5 is deprecated)",
}

# --- audit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRow:
    """One audited item: a postgresql.conf setting, or this client's pg_hba rule."""

    section: str  # 'postgresql.conf' or 'pg_hba.conf'
    setting: str
    recommended: str
    current: str | None
    source: str | None
    status: Status
    note: str = ""

    def as_dict(self) -> dict[str, str | None]:
        return {
            "section": self.section,
            "setting": self.setting,
            "recommended": self.recommended,
            "current": self.current,
            "source": self.source,
            "status": self.status,
            "note": self.note,
        }


@dataclass(frozen=True)
class AuditReport:
    """The result of :func:`audit`. ``rows`` are the comparison; the rest is context."""

    advice: Advice
    rows: tuple[AuditRow, ...]
    server_version: str | None = None
    in_recovery: bool | None = None
    client: HbaClient | None = None
    hba_rules: tuple[HbaRule, ...] | None = None  # None: could not be read
    hba_error: str | None = None
    settings_error: str | None = None
    notes: tuple[str, ...] = field(default=())
    # Streaming replication as this server sees it: its lag (standby) or its standbys (primary).
    replication: tuple[str, ...] = field(default=())

    @property
    def needs_attention(self) -> bool:
        """True when a row is not OK or part of the server could not be audited."""
        return (
            any(r.status != "OK" for r in self.rows)
            or self.hba_error is not None
            or self.settings_error is not None
        )

    def statuses(self) -> dict[str, Status]:
        return {r.setting: r.status for r in self.rows}

    def to_frame(self) -> pandas.DataFrame:
        import pandas

        columns = ["section", "setting", "recommended", "current", "source", "status", "note"]
        return pandas.DataFrame([r.as_dict() for r in self.rows], columns=columns)

    def to_text(self, width: int | None = None) -> str:
        """The report as text, in 4.0's layout.

        *width*: fit every line to it, wrapping long cells inside their column and long
        sentences; None: the terminal's width when stdout is one, else no wrapping.
        """
        width = width if width is not None else terminal_width()
        inner = None if width is None else width - 2  # what indented blocks may use

        def say(text: str, indent: str = "", hanging: str = "  ") -> list[str]:
            return wrap(text, width, indent, hanging)

        parts = ["1) Database type detected: PostgreSQL", "", "2) Server settings audit:", ""]
        if self.server_version:
            parts += [f"Server: {self.server_version}", ""]
        if self.in_recovery:
            parts += say(
                "This server is a standby (in recovery): it serves reads only; audit the "
                "primary too"
            )
            parts.append("")
        if self.replication:
            parts.append("Replication:")
            for line in self.replication:
                parts += say(line, "  ", "    ")
            parts.append("")
        parts.append("postgresql.conf:")
        conf = [r for r in self.rows if r.section == "postgresql.conf"]
        if self.settings_error:
            parts += [*say(f"cannot read pg_settings: {self.settings_error}", "  "), ""]
            parts += ["  Recommended:", _indent(self.advice.conf_text(inner))]
        else:
            parts += _settings_table(conf, width)
            for r in conf:
                if r.note and r.status != "OK":
                    parts += say(f"{r.setting}: {r.note}", "  ", "    ")
        parts += ["", "pg_hba.conf:", "Recommended:", _indent(self.advice.hba_text(inner))]
        if self.hba_error:
            parts.append("")
            parts += say(f"Current rules: cannot read pg_hba_file_rules: {self.hba_error}")
            parts += say("(recommendations only; compare them with pg_hba.conf by hand)", "  ")
        elif self.hba_rules is not None:
            rows = [("LINE", *HBA_HEADER)] + [
                (str(r.line_number), *r.fields()) for r in self.hba_rules
            ]
            parts += ["", "Current rules (pg_hba_file_rules):", _indent(text_table(rows, inner))]
        for r in self.rows:
            if r.section == "pg_hba.conf":
                parts.append("")
                parts += say(f"{r.setting}: {r.status}")
                parts += say(f"matching rule: {r.current or 'none'}", "  ", "    ")
                if r.note:
                    parts += say(r.note, "  ", "    ")
        notes = (*self.notes, *self.advice.notes)
        if notes:
            parts += ["", "Notes:"]
            for note in notes:
                parts += say(note, "- ")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.to_text()


def _settings_table(rows: Sequence[AuditRow], width: int | None) -> list[str]:
    """The postgresql.conf comparison: a table as wide as *width* allows.

    Too wide with its Source column (a file path and line), the table goes without it and
    each row's source follows it on a line of its own.
    """
    header = ("Setting", "Recommended", "Current", "Source", "Status")
    cells = [(r.setting, r.recommended, r.current or "", r.source or "", r.status) for r in rows]
    # With its Source column only if no path has to be broken for it.
    if column_widths([header, *cells], width, whole_word=width or 0) is not None:
        table = text_table([header, *cells], width).splitlines()
        return [table[0], RULE * max(map(len, table)), *table[1:]]
    header_ = (*header[:3], header[4])
    lines = text_table([header_, *((c[0], c[1], c[2], c[4]) for c in cells)], width).splitlines()
    out = [lines[0], RULE * min(width or 0, max(map(len, lines)))]
    # Each row's own lines, then its source: split the body where a new setting begins.
    body = lines[1:]
    starts = [i for i, line in enumerate(body) if line and not line[0].isspace()]
    for n, begin in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(body)
        out += body[begin:end]
        if n < len(rows) and rows[n].source:
            out += wrap(f"source: {rows[n].source}", width, "    ", "      ")
    return out


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def _source(row: Mapping[str, Any]) -> str:
    source = str(row.get("source") or "")
    if row.get("sourcefile"):
        source += f" ({row['sourcefile']}:{row.get('sourceline')})"
    return source


def _compare_setting(s: Setting, row: Mapping[str, Any] | None, role: str) -> AuditRow:
    section = "postgresql.conf"
    if row is None:
        return AuditRow(
            section,
            s.name,
            s.value,
            None,
            None,
            "UNKNOWN",
            f"not visible to role {role!r} (needs pg_read_all_settings or superuser)",
        )
    current = str(row.get("setting") or "")
    source = _source(row)
    status: Status
    note = ""
    if s.name == "max_connections":
        ok = current.isdigit() and int(current) >= int(s.value)
        status = "OK" if ok else "MISMATCH"
        if not ok:
            note = f"raise it to at least {s.value} (needs a restart)"
    elif s.is_file:
        if not current:
            status, note = "MISMATCH", "not set: the server cannot do what this config needs"
        elif os.path.basename(current) == s.value:
            status = "OK"
        else:
            status = "REVIEW"
            note = f"{current!r} instead of the usual {s.value!r}: check it is the intended file"
    else:
        status = "OK" if current.lower() == s.value.lower() else "MISMATCH"
        if status == "MISMATCH":
            note = f"set {s.name} = {s.value}"
    if status == "OK" and row.get("pending_restart"):
        status, note = "REVIEW", "changed in the file but not in effect until a restart"
    return AuditRow(section, s.name, s.value, current, source, status, note)


def _recommended_for(advice: Advice, client: HbaClient) -> HbaLine | None:
    host_lines = [line for line in advice.hba if (line.type == "local") == (client.address is None)]
    return host_lines[0] if host_lines else (advice.hba[0] if advice.hba else None)


def _judge_hba(
    advice: Advice, client: HbaClient, match: HbaMatch
) -> tuple[Status, str, HbaLine | None]:
    wanted = _recommended_for(advice, client)
    notes: list[str] = []
    if match.skipped_errors:
        lines = ", ".join(str(r.line_number) for r in match.skipped_errors)
        notes.append(f"line(s) {lines} have errors: the server keeps its old rules until fixed")
    if match.undecided:
        first = match.undecided[0]
        notes.append(
            f"line {first.line_number} ({first}) may match first: it depends on DNS or the "
            "server's interfaces, which the audit cannot see"
        )
    rule = match.rule
    if rule is None:
        if match.undecided:
            return "REVIEW", "; ".join(notes), wanted
        notes.append(
            "no rule of the current pg_hba.conf matches this client: after the next reload "
            "it will be rejected (the file changed since the server last read it?)"
        )
        return "MISMATCH", "; ".join(notes), wanted
    if rule.auth_method == "reject":
        notes.append("the matching rule rejects this client (after the next reload)")
        return "MISMATCH", "; ".join(notes), wanted
    if wanted is not None:
        if rule.auth_method != wanted.method:
            weak = _WEAK_METHODS.get(rule.auth_method)
            notes.append(weak or f"method {rule.auth_method!r} where {wanted.method!r} is advised")
        if wanted.type == "hostssl" and rule.type == "host":
            notes.append("'host' also accepts this client without SSL: 'hostssl' is advised")
        if "clientcert=verify-full" in wanted.options and not (
            rule.auth_method == "cert" or "clientcert=verify-full" in rule.options
        ):
            notes.append("no clientcert=verify-full: the client certificate is not checked")
    status: Status = "REVIEW" if notes else "OK"
    if rule.database == ("all",) and rule.user_name == ("all",) and status == "OK":
        notes.append("the rule admits every database and user: the advised line is narrower")
    return status, "; ".join(notes), wanted


def _fetch_hba(conn: psycopg.Connection[Any]) -> tuple[tuple[HbaRule, ...] | None, str | None]:
    import psycopg
    from psycopg.rows import dict_row

    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT * FROM pg_hba_file_rules")
            return tuple(HbaRule.from_row(r) for r in cur.fetchall()), None
    except psycopg.errors.InsufficientPrivilege as e:
        reason = e.diag.message_primary or "permission denied"
        return None, (
            f"{reason} (reading it takes a superuser, or GRANT SELECT ON pg_hba_file_rules "
            "and GRANT EXECUTE ON FUNCTION pg_hba_file_rules() to the role)"
        )
    except psycopg.errors.UndefinedTable:
        return None, "pg_hba_file_rules does not exist on this server (PostgreSQL < 10)"


def _fetch_settings(
    conn: psycopg.Connection[Any], names: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], str | None]:
    import psycopg
    from psycopg.rows import dict_row

    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT name, setting, source, sourcefile, sourceline, pending_restart"
                " FROM pg_settings WHERE name = ANY(%s)",
                (list(names),),
            )
            return {r["name"]: r for r in cur.fetchall()}, None
    except psycopg.errors.InsufficientPrivilege as e:
        return {}, e.diag.message_primary or "permission denied"


_RESERVED_SETTINGS: Final = ("superuser_reserved_connections", "reserved_connections")


# What hides the details of replication from a role (superusers have it implicitly).
_STATS_ROLE: Final = "pg_read_all_stats"


def _fetch_replication(conn: psycopg.Connection[Any], standby: bool, role: str) -> tuple[str, ...]:
    """Lines on streaming replication: a standby's lag, or a primary's standbys and theirs.

    Without pg_read_all_stats the server shows that a WAL receiver or sender runs (its pid)
    but not its state: that reads as unknown here, never as "not running".
    """
    import psycopg
    from psycopg.rows import dict_row

    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            if standby:
                cur.execute(
                    "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
                    " AS replay_age,"
                    " pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())"
                    " AS unreplayed,"
                    " (SELECT pid FROM pg_stat_wal_receiver) AS receiver_pid,"
                    " (SELECT status FROM pg_stat_wal_receiver) AS receiver"
                )
                row = cur.fetchone()
                return _standby_lines(row, role) if row else ()
            cur.execute(
                "SELECT application_name AS name, host(client_addr) AS addr, state, sync_state,"
                " extract(epoch FROM replay_lag) AS replay_lag,"
                " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS behind"
                " FROM pg_stat_replication ORDER BY application_name"
            )
            return tuple(_standby_row(r, role) for r in cur.fetchall())
    except psycopg.Error as e:
        reason = e.diag.message_primary or str(e).strip().splitlines()[0]
        return (f"replication status not readable: {reason}",)


def _hidden(role: str) -> str:
    return f"hidden from role {role!r}: needs {_STATS_ROLE}"


def _standby_lines(row: Mapping[str, Any], role: str) -> tuple[str, ...]:
    if row["receiver_pid"] is None:
        receiver = "not running"
    elif row["receiver"] is None:
        receiver = f"running, status unknown ({_hidden(role)})"
    else:
        receiver = str(row["receiver"])
    lines = [f"WAL receiver: {receiver}"]
    if row["unreplayed"] is not None:
        lines.append(f"received but not yet replayed: {int(row['unreplayed'])} bytes of WAL")
    if row["replay_age"] is None:
        lines.append("replication lag: unknown (no transaction replayed since the start)")
    else:
        lines.append(
            f"replication lag: {float(row['replay_age']):.1f} s since the last replayed "
            "transaction (grows while the primary is idle, too)"
        )
    return tuple(lines)


def _standby_row(row: Mapping[str, Any], role: str) -> str:
    name = row["name"] or "?"
    if row["state"] is None:
        # The sender's pid is visible, everything about it is not (the address neither).
        return f"standby {name}: state, address and lag unknown ({_hidden(role)})"
    lag = "n/a" if row["replay_lag"] is None else f"{float(row['replay_lag']):.3f} s"
    behind = "n/a" if row["behind"] is None else f"{int(row['behind'])} bytes"
    return (
        f"standby {name} from {row['addr'] or 'local'}: {row['state']} "
        f"({row['sync_state']}), replay lag {lag}, {behind} of WAL behind"
    )


def audit(config: Mapping[str, Any], conn: psycopg.Connection[Any] | None = None) -> AuditReport:
    """Compare :func:`recommend`'s advice with the live server, read-only.

    *conn*: an open psycopg connection (as this config's client); without one, the audit
    connects with *config* itself and closes the connection afterwards. Missing privileges
    (``pg_hba_file_rules`` needs a superuser) give recommendations with the reason, not an
    error. Connection errors are psycopg's own.
    """
    if conn is None:
        from pgmonkey._connect import open_config

        with open_config(config, autocommit=True) as own:
            return audit(config, own)
    return _audit(config, conn)


def _audit(config: Mapping[str, Any], conn: psycopg.Connection[Any]) -> AuditReport:
    from psycopg.rows import dict_row

    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT current_setting('server_version') AS version, pg_is_in_recovery() AS standby,"
            " host(inet_client_addr()) AS addr, session_user AS usr,"
            " current_database() AS db,"
            " ARRAY(SELECT rolname FROM pg_roles"
            "       WHERE pg_has_role(session_user, oid, 'MEMBER')) AS roles"
        )
        info = cur.fetchone()
    assert info is not None
    client = HbaClient(
        database=info["db"],
        user=info["usr"],
        address=info["addr"],
        ssl=bool(conn.pgconn.ssl_in_use),
        roles=frozenset(info["roles"] or ()),
    )
    names = ("max_connections", "ssl", "ssl_cert_file", "ssl_key_file", "ssl_ca_file")
    wanted = [*names, "password_encryption", *_RESERVED_SETTINGS]
    current, settings_error = _fetch_settings(conn, wanted)
    reserved = sum(
        int(current[n]["setting"])
        for n in _RESERVED_SETTINGS
        if n in current and str(current[n]["setting"]).isdigit()
    )
    if "superuser_reserved_connections" not in current:
        reserved += DEFAULT_SUPERUSER_RESERVED
    advice = recommend(config, reserved_connections=reserved)
    rows: list[AuditRow] = []
    if settings_error is None:
        rows += [_compare_setting(s, current.get(s.name), client.user) for s in advice.settings]
    hba_rules, hba_error = _fetch_hba(conn)
    notes: list[str] = []
    if hba_rules is not None:
        match = first_match(hba_rules, client)
        status, note, line = _judge_hba(advice, client, match)
        rule = match.rule
        where = None
        if rule is not None:
            where = f"{rule.file_name}:{rule.line_number}" if rule.file_name else "pg_hba.conf"
        rows.append(
            AuditRow(
                "pg_hba.conf",
                f"this client ({client.describe()})",
                str(line) if line else "",
                f"line {rule.line_number}: {rule}" if rule else None,
                where,
                status,
                note,
            )
        )
    else:
        # Could not read the rules: say so as a row too, so tables (to_frame) show it.
        rows.append(
            AuditRow(
                "pg_hba.conf",
                f"this client ({client.describe()})",
                "; ".join(str(line) for line in advice.hba),
                None,
                None,
                "UNKNOWN",
                f"cannot read pg_hba_file_rules: {hba_error}",
            )
        )
    uncovered = _uncovered(advice, client)
    if uncovered:
        notes.append(uncovered)
    replication = _fetch_replication(conn, bool(info["standby"]), client.user)
    return AuditReport(
        advice=advice,
        rows=tuple(rows),
        server_version=f"PostgreSQL {info['version']}",
        in_recovery=bool(info["standby"]),
        client=client,
        hba_rules=hba_rules,
        hba_error=hba_error,
        settings_error=settings_error,
        notes=tuple(notes),
        replication=replication,
    )


def _uncovered(advice: Advice, client: HbaClient) -> str | None:
    """A note when the advised ADDRESS entries do not cover where this client comes from."""
    import ipaddress

    if client.address is None:
        return None
    ip = ipaddress.ip_address(client.address)
    for line in advice.hba:
        try:
            net = ipaddress.ip_network(line.address, strict=False)
        except ValueError:
            return None  # a host name: the server resolves it, the audit cannot tell
        if net.version == ip.version and ip in net:
            return None
    return (
        f"the server sees this client as {client.address}, which no advised ADDRESS covers: "
        f"use {client.address}/{ip.max_prefixlen} (or the client's network) in pg_hba.conf"
    )
