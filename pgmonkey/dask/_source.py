"""Where a task's connection comes from, without a secret in the task graph.

A task graph is pickled, shipped to a scheduler and to workers, kept in their memory and
shown on the dashboard: nothing in it may be a password. So a task carries a
:class:`Source`, which is either

- the absolute path of a config file, read on the worker (the file must be reachable there:
  the same path on a shared disk, or the same container image), or
- a config dict whose sensitive values are only references (``${VAR}``, ``from_env``,
  ``from_file``): the names travel, the values are resolved on the worker. A dict holding a
  literal secret is refused on the caller, before any task exists.

On the worker the config goes the one road (``_connect``): loaded, validated, resolved, and a
worker that cannot resolve a reference raises the same ``ConfigError`` a local call gives.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg

from pgmonkey import _connect
from pgmonkey.config import is_sensitive_key, resolve_config
from pgmonkey.errors import ConfigError

# A whole value that is one ${VAR} reference, with no default (a sensitive default is
# refused by the config rules anyway).
_REFERENCE: Final = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}\Z")
_REF_KEYS: Final = frozenset({"from_env", "from_file"})


@dataclass(frozen=True)
class Source:
    """A config as tasks carry it: a path, or a dict without literal secrets."""

    path: str | None = None
    config: Mapping[str, Any] | None = None
    resolve_env: bool = False
    # Host and port to use instead of the config's (a snapshot lives on one server: every
    # task of a consistent read must reach the server that exported it).
    pin: tuple[str, str, str] | None = field(default=None)

    @classmethod
    def of(cls, config: Any, *, resolve_env: bool) -> Source:
        if isinstance(config, str | os.PathLike):
            return cls(path=os.path.abspath(os.fspath(config)), resolve_env=resolve_env)
        if isinstance(config, Mapping):
            # Validated here, so a malformed dict fails on the caller, not on every worker.
            resolve_config(config, resolve_env=False)
            secret = _literal_secret(config, ())
            if secret is not None:
                raise ConfigError(
                    f"config key {secret!r} holds a literal secret, and a Dask task would "
                    "carry it to the scheduler and workers: give it as ${VAR}, from_env or "
                    "from_file (resolved on each worker with resolve_env=True), or pass the "
                    "path of the config file"
                )
            return cls(config=dict(config), resolve_env=resolve_env)
        raise TypeError(
            f"config must be a config path or dict (a Dask task opens its own connection), "
            f"not {type(config).__name__}"
        )

    def pinned(self, conn: psycopg.Connection[Any]) -> Source:
        """This source, held to the server *conn* is connected to."""
        return Source(self.path, self.config, self.resolve_env, _connect.server_of(conn))

    def load(self) -> dict[str, Any]:
        """The validated config (references resolved if asked)."""
        source: Any = self.path if self.path is not None else self.config
        return _connect.config_of(source, resolve_env=self.resolve_env)

    def connect(self) -> psycopg.Connection[Any]:
        """A new connection by the one road (session settings applied), pinned if asked."""
        return _connect.open_config(self.load(), pin=self.pin)


def _literal_secret(value: Any, path: tuple[str, ...]) -> str | None:
    """The key path of the first sensitive value that is not a reference, if any."""
    if isinstance(value, Mapping):
        if len(value) == 1 and set(value) <= _REF_KEYS:
            return None
        for key, item in value.items():
            sub = (*path, str(key))
            if is_sensitive_key(key) and not _is_reference(item):
                return ".".join(sub)
            found = _literal_secret(item, sub)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _literal_secret(item, (*path, f"[{i}]"))
            if found is not None:
                return found
    return None


def _is_reference(value: Any) -> bool:
    if value is None or value == "":
        return True
    if isinstance(value, Mapping):
        return len(value) == 1 and set(value) <= _REF_KEYS
    return isinstance(value, str) and _REFERENCE.match(value) is not None
