"""Every CLI flag value reaches the code as the exact text typed.

python-fire reads a value as a Python literal when it can: ``--table 2024_01`` became the
number 202401, ``0x1f`` 31, ``1e3`` 1000.0, ``10.10`` 10.1, ``{a:1}`` a dict, ``None`` None,
and a lone ``-`` was taken as fire's separator. Each test below gives one kind of text to
each string-valued flag and checks what the command received: in-process through the CLI's
``run`` (the library calls replaced by recorders), through ``fire.Fire`` itself, and once as
a real subprocess against the sandbox.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import fire
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgmonkey.cli import _commands, _run
from pgmonkey.errors import PgMonkeyError

# Text that Python (and so fire) would read as something else, or that fire treats specially.
VALUES = [
    "2024_01",  # digits and underscores: int 202401
    "007",  # leading zeros
    "0x1f",  # hex: int 31
    "1e3",  # exponent: float 1000.0
    "10.10",  # trailing zero: float 10.1
    "-1",  # a negative number
    "{a:1}",  # braces: a dict
    "[1, 2]",  # brackets: a list
    "(1)",  # parentheses: int 1
    "a,b",  # a comma: a tuple
    "'quoted'",  # quotes: the string without them
    '"double"',
    "None",  # None
    "True",  # a bool
    "False",
    "-",  # fire's separator
    "a b",  # a space
    "x=1",  # an equals sign
    "Zoë_表",  # non-ASCII
    "${HOME}",  # shell-like text, kept as is
]
IDS = [f"v{i}" for i in range(len(VALUES))]


class Stop(PgMonkeyError):
    """Raised by the recorders where the real command would go on to the network."""


class Recorder:
    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def load(self, path: str, resolve_env: bool) -> dict[str, Any]:
        self.seen["config"] = path
        if self.stop_after_load:
            raise Stop("recorded")
        return {}

    stop_after_load = False


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    r = Recorder()
    monkeypatch.setattr(_commands, "_load", r.load)

    class Imported:
        def report(self) -> str:
            return "imported"

    def import_csv(path: str, table: str, cfg: Any, *, if_exists: Any = None) -> Imported:
        r.seen.update(import_file=path, table=table)
        if if_exists is not None:
            r.seen.update(if_exists=if_exists)
        return Imported()

    def export_csv(
        cfg: Any, out: Any, *, table: Any = None, query: Any = None, partitions: Any = None
    ) -> str:
        r.seen.update(export_file=out, table=table, query=query)
        if partitions is not None:
            r.seen.update(partitions=partitions)
        return "exported"

    monkeypatch.setattr("pgmonkey.transfer.import_csv", import_csv)
    monkeypatch.setattr("pgmonkey.transfer.export_csv", export_csv)

    class Box:
        def describe(self) -> str:
            return "a sandbox"

    def start(dir: Any, port: Any, **kw: Any) -> Box:
        r.seen.update(dir=dir, port=port, **kw)
        return Box()

    def status(dir: Any) -> Box:
        r.seen.update(dir=dir)
        return Box()

    def stop(dir: Any) -> bool:
        r.seen.update(dir=dir)
        return True

    monkeypatch.setattr("pgmonkey.sandbox.start", start)
    monkeypatch.setattr("pgmonkey.sandbox.status", status)
    monkeypatch.setattr("pgmonkey.sandbox.stop", stop)
    return r


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = _run.run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("value", VALUES, ids=IDS)
def test_pgimport_flags(rec: Recorder, capsys: pytest.CaptureFixture[str], value: str) -> None:
    code, out, err = run(
        capsys, "pgimport", "--table", value, "--connconfig", value, "--import_file", value
    )
    assert (code, err) == (0, ""), err
    assert rec.seen == {"config": value, "import_file": value, "table": value}
    assert out == "imported\n"


@pytest.mark.parametrize("value", VALUES, ids=IDS)
def test_pgexport_table_flags(
    rec: Recorder, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    code, _, err = run(
        capsys, "pgexport", "--table", value, "--filepath", value, "--export_file", value
    )
    assert (code, err) == (0, ""), err
    assert rec.seen == {"config": value, "export_file": value, "table": value, "query": None}


@pytest.mark.parametrize("value", VALUES, ids=IDS)
def test_pgexport_query_flag(rec: Recorder, capsys: pytest.CaptureFixture[str], value: str) -> None:
    code, _, err = run(
        capsys, "pgexport", "--query", value, "--connconfig", "c.yaml", "--export_file", "o"
    )
    assert (code, err) == (0, ""), err
    assert rec.seen == {"config": "c.yaml", "export_file": "o", "table": None, "query": value}


@pytest.mark.parametrize("value", VALUES, ids=IDS)
@pytest.mark.parametrize(
    "command",
    [
        ["pgconfig", "test", "--connconfig"],
        ["pgconfig", "test", "--filepath"],
        ["pgconfig", "generate-code", "--filepath"],
        ["pgserverconfig", "--filepath"],
        ["pgserverconfig", "--connconfig"],
    ],
    ids=" ".join,
)
def test_config_path_flags(
    rec: Recorder, capsys: pytest.CaptureFixture[str], command: list[str], value: str
) -> None:
    rec.stop_after_load = True
    code, _, err = run(capsys, *command, value)
    assert code == 1 and err == "pgmonkey: error: recorded\n"
    assert rec.seen == {"config": value}


@pytest.mark.parametrize("value", VALUES, ids=IDS)
@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["pgconfig", "test", "--connconfig", "c.yaml"], "--connection-type"),
        (["pgconfig", "generate-code", "--connconfig", "c.yaml"], "--connection-type"),
        (["pgconfig", "generate-code", "--connconfig", "c.yaml"], "--library"),
        (["pgconfig", "create", "--filepath", "c.yaml"], "--type"),
    ],
    ids=lambda x: x if isinstance(x, str) else " ".join(x[:2]),
)
def test_choice_flags_quote_the_text_typed(
    rec: Recorder, capsys: pytest.CaptureFixture[str], command: list[str], flag: str, value: str
) -> None:
    # None of these values is a valid choice: the error quotes the text exactly as typed.
    code, _, err = run(capsys, *command, flag, value)
    assert code == 2, err
    assert err.splitlines()[0].endswith(f", got {value!r}"), err
    assert rec.seen == {}


@pytest.mark.parametrize("value", VALUES, ids=IDS)
@pytest.mark.parametrize("command", ["start", "status", "stop"])
def test_sandbox_dir_flag(
    rec: Recorder, capsys: pytest.CaptureFixture[str], command: str, value: str
) -> None:
    code, _, err = run(capsys, "sandbox", command, "--dir", value)
    assert (code, err) == (0, ""), err
    assert rec.seen["dir"] == value


@pytest.mark.parametrize("value", VALUES, ids=IDS)
def test_pgconfig_create_filepath_is_the_file_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "pgconfig", "create", "--type", "pg", "--filepath", value)
    assert (code, err) == (0, ""), err
    assert [p.name for p in tmp_path.iterdir()] == [value]


@pytest.mark.parametrize("flag", ["--port", "--standbys"])
@pytest.mark.parametrize("value", ["0x1f", "1e3", "10.10", "5_432", "True", "None", "[1]", "-1"])
def test_counts_take_decimal_digits_only(
    rec: Recorder, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    code, _, err = run(capsys, "sandbox", "start", flag, value)
    assert code == 2
    assert err.splitlines()[0] == f"pgmonkey: error: {flag} must be a number, got {value!r}"
    assert rec.seen == {}


def test_counts_in_decimal(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "sandbox", "start", "--port", "05432", "--dir", "d")
    assert (code, err) == (0, ""), err
    assert rec.seen == {"dir": "d", "port": 5432}


def test_equals_and_positional_forms(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "pgexport", "--table=2024_01", "--connconfig=0x1f")
    assert (code, err) == (0, ""), err
    assert rec.seen == {"config": "0x1f", "export_file": None, "table": "2024_01", "query": None}
    rec.seen.clear()
    code, _, err = run(capsys, "pgimport", "1e3", "10.10", "--import_file", "None")
    assert (code, err) == (0, ""), err
    assert rec.seen == {"config": "10.10", "import_file": "None", "table": "1e3"}


def test_fire_itself_passes_the_text(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    """The commands tell fire not to parse (fire.Fire on the component, no CLI wrapper)."""
    command = ["pgexport", "--table", "2024_01", "--connconfig", "{a:1}", "--export_file", "1e3"]
    fire.Fire(_commands.PgMonkey(), command=command, name="pgmonkey")
    assert rec.seen == {"config": "{a:1}", "export_file": "1e3", "table": "2024_01", "query": None}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pgexport", "--table", "--connconfig", "c.yaml"], "--table needs a value"),
        (["pgexport", "--connconfig", "c.yaml", "--table"], "--table needs a value"),
        (["pgimport", "--table", "t", "--connconfig"], "--connconfig needs a value"),
        (["pgconfig", "test", "--connection-type"], "--connection-type needs a value"),
        (
            ["pgexport", "--connconfig", "c.yaml", "--query", "-- note\nSELECT 1"],
            "--query needs a value (for one that starts with '-', write --query=VALUE)",
        ),
        (
            ["pgexport", "--connconfig", "c.yaml", "--table", "-x"],
            "--table needs a value (for one that starts with '-', write --table=VALUE)",
        ),
        (
            ["pgexport", "--table", "--conconfig", "c.yaml"],
            "--table needs a value ('--conconfig' looks like a mistyped --connconfig)",
        ),
        (
            ["pgexport", "--notable", "--connconfig", "c.yaml"],
            "unknown option '--notable': did you mean --table?",
        ),
        (["pgexport", "--table", "a", "--table", "b"], "--table is given twice"),
    ],
)
def test_a_text_flag_without_its_value(
    rec: Recorder, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    # fire would pass the text "True" (or "False") as the value.
    code, _, err = run(capsys, *args)
    assert code == 2
    assert err.splitlines()[0] == f"pgmonkey: error: {message}", err
    assert rec.seen == {}


_any_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=40
)
FUZZ_EXAMPLES = 300


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    table=st.one_of(_any_text, st.sampled_from(VALUES)),
    config=st.one_of(_any_text, st.sampled_from(VALUES)),
    out=_any_text,
    equals=st.booleans(),
)
def test_fuzz_any_text_reaches_the_command(
    rec: Recorder,
    capsys: pytest.CaptureFixture[str],
    table: str,
    config: str,
    out: str,
    equals: bool,
) -> None:
    def flag(name: str, value: str) -> list[str]:
        # A value that looks like a flag (`-x`, `--...`) can only be given as --name=value.
        if equals or _run._FLAG.match(value):
            return [f"--{name}={value}"]
        return [f"--{name}", value]

    rec.seen.clear()
    args = [*flag("table", table), *flag("connconfig", config), *flag("export_file", out)]
    code, _, err = run(capsys, "pgexport", *args)
    assert (code, err) == (0, ""), args
    assert rec.seen == {"config": config, "export_file": out, "table": table, "query": None}


# --- a real subprocess against the sandbox ------------------------------------------------


def pgmonkey(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgmonkey", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_subprocess_values_as_typed(
    tmp_path: Path, password_config: Path, db_conn: psycopg.Connection[Any], sandbox: Any
) -> None:
    # A config file, a CSV, a table and an output file each named like a Python literal.
    config = tmp_path / "{a:1}"
    config.write_bytes(password_config.read_bytes())
    config.chmod(0o600)
    (tmp_path / "1e3").write_text("id,name\n1,alice\n2,bob\n")
    db_conn.execute('DROP TABLE IF EXISTS public."2024_01", public."0x1f"')
    try:
        importing = ["pgimport", "--table", "2024_01", "--connconfig", "{a:1}"]
        for _ in range(2):  # the review step, then the import
            res = pgmonkey(*importing, "--import_file", "1e3", cwd=tmp_path)
            assert res.returncode == 0, res.stderr
        assert (tmp_path / "1e3.import.yaml").is_file()
        rows = db_conn.execute('SELECT id, name FROM public."2024_01" ORDER BY id').fetchall()
        assert rows == [(1, "alice"), (2, "bob")]

        res = pgmonkey(
            "pgexport",
            "--table",
            "2024_01",
            "--filepath",
            "{a:1}",
            "--export_file",
            "10.10",
            cwd=tmp_path,
        )
        assert res.returncode == 0, res.stderr
        assert (tmp_path / "10.10").read_text() == "id,name\n1,alice\n2,bob\n"

        query = "SELECT name FROM public.\"2024_01\" WHERE name = 'bob'"
        res = pgmonkey(
            "pgexport",
            "--query",
            query,
            "--connconfig",
            "{a:1}",
            "--export_file",
            "None",
            cwd=tmp_path,
        )
        assert res.returncode == 0, res.stderr
        assert (tmp_path / "None").read_text() == "name\nbob\n"

        for value in ("2024_01", "0x1f", "[1, 2]", "'quoted'", "True", "-"):  # all: in-process
            res = pgmonkey("pgconfig", "create", "--type", "pg", "--filepath", value, cwd=tmp_path)
            assert res.returncode == 0, (value, res.stderr)
            assert (tmp_path / value).read_text().startswith("#"), value
        res = pgmonkey(
            "pgconfig", "test", "--connconfig", "{a:1}", "--connection-type", "0x1f", cwd=tmp_path
        )
        assert res.returncode == 2
        assert "got '0x1f'" in res.stderr
    finally:
        db_conn.execute('DROP TABLE IF EXISTS public."2024_01", public."0x1f"')
