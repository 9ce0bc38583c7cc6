"""``--out NAME`` stores a result only under a name a notebook can use as a variable.

``--out for``, ``--out None`` and ``--out __builtins__`` used to be accepted: the first two
stored a value no code can read back by name, the last replaced Python's builtins for the
whole notebook. IPython's own names (``In``, ``Out``, ``_``, ``_i3``...) are refused too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from tests.fix_magics import fresh_magics


@pytest.fixture
def ip(password_config: Path) -> Iterator[InteractiveShell]:
    with fresh_magics() as (shell, _magics):
        result = shell.run_cell(f"%pgmonkey connect {password_config} --name o")
        assert result.error_in_exec is None, result.error_in_exec
        yield shell


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("for", "Python keyword"),
        ("None", "Python keyword"),
        ("True", "Python keyword"),
        ("__builtins__", "special name"),
        ("__name__", "special name"),
        ("In", "IPython's own"),
        ("Out", "IPython's own"),
        ("_", "IPython's own"),
        ("_i3", "IPython's own"),
        ("_12", "IPython's own"),
        ("get_ipython", "IPython's own"),
        ("1x", "not a valid variable name"),
    ],
)
def test_out_refuses_names_that_are_not_plain_variables(
    ip: InteractiveShell, name: str, why: str
) -> None:
    builtins_before = ip.user_ns.get("__builtins__")
    for cell in (
        f"%pgmonkey --out {name} SELECT 1 AS x",
        f"%%pgmonkey --out {name}\nSELECT 1 AS x",
    ):
        result = ip.run_cell(cell, store_history=False)
        assert result.error_in_exec is not None, cell
        assert why in str(result.error_in_exec)
    assert ip.user_ns.get("__builtins__") is builtins_before


def test_out_stores_under_a_plain_name(ip: InteractiveShell) -> None:
    result = ip.run_cell("%pgmonkey --out match SELECT 7 AS x", store_history=False)
    assert result.error_in_exec is None, result.error_in_exec
    assert ip.user_ns["match"]["x"].tolist() == [7]  # a soft keyword is a valid name
