"""Code written for pgmonkey 4.0's module paths keeps working, against a real server.

Each test uses a 4.0 path the way 4.0's code and documentation used it: the connection
manager, the code generator that prints a script, the server config generator and the
settings inspector, and ``normalize_config``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

import pgmonkey
from pgmonkey import sandbox as sb
from pgmonkey.common.utils.configutils import load_config, normalize_config
from pgmonkey.managers.pgconnection_manager import PGConnectionManager
from pgmonkey.serversettings.postgres_server_config_generator import (
    PostgresServerConfigGenerator,
)
from pgmonkey.serversettings.postgres_server_settings_inspector import (
    POSTGRESQL_CONF_SETTINGS,
    PostgresServerSettingsInspector,
)
from pgmonkey.tools.connection_code_generator import ConnectionCodeGenerator

Conn = psycopg.Connection[tuple[Any, ...]]

MODULES_40 = (
    "pgmonkey.managers.pgconnection_manager",
    "pgmonkey.tools.connection_code_generator",
    "pgmonkey.serversettings.postgres_server_config_generator",
    "pgmonkey.serversettings.postgres_server_settings_inspector",
    "pgmonkey.common.utils.configutils",
)


def test_the_40_paths_are_todays_objects() -> None:
    assert PGConnectionManager is pgmonkey.PGConnectionManager
    assert load_config is pgmonkey.load_config


def test_import_pgmonkey_does_not_import_the_40_paths() -> None:
    code = (
        "import sys, pgmonkey\n"
        "from pgmonkey import PGConnectionManager, load_config\n"
        f"print(','.join(m for m in {MODULES_40!r} if m in sys.modules))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert res.stdout.strip() == ""


def test_manager_from_the_40_path_connects(password_config: Path) -> None:
    manager = PGConnectionManager()
    connection = manager.get_database_connection(str(password_config), "normal")
    with connection as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT version();")
            row = cur.fetchone()
    assert row is not None and str(row[0]).startswith("PostgreSQL ")
    manager.clear_cache()


@pytest.mark.parametrize("library", ["pgmonkey", "psycopg"])
@pytest.mark.parametrize("ctype", ["normal", "pool", "async", "async_pool"])
def test_code_generator_prints_a_script_that_runs(
    password_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ctype: str,
    library: str,
) -> None:
    ConnectionCodeGenerator().generate_connection_code(str(password_config), ctype, library)
    script = capsys.readouterr().out
    assert "SELECT" in script
    path = tmp_path / "app.py"
    path.write_text(script)
    run = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()


def test_code_generator_defaults_to_the_configs_type(
    password_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = yaml.safe_load(password_config.read_text())
    cfg["connection_type"] = "async_pool"
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(cfg))
    ConnectionCodeGenerator().generate_connection_code(str(path))
    script = capsys.readouterr().out
    assert '"async_pool"' in script
    assert "asyncio.run(main())" in script


def test_code_generator_refuses_an_unknown_type(password_config: Path) -> None:
    with pytest.raises(pgmonkey.ConfigError, match="unknown connection type 'pooled'"):
        ConnectionCodeGenerator().generate_connection_code(str(password_config), "pooled")


def test_server_config_generator_prints_the_40_layout(
    ssl_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generator = PostgresServerConfigGenerator(str(ssl_config))
    assert generator.config["connection_settings"]["sslmode"] == "verify-full"
    hba = generator.generate_pg_hba_entry()
    assert hba[0].split() == ["TYPE", "DATABASE", "USER", "ADDRESS", "METHOD", "OPTIONS"]
    assert hba[1].split() == ["hostssl", "pgmonkey", "pgmonkey", "127.0.0.1/32", "scram-sha-256"]
    conf = generator.generate_postgresql_conf()
    assert conf[0].startswith("max_connections = ") and "#" not in conf[0]
    assert "ssl = on" in conf
    assert "ssl_cert_file = 'server.crt'" in conf

    generator.print_configurations()
    out = capsys.readouterr().out
    assert out.startswith("1) Database type detected: PostgreSQL\n")
    assert "2) Minimal database server settings needed for this config file:" in out
    assert "ssl = on" in out


def test_server_config_generator_audits_through_a_40_connection(
    ssl_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manager = PGConnectionManager()
    connection = manager.get_database_connection(str(ssl_config), "normal")
    PostgresServerConfigGenerator(str(ssl_config)).print_configurations_with_audit(connection)
    out = capsys.readouterr().out
    assert "2) Server settings audit:" in out
    assert "max_connections" in out and "Status" in out
    manager.clear_cache()


def test_inspector_current_settings_are_the_servers(password_config: Path, db_conn: Conn) -> None:
    manager = PGConnectionManager()
    connection = manager.get_database_connection(str(password_config), "normal")
    current = PostgresServerSettingsInspector(connection).get_current_settings()
    assert current is not None
    row = db_conn.execute(
        "SELECT setting, source FROM pg_settings WHERE name = 'max_connections'"
    ).fetchone()
    assert row is not None
    assert current["max_connections"] == {"value": row[0], "source": row[1]}
    assert current["ssl"]["value"] == "on"
    assert sorted(current) == sorted(POSTGRESQL_CONF_SETTINGS)
    manager.clear_cache()


def test_inspector_hba_rules_and_comparison(db_conn: Conn) -> None:
    inspector = PostgresServerSettingsInspector(db_conn)
    rules = inspector.get_hba_rules()
    assert rules is not None
    expected = db_conn.execute(
        "SELECT line_number, auth_method FROM pg_hba_file_rules WHERE error IS NULL"
        " ORDER BY line_number"
    ).fetchall()
    assert [(r["line_number"], r["auth_method"]) for r in rules] == expected
    assert set(rules[0]) >= {"type", "database", "user_name", "address", "options"}
    assert isinstance(rules[0]["database"], list)

    compared = inspector.compare_settings(
        ["max_connections = 22", "ssl = off", "ssl_cert_file = 'server.crt'", "no_such = 1"]
    )
    assert compared is not None
    by_name = {c["setting"]: c for c in compared}
    assert by_name["max_connections"]["status"] == "OK"  # the sandbox allows 200
    assert by_name["ssl"]["status"] == "MISMATCH"
    assert by_name["ssl_cert_file"]["status"] == "OK"
    assert by_name["no_such"]["current"] == "(not found)"
    assert by_name["no_such"]["status"] == "UNKNOWN"


@pytest.fixture
def plain_role(sandbox: sb.Sandbox, db_conn: Conn, tmp_path: Path) -> Iterator[Path]:
    """A config for a login role with no privileges beyond the defaults."""
    password = "plain-role-password"
    role = "pgm_compat_plain"
    db_conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    db_conn.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )
    cfg = yaml.safe_load(sandbox.configs["password"].read_text())
    cfg["connection_settings"].update(user=role, password=password)
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    try:
        yield path
    finally:
        db_conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_inspector_without_privileges_returns_none_for_hba(plain_role: Path) -> None:
    manager = PGConnectionManager()
    connection = manager.get_database_connection(str(plain_role), "normal")
    inspector = PostgresServerSettingsInspector(connection)
    assert inspector.get_hba_rules() is None
    current = inspector.get_current_settings()
    assert current is not None and current["max_connections"]["value"].isdigit()
    manager.clear_cache()


def test_normalize_config_unwraps_the_pre_30_level() -> None:
    inner = {"connection_settings": {"host": "localhost"}}
    with pytest.warns(DeprecationWarning, match="'postgresql:' key is deprecated"):
        assert normalize_config({"postgresql": inner}) == inner
    assert normalize_config(inner) is inner
    assert normalize_config(None) is None
