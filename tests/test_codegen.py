"""generate-code: every type x library script runs against the sandbox and exits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pgmonkey.codegen import generate_code

TYPES = ("normal", "pool", "async", "async_pool")
LIBRARIES = ("pgmonkey", "psycopg")
# A generous bound: a script that hangs at exit (4.0's async_pool) fails instead of blocking.
RUN_TIMEOUT = 60


def run_script(code: str, tmp_path: Path, name: str = "app.py") -> subprocess.CompletedProcess[str]:
    script = tmp_path / name
    script.write_text(code)
    # -W error: a deprecation warning from psycopg_pool (implicit open) fails the script.
    return subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("ctype", TYPES)
def test_generated_script_runs_and_exits(
    ctype: str, library: str, password_config: Path, tmp_path: Path
) -> None:
    code = generate_code(password_config, ctype, library)
    assert repr(str(password_config))[1:-1] in code  # reads the same file, by absolute path
    res = run_script(code, tmp_path)
    assert res.returncode == 0, res.stderr
    assert "PostgreSQL" in res.stdout
    assert res.stderr == ""


@pytest.mark.parametrize("library", LIBRARIES)
def test_generated_script_resolves_env(
    library: str, password_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = yaml.safe_load(password_config.read_text())
    password = data["connection_settings"]["password"]
    data["connection_settings"]["password"] = "${CODEGEN_TEST_PASSWORD}"
    data["connection_settings"]["application_name"] = "${CODEGEN_TEST_APP:-codegen}"
    config = tmp_path / "env.yaml"
    config.write_text(yaml.safe_dump(data))
    config.chmod(0o600)
    monkeypatch.setenv("CODEGEN_TEST_PASSWORD", password)
    code = generate_code(config, "async_pool", library, resolve_env=True)
    assert password not in code
    res = run_script(code, tmp_path)
    assert res.returncode == 0, res.stderr
    assert "PostgreSQL" in res.stdout
    # Without resolve_env the reference is sent as written, and the server refuses it.
    res = run_script(generate_code(config, "normal", library), tmp_path, "plain.py")
    assert res.returncode != 0
    assert "password authentication failed" in res.stderr
    assert password not in res.stderr


def test_psycopg_pool_settings_and_session_settings(password_config: Path, tmp_path: Path) -> None:
    # The psycopg scripts apply pool sizes, check_on_checkout and the SET settings themselves.
    data = yaml.safe_load(password_config.read_text())
    data["pool_settings"].update(min_size=2, max_size=3, check_on_checkout=True)
    data["sync_settings"] = {"statement_timeout": "1234"}
    config = tmp_path / "pool.yaml"
    config.write_text(yaml.safe_dump(data))
    config.chmod(0o600)
    code = generate_code(config, "pool", "psycopg").replace(
        'cur.execute("SELECT version();")',
        "cur.execute(\"SELECT current_setting('statement_timeout'), %s\", (pool.max_size,))",
    )
    res = run_script(code, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "('1234ms', 3)"


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("ctype", TYPES)
@pytest.mark.parametrize("resolve_env", [False, True])
def test_generated_code_is_clean_python(
    ctype: str, library: str, resolve_env: bool, tmp_path: Path
) -> None:
    code = generate_code(tmp_path / "my config's.yaml", ctype, library, resolve_env=resolve_env)
    compile(code, "app.py", "exec")
    assert code.endswith("\n") and "\n\n\n\n" not in code
    assert "my config's.yaml" in code


def test_generated_code_passes_ruff(tmp_path: Path) -> None:
    for library in LIBRARIES:
        for ctype in TYPES:
            for resolve_env in (False, True):
                code = generate_code(
                    "/srv/app/config.yaml", ctype, library, resolve_env=resolve_env
                )
                (tmp_path / f"{library}_{ctype}_{resolve_env}.py").write_text(code)
    check = [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "E,F,W,B,UP"]
    res = subprocess.run([*check, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout
    fmt = [sys.executable, "-m", "ruff", "format", "--isolated", "--check", str(tmp_path)]
    res = subprocess.run(fmt, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown connection type 'sync'"):
        generate_code("c.yaml", "sync")
    with pytest.raises(ValueError, match="unknown library 'sqlalchemy'"):
        generate_code("c.yaml", "normal", "sqlalchemy")


def test_path_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = generate_code("config.yaml", "normal")
    assert f'CONFIG_FILE = "{tmp_path / "config.yaml"}"' in code
