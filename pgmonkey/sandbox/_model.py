"""The sandbox's vocabulary: constants, ``Node`` and ``Sandbox``, where its folder is."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pgmonkey.errors import SandboxError

DEFAULT_DIR: Final = Path("~/.pgmonkey/sandbox")


HOST: Final = "127.0.0.1"


DBNAME: Final = "pgmonkey"


SUPERUSER: Final = "pgmonkey"


CERT_USER: Final = "pgmonkey_cert"


SERVER_USER: Final = "postgres"  # the OS user the server runs as when we are root


#: Environment variable naming the one directory to take PostgreSQL binaries from.
BINDIR_ENV: Final = "PGMONKEY_PG_BINDIR"


DIR_ENV: Final = "PGMONKEY_SANDBOX_DIR"


#: Environment variable naming the pgbouncer binary to use.
PGBOUNCER_ENV: Final = "PGMONKEY_PGBOUNCER"


PGBOUNCER_HINT: Final = (
    "pgbouncer not found: install it (e.g. `apt-get install pgbouncer` on Debian/Ubuntu, "
    "`dnf install pgbouncer` on Fedora, `brew install pgbouncer` on macOS) or set "
    + PGBOUNCER_ENV
    + " to the binary"
)


INSTALL_HINT: Final = (
    "postgresql server binaries (initdb, pg_ctl, postgres) not found: install them "
    "(e.g. `apt-get install postgresql` on Debian/Ubuntu, `dnf install postgresql-server` "
    "on Fedora, `brew install postgresql` on macOS) or set " + BINDIR_ENV + " to their directory"
)


_BINARIES: Final = ("initdb", "pg_ctl", "postgres")


_STATE_FILE: Final = "sandbox.json"


_LOCK_FILE: Final = ".sandbox.lock"


_CLIENT_FILES: Final = (
    "password.yaml",
    "ssl.yaml",
    "cert.yaml",
    "ca.crt",
    "client.crt",
    "client.key",
    _STATE_FILE,
)


_READY_TIMEOUT: Final = 30.0


_STOP_TIMEOUT: Final = 30.0


# Small pools: many tests and notebooks share one sandbox (max_connections 200).
_POOL_SETTINGS: Final = {
    "min_size": 1,
    "max_size": 5,
    "timeout": 10,
    "max_idle": 300,
    "max_lifetime": 3600,
    "check_on_checkout": False,
}


# Few server connections for many clients: PgBouncer's multiplexing, visible in a sandbox.
_PGBOUNCER_POOL_SIZE: Final = 4


_EXTRA_CONFIGS: Final = ("multihost.yaml", "readonly.yaml", "pgbouncer.yaml")


_CONFIG_HEADER: Final = "# pgmonkey sandbox: "


# sun_path is 108 bytes on Linux (104 on macOS); leave room for "/.s.PGSQL.65535".
_MAX_SOCKET_DIR: Final = 85


@dataclass(frozen=True)
class Node:
    """A process of the sandbox besides the primary: a standby or PgBouncer."""

    name: str  # 'standby1', 'standby2', ... or 'pgbouncer'
    port: int
    pid: int
    host: str = HOST


@dataclass(frozen=True)
class Sandbox:
    """A running sandbox cluster: where it listens and where its configs are."""

    dir: Path
    port: int
    pid: int
    server_dir: Path
    configs: dict[str, Path]
    password: str = field(repr=False)  # the superuser's: never shown
    host: str = HOST
    dbname: str = DBNAME
    user: str = SUPERUSER
    cert_user: str = CERT_USER
    standbys: tuple[Node, ...] = ()
    pgbouncer: Node | None = None

    def node_conninfo(self, node: str) -> str:
        """Superuser conninfo for one node: 'primary', 'standby1', ... or 'pgbouncer'."""
        from psycopg.conninfo import make_conninfo

        if node == "primary":
            return self.superuser_conninfo
        for n in (*self.standbys, *([self.pgbouncer] if self.pgbouncer else [])):
            if n.name == node:
                return make_conninfo(self.superuser_conninfo, port=n.port)
        raise SandboxError(f"the sandbox has no node {node!r}")

    @property
    def superuser_conninfo(self) -> str:
        """Conninfo for the superuser over password auth (holds the password)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password,
            sslmode="disable",
            connect_timeout=5,
        )

    def describe(self) -> str:
        """A short human summary for the CLI: no secrets."""
        lines = [
            f"sandbox running on {self.host}:{self.port} (pid {self.pid})",
            f"  database: {self.dbname}  superuser: {self.user}  certificate role: "
            f"{self.cert_user}",
            f"  directory: {self.dir}",
            f"  server data and log: {self.server_dir} (server.log)",
        ]
        lines += [
            f"  {n.name}: streaming replica on {n.host}:{n.port} (pid {n.pid})"
            for n in self.standbys
        ]
        if self.pgbouncer is not None:
            b = self.pgbouncer
            lines.append(
                f"  pgbouncer: transaction pool mode on {b.host}:{b.port} (pid {b.pid}), "
                "in front of the primary"
            )
        lines += [f"  {name} config: {path}" for name, path in self.configs.items()]
        lines.append(f"  try: pgmonkey pgconfig test --connconfig {self.configs['password']}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def default_dir() -> Path:
    """``$PGMONKEY_SANDBOX_DIR``, else ``~/.pgmonkey/sandbox``."""
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR).expanduser()


def _resolve_dir(dir: str | os.PathLike[str] | None) -> Path:
    return (Path(dir).expanduser() if dir is not None else default_dir()).absolute()
