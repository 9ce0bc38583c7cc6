"""The public surface: exactly the intended names, all importable, and a light import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pgmonkey

INTENDED = {
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
}


def test_all_is_exactly_the_intended_names() -> None:
    assert set(pgmonkey.__all__) == INTENDED
    assert pgmonkey.__all__ == sorted(pgmonkey.__all__)


def test_every_exported_name_resolves() -> None:
    for name in pgmonkey.__all__:
        assert getattr(pgmonkey, name) is not None, name


def test_lazy_subpackages_resolve_every_name() -> None:
    # pgmonkey.transfer and pgmonkey.cli load their names on first use (module __getattr__).
    import pgmonkey.cli
    import pgmonkey.transfer

    for module in (pgmonkey.transfer, pgmonkey.cli):
        assert module.__all__ == sorted(module.__all__), module.__name__
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"
        assert set(module.__all__) <= set(dir(module)), module.__name__
        with pytest.raises(AttributeError, match="no_such_name"):
            _ = module.no_such_name


def test_4_0_import_paths() -> None:
    from pgmonkey.common.utils.configutils import load_config, normalize_config
    from pgmonkey.common.utils.redaction import redact_config
    from pgmonkey.connections.postgres.async_connection import PGAsyncConnection
    from pgmonkey.connections.postgres.async_pool_connection import PGAsyncPoolConnection
    from pgmonkey.connections.postgres.normal_connection import PGNormalConnection
    from pgmonkey.connections.postgres.pool_connection import PGPoolConnection
    from pgmonkey.managers.pgconnection_manager import PGConnectionManager
    from pgmonkey.serversettings.postgres_server_config_generator import (
        PostgresServerConfigGenerator,
    )
    from pgmonkey.serversettings.postgres_server_settings_inspector import (
        PostgresServerSettingsInspector,
    )
    from pgmonkey.tools.connection_code_generator import ConnectionCodeGenerator

    assert redact_config is pgmonkey.redact_config
    assert PGNormalConnection is pgmonkey.PGNormalConnection
    assert PGPoolConnection is pgmonkey.PGPoolConnection
    assert PGAsyncConnection is pgmonkey.PGAsyncConnection
    assert PGAsyncPoolConnection is pgmonkey.PGAsyncPoolConnection
    assert PGConnectionManager is pgmonkey.PGConnectionManager
    assert load_config is pgmonkey.load_config
    assert callable(normalize_config)
    assert callable(ConnectionCodeGenerator().generate_connection_code)
    assert callable(PostgresServerConfigGenerator.print_configurations)
    assert callable(PostgresServerSettingsInspector.get_current_settings)


def test_errors_share_one_base() -> None:
    for name in (
        "ConfigError",
        "ConnectionStateError",
        "EnvInterpolationError",
        "SandboxError",
        "TransferError",
    ):
        assert issubclass(getattr(pgmonkey, name), pgmonkey.PgMonkeyError)
    assert issubclass(pgmonkey.ConfigError, ValueError)
    assert issubclass(pgmonkey.EnvInterpolationError, pgmonkey.ConfigError)


def test_import_is_light() -> None:
    code = (
        "import sys, pgmonkey\n"
        "from pgmonkey import PGConnectionManager, load_config, redact_config\n"
        "heavy = [m for m in ('pandas', 'IPython', 'numpy', 'pyarrow', 'polars')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert res.stdout.strip() == ""
