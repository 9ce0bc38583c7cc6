"""4.0 import path of ``ConnectionCodeGenerator``: an adapter over :mod:`pgmonkey.codegen`.

New code calls :func:`pgmonkey.codegen.generate_code`, which returns the script as text.
"""

from __future__ import annotations

import os
import sys

from pgmonkey.codegen import generate_code
from pgmonkey.config import load_config, resolved_connection_type

__all__ = ["ConnectionCodeGenerator"]


class ConnectionCodeGenerator:
    """Prints a runnable example script for a config, as pgmonkey 4.0's class did."""

    def generate_connection_code(
        self,
        config_file_path: str | os.PathLike[str],
        connection_type: str | None = None,
        library: str = "pgmonkey",
        *,
        resolve_env: bool = False,
    ) -> None:
        """Print the script for *connection_type* (default: the config's) through *library*.

        *library* is ``'pgmonkey'`` (PGConnectionManager) or ``'psycopg'`` (psycopg and
        psycopg_pool directly). Only the script is printed, so it can be redirected to a file
        and run. A config that does not load raises ConfigError instead of printing code.
        """
        config = load_config(config_file_path, resolve_env=resolve_env)
        ctype = resolved_connection_type(config, connection_type)
        script = generate_code(config_file_path, ctype, library, resolve_env=resolve_env)
        sys.stdout.write(script)
