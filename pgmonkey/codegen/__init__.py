"""``pgmonkey pgconfig generate-code``: runnable example scripts for a config.

:func:`generate_code` returns the script as text. It reads the config at run time from the
same (absolute) path, so the script keeps working when the config changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from string import Template
from typing import Final

from pgmonkey.config import CONNECTION_TYPES

from . import _templates as t

__all__ = ["LIBRARIES", "generate_code"]

LIBRARIES: Final = ("pgmonkey", "psycopg")


def generate_code(
    config_path: str | os.PathLike[str],
    connection_type: str,
    library: str = "pgmonkey",
    *,
    resolve_env: bool = False,
) -> str:
    """A complete Python script connecting with *connection_type* through *library*.

    *config_path* is made absolute. With *resolve_env* the script resolves environment and
    secret references in the config the way ``load_config(..., resolve_env=True)`` does.
    """
    if connection_type not in CONNECTION_TYPES:
        raise ValueError(
            f"unknown connection type {connection_type!r}: expected one of "
            f"{', '.join(CONNECTION_TYPES)}"
        )
    if library not in LIBRARIES:
        raise ValueError(f"unknown library {library!r}: expected one of {', '.join(LIBRARIES)}")
    values = {
        "config": _literal(str(Path(config_path).expanduser().absolute())),
        "ctype": connection_type,
        "What": t.WHAT[connection_type],
        "block": t.BLOCK[connection_type],
    }
    values["connect"] = _connect_call(connection_type, resolve_env)
    if library == "pgmonkey":
        async_type = connection_type.startswith("async")
        template = t.PGMONKEY_ASYNC if async_type else t.PGMONKEY_SYNC
        return Template(template).substitute(values)
    return _psycopg_script(connection_type, resolve_env, values)


def _psycopg_script(connection_type: str, resolve_env: bool, values: dict[str, str]) -> str:
    third_party = [
        *t.PSYCOPG_IMPORTS[connection_type],
        "from psycopg.conninfo import make_conninfo",
    ]
    if not resolve_env:
        third_party.append("import yaml")
    # isort's order: `import x` lines first, then `from x import y`, each sorted by module.
    imports = sorted(third_party, key=lambda line: (line.startswith("from"), line.split()[1]))
    if connection_type.startswith("async"):
        imports = ["import asyncio", "", *imports]
    loader = t.LOADER_PGMONKEY if resolve_env else t.LOADER_YAML
    header = Template(t.PSYCOPG_HEADER).substitute(
        values, imports="\n".join(imports), loader=loader
    )
    pool = t.POOL_ARGS if connection_type in ("pool", "async_pool") else ""
    return header + pool + t.PSYCOPG_BODY[connection_type]


def _literal(text: str) -> str:
    """A Python string literal, double-quoted like formatted code when possible."""
    if '"' in text or "\\" in text or not text.isprintable():
        return repr(text)
    return f'"{text}"'


def _connect_call(connection_type: str, resolve_env: bool) -> str:
    """The manager call, wrapped the way ruff/black format it when it gets too long."""
    prefix = "await " if connection_type.startswith("async") else ""
    args = f'CONFIG_FILE, "{connection_type}"' + (", resolve_env=True" if resolve_env else "")
    call = f"{prefix}manager.get_database_connection({args})"
    if len("    connection = ") + len(call) <= 88:
        return call
    return f"{prefix}manager.get_database_connection(\n        {args}\n    )"
