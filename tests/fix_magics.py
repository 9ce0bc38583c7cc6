"""IPython shells with fresh pgmonkey magics, for the magics tests (loaded by conftest).

``fresh_magics()`` puts magics of their own (no connections) on the one process-wide
``InteractiveShell`` and restores the shell's previous magics after; the ``ip`` fixture is
that, per test. ``run`` and ``ok`` run a cell the way a notebook does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell

from pgmonkey.magics import PgMonkeyMagics


@contextmanager
def fresh_magics() -> Iterator[tuple[InteractiveShell, PgMonkeyMagics]]:
    """The IPython shell with magics of its own (no connections), put back and closed after."""
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext pgmonkey", store_history=False)
    before = list(shell.configurables)
    shell.configurables[:] = [c for c in before if not isinstance(c, PgMonkeyMagics)]
    magics = PgMonkeyMagics(shell=shell)
    shell.register_magics(magics)
    shell.configurables.append(magics)
    try:
        yield shell, magics
    finally:
        shell.configurables[:] = before
        magics.close_all()


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    """The process-wide shell with the extension loaded (its own magics, as a user has them)."""
    sh = InteractiveShell.instance()
    sh.run_cell("%load_ext pgmonkey", store_history=False)
    return sh


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    """The shell with fresh magics (no connections), closed after the test."""
    with fresh_magics() as (shell, _magics):
        yield shell


def run(ip: InteractiveShell, code: str) -> ExecutionResult:
    return ip.run_cell(code, store_history=False)


def ok(ip: InteractiveShell, code: str) -> Any:
    result = run(ip, code)
    assert result.error_in_exec is None, result.error_in_exec
    assert result.error_before_exec is None
    return result.result


def connect(ip: InteractiveShell, config: Path | str, *args: str) -> None:
    ok(ip, f"%pgmonkey connect {config} {' '.join(args)}")
