"""The configs the sandbox writes and its state file, ``sandbox.json``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, Final

from ._certs import _write_private
from ._model import (
    _CONFIG_HEADER,
    _POOL_SETTINGS,
    _STATE_FILE,
    CERT_USER,
    DBNAME,
    HOST,
    SUPERUSER,
    Node,
    Sandbox,
)


def _config(port: int | str, settings: dict[str, Any], host: str = HOST) -> dict[str, Any]:
    return {
        "connection_type": "normal",
        "connection_settings": {
            "host": host,
            "port": str(port),
            "dbname": DBNAME,
            **settings,
            "connect_timeout": "5",
            "application_name": "pgmonkey-sandbox",
        },
        "pool_settings": dict(_POOL_SETTINGS),
        "async_settings": {"statement_timeout": "30000", "lock_timeout": "10000"},
        "async_pool_settings": dict(_POOL_SETTINGS),
    }


def _configs(dir: Path, port: int, password: str) -> dict[str, dict[str, Any]]:
    def config(settings: dict[str, str]) -> dict[str, Any]:
        return _config(port, settings)

    ca = str(dir / "ca.crt")
    return {
        "password": config({"user": SUPERUSER, "password": password, "sslmode": "disable"}),
        "ssl": config(
            {
                "user": SUPERUSER,
                "password": password,
                "sslmode": "verify-full",
                "sslrootcert": ca,
            }
        ),
        "cert": config(
            {
                "user": CERT_USER,
                "sslmode": "verify-full",
                "sslrootcert": ca,
                "sslcert": str(dir / "client.crt"),
                "sslkey": str(dir / "client.key"),
            }
        ),
    }


_SCALE_OUT_NOTES: Final = {
    "multihost": "every node; libpq picks the one that accepts writes, so a pool follows a "
    "failover (check_on_checkout drops connections to a node that went away)",
    "readonly": "every node; reads go to a standby when one is up (prefer-standby)",
    "pgbouncer": "through PgBouncer in transaction pool mode. prepare_threshold: null, as "
    "PgBouncer before 1.21 cannot keep server-side prepared statements; no session settings, "
    "as a SET would leak to other clients sharing the server connection",
}


def _scale_out_configs(port: int, password: str, state: dict[str, Any]) -> dict[str, Any]:
    """Configs for the standbys, multi-host use and PgBouncer recorded in *state*."""
    login = {"user": SUPERUSER, "password": password, "sslmode": "disable"}
    configs: dict[str, Any] = {}
    standbys = [int(s["port"]) for s in state.get("standbys") or ()]
    for i, standby_port in enumerate(standbys, 1):
        configs[f"standby{i}"] = _config(standby_port, dict(login))
    if standbys:
        ports = [port, *standbys]
        hosts = ",".join([HOST] * len(ports))
        joined = ",".join(str(p) for p in ports)
        multi = _config(joined, {**login, "target_session_attrs": "read-write"}, host=hosts)
        for section in ("pool_settings", "async_pool_settings"):
            multi[section]["check_on_checkout"] = True
        configs["multihost"] = multi
        configs["readonly"] = _config(
            joined, {**login, "target_session_attrs": "prefer-standby"}, host=hosts
        )
    bouncer = state.get("pgbouncer")
    if bouncer:
        cfg = _config(int(bouncer["port"]), {**login, "prepare_threshold": None})
        del cfg["async_settings"]
        configs["pgbouncer"] = cfg
    return configs


def _write_configs(
    dir: Path, port: int, password: str, state: dict[str, Any] | None = None
) -> dict[str, Path]:
    import yaml

    paths: dict[str, Path] = {}
    configs = {**_configs(dir, port, password), **_scale_out_configs(port, password, state or {})}
    for kind, cfg in configs.items():
        path = dir / f"{kind}.yaml"
        what = (
            f"{kind} authentication"
            if kind in ("password", "ssl", "cert")
            else _SCALE_OUT_NOTES.get(kind, f"the {kind} node alone, read-only")
        )
        lines = textwrap.wrap(f"{what}.", 88 - len(_CONFIG_HEADER))
        header = _CONFIG_HEADER + "\n# ".join(lines) + "\n# Written by `pgmonkey sandbox start`.\n"
        text = header + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)
        _write_private(path, text.encode())
        paths[kind] = path
    return paths


def _config_paths(dir: Path, state: dict[str, Any] | None = None) -> dict[str, Path]:
    kinds = ["password", "ssl", "cert"]
    state = state or {}
    standbys = len(state.get("standbys") or ())
    kinds += [f"standby{i}" for i in range(1, standbys + 1)]
    if standbys:
        kinds += ["multihost", "readonly"]
    if state.get("pgbouncer"):
        kinds.append("pgbouncer")
    return {kind: dir / f"{kind}.yaml" for kind in kinds}


def _read_state(dir: Path) -> dict[str, Any] | None:
    """The state in sandbox.json; None when there is none or it is unreadable."""
    try:
        state = json.loads((dir / _STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("server_dir"), str):
        return None
    return state


def _write_state(dir: Path, state: dict[str, Any]) -> None:
    _write_private(dir / _STATE_FILE, json.dumps(state, indent=2).encode())


def _sandbox_from_state(dir: Path, state: dict[str, Any]) -> Sandbox:
    standbys = tuple(
        Node(str(s["name"]), int(s["port"]), int(s["pid"] or 0))
        for s in state.get("standbys") or ()
    )
    b = state.get("pgbouncer")
    return Sandbox(
        dir=dir,
        port=int(state["port"]),
        pid=int(state["pid"]),
        server_dir=Path(state["server_dir"]),
        configs=_config_paths(dir, state),
        password=str(state["password"]),
        standbys=standbys,
        pgbouncer=Node("pgbouncer", int(b["port"]), int(b["pid"] or 0)) if b else None,
    )
