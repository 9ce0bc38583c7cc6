"""Every ``pgmonkey ...`` command line of README.md and the notebooks runs as written.

The README once showed ``pgexport --table T ... --query "SELECT ..."``, which cannot run. Here
each command line is extracted from the documents and run in a real subprocess
(``sys.executable -m pgmonkey``, through the shell, so ``> app.py`` works as written), in
document order: README.md, then notebooks/*.ipynb in name order.

What counts as a command line:

- in fenced code blocks (README, notebook markdown): each line, or each ``&&`` part of a
  line, that starts with ``pgmonkey``;
- inline code spans that start with ``pgmonkey `` (a span with a bare ``...`` is a
  placeholder for any command and is left out);
- notebook code cells: ``!{sys.executable} -m pgmonkey ...`` and ``!pgmonkey ...`` lines.

Synopsis notation is expanded into every concrete line it stands for: ``[X]`` is the line
without and with X (nested), ``a|b`` (no spaces: a pipe has spaces) one line per choice. A
span that only names a command that needs flags (prose such as "`pgmonkey pgimport` and
...") is checked to exist by running it with ``--help``.

Placeholders are the sandbox's: ``config.yaml`` / ``CONFIG`` a copy of the session
sandbox's password config (so is a notebook's ``{variable}``), ``file.yaml`` the same with
the password as ``${VAR}`` (for ``--resolve-env``), a sandbox config name (``ssl.yaml``,
``../password.yaml``, ``standby1.yaml``, ``~/.pgmonkey/sandbox/ssl.yaml``) the file of the
sandbox the documents start (its own folder, ``PGMONKEY_SANDBOX_DIR`` and ``DIR``), else of
the session sandbox; ``--port N`` that sandbox's port when it runs (a free one otherwise),
``--standbys N`` 1, ``--partitions N`` 2;
each ``--table`` name a table of this test holding rows; ``data.csv`` a small CSV. Each
line runs in a fresh folder. It must exit 0, or with its documented code (``--strict``: 0
or 3); no traceback and no password in its output.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from pgmonkey import sandbox as sb
from pgmonkey.errors import SandboxError

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180
PGMONKEY = shlex.join([sys.executable, "-m", "pgmonkey"])
ENV_PASSWORD = "PGMONKEY_DOCS_TEST_PASSWORD"


@dataclass(frozen=True)
class Line:
    where: str  # README.md:123 or notebooks/01_quickstart.ipynb cell 19
    text: str  # as written, from "pgmonkey" on


# --- extraction ---------------------------------------------------------------------------

_FENCE = re.compile(r"^```.*?$(.*?)^```", re.MULTILINE | re.DOTALL)
_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_BANG = re.compile(r"^!(?:\{sys\.executable\} -m |python -m )?(pgmonkey\b.*)$")


def _from_markdown(text: str, where: str) -> Iterator[Line]:
    """Command lines of a markdown text: fenced lines, then code spans, in text order."""
    found: list[tuple[int, int, str]] = []  # (offset, order on its line, text)
    for fence in _FENCE.finditer(text):
        offset = fence.start(1)
        for raw in fence.group(1).splitlines(keepends=True):
            for k, part in enumerate(raw.split("&&")):
                part = part.strip()
                if part.startswith("pgmonkey ") or part == "pgmonkey":
                    found.append((offset, k, part))
            offset += len(raw)
    prose = _FENCE.sub(lambda m: " " * len(m.group(0)), text)
    for span in _SPAN.finditer(prose):
        body = span.group(1).strip()
        if body.startswith("pgmonkey ") and "..." not in body.split():
            found.append((span.start(), 0, body))
    for offset, _, body in sorted(found):
        yield Line(f"{where}:{text.count(chr(10), 0, offset) + 1}", body)


def extract() -> list[Line]:
    lines = list(_from_markdown((ROOT / "README.md").read_text(), "README.md"))
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        for i, cell in enumerate(cells):
            source = "".join(cell["source"])
            where = f"notebooks/{nb.name} cell {i}"
            if cell["cell_type"] == "markdown":
                lines += [Line(where, x.text) for x in _from_markdown(source, where)]
            elif cell["cell_type"] == "code":
                for raw in source.splitlines():
                    m = _BANG.match(raw.strip())
                    if m:
                        lines.append(Line(where, m.group(1)))
    return lines


# --- synopsis expansion -------------------------------------------------------------------


def _matching_bracket(text: str, start: int) -> int:
    depth, quote = 0, ""
    for j in range(start, len(text)):
        c = text[j]
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return j
    raise AssertionError(f"unbalanced [ in {text!r}")


def _first_bracket(text: str) -> int:
    quote = ""
    for j, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "[":
            return j
    return -1


_CHOICE = re.compile(r"(?<!\S)([a-z][a-z_-]*(?:\|[a-z][a-z_-]*)+)(?!\S)")


def expand(text: str) -> list[str]:
    """Every concrete line a synopsis line stands for, in order, without repeats."""
    m = _CHOICE.search(text)
    if m is not None:
        variants = []
        for choice in m.group(1).split("|"):
            variants += expand(text[: m.start()] + choice + text[m.end() :])
    elif (i := _first_bracket(text)) >= 0:
        j = _matching_bracket(text, i)
        variants = []
        for rest in expand(text[j + 1 :]):
            variants.append(f"{text[:i]} {rest}")
            variants += [f"{text[:i]} {inner} {rest}" for inner in expand(text[i + 1 : j])]
    else:
        variants = [text]
    return list(dict.fromkeys(" ".join(_words(v)) for v in variants))


def _words(text: str) -> list[str]:
    """The line's words with their quotes (to join them again with single spaces)."""
    lexer = shlex.shlex(text, posix=False)
    lexer.whitespace_split = True
    return list(lexer)


def test_expand() -> None:
    assert expand("pgmonkey a|b [--x X] [--y [--z]]") == [
        "pgmonkey a",
        "pgmonkey a --x X",
        "pgmonkey a --y",
        "pgmonkey a --x X --y",
        "pgmonkey a --y --z",
        "pgmonkey a --x X --y --z",
        "pgmonkey b",
        "pgmonkey b --x X",
        "pgmonkey b --y",
        "pgmonkey b --x X --y",
        "pgmonkey b --y --z",
        "pgmonkey b --x X --y --z",
    ]
    assert expand('pgmonkey p --query "SELECT a[1] | b" > app.py') == [
        'pgmonkey p --query "SELECT a[1] | b" > app.py'
    ]


def test_extract_finds_the_documented_commands() -> None:
    texts = [line.text for line in extract()]
    assert "pgmonkey sandbox start" in texts  # README: fenced, after `pip install -e . &&`
    assert any(t.startswith("pgmonkey pgexport --query") for t in texts)  # README CLI block
    assert "pgmonkey pgconfig test --connconfig file.yaml --resolve-env" in texts  # nb 04 `!`
    assert "pgmonkey sandbox start --standbys 1 --pgbouncer" in texts  # README and nb 09 prose
    assert not any("..." in t.split() for t in texts)


# --- running ------------------------------------------------------------------------------

_SANDBOX_CONFIGS = re.compile(
    r"(?<!\S)(?:~/\.pgmonkey/sandbox/|\.\./|\./)?"
    r"((?:password|ssl|cert|standby\d|multihost|readonly|pgbouncer)\.yaml)(?!\S)"
)


class Runner:
    def __init__(self, work: Path, own: Path, session: Any, tables: dict[str, str]) -> None:
        self.work, self.own, self.session, self.tables = work, own, session, tables
        self.count = 0
        try:
            self.bouncer = bool(sb.find_pgbouncer())
        except SandboxError:
            self.bouncer = False
        data = yaml.safe_load(Path(session.configs["password"]).read_text())
        self.config = yaml.safe_dump(data)
        data["connection_settings"]["password"] = "${" + ENV_PASSWORD + "}"
        self.env_config = yaml.safe_dump(data)

    def _own_port(self) -> int | None:
        running = sb.status(self.own)
        return running.port if running is not None else None

    def _sandbox_file(self, name: str) -> str:
        for folder in (self.own, Path(self.session.dir)):
            if (folder / name).exists():
                return str(folder / name)
        return str(self.own / name)  # not there: the command says so

    def concrete(self, text: str) -> str:
        """The placeholders of one expanded line replaced; `pgmonkey` made this Python's."""
        if not self.bouncer:
            text = text.replace(" --pgbouncer", "")  # the binary is missing on this machine
        # A notebook passes a config path in a Python variable: "{config_path}" and the like.
        text = re.sub(r'(?<!\S)"?\{[A-Za-z_]\w*\}"?(?!\S)', "config.yaml", text)
        text = re.sub(r"(?<!\S)(config\.yaml|CONFIG)(?!\S)", "config.yaml", text)
        text = _SANDBOX_CONFIGS.sub(lambda m: shlex.quote(self._sandbox_file(m.group(1))), text)
        text = re.sub(r"(?<!\S)DIR(?!\S)", shlex.quote(str(self.own)), text)
        if "--port N" in text:
            text = text.replace("--port N", f"--port {self._own_port() or _free_port()}")
        text = text.replace("--standbys N", "--standbys 1")
        text = text.replace("--partitions N", "--partitions 2")
        for name, ours in self.tables.items():
            text = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w.])", ours, text)
        return re.sub(r"(^|&&\s*|\|\s*)pgmonkey(?=\s|$)", rf"\1{PGMONKEY}", text)

    def run(self, line: Line, text: str) -> str | None:
        """Run one concrete line; return what went wrong, if anything."""
        self.count += 1
        cwd = self.work / f"line{self.count:03d}"
        cwd.mkdir()
        if "pgconfig create" not in text:
            (cwd / "config.yaml").write_text(self.config)
            (cwd / "config.yaml").chmod(0o600)
        (cwd / "file.yaml").write_text(self.env_config)
        (cwd / "file.yaml").chmod(0o600)
        (cwd / "data.csv").write_text("id,name\n1,alice\n2,bob\n")
        words = shlex.split(text)
        if all(not w.startswith("-") for w in words[1:]) and words[1:2] != ["sandbox"]:
            text += " --help"  # a command named in prose: it exists and has help
        command = self.concrete(text)
        env = {
            **os.environ,
            "PGMONKEY_SANDBOX_DIR": str(self.own),
            ENV_PASSWORD: self.session.password,
        }
        res = subprocess.run(
            command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
        expected = {0, 3} if "--strict" in words else {0}
        problems = []
        if res.returncode not in expected:
            problems.append(f"exit {res.returncode}, expected {sorted(expected)}")
        if "Traceback" in res.stderr:
            problems.append("a traceback")
        if self.session.password in res.stdout + res.stderr:
            problems.append("the password in its output")
        if not problems:
            return None
        return f"{line.where}: {text}\n    ran: {command}\n    {', '.join(problems)}: {res.stderr}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def own_sandbox_dir() -> Iterator[Path]:
    """The folder of the sandbox the documents start and stop (short: a socket lives there)."""
    path = Path(tempfile.mkdtemp(prefix="pgm-docs-"))
    try:
        yield path
    finally:
        sb.stop(path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def doc_tables(db_conn: psycopg.Connection[Any]) -> Iterator[dict[str, str]]:
    """A table of this test, with rows, for each ``--table`` name in the documents."""
    names: list[str] = []
    for line in extract():
        words = shlex.split(line.text)
        names += [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--table"]
    tables = {n: f"public.docs_cmd_{i}" for i, n in enumerate(dict.fromkeys(names))}
    for ours in tables.values():
        db_conn.execute(f"DROP TABLE IF EXISTS {ours}")
        db_conn.execute(f"CREATE TABLE {ours} (id int, name text)")
        db_conn.execute(f"INSERT INTO {ours} VALUES (1, 'alice'), (2, 'bob')")
    try:
        yield tables
    finally:
        for ours in tables.values():
            db_conn.execute(f"DROP TABLE IF EXISTS {ours}")


def test_every_documented_command_line_runs(
    sandbox: Any, own_sandbox_dir: Path, doc_tables: dict[str, str], tmp_path: Path
) -> None:
    runner = Runner(tmp_path, own_sandbox_dir, sandbox, doc_tables)
    lines = extract()
    assert len(lines) >= 20  # the extraction itself works
    failures = []
    for line in lines:
        for text in expand(line.text):
            problem = runner.run(line, text)
            if problem:
                failures.append(problem)
    assert not failures, f"{len(failures)} of {runner.count} command lines failed:\n" + "\n".join(
        failures
    )
