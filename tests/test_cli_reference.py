"""Every CLI example of the 4.0 reference, run as typed (paths replaced) in a real subprocess.

The commands below are copied from reference/pgmonkey-4.0-readme.txt, "Using the CLI";
only /path/to/config.yaml, data.csv, output.csv and the table name are replaced.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

TIMEOUT = 120
_EXE = Path(sys.executable).with_name("pgmonkey")
PGMONKEY = [str(_EXE)] if _EXE.exists() else [sys.executable, "-m", "pgmonkey"]


def pgmonkey(command: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a reference command line (starting with 'pgmonkey ')."""
    words = shlex.split(command)
    assert words[0] == "pgmonkey"
    return subprocess.run(
        [*PGMONKEY, *words[1:]], capture_output=True, text=True, timeout=TIMEOUT, **kw
    )


@pytest.fixture
def paths(password_config: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "/path/to/config.yaml": str(password_config),
        "/path/to/data.csv": str(tmp_path / "data.csv"),
        "/path/to/output.csv": str(tmp_path / "output.csv"),
        "public.my_table": "public.cli_reference_table",
    }


def typed(command: str, paths: dict[str, str]) -> str:
    for old, new in paths.items():
        command = command.replace(old, new)
    return command


def check(res: subprocess.CompletedProcess[str], sandbox: Any) -> None:
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert sandbox.password not in res.stdout + res.stderr


def test_help(sandbox: Any) -> None:
    res = pgmonkey("pgmonkey --help")
    check(res, sandbox)
    assert res.stderr == ""  # help is the output: stdout, no "INFO: Showing help" line
    assert res.stdout.startswith("NAME\n    pgmonkey - ")
    for word in ("pgconfig", "pgserverconfig", "pgimport", "pgexport", "sandbox"):
        assert word in res.stdout


def test_help_through_a_pipe(tmp_path: Path) -> None:
    # `pgmonkey --help | less` showed nothing: the help went to stderr.
    for command in ("--help", "pgconfig test --help"):
        line = f"{shlex.join(PGMONKEY)} {command} | head -n 2"
        res = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and res.stderr == "", res.stderr
        assert res.stdout.startswith("NAME\n    pgmonkey"), res.stdout


def test_version() -> None:
    from importlib.metadata import version

    res = pgmonkey("pgmonkey --version")
    assert (res.returncode, res.stdout, res.stderr) == (0, f"pgmonkey {version('pgmonkey')}\n", "")


def test_did_you_mean() -> None:
    res = pgmonkey("pgmonkey pgconfg test")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == (
        "pgmonkey: error: unknown command 'pgconfg': did you mean pgconfig?\n"
        "pgmonkey: see `pgmonkey --help`\n"
    )


def test_python_m_pgmonkey_help(sandbox: Any) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "pgmonkey", "--help"], capture_output=True, text=True, timeout=60
    )
    check(res, sandbox)
    assert "pgconfig" in res.stdout + res.stderr


def test_create(tmp_path: Path, paths: dict[str, str], sandbox: Any) -> None:
    target = tmp_path / "new" / "config.yaml"
    target.parent.mkdir()
    paths = {**paths, "/path/to/config.yaml": str(target)}
    command = typed("pgmonkey pgconfig create --type pg --filepath /path/to/config.yaml", paths)
    check(pgmonkey(command), sandbox)
    assert "connection_settings:" in target.read_text()
    res = pgmonkey(command)  # never overwrites
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("pgmonkey: error: ")


@pytest.mark.parametrize(
    "command",
    [
        "pgmonkey pgconfig test --connconfig /path/to/config.yaml",
        "pgmonkey pgconfig test --connconfig /path/to/config.yaml --connection-type pool",
        "pgmonkey pgconfig test --connconfig /path/to/config.yaml --connection-type async",
    ],
)
def test_test(command: str, paths: dict[str, str], sandbox: Any) -> None:
    res = pgmonkey(typed(command, paths))
    check(res, sandbox)
    assert "connection test passed" in res.stdout
    assert "PostgreSQL" in res.stdout


def env_config(password_config: Path, tmp_path: Path) -> Path:
    data = yaml.safe_load(password_config.read_text())
    data["connection_settings"]["password"] = "${REFERENCE_TEST_PASSWORD}"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


def test_resolve_env_examples(
    password_config: Path, tmp_path: Path, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFERENCE_TEST_PASSWORD", sandbox.password)
    paths = {"config.yaml": str(env_config(password_config, tmp_path))}
    res = pgmonkey(typed("pgmonkey pgconfig test --connconfig config.yaml --resolve-env", paths))
    check(res, sandbox)
    command = "pgmonkey pgconfig generate-code --connconfig config.yaml --resolve-env"
    res = pgmonkey(typed(command, paths))
    check(res, sandbox)
    script = tmp_path / "app.py"
    script.write_text(res.stdout)
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert run.returncode == 0, run.stderr
    assert "PostgreSQL" in run.stdout


@pytest.mark.parametrize(
    "command",
    [
        "pgmonkey pgconfig generate-code --filepath /path/to/config.yaml",
        "pgmonkey pgconfig generate-code --filepath /path/to/config.yaml"
        " --connection-type async_pool",
        "pgmonkey pgconfig generate-code --filepath /path/to/config.yaml"
        " --connection-type pool --library psycopg",
    ],
)
def test_generate_code_then_run_it(
    command: str, paths: dict[str, str], tmp_path: Path, sandbox: Any
) -> None:
    # Exactly the documented use: redirect stdout to a file and run it.
    line = f"{shlex.join(PGMONKEY)} {typed(command, paths)[len('pgmonkey ') :]} > app.py"
    line += f" && {shlex.quote(sys.executable)} app.py"
    res = subprocess.run(
        line, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert res.returncode == 0, res.stderr
    assert "PostgreSQL" in res.stdout
    assert res.stderr == ""


def test_pgserverconfig(paths: dict[str, str], sandbox: Any) -> None:
    res = pgmonkey(typed("pgmonkey pgserverconfig --filepath /path/to/config.yaml", paths))
    check(res, sandbox)
    assert "a) pg_hba.conf:" in res.stdout and "b) postgresql.conf:" in res.stdout
    assert re.search(r"^max_connections = \d+", res.stdout, re.MULTILINE)


def test_pgserverconfig_audit(paths: dict[str, str], sandbox: Any) -> None:
    command = "pgmonkey pgserverconfig --filepath /path/to/config.yaml --audit"
    res = pgmonkey(typed(command, paths))
    check(res, sandbox)
    assert "2) Server settings audit:" in res.stdout
    assert re.search(r"^max_connections\s+\d+\s+200\s+.*OK$", res.stdout, re.MULTILINE)
    # --strict, for CI: 0 when all is OK (this config and the sandbox agree).
    res = pgmonkey(typed(command + " --strict", paths))
    assert res.returncode == 0, res.stdout


def test_pgimport_and_pgexport(
    paths: dict[str, str], sandbox: Any, db_conn: Any, tmp_path: Path
) -> None:
    Path(paths["/path/to/data.csv"]).write_text("id;city\n1;Paris\n2;Oslo\n")
    db_conn.execute("DROP TABLE IF EXISTS public.cli_reference_table")
    try:
        command = typed(
            "pgmonkey pgimport --table public.my_table --connconfig /path/to/config.yaml"
            " --import_file /path/to/data.csv",
            paths,
        )
        res = pgmonkey(command)  # first run: detect, write the settings, import nothing
        check(res, sandbox)
        assert "Paris" in res.stdout
        res = pgmonkey(command)
        check(res, sandbox)
        rows = db_conn.execute("SELECT * FROM public.cli_reference_table ORDER BY 1").fetchall()
        assert rows == [(1, "Paris"), (2, "Oslo")]

        res = pgmonkey(
            typed(
                "pgmonkey pgexport --table public.my_table --connconfig /path/to/config.yaml"
                " --export_file /path/to/output.csv",
                paths,
            )
        )
        check(res, sandbox)
        assert Path(paths["/path/to/output.csv"]).read_text().splitlines()[1:] == [
            "1,Paris",
            "2,Oslo",
        ]
        # "If --export_file is omitted, a default file is generated using the table name."
        res = pgmonkey(
            typed(
                "pgmonkey pgexport --table public.my_table --connconfig /path/to/config.yaml", paths
            ),
            cwd=tmp_path,
        )
        check(res, sandbox)
        assert (tmp_path / "cli_reference_table.csv").exists()
    finally:
        db_conn.execute("DROP TABLE IF EXISTS public.cli_reference_table")


def test_expected_failures_are_one_line(
    password_config: Path, tmp_path: Path, sandbox: Any
) -> None:
    data = yaml.safe_load(password_config.read_text())
    data["connection_settings"]["password"] = "wrong-password"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    bad.chmod(0o600)
    for command in (
        f"pgmonkey pgconfig test --connconfig {bad}",
        f"pgmonkey pgconfig test --connconfig {bad} --connection-type async_pool",
        f"pgmonkey pgconfig test --connconfig {tmp_path / 'missing.yaml'}",
        f"pgmonkey pgexport --table public.no_such_table --connconfig {password_config}",
    ):
        res = pgmonkey(command, cwd=tmp_path)
        assert res.returncode == 1, (command, res.stderr)
        assert res.stdout == ""
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("pgmonkey: error: ")
        assert "wrong-password" not in res.stderr


def test_usage_error_exits_2(password_config: Path, sandbox: Any) -> None:
    assert pgmonkey("pgmonkey pgconfig tset").returncode == 2
    res = pgmonkey(f"pgmonkey pgconfig test --connconfig {password_config} --connection-type x")
    assert res.returncode == 2


def test_audit_strict_exits_3(ssl_config: Path, sandbox: Any, tmp_path: Path) -> None:
    # Pools larger than the sandbox's max_connections (200): something needs attention.
    cfg = yaml.safe_load(ssl_config.read_text())
    cfg["pool_settings"]["max_size"] = cfg["async_pool_settings"]["max_size"] = 150
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump(cfg))
    big.chmod(0o600)
    res = pgmonkey(f"pgmonkey pgserverconfig --filepath {big} --audit --strict")
    assert res.returncode == 3
    assert "MISMATCH" in res.stdout


# A package that is really imported has its own top-level line in -X importtime's profile.
_HEAVY = re.compile(r"\|\s+(pandas|IPython)\s*$", re.MULTILINE)


@pytest.mark.parametrize("how", ["console script", "python -m"])
def test_help_imports_neither_pandas_nor_ipython(how: str) -> None:
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    cmd = (
        [*PGMONKEY, "--help"]
        if how == "console script"
        else [
            sys.executable,
            "-m",
            "pgmonkey",
            "--help",
        ]
    )
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 0
    assert "import time:" in res.stderr  # the profile is on, so the check below means something
    assert "fire" in res.stderr
    assert not _HEAVY.findall(res.stderr)


def test_help_leaves_no_heavy_module_in_sys_modules() -> None:
    code = (
        "import runpy, sys\n"
        "sys.argv = ['pgmonkey', '--help']\n"
        "try:\n"
        "    runpy.run_module('pgmonkey', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'IPython')))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.splitlines()[-2:] == ["exit 0", "[]"], res.stderr


# What a CSV import or export never needs: frames and notebooks, CSV detection (the review step
# only), and tqdm (a bar is drawn on a terminal only, and these runs write to pipes).
_NOT_FOR_TRANSFER = (
    "pandas",
    "numpy",
    "pyarrow",
    "polars",
    "IPython",
    "tqdm",
    "cryptography",
    "pgmonkey.frames",
    "pgmonkey.magics",
    "pgmonkey.transfer._detect",
)


def loaded_by(command: str) -> list[str]:
    """Run a command line in a fresh interpreter; the modules of _NOT_FOR_TRANSFER it loaded."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = {shlex.split(command)!r}\n"
        "try:\n"
        "    runpy.run_module('pgmonkey', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code)\n"
        f"print(sorted(m for m in sys.modules if m.startswith({_NOT_FOR_TRANSFER!r})))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.splitlines()[-2] == "exit 0", res.stderr
    return list(yaml.safe_load(res.stdout.splitlines()[-1]))


def test_pgexport_and_pgimport_load_only_what_they_need(
    password_config: Path, db_conn: Any, tmp_path: Path
) -> None:
    db_conn.execute("DROP TABLE IF EXISTS public.cli_lean_import, public.cli_lean_export")
    db_conn.execute(
        "CREATE TABLE public.cli_lean_export AS SELECT g AS id FROM generate_series(1, 3) g"
    )
    out = tmp_path / "out.csv"
    try:
        export = f"pgmonkey pgexport --table cli_lean_export --connconfig {password_config}"
        assert loaded_by(f"{export} --export_file {out}") == []
        assert out.read_text().split() == ["id", "1", "2", "3"]
        load = f"pgmonkey pgimport --table cli_lean_import --connconfig {password_config}"
        review = pgmonkey(f"{load} --import_file {out}")  # writes the settings
        assert review.returncode == 0, review.stderr
        assert loaded_by(f"{load} --import_file {out}") == []
        rows = db_conn.execute("SELECT id FROM public.cli_lean_import ORDER BY id").fetchall()
        assert (
            rows == db_conn.execute("SELECT id FROM public.cli_lean_export ORDER BY id").fetchall()
        )
    finally:
        db_conn.execute("DROP TABLE IF EXISTS public.cli_lean_import, public.cli_lean_export")
