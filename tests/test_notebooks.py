"""The notebooks as executable documentation.

``python -m pytest`` itself runs every ``notebooks/*.ipynb`` under nbval against the session
sandbox (pyproject ``addopts``/``testpaths``, notebooks/conftest.py). These tests check what
that run cannot: that a broken query really fails nbval, that no stored output holds a
password or key material, and that every notebook is executed, valid and documented.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from pgmonkey import sandbox as sb

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK_PATHS = sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
IDS = [p.stem for p in NOTEBOOK_PATHS]

# The topics the notebooks must cover, each a notebook of its own.
REQUIRED = (
    "01_quickstart",
    "02_connection_types",
    "03_authentication",
    "04_env_and_secrets",
    "05_magics_tour",
    "06_csv_import_export",
    "07_server_config_and_audit",
    "08_async_in_notebooks",
)
# Fake secrets the notebooks set on purpose: they must never reach an output.
FAKE_SECRETS = ("fake-password-for-docs-only", "fake-fallback-secret")
KEY_MATERIAL = ("BEGIN " + "PRIVATE KEY", "PRIVATE " + "KEY-----", "BEGIN CERTIFICATE")
# pgmonkey.sandbox makes passwords with secrets.token_urlsafe(24): 32 URL-safe characters.
TOKEN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32}(?![A-Za-z0-9_-])")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BINARY_IMAGES = ("image/png", "image/jpeg")
NBVAL_TIMEOUT = 180


def _read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)


def _output_texts(nb: Any) -> Iterator[str]:
    """Every piece of text a stored output holds (streams, every MIME type, errors)."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            # Base64 of a PNG or JPEG holds no text to leak, and its letters look like tokens.
            if any(k in _BINARY_IMAGES for k in out.get("data", {})):
                data = {k: v for k, v in out["data"].items() if k not in _BINARY_IMAGES}
                out = {**out, "data": data}
            yield json.dumps(out, ensure_ascii=False)
            # The raw strings too: json escapes newlines, a PEM header is on one line anyway.
            if "text" in out:
                yield str(out["text"])
            for value in out.get("data", {}).values():
                yield value if isinstance(value, str) else json.dumps(value)
            for line in out.get("traceback", []):
                yield ANSI.sub("", line)
            if "evalue" in out:
                yield str(out["evalue"])


def _looks_like_password(token: str) -> bool:
    return (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() for c in token)
    )


# --- the run fails on a broken query ------------------------------------------------------


def _magic_notebook(config: Path, query: str) -> Any:
    """A notebook as a user would write it: connect with the magic, run one query."""
    return new_notebook(
        cells=[
            new_markdown_cell("A notebook whose query is checked by nbval."),
            new_code_cell(f"%load_ext pgmonkey\n%pgmonkey connect {config} --name check"),
            new_code_cell(f"%pgmonkey {query}"),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )


def _path_without_interpreter_bin() -> str:
    """PATH without the folder of this interpreter (a venv's bin): notebooks may not need it."""
    bin_dir = Path(sys.executable).parent
    return os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != bin_dir
    )


def _run_nbval(path: Path, sandbox: sb.Sandbox) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=_path_without_interpreter_bin())
    env[sb.DIR_ENV] = str(sandbox.dir)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            "--nbval-current-env",
            "-p",
            "no:cacheprovider",
            "--color=no",
            "-q",
            str(path),
        ],
        cwd=path.parent,  # no pyproject there: the inner run takes nbval's own defaults
        env=env,
        capture_output=True,
        text=True,
        timeout=NBVAL_TIMEOUT,
        check=False,
    )


def test_broken_query_fails_the_nbval_run(sandbox: sb.Sandbox, tmp_path: Path) -> None:
    config = sandbox.configs["password"]
    good = tmp_path / "good.ipynb"
    broken = tmp_path / "broken.ipynb"
    nbformat.write(_magic_notebook(config, "SELECT count(*) FROM pg_class"), good)
    nbformat.write(_magic_notebook(config, "SELECT * FROM no_such_table"), broken)

    # The same notebook with a valid query passes: the failure below is the query's.
    ok = _run_nbval(good, sandbox)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 passed" in ok.stdout

    failed = _run_nbval(broken, sandbox)
    out = ANSI.sub("", failed.stdout + failed.stderr)
    assert failed.returncode == 1, out
    assert "1 failed, 1 passed" in out
    assert "broken.ipynb::Cell 1" in out
    # The server's error, shown as the magic's one short message.
    assert 'relation "no_such_table" does not exist' in out
    assert "Traceback (most recent call last)" not in out
    assert sandbox.password not in out


SHELL_CHECK = 'assert _exit_code == 0, "the command above failed"'


def test_shell_cells_need_no_path_and_fail_the_run(sandbox: sb.Sandbox, tmp_path: Path) -> None:
    # A `!` command runs the kernel's own interpreter (PATH may lack the venv's bin), and the
    # next line turns its exit status into a failing cell, which `!` alone never does.
    config = sandbox.configs["password"]
    test = f"!{{sys.executable}} -m pgmonkey pgconfig test --connconfig {{cfg}}\n{SHELL_CHECK}"
    good = tmp_path / "shell_good.ipynb"
    bad = tmp_path / "shell_bad.ipynb"
    for path, cfg in ((good, config), (bad, tmp_path / "missing.yaml")):
        cells = [new_code_cell(f"import sys\ncfg = {str(cfg)!r}"), new_code_cell(test)]
        metadata = _magic_notebook(config, "").metadata
        nbformat.write(new_notebook(cells=cells, metadata=metadata), path)
    ok = _run_nbval(good, sandbox)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 passed" in ok.stdout
    failed = _run_nbval(bad, sandbox)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "1 failed, 1 passed" in failed.stdout
    assert "the command above failed" in failed.stdout


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_shell_lines_use_the_kernels_python_and_are_checked(path: Path) -> None:
    for cell in _read(path).cells:
        if cell.cell_type != "code":
            continue
        # A subprocess names the kernel's own interpreter too, never the console script.
        assert '["pgmonkey"' not in cell.source, f"{path.name}: runs pgmonkey from PATH"
        lines = cell.source.splitlines()
        for i, line in enumerate(lines):
            if not line.startswith("!"):
                continue
            assert not line.startswith("!pgmonkey"), f"{path.name}: {line!r} depends on PATH"
            following = lines[i + 1] if i + 1 < len(lines) else ""
            assert following == SHELL_CHECK, f"{path.name}: {line!r} can fail unnoticed"


# --- no secrets in stored outputs ---------------------------------------------------------


def test_there_are_notebooks_to_check() -> None:
    assert len(NOTEBOOK_PATHS) >= len(REQUIRED)
    assert {p.stem for p in NOTEBOOK_PATHS} >= set(REQUIRED)


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_no_password_or_key_material_in_outputs(path: Path, sandbox: sb.Sandbox) -> None:
    nb = _read(path)
    secrets = (sandbox.password, *FAKE_SECRETS)
    for text in _output_texts(nb):
        for secret in secrets:
            assert secret not in text, f"{path.name}: a stored output holds a password"
        for marker in KEY_MATERIAL:
            assert marker not in text, f"{path.name}: a stored output holds {marker!r}"
        # The sandbox a notebook was executed with is gone, its password unknown here:
        # look for anything shaped like one.
        suspects = [t for t in TOKEN.findall(text) if _looks_like_password(t)]
        assert not suspects, f"{path.name}: an output holds a password-like token"


def test_the_scan_finds_what_it_looks_for(sandbox: sb.Sandbox) -> None:
    # The scanner itself: a leaked password, fake secret or key header would be seen.
    leaks = [sandbox.password, FAKE_SECRETS[0], "-----" + KEY_MATERIAL[0] + "-----"]
    for leak in leaks:
        cell = new_code_cell("print(secret)", execution_count=1)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"value: {leak}\n")]
        nb = new_notebook(cells=[cell])
        texts = list(_output_texts(nb))
        assert any(leak in t for t in texts)
    html = new_code_cell("df", execution_count=1)
    html.outputs = [
        nbformat.v4.new_output(
            "execute_result", data={"text/html": f"<td>{sandbox.password}</td>"}, execution_count=1
        )
    ]
    found = [t for text in _output_texts(new_notebook(cells=[html])) for t in TOKEN.findall(text)]
    assert sandbox.password in found


# --- executed, valid, documented ---------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_notebook_is_executed_top_to_bottom(path: Path) -> None:
    nb = _read(path)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    assert code and markdown, f"{path.name}: code and explanations expected"
    assert nb.cells[0].cell_type == "markdown", f"{path.name}: should open with a title"
    # Stored outputs come from one run, in order: execution counts 1..n.
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: not executed in one run"
    assert sum(1 for c in code if c.outputs) >= len(code) // 3, f"{path.name}: few outputs"
    for cell in code:
        tags = cell.metadata.get("tags", [])
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if "raises-exception" in tags:
            assert errors, f"{path.name}: a raises-exception cell that does not raise"
        else:
            assert not errors, f"{path.name}: a stored error in an untagged cell"
        assert "NBVAL_SKIP" not in cell.source and "nbval-skip" not in tags
        # A warning is stored only where the notebook shows it on purpose (tagged).
        if "warning-expected" not in tags:
            stderr = [o for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
            assert not stderr, f"{path.name}: warnings or errors on stderr: {cell.source[:60]!r}"


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_notebook_starts_its_own_sandbox(path: Path) -> None:
    # A newcomer runs it top to bottom: the sandbox is started (or reused) by the notebook.
    sources = "\n".join(c.source for c in _read(path).cells if c.cell_type == "code")
    assert re.search(r"\b(sb|sandbox)\.start\(", sources)


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_notebook_is_listed_in_the_readme(path: Path) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    assert f"notebooks/{path.name}" in text, f"README.md does not link notebooks/{path.name}"


def test_the_test_command_runs_the_notebooks(pytestconfig: pytest.Config) -> None:
    # `python -m pytest` (the README test command) collects notebooks/ with nbval.
    assert "notebooks" in pytestconfig.getini("testpaths")
    addopts = pytestconfig.getini("addopts")
    assert "--nbval" in addopts and "--nbval-current-env" in addopts
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((NOTEBOOKS / "sanitize.cfg").read_text())
    assert len(patterns) >= 5
    for regex, _ in patterns:
        re.compile(regex)
