"""4.0 import path of ``PostgresServerSettingsInspector``: an adapter over the audit's queries.

New code calls :func:`pgmonkey.serveradvice.audit`, which compares and explains.
"""

from __future__ import annotations

from typing import Any, Final

from pgmonkey._connect import ConnectionLike
from pgmonkey._connect import connection as _connection
from pgmonkey.serveradvice import Setting
from pgmonkey.serveradvice._audit import _compare_setting, _fetch_hba, _fetch_settings

__all__ = ["POSTGRESQL_CONF_SETTINGS", "PostgresServerSettingsInspector"]

#: The settings 4.0's inspector read from pg_settings.
POSTGRESQL_CONF_SETTINGS: Final = [
    "max_connections",
    "ssl",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
]

_HBA_KEYS: Final = (
    "line_number",
    "type",
    "database",
    "user_name",
    "address",
    "netmask",
    "auth_method",
    "options",
)


def _fields(rule: Any) -> dict[str, Any]:
    return {key: getattr(rule, key) for key in _HBA_KEYS}


class PostgresServerSettingsInspector:
    """Reads a live server's settings and pg_hba rules (read-only), as 4.0's class did.

    *connection*: a pgmonkey connection object, a psycopg connection, or a config.
    """

    def __init__(self, connection: ConnectionLike):
        self.connection = connection

    def get_current_settings(self) -> dict[str, dict[str, Any]] | None:
        """``{name: {"value": ..., "source": ...}}`` from pg_settings; None without the right."""
        with _connection(self.connection) as conn:
            rows, error = _fetch_settings(conn, POSTGRESQL_CONF_SETTINGS)
        if error is not None:
            return None
        return {name: {"value": r["setting"], "source": r["source"]} for name, r in rows.items()}

    def get_hba_rules(self) -> list[dict[str, Any]] | None:
        """The rules of pg_hba_file_rules without errors, in file order; None if unreadable."""
        with _connection(self.connection) as conn:
            rules, _ = _fetch_hba(conn)
        if rules is None:
            return None
        # Lists, as psycopg gives PostgreSQL arrays (and 4.0 returned them).
        return [
            {k: list(v) if isinstance(v, tuple) else v for k, v in _fields(r).items()}
            for r in sorted(rules, key=lambda r: r.line_number)
            if not r.error
        ]

    def compare_settings(self, recommended: list[str]) -> list[dict[str, str]] | None:
        """Compare ``'name = value'`` strings with the server: setting, recommended, current,
        source, status (OK, MISMATCH, REVIEW or UNKNOWN) each; None without the right."""
        names = [e.split("=", 1)[0].strip() for e in recommended if "=" in e]
        with _connection(self.connection) as conn:
            rows, error = _fetch_settings(conn, names)
            role = str(conn.info.user)
        if error is not None:
            return None
        out = []
        for entry in recommended:
            if "=" not in entry:
                continue
            name, value = (part.strip() for part in entry.split("=", 1))
            value = value.split("#", 1)[0].strip().strip("'\"")
            setting = Setting(name, value, is_file=name.endswith("_file"))
            row = _compare_setting(setting, rows.get(name), role)
            out.append(
                {
                    "setting": name,
                    "recommended": value,
                    "current": row.current if row.current is not None else "(not found)",
                    "source": row.source or "",
                    "status": row.status,
                }
            )
        return out
