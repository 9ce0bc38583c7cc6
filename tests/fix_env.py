"""Environment isolation: no test depends on the shell's PG* or PGMONKEY_* variables."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Kept so notebooks and subprocesses started by tests reuse the session's sandbox.
KEEP = frozenset({"PGMONKEY_SANDBOX_DIR"})


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Remove PG* and PGMONKEY_* variables (libpq reads PG*) for the duration of each test."""
    for name in list(os.environ):
        if name.startswith("PG") and name not in KEEP:
            monkeypatch.delenv(name)
    yield


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a test that takes more than a few seconds")
