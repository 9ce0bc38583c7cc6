"""The connection probe shared by ``pgconfig test`` and the magics.

``pgconfig test`` against a server that accepts the connection and never answers used to
wait for ever on normal/async when the config had no ``connect_timeout``; the probe now
brings its own (10 s), and an explicit one is kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgmonkey.cli import run
from pgmonkey.connections._probe import TIMEOUT_ENV, bounded_connect, probe
from tests._conn_support import derive_config
from tests.tcp_proxy import TcpProxy


def test_probe_reports_what_the_server_says(superuser_dsn: str) -> None:
    with psycopg.connect(superuser_dsn) as conn:
        facts = probe(conn, rounds=2)
        row: Any = conn.execute(
            "SELECT current_setting('server_version'), current_user, current_database()"
        ).fetchone()
    assert (facts.version, facts.user, facts.database) == row
    assert facts.rtt is not None and facts.rtt > 0
    assert facts.where == f"{facts.host}:{facts.port}"


def test_a_probe_gets_a_timeout_unless_one_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    with bounded_connect():
        assert os.environ[TIMEOUT_ENV] == "10"
    assert TIMEOUT_ENV not in os.environ
    monkeypatch.setenv(TIMEOUT_ENV, "3")
    with bounded_connect():
        assert os.environ[TIMEOUT_ENV] == "3"


def test_pgconfig_test_against_a_silent_server_fails_instead_of_hanging(
    password_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with TcpProxy("127.0.0.1", 9, lifetime=120) as silent:
        silent.stall()  # accepts, never answers
        config = derive_config(
            password_config,
            tmp_path,
            connection_settings={
                "host": silent.host,
                "port": str(silent.port),
                "sslmode": "disable",
            },
        )
        data = config.read_text().replace("connect_timeout:", "# connect_timeout:")
        config.write_text(data)
        code = run(["pgconfig", "test", "--connconfig", str(config)])
    err = capsys.readouterr().err
    assert code == 1
    assert "timeout" in err.lower(), err
