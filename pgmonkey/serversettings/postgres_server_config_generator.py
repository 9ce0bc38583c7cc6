"""4.0 import path of ``PostgresServerConfigGenerator``: an adapter over ``serveradvice``.

New code calls :func:`pgmonkey.serveradvice.recommend` and :func:`~pgmonkey.serveradvice.audit`,
which return structured results (``.to_text()``, ``.to_frame()``).
"""

from __future__ import annotations

import os
from typing import Any

from pgmonkey._connect import ConnectionLike
from pgmonkey._connect import connection as _connection
from pgmonkey.config import load_config
from pgmonkey.serveradvice import Advice, audit, recommend

__all__ = ["PostgresServerConfigGenerator"]


class PostgresServerConfigGenerator:
    """The server settings a config file needs, printed as ``pgmonkey pgserverconfig`` does.

    The config is read (and validated) when the object is made: a bad file raises
    ConfigError here, where 4.0 printed a message and left ``config`` empty.
    """

    def __init__(self, yaml_file_path: str | os.PathLike[str], *, resolve_env: bool = False):
        self.yaml_file_path = yaml_file_path
        self.config: dict[str, Any] = load_config(yaml_file_path, resolve_env=resolve_env)

    def _advice(self) -> Advice:
        return recommend(self.config)

    def generate_pg_hba_entry(self) -> list[str]:
        """The pg_hba.conf lines: a TYPE DATABASE USER ADDRESS METHOD OPTIONS header first."""
        return self._advice().hba_text().splitlines()

    def generate_postgresql_conf(self) -> list[str]:
        """The postgresql.conf settings, one ``name = value`` string each."""
        return [s.conf_line().split("  # ", 1)[0] for s in self._advice().settings]

    def print_configurations(self) -> None:
        """Print the recommended pg_hba.conf and postgresql.conf entries."""
        print(self._advice().to_text())

    def print_configurations_with_audit(self, connection: ConnectionLike) -> None:
        """Print the recommendations compared with the live server behind *connection*.

        *connection*: a pgmonkey connection object, a psycopg connection or a config.
        Read-only; what the role may not read is reported as such.
        """
        with _connection(connection) as conn:
            report = audit(self.config, conn)
        print(report.to_text())
