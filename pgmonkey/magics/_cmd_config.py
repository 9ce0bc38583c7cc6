"""``config``, ``serverconfig``, ``audit``: a config, redacted, and the server advice for it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._args import ArgumentParser, expander
from ._display import cell_text

if TYPE_CHECKING:
    import pandas as pd

    from ._magic import PgMonkeyMagics


def config_args(
    magics: PgMonkeyMagics, command: str, args: list[str], ns: Mapping[str, Any]
) -> tuple[str, bool]:
    """``[config.yaml] [--resolve-env]``; without a path, the current connection's."""
    p = ArgumentParser(prog=f"%pgmonkey {command}")
    p.add_argument(
        "config",
        nargs="?",
        type=expander(magics.shell, ns),
        help="default: the current connection's config",
    )
    p.add_argument("--resolve-env", action="store_true", help="interpolate ${VAR} references")
    opts = p.parse_args(args)
    if opts.config is not None:
        return os.fspath(Path(opts.config).expanduser()), opts.resolve_env
    entry = magics.entry(None)
    return entry.path, opts.resolve_env or entry.resolve_env


def show_config(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
    path, resolve_env = config_args(magics, "config", args, ns)
    from pgmonkey.config import load_config, redact_config

    cfg = redact_config(load_config(path, resolve_env=resolve_env))
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for key, value in cfg.items():
        if isinstance(value, Mapping):
            rows.extend({"section": key, "key": k, "value": cell_text(v)} for k, v in value.items())
        else:
            rows.append({"section": "", "key": key, "value": cell_text(value)})
    return pd.DataFrame(rows, columns=["section", "key", "value"])


def serverconfig(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
    path, resolve_env = config_args(magics, "serverconfig", args, ns)
    from pgmonkey import serveradvice
    from pgmonkey.config import load_config

    return serveradvice.recommend(load_config(path, resolve_env=resolve_env)).to_frame()


def audit(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
    path, resolve_env = config_args(magics, "audit", args, ns)
    from pgmonkey import serveradvice
    from pgmonkey.config import load_config

    # The audit opens its own short read-only connection as this config's client.
    return serveradvice.audit(load_config(path, resolve_env=resolve_env)).to_frame()
