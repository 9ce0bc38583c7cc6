"""What type checkers see: get_database_connection's overloads give the precise class."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SNIPPET = """
from collections.abc import Awaitable
from typing import Any, assert_type

from pgmonkey import (
    PGAsyncConnection,
    PGAsyncPoolConnection,
    PGConnectionManager,
    PGNormalConnection,
    PGPoolConnection,
)

m = PGConnectionManager()
assert_type(m.get_database_connection("c.yaml", "normal"), PGNormalConnection)
assert_type(m.get_database_connection("c.yaml", "pool"), PGPoolConnection)
assert_type(m.get_database_connection("c.yaml", "async"), Awaitable[PGAsyncConnection])
assert_type(
    m.get_database_connection_from_dict({}, "async_pool"), Awaitable[PGAsyncPoolConnection]
)
assert_type(m.get_database_connection("c.yaml"), Any)
"""


def test_overloads_give_precise_types(tmp_path: Path) -> None:
    path = tmp_path / "user_code.py"
    path.write_text(SNIPPET)
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
