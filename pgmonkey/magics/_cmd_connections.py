"""``connect``, ``connections``, ``use``, ``disconnect``: the named connections of a notebook."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgmonkey.config import ASYNC_CONNECTION_TYPES, CONNECTION_TYPES
from pgmonkey.errors import MagicError

from ._args import ArgumentParser, expander
from ._display import describe_connection, describe_connection_async

if TYPE_CHECKING:
    import pandas as pd

    from ._magic import PgMonkeyMagics


@dataclass
class Entry:
    """A named connection of the notebook (the manager owns the object)."""

    name: str
    ctype: str
    path: str
    resolve_env: bool
    obj: Any
    host: str = ""
    port: str = ""
    dbname: str = ""
    user: str = ""
    ssl: str = ""

    @property
    def is_async(self) -> bool:
        return self.ctype in ASYNC_CONNECTION_TYPES


def config_type(path: str, resolve_env: bool) -> str:
    from pgmonkey.config import load_config, resolved_connection_type

    return resolved_connection_type(load_config(path, resolve_env=resolve_env))


def connect(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> None:
    p = ArgumentParser(prog="%pgmonkey connect", add_help=True)
    expand = expander(magics.shell, ns)
    p.add_argument("config", type=expand, help="pgmonkey YAML config")
    p.add_argument("type", nargs="?", type=expand, choices=CONNECTION_TYPES, help="connection type")
    p.add_argument(
        "--name", type=expand, help="name of the connection (default: config stem[-type])"
    )
    p.add_argument("--resolve-env", action="store_true", help="interpolate ${VAR} references")
    opts = p.parse_args(args)
    path = os.fspath(Path(opts.config).expanduser())
    manager = magics.get_manager()
    kwargs = {"resolve_env": opts.resolve_env}
    ctype = opts.type or config_type(path, opts.resolve_env)
    if ctype in ASYNC_CONNECTION_TYPES:

        async def open_async() -> Any:
            return await manager.get_database_connection(path, ctype, **kwargs)

        obj = magics.loop.run(open_async())
    else:
        obj = manager.get_database_connection(path, ctype, **kwargs)
    name = opts.name or (Path(path).stem + (f"-{opts.type}" if opts.type else ""))
    entry = Entry(name=name, ctype=ctype, path=path, resolve_env=opts.resolve_env, obj=obj)
    info = magics.using(entry, describe_connection, describe_connection_async)
    for key, value in info.items():
        setattr(entry, key, value)
    old = magics.registry.get(name)
    if old is not None and old.obj is not obj:
        magics.disconnect_entry(old)
    magics.registry[name] = entry
    magics.current = name
    if magics.feedback:
        print(
            f"connected {entry.name!r} ({entry.ctype}): {entry.user}@{entry.host}:{entry.port}"
            f"/{entry.dbname}, ssl {entry.ssl}"
        )


def connections(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> pd.DataFrame:
    ArgumentParser(prog="%pgmonkey connections").parse_args(args)
    import pandas as pd

    rows = [
        {
            "name": e.name,
            "type": e.ctype,
            "host": e.host,
            "port": e.port,
            "dbname": e.dbname,
            "user": e.user,
            "ssl": e.ssl,
            "config": e.path,
            "current": e.name == magics.current,
        }
        for e in magics.registry.values()
    ]
    columns = ["name", "type", "host", "port", "dbname", "user", "ssl", "config", "current"]
    return pd.DataFrame(rows, columns=columns)


def use(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> None:
    p = ArgumentParser(prog="%pgmonkey use")
    p.add_argument("name", type=expander(magics.shell, ns))
    opts = p.parse_args(args)
    magics.current = magics.entry(opts.name).name
    if magics.feedback:
        print(f"using {magics.current!r}")


def disconnect(magics: PgMonkeyMagics, args: list[str], ns: Mapping[str, Any]) -> None:
    p = ArgumentParser(prog="%pgmonkey disconnect")
    p.add_argument("name", nargs="?", type=expander(magics.shell, ns))
    p.add_argument("--all", action="store_true", help="disconnect every connection")
    opts = p.parse_args(args)
    if opts.all and opts.name:
        raise MagicError("%pgmonkey disconnect: give a NAME or --all, not both")
    entries = list(magics.registry.values()) if opts.all else [magics.entry(opts.name)]
    for entry in entries:
        magics.disconnect_entry(entry)
        if magics.feedback:
            print(f"disconnected {entry.name!r}")
