"""pgmonkey: one YAML config, four PostgreSQL connection types, a CLI and IPython magics.

``import pgmonkey`` stays light: pandas and IPython load only when a DataFrame or a
magic is used. Public names are resolved lazily from the module that defines them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "5.0.0.dev0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "PGConnectionManager": "pgmonkey.manager",
    "load_config": "pgmonkey.config",
    "redact_config": "pgmonkey.config",
    "PgMonkeyError": "pgmonkey.errors",
    "ConfigError": "pgmonkey.errors",
    "ConnectionStateError": "pgmonkey.errors",
    "EnvInterpolationError": "pgmonkey.errors",
    "SandboxError": "pgmonkey.errors",
    "TransferError": "pgmonkey.errors",
    "MagicError": "pgmonkey.errors",
    "PGNormalConnection": "pgmonkey.connections.normal",
    "PGPoolConnection": "pgmonkey.connections.pool",
    "PGAsyncConnection": "pgmonkey.connections.async_",
    "PGAsyncPoolConnection": "pgmonkey.connections.async_pool",
    "read_sql": "pgmonkey.frames",
    "read_arrow": "pgmonkey.frames",
    "read_polars": "pgmonkey.frames",
    "to_sql": "pgmonkey.frames",
    "import_csv": "pgmonkey.transfer",
    "export_csv": "pgmonkey.transfer",
}

__all__ = [
    "ConfigError",
    "ConnectionStateError",
    "EnvInterpolationError",
    "MagicError",
    "PGAsyncConnection",
    "PGAsyncPoolConnection",
    "PGConnectionManager",
    "PGNormalConnection",
    "PGPoolConnection",
    "PgMonkeyError",
    "SandboxError",
    "TransferError",
    "__version__",
    "export_csv",
    "import_csv",
    "load_config",
    "load_ipython_extension",
    "read_arrow",
    "read_polars",
    "read_sql",
    "redact_config",
    "to_sql",
]

if TYPE_CHECKING:
    from pgmonkey.config import load_config, redact_config
    from pgmonkey.connections.async_ import PGAsyncConnection
    from pgmonkey.connections.async_pool import PGAsyncPoolConnection
    from pgmonkey.connections.normal import PGNormalConnection
    from pgmonkey.connections.pool import PGPoolConnection
    from pgmonkey.errors import (
        ConfigError,
        ConnectionStateError,
        EnvInterpolationError,
        MagicError,
        PgMonkeyError,
        SandboxError,
        TransferError,
    )
    from pgmonkey.frames import read_arrow, read_polars, read_sql, to_sql
    from pgmonkey.manager import PGConnectionManager
    from pgmonkey.transfer import export_csv, import_csv


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pgmonkey' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext pgmonkey``: register the ``%pgmonkey`` / ``%%pgmonkey`` magics."""
    from pgmonkey.magics import load_ipython_extension as _load

    _load(ipython)
