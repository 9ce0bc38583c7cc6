"""Test configuration: fixtures live in ``tests/fix_*.py`` and are loaded here."""

from __future__ import annotations

pytest_plugins = ("tests.fix_sandbox", "tests.fix_env", "tests.fix_magics")
