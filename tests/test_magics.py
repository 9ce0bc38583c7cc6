"""The IPython magics, driven through a real InteractiveShell against the sandbox."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
import yaml
from IPython.core.interactiveshell import InteractiveShell

from pgmonkey.magics import MagicCellError, PgMonkeyMagics, load_ipython_extension
from tests._conn_support import in_transaction
from tests._conn_support import poll as _poll
from tests.fix_magics import connect, ok, run

TYPES = ("normal", "pool", "async", "async_pool")


def fails(ip: InteractiveShell, code: str, capsys: pytest.CaptureFixture[str]) -> tuple[str, Any]:
    """Run a cell that must fail; return its (short) output and the error."""
    capsys.readouterr()
    result = run(ip, code)
    assert result.error_in_exec is not None
    out = "".join(capsys.readouterr())
    assert "Traceback" not in out
    assert len(out.strip().splitlines()) <= 4, out
    return out, result.error_in_exec


def secrets_of(path: Path) -> list[str]:
    settings = yaml.safe_load(path.read_text())["connection_settings"]
    return [str(settings[k]) for k in ("password", "sslpassword") if settings.get(k)]


@pytest.fixture
def scratch(db_conn: psycopg.Connection[Any]) -> Iterator[Callable[..., None]]:
    """``scratch(name, columns="a int")``: a fresh table (None: only dropped), dropped after."""
    names: list[str] = []

    def make(name: str, columns: str | None = "a int") -> None:
        db_conn.execute(f"DROP TABLE IF EXISTS {name}")
        if columns is not None:
            db_conn.execute(f"CREATE TABLE {name} ({columns})")
        names.append(name)

    yield make
    for name in names:
        db_conn.execute(f"DROP TABLE IF EXISTS {name}")


# -- loading, registry, banners -----------------------------------------------------------


def test_load_ext_registers_magics_and_config(shell: InteractiveShell) -> None:
    magics = shell.magics_manager.magics
    assert "pgmonkey" in magics["line"]
    assert "pgmonkey" in magics["cell"]
    assert any(isinstance(c, PgMonkeyMagics) for c in shell.configurables)


def test_config_traitlets(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ok(ip, "%config PgMonkeyMagics")
    out = capsys.readouterr().out
    assert "short_errors" in out
    assert "decimal" in out


def test_connect_banner_and_connections_show_no_secret(
    ip: InteractiveShell, auth_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    connect(ip, auth_config, "--name", "db")
    df = ok(ip, "%pgmonkey connections")
    out = "".join(capsys.readouterr())
    assert "connected 'db' (normal)" in out
    assert isinstance(df, pd.DataFrame)
    assert list(df["name"]) == ["db"]
    cfg = yaml.safe_load(auth_config.read_text())["connection_settings"]
    row = df.iloc[0]
    assert (row["host"], row["dbname"], row["user"]) == (cfg["host"], cfg["dbname"], cfg["user"])
    assert row["ssl"] == ("off" if cfg.get("sslmode") == "disable" else "on")
    assert f"{cfg['user']}@{cfg['host']}" in out
    who = ok(
        ip, "%pgmonkey SELECT current_user AS u, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    )
    assert who.iloc[0].tolist() == [cfg["user"], row["ssl"] == "on"]
    shown = out + df.to_string() + df.to_html()
    for secret in secrets_of(auth_config):
        assert secret not in shown


def test_default_names_use_and_disconnect(
    ip: InteractiveShell, password_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stem = password_config.stem
    connect(ip, password_config)
    connect(ip, password_config, "pool")
    names = list(ok(ip, "%pgmonkey connections")["name"])
    assert names == [stem, f"{stem}-pool"]
    df = ok(ip, "%pgmonkey connections")
    assert df.loc[df["current"], "name"].tolist() == [f"{stem}-pool"]
    ok(ip, f"%pgmonkey use {stem}")
    df = ok(ip, "%pgmonkey connections")
    assert df.loc[df["current"], "name"].tolist() == [stem]
    ok(ip, f"%pgmonkey disconnect {stem}")
    assert list(ok(ip, "%pgmonkey connections")["name"]) == [f"{stem}-pool"]
    ok(ip, "%pgmonkey disconnect --all")
    assert ok(ip, "%pgmonkey connections").empty
    out, _ = fails(ip, "%pgmonkey SELECT 1", capsys)
    assert "no connection" in out
    out, _ = fails(ip, "%pgmonkey use nope", capsys)
    assert "'nope'" in out


def test_bad_arguments_fail_short(
    ip: InteractiveShell, password_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, err = fails(ip, f"%pgmonkey connect {password_config} sideways", capsys)
    assert "invalid choice" in out
    assert isinstance(err, MagicCellError)
    out, _ = fails(ip, "%pgmonkey connect /nonexistent/config.yaml", capsys)
    assert "/nonexistent/config.yaml" in out


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--outt x SELECT 1", "unknown option '--outt': did you mean --out?"),
        ("--out x --ouput y SELECT 1", "unknown option '--ouput': did you mean --out?"),
        (
            "--out-fromat arrow SELECT 1",
            "unknown option '--out-fromat': did you mean --out-format?",
        ),
        ("--zzz SELECT 1", "unknown option '--zzz': see %pgmonkey?"),
        (
            "conect {cfg}",
            "'conect' is no %pgmonkey command, and the server read it as SQL: "
            "did you mean %pgmonkey connect?",
        ),
        (
            "Tabels",
            "'Tabels' is no %pgmonkey command, and the server read it as SQL: "
            "did you mean %pgmonkey tables?",
        ),
        (
            "--out x conect {cfg}",  # after options too
            "'conect' is no %pgmonkey command, and the server read it as SQL: "
            "did you mean %pgmonkey connect?",
        ),
        # Known options are not "unknown" (they were: "did you mean --out?" for --out).
        ("--out", "option --out needs a value"),
        ("--out-format", "option --out-format needs a value"),
        ("--out x --no-execute", "no SQL statement to run"),
        ("--save s --no-execute", "--save/--with take one SQL statement, not 0"),
    ],
)
def test_a_mistyped_option_or_command_is_named(
    ip: InteractiveShell,
    password_config: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
    message: str,
) -> None:
    # The option made the line one SQL comment ("no SQL statement to run"); the command
    # went to the server (a syntax error at its name).
    connect(ip, password_config)
    out, err = fails(ip, "%pgmonkey " + line.replace("{cfg}", str(password_config)), capsys)
    assert isinstance(err, MagicCellError)
    assert message in out, out
    # A comment with a space, and SQL that only looks like a command, are left alone.
    assert ok(ip, "%pgmonkey TABLE pg_catalog.pg_am")["amname"].size > 0


def test_wrong_password_error_shows_no_secret(
    ip: InteractiveShell, password_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = yaml.safe_load(password_config.read_text())
    cfg["connection_settings"]["password"] = "Wr0ng-S3cret-xyz"
    cfg["connection_settings"]["connect_timeout"] = "5"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    bad.chmod(0o600)
    out, err = fails(ip, f"%pgmonkey connect {bad}", capsys)
    assert "password authentication failed" in out
    assert "Wr0ng-S3cret-xyz" not in out + str(err)


# -- queries on the four types ------------------------------------------------------------


@pytest.mark.parametrize("ctype", TYPES)
def test_queries_on_every_type(
    ip: InteractiveShell, password_config: Path, ctype: str, capsys: pytest.CaptureFixture[str]
) -> None:
    connect(ip, password_config, ctype, "--name", "c")
    ip.user_ns["n"] = 41
    df = ok(ip, "df = %pgmonkey SELECT :n + 1 AS x, 'a' AS s\ndf")
    assert ip.user_ns["df"] is df
    assert df.to_dict("list") == {"x": [42], "s": ["a"]}
    assert df["x"].dtype == "int64"
    table = f"magics_types_{ctype}"
    res = ok(
        ip,
        f"%%pgmonkey --out res\n"
        f"CREATE TEMP TABLE {table} (a int);\n"
        f"INSERT INTO {table} SELECT g FROM generate_series(1, :n) g;\n"
        f"SELECT count(*) AS c, sum(a) AS s FROM {table}",
    )
    assert ip.user_ns["res"] is res
    assert res.to_dict("list") == {"c": [41], "s": [41 * 42 // 2]}
    out, err = fails(ip, "%pgmonkey SELECT 1/0", capsys)
    assert "DivisionByZero: division by zero" in out
    assert isinstance(err.__cause__, psycopg.errors.DivisionByZero)
    # the connection is usable after an error
    assert ok(ip, "%pgmonkey SELECT 2 AS two")["two"].tolist() == [2]


def test_statement_without_rows(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    capsys: Any,
    scratch: Callable[..., None],
) -> None:
    connect(ip, password_config)
    scratch("magics_rows")
    capsys.readouterr()
    assert ok(ip, "%pgmonkey INSERT INTO magics_rows VALUES (1), (2)") is None
    assert "2 rows affected" in capsys.readouterr().out
    ip.user_ns["out"] = "sentinel"
    assert ok(ip, "%%pgmonkey --out out\nUPDATE magics_rows SET a = a + 1 WHERE a = 1") is None
    assert ip.user_ns["out"] is None
    assert "1 row affected" in capsys.readouterr().out
    df = ok(ip, "%pgmonkey DELETE FROM magics_rows WHERE a = 2 RETURNING a")
    assert df["a"].tolist() == [2, 2]
    assert db_conn.execute("SELECT count(*) FROM magics_rows").fetchone() == (0,)


def test_cell_is_one_transaction(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    capsys: pytest.CaptureFixture[str],
    scratch: Callable[..., None],
) -> None:
    connect(ip, password_config)
    scratch("magics_tx")
    out, _ = fails(
        ip,
        "%%pgmonkey\nINSERT INTO magics_tx VALUES (1);\n-- the next one fails\n"
        "INSERT INTO magics_tx VALUES ('x');\nSELECT * FROM magics_tx",
        capsys,
    )
    assert "InvalidTextRepresentation" in out
    assert "(line 4, column 31)" in out  # in the notebook cell, not the statement
    assert db_conn.execute("SELECT count(*) FROM magics_tx").fetchone() == (0,)
    ok(ip, "%%pgmonkey\nINSERT INTO magics_tx VALUES (1);\nINSERT INTO magics_tx VALUES (2)")
    assert db_conn.execute("SELECT count(*) FROM magics_tx").fetchone() == (2,)


def test_syntax_error_position_in_cell(
    ip: InteractiveShell, password_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    connect(ip, password_config)
    ip.user_ns["long_variable_name"] = 1
    out, _ = fails(ip, "%%pgmonkey\nSELECT 1;\nSELECT :long_variable_name, 2 FROM nowhere", capsys)
    assert 'relation "nowhere" does not exist (line 3, column 36)' in out
    assert out.splitlines()[-1].strip() == "^"
    out, _ = fails(ip, "%pgmonkey SELEC 1", capsys)
    assert '"SELEC" (line 1, column 1)' in out


def test_short_errors_can_be_turned_off(ip: InteractiveShell, password_config: Path) -> None:
    connect(ip, password_config)
    ok(ip, "%config PgMonkeyMagics.short_errors = False")
    try:
        result = run(ip, "%pgmonkey SELECT 1/0")
        assert isinstance(result.error_in_exec, psycopg.errors.DivisionByZero)
    finally:
        ok(ip, "%config PgMonkeyMagics.short_errors = True")


def test_line_options_and_conn_option(ip: InteractiveShell, password_config: Path) -> None:
    connect(ip, password_config, "--name", "one")
    connect(ip, password_config, "async", "--name", "two")
    ok(ip, "%pgmonkey use one")
    df = ok(ip, "%pgmonkey --conn two --out v SELECT 7 AS x")
    assert ip.user_ns["v"] is df
    assert df["x"].tolist() == [7]
    df = ok(ip, "%%pgmonkey --conn two\nSELECT 8 AS x")
    assert df["x"].tolist() == [8]


# -- :name parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "'; DROP TABLE magics_victim; --",
        "Robert'); DROP TABLE magics_victim;--",
        "$$; DROP TABLE magics_victim; $$",
        "%s %(x)s {x} $x :x",
    ],
)
def test_hostile_values_stay_values(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    value: str,
    scratch: Callable[..., None],
) -> None:
    connect(ip, password_config)
    scratch("magics_victim", "v text")
    ip.user_ns["v"] = value
    ok(ip, "%pgmonkey INSERT INTO magics_victim VALUES (:v)")
    df = ok(ip, "%pgmonkey SELECT v, :v = v AS same FROM magics_victim")
    assert df.to_dict("list") == {"v": [value], "same": [True]}


def test_literals_casts_comments_and_bodies_left_alone(
    ip: InteractiveShell, password_config: Path
) -> None:
    connect(ip, password_config)
    ip.user_ns.update(v="value", x="EXPANDED")
    df = ok(
        ip,
        "%%pgmonkey\nSELECT ':v' AS a, E'\\':v' AS b, $$ :v $$ AS c, $t$:v$t$ AS d,\n"
        ":v::text AS e, '100%' AS f, 1 AS \":v\", '{x}' AS g, '$x' AS h -- :v\n/* :v */",
    )
    assert df.iloc[0].tolist() == [":v", "':v", " :v ", ":v", "value", "100%", 1, "{x}", "$x"]
    assert df.columns[6] == ":v"
    line = ok(ip, "%pgmonkey SELECT '{x}' AS g, $$a$$ AS b, '$x' AS h")
    assert line.iloc[0].tolist() == ["{x}", "a", "$x"]


def test_missing_variable_is_named(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    capsys: Any,
    scratch: Callable[..., None],
) -> None:
    connect(ip, password_config)
    ip.user_ns.pop("not_defined_here", None)
    scratch("magics_missing")
    out, _ = fails(
        ip,
        "%%pgmonkey\nINSERT INTO magics_missing VALUES (1);\nSELECT :not_defined_here",
        capsys,
    )
    assert ":not_defined_here" in out
    # nothing ran: variables are looked up before the first statement
    assert db_conn.execute("SELECT count(*) FROM magics_missing").fetchone() == (0,)


def test_local_variables_inside_a_function(ip: InteractiveShell, password_config: Path) -> None:
    connect(ip, password_config)
    ok(
        ip,
        "def f(local_only):\n"
        "    return get_ipython().run_line_magic('pgmonkey', 'SELECT :local_only AS x')\n"
        "res = f(5)",
    )
    assert ip.user_ns["res"]["x"].tolist() == [5]


# -- commands -----------------------------------------------------------------------------


def test_config_table_is_redacted(
    ip: InteractiveShell, auth_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    df = ok(ip, f"%pgmonkey config {auth_config}")
    assert {"section", "key", "value"} <= set(df.columns)
    shown = df.to_string() + df.to_html() + "".join(capsys.readouterr())
    for secret in secrets_of(auth_config):
        assert secret not in shown
    keys = set(df["key"])
    assert {"host", "dbname", "user"} <= keys
    connect(ip, auth_config)
    assert ok(ip, "%pgmonkey config").equals(df)  # the current connection's config


def test_serverconfig_and_audit(ip: InteractiveShell, password_config: Path) -> None:
    advice = ok(ip, f"%pgmonkey serverconfig {password_config}")
    assert isinstance(advice, pd.DataFrame) and not advice.empty
    connect(ip, password_config)
    report = ok(ip, "%pgmonkey audit")
    assert isinstance(report, pd.DataFrame) and not report.empty
    assert "status" in report.columns


def test_tables_and_columns(
    ip: InteractiveShell, password_config: Path, db_conn: psycopg.Connection[Any]
) -> None:
    connect(ip, password_config)
    db_conn.execute(
        'DROP SCHEMA IF EXISTS "magics s" CASCADE; CREATE SCHEMA "magics s";'
        'CREATE TABLE "magics s"."T 1" (id int NOT NULL, "Note" text)'
    )
    try:
        tables = ok(ip, "%pgmonkey tables 'magics s'")
        assert tables[["schema", "name"]].values.tolist() == [["magics s", "T 1"]]
        assert "magics s" in set(ok(ip, "%pgmonkey tables")["schema"])
        cols = ok(ip, """%pgmonkey columns '"magics s"."T 1"'""")
        assert cols["column"].tolist() == ["id", "Note"]
        assert cols["nullable"].tolist() == [False, True]
    finally:
        db_conn.execute('DROP SCHEMA "magics s" CASCADE')


def test_persist_import_export(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    scratch: Callable[..., None],
) -> None:
    connect(ip, password_config)
    scratch("magics_persist", None)
    scratch("magics_import", None)
    ip.user_ns["frame"] = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", None]})
    ok(ip, "%pgmonkey persist frame public.magics_persist")
    assert "3 rows written" in capsys.readouterr().out
    fails(ip, "%pgmonkey persist frame public.magics_persist", capsys)
    ok(ip, "%pgmonkey persist frame public.magics_persist --if-exists append")
    back = ok(ip, "%pgmonkey SELECT * FROM magics_persist ORDER BY id, name")
    assert back["id"].tolist() == [1, 1, 2, 2, 3, 3]

    out = tmp_path / "out.csv"
    ok(ip, f"%pgmonkey export public.magics_persist {out}")
    assert len(out.read_text().splitlines()) == 7  # header + 6 rows
    q = tmp_path / "q.csv"
    ok(
        ip,
        f'%pgmonkey export --query "SELECT id FROM magics_persist WHERE id > 1 ORDER BY 1" {q}',
    )
    assert q.read_text().splitlines()[1:] == ["2", "2", "3", "3"]

    # the first import writes the detected settings for review, the second loads
    ok(ip, f"%pgmonkey import {q} --table public.magics_import")
    assert "review" in capsys.readouterr().out
    ok(ip, f"%pgmonkey import {q} --table public.magics_import")
    assert db_conn.execute("SELECT count(*) FROM magics_import").fetchone() == (4,)
    ok(ip, f"%pgmonkey import {q} --table public.magics_import --if-exists append")
    assert db_conn.execute("SELECT count(*) FROM magics_import").fetchone() == (8,)
    out_text, _ = fails(ip, "%pgmonkey persist no_such_frame public.x", capsys)
    assert "'no_such_frame'" in out_text


def test_persist_on_async(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    scratch: Callable[..., None],
) -> None:
    connect(ip, password_config, "async_pool")
    scratch("magics_apersist", None)
    ip.user_ns["frame"] = pd.DataFrame({"x": [1.5, 2.5]})
    ok(ip, "%pgmonkey persist frame magics_apersist")
    assert ok(ip, "%pgmonkey SELECT sum(x) AS s FROM magics_apersist")["s"].tolist() == [4.0]


def test_cell_with_its_own_transactions(
    ip: InteractiveShell, password_config: Path, db_conn: psycopg.Connection[Any], scratch: Any
) -> None:
    connect(ip, password_config)
    scratch("magics_own_tx")
    ok(ip, "%%pgmonkey\nBEGIN;\nINSERT INTO magics_own_tx VALUES (1);\nCOMMIT")
    df = ok(
        ip,
        "%%pgmonkey\nBEGIN;\nINSERT INTO magics_own_tx VALUES (2);\nROLLBACK;\n"
        "SELECT count(*) AS n FROM magics_own_tx",
    )
    assert df["n"].tolist() == [1]
    assert db_conn.execute("SELECT count(*) FROM magics_own_tx").fetchone() == (1,)
    assert ok(ip, "%pgmonkey SELECT 1 AS a; SELECT 2 AS b").columns.tolist() == ["b"]


def test_help_feedback_and_decimal(
    ip: InteractiveShell, password_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert ok(ip, "%pgmonkey connect --help") is None
    assert "--resolve-env" in capsys.readouterr().out
    ok(ip, "%config PgMonkeyMagics.feedback = False")
    try:
        connect(ip, password_config)
        ok(ip, "%pgmonkey CREATE TEMP TABLE magics_quiet (a int)")
        assert capsys.readouterr().out == ""
    finally:
        ok(ip, "%config PgMonkeyMagics.feedback = True")
    assert ok(ip, "%pgmonkey SELECT 1.5::numeric AS x")["x"].dtype == "float64"
    ok(ip, "%config PgMonkeyMagics.decimal = True")
    try:
        assert ok(ip, "%pgmonkey SELECT 1.5::numeric AS x")["x"].tolist() == [Decimal("1.5")]
    finally:
        ok(ip, "%config PgMonkeyMagics.decimal = False")


@pytest.mark.parametrize("ctype", ["normal", "async"])
def test_nothing_retained(ip: InteractiveShell, password_config: Path, ctype: str) -> None:
    connect(ip, password_config, ctype)
    ok(ip, "df = %pgmonkey SELECT g FROM generate_series(1, 1000) g")
    ref = weakref.ref(ip.user_ns.pop("df"))
    gc.collect()
    assert ref() is None


def test_resolve_env(
    ip: InteractiveShell,
    password_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = yaml.safe_load(password_config.read_text())
    password = cfg["connection_settings"]["password"]
    cfg["connection_settings"]["password"] = "${MAGICS_TEST_PASSWORD}"
    env_config = tmp_path / "env.yaml"
    env_config.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("MAGICS_TEST_PASSWORD", password)
    ok(ip, f"%pgmonkey connect {env_config} --resolve-env --name env")
    assert ok(ip, "%pgmonkey SELECT current_user AS u")["u"].tolist() == [
        cfg["connection_settings"]["user"]
    ]
    shown = ok(ip, "%pgmonkey config --resolve-env").to_string()
    shown += ok(ip, "%pgmonkey config").to_string()  # the connection's own resolve_env
    assert password not in shown + "".join(capsys.readouterr())


def test_parameters_in_utility_statements(
    ip: InteractiveShell, password_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    connect(ip, password_config)
    ip.user_ns.update(tz="Europe/Paris", v="it's")
    ok(ip, "%%pgmonkey\nSET TimeZone = :tz;\nCREATE TEMP TABLE magics_ctas AS SELECT :v AS v")
    df = ok(ip, "%pgmonkey SELECT current_setting('TimeZone') AS tz, v FROM magics_ctas")
    assert df.iloc[0].tolist() == ["Europe/Paris", "it's"]
    # the error position maps back over the bound value
    sql = "CREATE TEMP TABLE magics_bad AS SELECT :v AS v, nope"
    out, _ = fails(ip, f"%pgmonkey {sql}", capsys)
    column = sql.index("nope") + 1
    assert f'column "nope" does not exist (line 1, column {column})' in out
    assert out.splitlines()[-1] == " " * (column + 1) + "^"


@pytest.mark.parametrize("ctype", ["normal", "async_pool"])
def test_statements_outside_transactions(
    ip: InteractiveShell,
    password_config: Path,
    ctype: str,
    scratch: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    db_conn: psycopg.Connection[Any],
) -> None:
    connect(ip, password_config, ctype)
    scratch("magics_vacuum")
    assert ok(ip, "%pgmonkey VACUUM ANALYZE magics_vacuum") is None
    # CREATE INDEX CONCURRENTLY waits for every transaction older than its own in the
    # database: one left open by an earlier test would make it wait forever, so say which.
    try:
        _poll("no other session in a transaction", lambda: not in_transaction(db_conn))
    except AssertionError:
        raise AssertionError(f"open transactions: {in_transaction(db_conn)}") from None
    ok(ip, "%pgmonkey CREATE INDEX CONCURRENTLY magics_vacuum_a ON magics_vacuum (a)")
    # later cells behave as before: one transaction per cell, rolled back on error
    ok(ip, "%pgmonkey INSERT INTO magics_vacuum VALUES (1)")
    fails(ip, "%%pgmonkey\nINSERT INTO magics_vacuum VALUES (2);\nSELECT 1/0", capsys)
    assert ok(ip, "%pgmonkey SELECT count(*) AS n FROM magics_vacuum")["n"].tolist() == [1]


def test_loading_again_keeps_connections(ip: InteractiveShell, password_config: Path) -> None:
    connect(ip, password_config, "--name", "kept")
    load_ipython_extension(ip)  # what %reload_ext pgmonkey ends with
    assert list(ok(ip, "%pgmonkey connections")["name"]) == ["kept"]
    assert ok(ip, "%pgmonkey SELECT 1 AS x")["x"].tolist() == [1]


# -- {expr} / $var in command arguments, never in SQL ----------------------------------------


def test_connect_expands_notebook_variables(
    ip: InteractiveShell, password_config: Path, tmp_path: Path, capsys: Any
) -> None:
    ip.user_ns.update(config_path=str(password_config), conn_name="from_var")
    ok(ip, "%pgmonkey connect {config_path} --name {conn_name}")
    assert list(ok(ip, "%pgmonkey connections")["name"]) == ["from_var"]
    # an expression with spaces and quotes, a directory with a space, and $var
    spaced = tmp_path / "my configs"
    spaced.mkdir()
    copy = spaced / "copy.yaml"
    copy.write_text(password_config.read_text())
    copy.chmod(0o600)
    ip.user_ns.update(cfg_dir=spaced, kind="pool")
    ok(ip, "%pgmonkey connect {cfg_dir / 'copy.yaml'} $kind --name second")
    df = ok(ip, "%pgmonkey connections")
    assert df[["name", "type", "config"]].values.tolist()[1] == ["second", "pool", str(copy)]
    ok(ip, "%pgmonkey use {conn_name}")
    ok(ip, "%pgmonkey disconnect $conn_name")
    assert list(ok(ip, "%pgmonkey connections")["name"]) == ["second"]
    assert ok(ip, "%pgmonkey config {cfg_dir / 'copy.yaml'}")["key"].str.len().gt(0).all()
    out = "".join(capsys.readouterr())
    for secret in secrets_of(password_config):
        assert secret not in out


def test_literal_braces_in_a_path_still_work(
    ip: InteractiveShell, password_config: Path, tmp_path: Path
) -> None:
    braces = tmp_path / "a{undefined_name_xyz}b"
    braces.mkdir()
    copy = braces / "c.yaml"
    copy.write_text(password_config.read_text())
    copy.chmod(0o600)
    ip.user_ns.pop("undefined_name_xyz", None)
    ok(ip, f"%pgmonkey connect {copy} --name braces")
    assert ok(ip, "%pgmonkey connections")["config"].tolist() == [str(copy)]


def test_expansion_uses_the_callers_local_scope(
    ip: InteractiveShell, password_config: Path
) -> None:
    ip.user_ns["local_cfg"] = "/nonexistent/global.yaml"
    ok(
        ip,
        "def f(local_cfg):\n"
        "    get_ipython().run_line_magic('pgmonkey', 'connect {local_cfg} --name loc')\n"
        f"f({str(password_config)!r})",
    )
    assert ok(ip, "%pgmonkey connections")["name"].tolist() == ["loc"]


def test_import_export_expand_paths_but_not_sql(
    ip: InteractiveShell,
    password_config: Path,
    db_conn: psycopg.Connection[Any],
    tmp_path: Path,
    scratch: Callable[..., None],
) -> None:
    connect(ip, password_config)
    scratch("magics_expand", None)
    out = tmp_path / "q out.csv"
    ip.user_ns.update(out_file=out, x="EXPANDED", target="public.magics_expand")
    ok(ip, """%pgmonkey export --query "SELECT '{x}' AS v, '$x' AS w" {out_file}""")
    assert out.read_text().splitlines() == ["v,w", "{x},$x"]
    # :name is a parameter there, as in a query cell (it used to reach the server as text).
    ip.user_ns.update(low=2, label="it's")
    bound = tmp_path / "bound.csv"
    ip.user_ns["bound_file"] = bound
    ok(
        ip,
        "%pgmonkey export --query \"SELECT g, :label AS l, ':low' AS t"
        ' FROM generate_series(1, 3) g WHERE g >= :low" {bound_file}',
    )
    assert bound.read_text().splitlines() == ["g,l,t", "2,it's,:low", "3,it's,:low"]
    ok(ip, "%pgmonkey import {out_file} --table {target}")  # writes settings for review
    ok(ip, "%pgmonkey import {out_file} --table {target}")
    assert db_conn.execute("SELECT v, w FROM magics_expand").fetchall() == [("{x}", "$x")]
    back = tmp_path / "back.csv"
    ip.user_ns["back"] = str(back)
    ok(ip, "%pgmonkey export {target} {back}")
    assert back.read_text().splitlines() == ["v,w", "{x},$x"]
    ip.user_ns["frame"] = pd.DataFrame({"v": ["{x}"], "w": ["$x"]})
    ok(ip, "%pgmonkey persist frame {target} --if-exists append")
    assert db_conn.execute("SELECT count(*) FROM magics_expand").fetchone() == (2,)


def test_line_query_is_never_expanded(ip: InteractiveShell, password_config: Path) -> None:
    connect(ip, password_config)
    ip.user_ns.update(a="EXPANDED", conn_name="nope")
    df = ok(ip, "%pgmonkey SELECT '{a}' AS a, '$a' AS b, '{a!r}' AS c")
    assert df.iloc[0].tolist() == ["{a}", "$a", "{a!r}"]
    df = ok(ip, "%%pgmonkey\nSELECT '{a}' AS a, '$a' AS b")
    assert df.iloc[0].tolist() == ["{a}", "$a"]
