"""The pgmonkey CLI in-process (``pgmonkey.cli.run``, fire underneath), against the sandbox."""

from __future__ import annotations

import signal
import stat
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from pgmonkey.cli import run
from pgmonkey.config import config_template

TYPES = ("normal", "pool", "async", "async_pool")


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Result({self.code}, out={self.out[-2000:]!r}, err={self.err[-2000:]!r})"

    def one_error_line(self) -> str:
        lines = self.err.splitlines()
        assert len(lines) == 1, self
        assert lines[0].startswith("pgmonkey: error: "), self
        assert "Traceback" not in self.err
        return lines[0]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], sandbox: Any) -> Any:
    def call(*args: Any) -> Result:
        code = run([str(a) for a in args])
        out, err = capsys.readouterr()
        # No secret, ever: not in results, not in errors.
        assert sandbox.password not in out + err
        return Result(code, out, err)

    return call


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


def variant(config: Path, tmp_path: Path, name: str = "variant.yaml", **settings: Any) -> Path:
    data = yaml.safe_load(config.read_text())
    data["connection_settings"].update(settings)
    return write_config(tmp_path / name, data)


# --- help and usage -----------------------------------------------------------------------


def test_help_lists_the_commands(cli: Any) -> None:
    res = cli("--help")
    assert res.code == 0
    text = res.out + res.err
    for word in ("pgconfig", "pgserverconfig", "pgimport", "pgexport", "sandbox"):
        assert word in text


def test_group_help_lists_generate_code(cli: Any) -> None:
    res = cli("pgconfig", "--help")
    assert res.code == 0
    text = res.out + res.err
    for word in ("create", "test", "generate-code"):
        assert word in text
    assert "_" + "probe" not in text  # private state stays private


def test_dash_h_is_help_not_a_flag(cli: Any) -> None:
    res = cli("pgconfig", "test", "-h")
    assert res.code == 0
    assert "--connconfig" in res.out + res.err


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["-h"],
        [],
        ["pgconfig"],
        ["pgconfig", "--help"],
        ["pgconfig", "test", "--help"],
        ["pgconfig", "test", "--", "--help"],  # the form fire's INFO line taught
        ["pgexport", "--table", "t", "--help"],  # help, not a run
        ["sandbox", "stop", "-h"],
    ],
    ids=" ".join,
)
def test_help_goes_to_stdout_without_fires_info_line(cli: Any, args: list[str]) -> None:
    # `pgmonkey --help | less` showed nothing: fire wrote help to stderr, after an
    # "INFO: Showing help with the command ..." line.
    res = cli(*args)
    assert res.code == 0, res
    assert res.err == ""
    assert res.out.startswith("NAME\n    pgmonkey")
    assert "INFO" not in res.out and "FIRE_METADATA" not in res.out


@pytest.mark.parametrize(
    "command",
    [
        ["pgconfig", "test"],
        ["pgconfig", "generate-code"],
        ["pgserverconfig"],
        ["pgimport"],
        ["pgexport"],
    ],
    ids=" ".join,
)
def test_help_spells_flags_as_documented(cli: Any, command: list[str]) -> None:
    text = cli(*command, "--help").out
    assert "\n    -r, --resolve-env\n" in text  # a switch: no =VALUE
    assert "resolve_env" not in text and "connection_type" not in text
    if "test" in command or "generate-code" in command:
        assert "\n    --connection-type=CONNECTION_TYPE\n" in text


HELPED = [
    (["pgconfig", "create"], "PgConfig.create"),
    (["pgconfig", "test"], "PgConfig.test"),
    (["pgconfig", "generate-code"], "PgConfig.generate-code"),
    (["pgserverconfig"], "PgMonkey.pgserverconfig"),
    (["pgimport"], "PgMonkey.pgimport"),
    (["pgexport"], "PgMonkey.pgexport"),
    (["sandbox", "start"], "SandboxCommands.start"),
]


@pytest.mark.parametrize(("command", "method"), HELPED, ids=[m for _, m in HELPED])
def test_help_shows_each_flags_whole_description(cli: Any, command: list[str], method: str) -> None:
    # fire's docstring reader takes a continuation line shaped "name (type): text" for a new
    # argument and drops it: --partitions lost all but its first line.
    import inspect
    import re

    from pgmonkey.cli import _commands

    owner, name = method.split(".", 1)
    doc = inspect.getdoc(getattr(getattr(_commands, owner), name)) or ""
    args = doc.split("Args:", 1)[1]
    entries = re.findall(r"^  (\w+): (.*?)(?=^  \w+: |\Z)", args, flags=re.M | re.S)
    assert entries
    text = " ".join(cli(*command, "--help").out.split())
    for flag, description in entries:
        assert " ".join(description.split()) in text, flag


def test_version(cli: Any) -> None:
    from importlib.metadata import version

    res = cli("--version")
    assert (res.code, res.out, res.err) == (0, f"pgmonkey {version('pgmonkey')}\n", "")
    assert "--version" in cli("--help").out


@pytest.mark.parametrize(
    ("args", "message", "see"),
    [
        (["pgconfg"], "unknown command 'pgconfg': did you mean pgconfig?", "pgmonkey"),
        (["pgimprot"], "unknown command 'pgimprot': did you mean pgimport?", "pgmonkey"),
        (["pgconfig", "tset"], "unknown command 'tset': did you mean test?", "pgmonkey pgconfig"),
        (
            ["pgconfig", "generate_code", "--filepath", "c.yaml"],
            "unknown command 'generate_code': did you mean generate-code?",
            "pgmonkey pgconfig",
        ),
        (["sandbox", "stpo"], "unknown command 'stpo': did you mean stop?", "pgmonkey sandbox"),
        (
            ["bogus"],
            "unknown command 'bogus': expected one of pgconfig, pgexport, pgimport,"
            " pgserverconfig, sandbox",
            "pgmonkey",
        ),
        (["--verison"], "unknown option '--verison': did you mean --version?", "pgmonkey"),
        (
            ["pgexport", "--tabel", "t", "--connconfig", "c.yaml"],
            "unknown option '--tabel': did you mean --table?",
            "pgmonkey pgexport",
        ),
        (
            ["pgconfig", "test", "--connconfig", "c.yaml", "--resolve-evn"],
            "unknown option '--resolve-evn': did you mean --resolve-env?",
            "pgmonkey pgconfig test",
        ),
    ],
)
def test_mistyped_commands_and_flags_say_did_you_mean(
    cli: Any, args: list[str], message: str, see: str
) -> None:
    res = cli(*args)
    assert res.code == 2
    assert res.out == ""
    assert res.err.splitlines() == [f"pgmonkey: error: {message}", f"pgmonkey: see `{see} --help`"]


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["pgconfig", "bogus"],
        ["pgconfig", "test", "--connconfig", "a.yaml", "--bogus", "1"],
    ],
)
def test_fire_usage_errors_exit_2(cli: Any, args: list[str]) -> None:
    assert cli(*args).code == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pgconfig", "test"], "missing --connconfig"),
        (["pgconfig", "test", "--connconfig", "a.yaml", "--filepath", "b.yaml"], "only one"),
        (["pgconfig", "test", "--connconfig", "a.yaml", "--connection-type", "sync"], "sync"),
        (["pgconfig", "test", "--connconfig", "a.yaml", "--resolve-env", "yes"], "no value"),
        (["pgconfig", "generate-code", "--filepath", "a.yaml", "--library", "orm"], "orm"),
        (["pgconfig", "create", "--type", "mysql", "--filepath", "a.yaml"], "mysql"),
        (["pgserverconfig", "--filepath", "a.yaml", "--strict"], "--strict goes with --audit"),
        (["pgimport", "--connconfig", "a.yaml", "--import_file", "x.csv"], "missing --table"),
        (["pgimport", "--table", "t", "--connconfig", "a.yaml"], "missing --import_file"),
        (["pgexport", "--connconfig", "a.yaml"], "either --table or --query"),
        (["pgexport", "--connconfig", "a.yaml", "--query", "SELECT 1"], "--export_file"),
        (["pgexport", "--connconfig", "a.yaml", "--table", "t", "--query", "Q"], "not both"),
        (["pgexport", "--connconfig", "a.yaml", "--table", "t", "--partitions", "0"], "1 or more"),
        (["pgexport", "--connconfig", "a.yaml", "--table", "t", "--partitions", "two"], "'two'"),
        (["pgexport", "--connconfig", "a.yaml", "--table", "t", "--partitions", "2.5"], "'2.5'"),
        (
            ["pgexport", "--connconfig", "a.yaml", "--query", "Q", "--partitions", "2"],
            "a --query's rows are exported on one connection",
        ),
        (["sandbox", "start", "--port", "abc"], "--port"),
    ],
)
def test_our_usage_errors_exit_2(cli: Any, args: list[str], message: str) -> None:
    res = cli(*args)
    assert res.code == 2, res
    assert res.err.startswith("pgmonkey: error: ")
    assert message in res.err.splitlines()[0]


# --- pgconfig create ----------------------------------------------------------------------


def test_create_writes_the_template(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    res = cli("pgconfig", "create", "--type", "pg", "--filepath", path)
    assert res.code == 0, res
    assert path.read_text() == config_template()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a (placeholder) password
    assert "# Default connection type" in path.read_text()


def test_create_never_overwrites(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("mine\n")
    res = cli("pgconfig", "create", "--type", "pg", "--connconfig", path)
    assert res.code == 1
    assert "already exists" in res.one_error_line()
    assert path.read_text() == "mine\n"


def test_create_in_a_missing_directory(cli: Any, tmp_path: Path) -> None:
    res = cli("pgconfig", "create", "--filepath", tmp_path / "nope" / "c.yaml")
    assert res.code == 1
    assert "cannot create" in res.one_error_line()


# --- pgconfig test ------------------------------------------------------------------------


def test_test_reports_server_user_database_ssl(cli: Any, auth_config: Path, sandbox: Any) -> None:
    res = cli("pgconfig", "test", "--connconfig", auth_config)
    assert res.code == 0, res
    assert "PostgreSQL" in res.out
    assert f"database:   {sandbox.dbname}" in res.out
    user = sandbox.cert_user if auth_config.stem == "cert" else sandbox.user
    assert f"user:       {user}" in res.out
    assert "round trip:" in res.out and " ms" in res.out
    if auth_config.stem == "password":
        assert "ssl:        off" in res.out
    else:
        assert "ssl:        on (TLSv1." in res.out


@pytest.mark.parametrize("ctype", TYPES)
def test_test_each_type(cli: Any, password_config: Path, ctype: str) -> None:
    res = cli("pgconfig", "test", "--filepath", password_config, "--connection-type", ctype)
    assert res.code == 0, res
    assert f"connection test passed ({ctype})" in res.out


def test_test_uses_the_configs_type(cli: Any, password_config: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(password_config.read_text())
    data["connection_type"] = "async_pool"
    res = cli("pgconfig", "test", "--connconfig", write_config(tmp_path / "c.yaml", data))
    assert res.code == 0, res
    assert "(async_pool)" in res.out


@pytest.mark.parametrize("ctype", TYPES)
def test_wrong_password_fails_fast_with_the_servers_message(
    cli: Any, password_config: Path, tmp_path: Path, ctype: str
) -> None:
    bad = variant(password_config, tmp_path, password="not-the-password")
    res = cli("pgconfig", "test", "--connconfig", bad, "--connection-type", ctype)
    assert res.code == 1
    line = res.one_error_line()
    assert "password authentication failed" in line
    assert "not-the-password" not in line
    assert res.out == ""


def test_refused_connection(cli: Any, password_config: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bad = variant(password_config, tmp_path, port=str(port), connect_timeout="3")
    res = cli("pgconfig", "test", "--connconfig", bad)
    assert res.code == 1
    assert "refused" in res.one_error_line().lower()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("connection_type: 'sync'\nconnection_settings: {}\n", "sync"),
        ("connection_settings: [1, 2\n", "line"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_bad_config_exits_1_with_one_line(
    cli: Any, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for command in (["pgconfig", "test"], ["pgconfig", "generate-code"], ["pgserverconfig"]):
        res = cli(*command, "--connconfig", path)
        assert res.code == 1, (command, res)
        assert message in res.one_error_line()
        assert res.out == ""


def test_missing_config_file(cli: Any, tmp_path: Path) -> None:
    res = cli("pgserverconfig", "--filepath", tmp_path / "missing.yaml")
    assert res.code == 1
    assert "missing.yaml" in res.one_error_line()


def test_resolve_env(
    cli: Any, password_config: Path, tmp_path: Path, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = variant(password_config, tmp_path, password="${CLI_TEST_PASSWORD}")
    monkeypatch.setenv("CLI_TEST_PASSWORD", sandbox.password)
    assert cli("pgconfig", "test", "--connconfig", path, "--resolve-env").code == 0
    # Without the flag the reference is a literal password, which the server refuses.
    res = cli("pgconfig", "test", "--connconfig", path)
    assert res.code == 1
    assert "password authentication failed" in res.one_error_line()
    monkeypatch.delenv("CLI_TEST_PASSWORD")
    res = cli("pgconfig", "test", "--connconfig", path, "--resolve-env")
    assert res.code == 1
    assert "CLI_TEST_PASSWORD" in res.one_error_line()


# --- pgconfig generate-code ---------------------------------------------------------------


@pytest.mark.parametrize("library", ["pgmonkey", "psycopg"])
@pytest.mark.parametrize("ctype", TYPES)
def test_generate_code_stdout_is_only_the_script(
    cli: Any, password_config: Path, ctype: str, library: str
) -> None:
    res = cli(
        "pgconfig",
        "generate-code",
        "--filepath",
        password_config,
        "--connection-type",
        ctype,
        "--library",
        library,
    )
    assert res.code == 0, res
    assert res.err == ""
    compile(res.out, "app.py", "exec")
    assert f'"{ctype}"' in res.out or f"{ctype} connection" in res.out


def test_generate_code_uses_the_configs_type(
    cli: Any, password_config: Path, tmp_path: Path
) -> None:
    data = yaml.safe_load(password_config.read_text())
    data["connection_type"] = "pool"
    res = cli("pgconfig", "generate-code", "--connconfig", write_config(tmp_path / "c.yaml", data))
    assert res.code == 0
    assert 'get_database_connection(CONFIG_FILE, "pool")' in res.out


def test_generate_code_passes_resolve_env_through(cli: Any, password_config: Path) -> None:
    res = cli("pgconfig", "generate-code", "--connconfig", password_config, "--resolve-env")
    assert res.code == 0
    assert "resolve_env=True" in res.out


# --- pgserverconfig -----------------------------------------------------------------------


def test_pgserverconfig_recommends(cli: Any, ssl_config: Path) -> None:
    res = cli("pgserverconfig", "--filepath", ssl_config)
    assert res.code == 0, res
    assert res.out.startswith("1) Database type detected: PostgreSQL\n")
    assert "hostssl  pgmonkey  pgmonkey  127.0.0.1/32  scram-sha-256" in res.out
    assert "ssl = on" in res.out


def test_audit_exits_0_and_strict_exits_3(cli: Any, ssl_config: Path, tmp_path: Path) -> None:
    # Pools larger than the sandbox's max_connections (200): something needs attention.
    cfg = yaml.safe_load(ssl_config.read_text())
    cfg["pool_settings"]["max_size"] = cfg["async_pool_settings"]["max_size"] = 150
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump(cfg))
    big.chmod(0o600)
    res = cli("pgserverconfig", "--filepath", big, "--audit")
    assert res.code == 0, res
    assert "2) Server settings audit:" in res.out
    assert "MISMATCH" in res.out
    res = cli("pgserverconfig", "--filepath", big, "--audit", "--strict")
    assert res.code == 3
    assert "need attention" in res.err


def test_audit_strict_passes_when_all_is_ok(cli: Any, password_config: Path) -> None:
    res = cli("pgserverconfig", "--connconfig", password_config, "--audit", "--strict")
    assert res.code == 0, res
    assert "MISMATCH" not in res.out and "REVIEW" not in res.out


def test_audit_without_pg_hba_privileges(
    cli: Any, password_config: Path, db_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # A role of its own: the sandbox's certificate role may read pg_hba_file_rules.
    db_conn.execute("DROP ROLE IF EXISTS cli_plain_role")
    db_conn.execute("CREATE ROLE cli_plain_role LOGIN PASSWORD 'cli-plain-pw'")
    cfg = yaml.safe_load(password_config.read_text())
    cfg["connection_settings"].update(user="cli_plain_role", password="cli-plain-pw")
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(cfg))
    plain.chmod(0o600)
    try:
        res = cli("pgserverconfig", "--filepath", plain, "--audit")
    finally:
        db_conn.execute("DROP ROLE cli_plain_role")
    assert res.code == 0, res
    assert "cannot read pg_hba_file_rules: permission denied" in res.out
    assert "host  pgmonkey  cli_plain_role  127.0.0.1/32  scram-sha-256" in res.out


def test_audit_refused_connection(cli: Any, password_config: Path, tmp_path: Path) -> None:
    bad = variant(password_config, tmp_path, password="nope")
    res = cli("pgserverconfig", "--filepath", bad, "--audit")
    assert res.code == 1
    assert "password authentication failed" in res.one_error_line()


# --- pgimport / pgexport ------------------------------------------------------------------


@pytest.fixture
def table(db_conn: psycopg.Connection[Any]) -> Any:
    name = "cli_transfer_t"
    db_conn.execute(f"DROP TABLE IF EXISTS public.{name}")
    yield f"public.{name}"
    db_conn.execute(f"DROP TABLE IF EXISTS public.{name}")


def test_import_then_export(
    cli: Any, password_config: Path, tmp_path: Path, table: str, db_conn: Any
) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text("id,name\n1,alice\n2,bob\n")
    args = ["pgimport", "--table", table, "--connconfig", password_config, "--import_file", csv]
    res = cli(*args)
    assert res.code == 0, res
    assert "review" in res.out and "alice" in res.out  # the review step: nothing imported
    assert db_conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None
    res = cli(*args)
    assert res.code == 0, res
    assert db_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 2

    out = tmp_path / "out.csv"
    res = cli("pgexport", "--table", table, "--connconfig", password_config, "--export_file", out)
    assert res.code == 0, res
    assert out.read_text().splitlines()[1:] == ["1,alice", "2,bob"]

    out2 = tmp_path / "q.csv"
    query = f"SELECT name FROM {table} WHERE id = 2"
    res = cli("pgexport", "--query", query, "--filepath", password_config, "--export_file", out2)
    assert res.code == 0, res
    assert out2.read_text().splitlines() == ["name", "bob"]


def test_import_into_a_table_with_rows_names_if_exists(
    cli: Any, password_config: Path, tmp_path: Path, table: str, db_conn: Any
) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text("id,name\n1,alice\n2,bob\n")
    args = ["pgimport", "--table", table, "--connconfig", password_config, "--import_file", csv]
    assert cli(*args).code == 0  # the review step
    assert cli(*args).code == 0
    res = cli(*args)
    assert res.code == 1
    line = res.one_error_line()
    assert "already holds rows" in line and "if_exists" in line
    assert "data.csv.import.yaml" in line  # where the setting lives
    line = cli(*args, "--if_exists", "fail").one_error_line()
    assert "if_exists is 'fail' (given for this run)" in line and "import.yaml" not in line
    res = cli(*args, "--if_exists", "append")
    assert res.code == 0, res
    assert db_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 4
    res = cli(*args, "--if-exists", "replace")
    assert res.code == 0, res
    assert db_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 2
    res = cli(*args, "--if_exists", "apend")
    assert res.code == 2
    assert "--if_exists must be one of fail, append, replace, got 'apend'" in res.err


def test_export_default_file_name(
    cli: Any, password_config: Path, tmp_path: Path, table: str, db_conn: Any, monkeypatch: Any
) -> None:
    db_conn.execute(f"CREATE TABLE {table} (x int)")
    monkeypatch.chdir(tmp_path)
    res = cli("pgexport", "--table", table, "--connconfig", password_config)
    assert res.code == 0, res
    assert (tmp_path / "cli_transfer_t.csv").exists()


def test_export_missing_table(cli: Any, password_config: Path, tmp_path: Path) -> None:
    res = cli(
        "pgexport",
        "--table",
        "public.no_such_table_here",
        "--connconfig",
        password_config,
        "--export_file",
        tmp_path / "x.csv",
    )
    assert res.code == 1
    assert "no_such_table_here" in res.one_error_line()


def test_import_missing_file(cli: Any, password_config: Path, tmp_path: Path) -> None:
    res = cli(
        "pgimport",
        "--table",
        "public.t",
        "--connconfig",
        password_config,
        "--import_file",
        tmp_path / "nope.csv",
    )
    assert res.code == 1
    assert "nope.csv" in res.one_error_line()


# --- sandbox ------------------------------------------------------------------------------


def test_sandbox_status_and_start_are_idempotent(cli: Any, sandbox: Any) -> None:
    res = cli("sandbox", "status", "--dir", sandbox.dir)
    assert res.code == 0, res
    assert f"127.0.0.1:{sandbox.port}" in res.out
    res = cli("sandbox", "start", "--dir", sandbox.dir)  # already running: shown, not restarted
    assert res.code == 0, res
    assert f"127.0.0.1:{sandbox.port}" in res.out


def test_sandbox_status_without_one(cli: Any, tmp_path: Path) -> None:
    res = cli("sandbox", "status", "--dir", tmp_path)
    assert res.code == 1
    assert "no sandbox is running" in res.one_error_line()
    res = cli("sandbox", "stop", "--dir", tmp_path)
    assert res.code == 0
    assert "no sandbox was running" in res.out


def test_secrets_never_in_error_lines() -> None:
    from pgmonkey.cli._run import _one_line

    err = psycopg.OperationalError("bad dsn: host=x password=s3cret user=u\n  detail")
    assert _one_line(err) == "bad dsn: host=x password=*** user=u detail"
    assert "s3cret" not in _one_line(ValueError("password = 's3cret x'"))


def test_an_export_query_error_line_names_its_place(
    cli: Any, password_config: Path, tmp_path: Path
) -> None:
    res = cli(
        "pgexport",
        "--connconfig",
        password_config,
        "--query",
        "SELECT * FROM nope_t",
        "--export_file",
        tmp_path / "e.csv",
    )
    assert res.code == 1
    assert res.one_error_line() == (
        'pgmonkey: error: relation "nope_t" does not exist '
        "(line 1, column 15 of the query) SELECT * FROM nope_t"
    )


def test_sigterm_during_an_export_leaves_no_part_file(
    tmp_path: Path, password_config: Path
) -> None:
    # Python's default for SIGTERM ended the process at once: the half-written export's
    # part file stayed behind. The signal now unwinds the command, its cleanup included.
    query = "SELECT g, repeat('x', 100) FROM generate_series(1, 100000000) g"
    out = tmp_path / "big.csv"
    args = ["pgexport", "--connconfig", str(password_config), "--query", query]
    # Once the rows are being written (the query runs for minutes).
    code, stderr = _terminated_once(
        [*args, "--export_file", str(out)],
        lambda: any(p.stat().st_size for p in tmp_path.glob("big.csv.*.part")),
        "the export wrote nothing",
    )
    assert code == 128 + signal.SIGTERM, stderr
    assert stderr == "pgmonkey: terminated\n"
    assert list(tmp_path.iterdir()) == []


def _terminated_once(args: list[str], ready: Any, never: str) -> tuple[int, str]:
    """Run ``pgmonkey *args``, SIGTERM it once ``ready()``; its exit code and stderr."""
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "pgmonkey", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(12000):  # a bound of two minutes, not a pace
            if ready():
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        else:
            raise AssertionError(f"{never} in two minutes")
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, stderr


@pytest.mark.parametrize("command", ["pgexport", "pgimport"])
def test_sigterm_cancels_the_servers_copy(
    tmp_path: Path, password_config: Path, db_conn: Any, command: str
) -> None:
    # The COPY went on running on the server after the process ended (a query that had not
    # written yet, a slow trigger: up to their end), and psycopg printed "error ignored in
    # rollback ... another command is already in progress" on the way out.
    marker = f"pgm_term_{command}"
    args = [command, "--connconfig", str(password_config)]
    if command == "pgexport":
        query = f"SELECT pg_sleep(600) AS {marker}"
        args += ["--query", query, "--export_file", str(tmp_path / "out.csv")]
    else:
        db_conn.execute(f"DROP TABLE IF EXISTS public.{marker}")
        db_conn.execute(f"CREATE TABLE public.{marker} (id int)")
        db_conn.execute(
            f"CREATE OR REPLACE FUNCTION public.{marker}() RETURNS trigger LANGUAGE plpgsql"
            " AS $$BEGIN PERFORM pg_sleep(600); RETURN NEW; END$$"
        )
        db_conn.execute(
            f"CREATE TRIGGER slow BEFORE INSERT ON public.{marker}"
            f" FOR EACH ROW EXECUTE FUNCTION public.{marker}()"
        )
        csv = tmp_path / "in.csv"
        csv.write_text("id\n1\n")
        (tmp_path / "in.csv.import.yaml").write_text(
            "delimiter: ','\nquotechar: '\"'\nencoding: utf-8\nhas_headers: true\n"
            "if_exists: append\ncolumns:\n- {name: id, type: integer}\n"
        )
        args += ["--table", f"public.{marker}", "--import_file", str(csv)]
    running = (
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s"
        " AND pid <> pg_backend_pid()"
    )
    pattern = f"%{marker}%" if command == "pgexport" else f"COPY %{marker}%"
    try:
        code, stderr = _terminated_once(
            args,
            lambda: db_conn.execute(running, [pattern]).fetchone()[0],
            "the COPY did not start",
        )
    finally:
        left = db_conn.execute(running, [pattern]).fetchone()[0]
        # What a failure leaves would hold the table's lock for ten minutes.
        db_conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE %s"
            " AND pid <> pg_backend_pid()",
            [pattern],
        )
        if command == "pgimport":
            db_conn.execute(f"DROP TABLE public.{marker}")
            db_conn.execute(f"DROP FUNCTION public.{marker}()")
    assert code == 128 + signal.SIGTERM, stderr
    assert stderr == "pgmonkey: terminated\n"
    assert left == 0
