"""A throwaway PostgreSQL cluster for newcomers, notebooks and the test suite (SPEC S0).

``start()`` runs ``initdb`` and ``pg_ctl`` from the PostgreSQL binaries on the machine and
writes ready pgmonkey configs into DIR::

    DIR/password.yaml   scram-sha-256 over TCP, sslmode disable
    DIR/ssl.yaml        scram-sha-256, sslmode verify-full against the sandbox's own CA
    DIR/cert.yaml       client certificate (role pgmonkey_cert), verify-full, no password
    DIR/ca.crt, DIR/client.crt, DIR/client.key (0600)
    DIR/sandbox.json    state: port, pid, server directory (0600, holds the password)

The server side (data directory, server certificate and key, log, socket) lives in
``DIR/server`` when the server's user can enter DIR. As root the server runs as the
``postgres`` user (through ``runuser``), which often cannot (``~root``, or pytest's 0700
temporary folders): then the server side goes to a temporary folder of its own, owned by
``postgres`` and recorded in sandbox.json.

``status()`` reports a running sandbox, ``restart()`` restarts it in place (for fault
tests), ``stop()`` stops it and removes everything it wrote. A sandbox is throwaway:
``fsync`` is off, and a new ``start()`` after ``stop()`` (or after a crash) begins afresh.

Scale-out (SPEC S9): ``start(standbys=N)`` adds N streaming-replication standbys
(``pg_basebackup -R`` from the primary, each on a free port of its own) and
``start(pgbouncer=True)`` a PgBouncer in transaction pool mode in front of the primary.
They get configs of their own::

    DIR/standby1.yaml   the first standby alone (read-only)
    DIR/multihost.yaml  every node, target_session_attrs read-write: follows a failover
    DIR/readonly.yaml   every node, target_session_attrs prefer-standby: reads on a standby
    DIR/pgbouncer.yaml  through PgBouncer, prepare_threshold null (needed before 1.21)

``promote()`` and ``stop_node()`` turn a standby into the primary and stop one node, so
failover can be tried (and tested) on one machine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import grp
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pgmonkey.errors import SandboxError

__all__ = [
    "DEFAULT_DIR",
    "Node",
    "Sandbox",
    "default_dir",
    "find_bindir",
    "find_pgbouncer",
    "promote",
    "restart",
    "start",
    "status",
    "stop",
    "stop_node",
]

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


# --- binaries ---------------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)


def _candidate_bindirs() -> Iterator[Path]:
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                yield Path(out)
    yield from sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        yield Path(initdb).resolve().parent
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry:
            yield Path(entry)


def _has_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _BINARIES)


def find_bindir(candidates: Sequence[str | os.PathLike[str]] | None = None) -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Looks in *candidates* if given, else in ``$PGMONKEY_PG_BINDIR`` if set, else in
    ``pg_config --bindir``, ``/usr/lib/postgresql/*/bin`` (highest version first) and PATH.
    Raises :class:`SandboxError` with an install hint when none has them.
    """
    if candidates is not None:
        search: Iterator[Path] = (Path(c) for c in candidates)
    elif os.environ.get(BINDIR_ENV):
        search = iter([Path(os.environ[BINDIR_ENV])])
    else:
        search = _candidate_bindirs()
    for bindir in search:
        if _has_binaries(bindir):
            return bindir
    raise SandboxError(INSTALL_HINT)


# --- running commands, as the postgres user when we are root --------------------------------


def _as_root() -> bool:
    return os.geteuid() == 0


def _server_account() -> pwd.struct_passwd | None:
    """The account the server runs as when it is not us (we are root), else None."""
    if not _as_root():
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise SandboxError(
            f"running as root, but there is no {SERVER_USER!r} user to run the server as: "
            "install the postgresql package or run pgmonkey as an ordinary user"
        ) from None


def _clean_env() -> dict[str, str]:
    # PGDATA, PGPORT, PGHOST... from the caller's shell must not steer initdb or pg_ctl.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _run(cmd: Sequence[str | os.PathLike[str]], *, cwd: Path, timeout: float) -> None:
    argv = [os.fspath(c) for c in cmd]
    name = Path(argv[0]).name
    if _server_account() is not None:
        runuser = shutil.which("runuser")
        if runuser is None:
            raise SandboxError(
                f"running as root needs `runuser` to drop to the {SERVER_USER!r} user"
            )
        argv = [runuser, "-u", SERVER_USER, "--", *argv]
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SandboxError(f"{name} did not finish in {timeout:g} s") from None
    if proc.returncode != 0:
        detail = _last_lines(proc.stderr or proc.stdout)
        raise SandboxError(f"{name} failed with exit code {proc.returncode}: {detail}")


def _last_lines(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) or "no output"


def _give_to_server(path: Path) -> None:
    account = _server_account()
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)


# --- certificates ------------------------------------------------------------------------


def _write_private(path: Path, data: bytes, *, server: bool = False) -> None:
    """Write *data* to *path* with mode 0600 from the start (keys, passwords)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if server:
        _give_to_server(path)


def _make_certificates(client_dir: Path, server_dir: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(days=1), now + dt.timedelta(days=825)

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pgmonkey sandbox"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("pgmonkey sandbox CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        cn: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName] | None
    ) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), pem_key(key)

    server_crt, server_key = leaf(
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
    )
    client_crt, client_key = leaf(CERT_USER, ExtendedKeyUsageOID.CLIENT_AUTH, None)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)

    # The CA's private key is not kept: nothing else is ever signed with it.
    for path, data in ((server_dir / "ca.crt", ca_pem), (server_dir / "server.crt", server_crt)):
        path.write_bytes(data)
        _give_to_server(path)
    _write_private(server_dir / "server.key", server_key, server=True)
    (client_dir / "ca.crt").write_bytes(ca_pem)
    (client_dir / "client.crt").write_bytes(client_crt)
    _write_private(client_dir / "client.key", client_key)


# --- configs and state ---------------------------------------------------------------------


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


# --- process state -------------------------------------------------------------------------


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        return int(first)
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (a child of ours not yet reaped) is not a running server.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _running(state: dict[str, Any]) -> bool:
    pid, port, password = state.get("pid"), state.get("port"), state.get("password")
    if not (isinstance(pid, int) and isinstance(port, int) and isinstance(password, str)):
        return False
    return _postmaster_pid(Path(state["server_dir"]) / "data") == pid and _alive(pid)


@contextlib.contextmanager
def _locked(dir: Path) -> Iterator[None]:
    """Serialize start/stop on one DIR across processes."""
    with open(dir / _LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


# --- start / status / stop ------------------------------------------------------------------


def status(dir: str | os.PathLike[str] | None = None) -> Sandbox | None:
    """The sandbox running in *dir* (default: :func:`default_dir`), or None."""
    path = _resolve_dir(dir)
    state = _read_state(path)
    if state is None or not _running(state):
        return None
    return _sandbox_from_state(path, state)


def start(
    dir: str | os.PathLike[str] | None = None,
    port: int | None = None,
    *,
    bindir: str | os.PathLike[str] | None = None,
    standbys: int = 0,
    pgbouncer: bool = False,
) -> Sandbox:
    """Start a sandbox in *dir*, or return the one already running there.

    *port* defaults to a free port on 127.0.0.1. *bindir* overrides where the PostgreSQL
    binaries are taken from (see :func:`find_bindir`).

    *standbys*: at least this many streaming-replication standbys run next to the primary
    (a running sandbox with fewer gets more). *pgbouncer*: a PgBouncer in transaction pool
    mode runs in front of the primary (:func:`find_pgbouncer` must find the binary).
    """
    path = _resolve_dir(dir)
    if port is not None and not 0 < port < 65536:
        raise SandboxError(f"invalid port {port!r}: expected 1..65535")
    if isinstance(standbys, bool) or not isinstance(standbys, int) or not 0 <= standbys <= 9:
        raise SandboxError(f"invalid number of standbys {standbys!r}: expected 0..9")
    binaries = find_bindir([bindir] if bindir is not None else None)
    bouncer = find_pgbouncer() if pgbouncer else None
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(path):
        state = _read_state(path)
        if state is not None and _running(state):
            if port is not None and port != state["port"]:
                raise SandboxError(
                    f"the sandbox in {str(path)!r} already runs on port {state['port']}: "
                    "stop it first to use another port"
                )
            running = _sandbox_from_state(path, state)
            if len(running.standbys) < standbys or (bouncer and running.pgbouncer is None):
                _scale_out(path, state, standbys, bouncer)
            elif not all(p.exists() for p in running.configs.values()):
                _write_configs(path, running.port, running.password, state)
            return _sandbox_from_state(path, state)
        if state is not None:
            _cleanup(path, state)  # stale: the machine rebooted or the server died
        if port is not None:
            if not _port_in_use(port):
                with contextlib.suppress(_PortTaken):
                    return _create(path, binaries, port, standbys=standbys, pgbouncer=bouncer)
            raise SandboxError(f"port {port} on {HOST} is already in use")
        # Another process may take the port picked here before the server binds it: retry.
        for _ in range(3):
            with contextlib.suppress(_PortTaken):
                return _create(path, binaries, _free_port(), standbys=standbys, pgbouncer=bouncer)
        raise SandboxError(f"could not find a free port on {HOST}")


class _PortTaken(Exception):
    pass


def _reachable(path: Path, account: pwd.struct_passwd) -> bool:
    """Whether *account* may enter *path* (search permission on it and every parent)."""
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if account.pw_name in g.gr_mem}
    for part in (path, *path.parents):
        try:
            st = part.stat()
        except OSError:
            return False
        if st.st_uid == account.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def _make_server_dir(dir: Path) -> Path:
    account = _server_account()
    if account is None or _reachable(dir, account):
        server_dir = dir / "server"
        if server_dir.exists():
            shutil.rmtree(server_dir)
        server_dir.mkdir(mode=0o700)
        _give_to_server(server_dir)
        return server_dir
    # The postgres user cannot enter DIR (e.g. ~root, or pytest's 0700 root tmp folders):
    # the server side goes to a folder of its own, recorded in sandbox.json.
    for parent in (tempfile.gettempdir(), "/tmp"):
        if _reachable(Path(parent), account):
            server_dir = Path(tempfile.mkdtemp(prefix="pgmonkey-sandbox-", dir=parent))
            _give_to_server(server_dir)
            return server_dir
    raise SandboxError(
        f"the {SERVER_USER!r} user can enter neither {str(dir)!r} nor the temporary folder"
    )


def _create(
    dir: Path, bindir: Path, port: int, *, standbys: int = 0, pgbouncer: Path | None = None
) -> Sandbox:
    server_dir = _make_server_dir(dir)
    password = secrets.token_urlsafe(24)
    state: dict[str, Any] = {
        "port": port,
        "pid": None,
        "server_dir": str(server_dir),
        "password": password,
        "bindir": str(bindir),
    }
    # Recorded first, so a failure below can still be cleaned up by stop().
    _write_state(dir, state)
    try:
        _make_certificates(dir, server_dir)
        data_dir = server_dir / "data"
        pwfile = server_dir / "pwfile"
        _write_private(pwfile, password.encode() + b"\n", server=True)
        try:
            _run(
                [
                    bindir / "initdb",
                    "-D",
                    data_dir,
                    "-U",
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                cwd=server_dir,
                timeout=120,
            )
        finally:
            pwfile.unlink()
        _configure_server(server_dir, data_dir, port)
        pid = _pg_ctl_start(bindir, server_dir)
        state["pid"] = pid
        _write_state(dir, state)
        sandbox = Sandbox(
            dir=dir,
            port=port,
            pid=pid,
            server_dir=server_dir,
            configs=_write_configs(dir, port, password),
            password=password,
        )
        _bootstrap(sandbox)
        if standbys or pgbouncer:
            _scale_out(dir, state, standbys, pgbouncer)
            return _sandbox_from_state(dir, state)
        return sandbox
    except BaseException:
        _cleanup(dir, state)
        _remove_client_files(dir)
        raise


def _pg_ctl_start(bindir: Path, server_dir: Path) -> int:
    """Start the server in *server_dir*, wait until it is ready, and return its pid."""
    data_dir, log = server_dir / "data", server_dir / "server.log"
    try:
        _run(
            [
                bindir / "pg_ctl",
                "-D",
                data_dir,
                "-l",
                log,
                "-w",
                "-t",
                str(int(_READY_TIMEOUT)),
                "-s",
                "start",
            ],
            cwd=server_dir,
            timeout=_READY_TIMEOUT + 10,
        )
    except SandboxError as e:
        try:
            text = log.read_text(errors="replace")
        except OSError:
            text = ""
        if "could not bind" in text and "already in use" in text:
            raise _PortTaken from None
        raise SandboxError(
            f"the server did not start ({e}); server log: {_log_tail(log)}"
        ) from None
    pid = _postmaster_pid(data_dir)
    if pid is None:
        raise SandboxError(f"the server started but wrote no pid file; log: {_log_tail(log)}")
    return pid


def _configure_server(server_dir: Path, data_dir: Path, port: int) -> None:
    socket_dir = str(server_dir) if len(str(server_dir)) <= _MAX_SOCKET_DIR else ""

    def q(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    settings = {
        "listen_addresses": q(HOST),
        "port": str(port),
        "unix_socket_directories": q(socket_dir),
        "ssl": "on",
        "ssl_cert_file": q(str(server_dir / "server.crt")),
        "ssl_key_file": q(str(server_dir / "server.key")),
        "ssl_ca_file": q(str(server_dir / "ca.crt")),
        "password_encryption": "scram-sha-256",
        # Many pools and 500-task tests run against one sandbox.
        "max_connections": "200",
        "shared_buffers": "32MB",
        # A throwaway cluster: trade durability for speed.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_wal_size": "256MB",
        "log_min_messages": "warning",
        "log_connections": "off",
        "logging_collector": "off",
    }
    conf = "\n# pgmonkey sandbox\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    with open(data_dir / "postgresql.conf", "a") as f:
        f.write(conf)
    hba = (
        "# pgmonkey sandbox\n"
        "# TYPE   DATABASE USER          ADDRESS       METHOD\n"
        "local    all      all                         scram-sha-256\n"
        f"hostssl  all      {CERT_USER} 127.0.0.1/32  cert\n"
        f"hostssl  all      {CERT_USER} ::1/128       cert\n"
        "host     all      all           127.0.0.1/32  scram-sha-256\n"
        "host     all      all           ::1/128       scram-sha-256\n"
        # pg_basebackup, for streaming-replication standbys.
        "host     replication all        127.0.0.1/32  scram-sha-256\n"
        "host     replication all        ::1/128       scram-sha-256\n"
    )
    (data_dir / "pg_hba.conf").write_text(hba)


def _bootstrap(sandbox: Sandbox) -> None:
    """Create the database and the certificate role, waiting for the server to accept us."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    admin = make_conninfo(sandbox.superuser_conninfo, dbname="postgres")
    deadline = time.monotonic() + _READY_TIMEOUT
    while True:
        try:
            conn = psycopg.connect(admin, autocommit=True)
            break
        except psycopg.OperationalError as e:
            if time.monotonic() > deadline:
                raise SandboxError(f"the sandbox server does not accept connections: {e}") from None
            time.sleep(0.1)
    with conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(DBNAME), sql.Identifier(SUPERUSER)
            )
        )
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(CERT_USER)))
    with psycopg.connect(sandbox.superuser_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("GRANT CREATE, USAGE ON SCHEMA public TO {}").format(sql.Identifier(CERT_USER))
        )


def _log_tail(log: Path) -> str:
    try:
        return _last_lines(log.read_text(errors="replace"))
    except OSError:
        return "no log"


def restart(dir: str | os.PathLike[str] | None = None) -> Sandbox:
    """Restart the running sandbox in *dir* (fast shutdown), keeping its data, port and configs.

    Existing connections break, as in a real server restart; for fault-injection tests.
    """
    path = _resolve_dir(dir)
    if not path.is_dir():
        raise SandboxError(f"no sandbox is running in {str(path)!r}")
    with _locked(path):
        state = _read_state(path)
        if state is None or not _running(state):
            raise SandboxError(f"no sandbox is running in {str(path)!r}")
        server_dir = Path(state["server_dir"])
        bindir = find_bindir([state["bindir"]])
        _shutdown(state, server_dir / "data", int(state["pid"]))
        try:
            state["pid"] = _pg_ctl_start(bindir, server_dir)
        except _PortTaken:
            raise SandboxError(
                f"port {state['port']} was taken while the sandbox restarted"
            ) from None
        _write_state(path, state)
        return _sandbox_from_state(path, state)


def stop(dir: str | os.PathLike[str] | None = None) -> bool:
    """Stop the sandbox in *dir* and remove its data; True if any of its processes ran.

    The configs and certificates in *dir* are removed too (they point at a server that is
    gone); *dir* itself is removed when nothing else is left in it.
    """
    path = _resolve_dir(dir)
    if not path.is_dir():
        return False
    with _locked(path):
        state = _read_state(path)
        was_running = state is not None and (_running(state) or _any_node_alive(state))
        if state is not None:
            _cleanup(path, state)
        _remove_client_files(path)
    with contextlib.suppress(OSError):
        (path / _LOCK_FILE).unlink()
        path.rmdir()
    return was_running


def _any_node_alive(state: dict[str, Any]) -> bool:
    """Whether a standby or PgBouncer of *state* still runs (e.g. after its primary stopped)."""
    if not isinstance(state.get("server_dir"), str):
        return False
    server_dir = Path(state["server_dir"])
    pids = [
        _postmaster_pid(server_dir / str(s["name"]) / "data") for s in state.get("standbys") or ()
    ]
    pids.append(_pgbouncer_pid(server_dir / "pgbouncer"))
    return any(pid is not None and _alive(pid) for pid in pids)


def _remove_client_files(dir: Path) -> None:
    for name in _CLIENT_FILES:
        with contextlib.suppress(FileNotFoundError):
            (dir / name).unlink()
    # Scale-out configs: only the ones the sandbox wrote (they start with its header).
    for path in [*dir.glob("standby*.yaml"), *(dir / n for n in _EXTRA_CONFIGS)]:
        with contextlib.suppress(OSError):
            with open(path, "rb") as f:
                ours = f.read(len(_CONFIG_HEADER)) == _CONFIG_HEADER.encode()
            if ours:
                path.unlink()


def _cleanup(dir: Path, state: dict[str, Any]) -> None:
    """Stop the servers recorded in *state* (if they run) and remove the server directory."""
    server_dir = Path(state["server_dir"]) if state.get("server_dir") else None
    if server_dir is not None:
        _stop_pgbouncer(server_dir)
        for standby in state.get("standbys") or ():
            node_dir = server_dir / str(standby["name"])
            pid = _postmaster_pid(node_dir / "data")
            if pid is not None and _alive(pid):
                _shutdown(state, node_dir / "data", pid)
        data_dir = server_dir / "data"
        pid = _postmaster_pid(data_dir)
        if pid is not None and _alive(pid):
            _shutdown(state, data_dir, pid)
        if server_dir.exists():
            shutil.rmtree(server_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (dir / _STATE_FILE).unlink()


def _shutdown(state: dict[str, Any], data_dir: Path, pid: int) -> None:
    bindir = Path(state["bindir"]) if state.get("bindir") else None
    if bindir is not None and _has_binaries(bindir):
        with contextlib.suppress(SandboxError):
            _run(
                [
                    bindir / "pg_ctl",
                    "-D",
                    data_dir,
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(_STOP_TIMEOUT)),
                    "-s",
                    "stop",
                ],
                cwd=data_dir.parent,
                timeout=_STOP_TIMEOUT + 10,
            )
    # pg_ctl missing or failed: signal the postmaster ourselves (SIGINT = fast shutdown,
    # then SIGQUIT = immediate), never leaving a process behind.
    steps = ((signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0))
    _terminate(pid, steps, "the sandbox server")


# --- scale-out: standbys and PgBouncer (SPEC S9) ----------------------------------------------


def find_pgbouncer(candidates: Sequence[str | os.PathLike[str]] | None = None) -> Path:
    """The pgbouncer binary.

    Looks at *candidates* if given, else at ``$PGMONKEY_PGBOUNCER`` if set, else on PATH and
    in the usual sbin folders (Debian installs it as ``/usr/sbin/pgbouncer``). Raises
    :class:`SandboxError` with an install hint when there is none.
    """
    if candidates is not None:
        search = [Path(c) for c in candidates]
    elif os.environ.get(PGBOUNCER_ENV):
        search = [Path(os.environ[PGBOUNCER_ENV])]
    else:
        found = shutil.which("pgbouncer")
        search = [Path(found)] if found else []
        search += [
            Path(d) / "pgbouncer"
            for d in ("/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/opt/homebrew/bin")
        ]
    for path in search:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise SandboxError(PGBOUNCER_HINT)


def _state_conninfo(state: dict[str, Any], port: int | None = None) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(
        host=HOST,
        port=int(port if port is not None else state["port"]),
        dbname=DBNAME,
        user=SUPERUSER,
        password=str(state["password"]),
        sslmode="disable",
        connect_timeout=5,
    )


def _scale_out(dir: Path, state: dict[str, Any], standbys: int, pgbouncer: Path | None) -> None:
    """Add standbys until there are *standbys*, and PgBouncer if asked and missing."""
    server_dir = Path(state["server_dir"])
    bindir = find_bindir([state["bindir"]])
    have: list[dict[str, Any]] = state.setdefault("standbys", [])
    try:
        while len(have) < standbys:
            try:
                _add_standby(dir, state, bindir, server_dir, len(have) + 1)
            except BaseException:
                _drop_last_standby(dir, state, server_dir)
                raise
        if pgbouncer is not None and not state.get("pgbouncer"):
            try:
                _add_pgbouncer(dir, state, pgbouncer, server_dir)
            except BaseException:
                _stop_pgbouncer(server_dir)
                state.pop("pgbouncer", None)
                _write_state(dir, state)
                raise
    finally:
        _write_configs(dir, int(state["port"]), str(state["password"]), state)


def _drop_last_standby(dir: Path, state: dict[str, Any], server_dir: Path) -> None:
    """Undo a standby that failed half-way: a running sandbox stays as it was."""
    entry = state["standbys"].pop()
    node_dir = server_dir / str(entry["name"])
    pid = _postmaster_pid(node_dir / "data")
    if pid is not None and _alive(pid):
        with contextlib.suppress(SandboxError):
            _shutdown(state, node_dir / "data", pid)
    shutil.rmtree(node_dir, ignore_errors=True)
    _write_state(dir, state)


def _write_passfile(server_dir: Path, password: str) -> Path:
    """A libpq password file for the standbys' replication connections (never argv)."""

    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    path = server_dir / "pgpass"
    _write_private(path, f"*:*:*:{esc(SUPERUSER)}:{esc(password)}\n".encode(), server=True)
    return path


def _add_standby(
    dir: Path, state: dict[str, Any], bindir: Path, server_dir: Path, index: int
) -> None:
    from psycopg.conninfo import make_conninfo

    basebackup = bindir / "pg_basebackup"
    if not os.access(basebackup, os.X_OK):
        raise SandboxError(
            f"pg_basebackup not found in {str(bindir)!r}: it comes with the PostgreSQL server"
        )
    name = f"standby{index}"
    node_dir = server_dir / name
    entry: dict[str, Any] = {"name": name, "port": None, "pid": None}
    state["standbys"].append(entry)
    _write_state(dir, state)  # recorded first: stop() cleans up whatever happens next
    if node_dir.exists():
        shutil.rmtree(node_dir)
    node_dir.mkdir(mode=0o700)
    _give_to_server(node_dir)
    passfile = _write_passfile(server_dir, str(state["password"]))
    # -R writes standby.signal and primary_conninfo (with this application_name and
    # passfile) into the copy: the standby streams from the primary as soon as it starts.
    source = make_conninfo(
        host=HOST,
        port=int(state["port"]),
        user=SUPERUSER,
        passfile=str(passfile),
        sslmode="disable",
        application_name=name,
    )
    _run(
        [
            basebackup,
            *("-D", node_dir / "data", "-R", "-X", "stream", "-c", "fast", "--no-sync"),
            *("-d", source),
        ],
        cwd=node_dir,
        timeout=120,
    )
    conf = node_dir / "data" / "postgresql.conf"
    for _ in range(3):
        port = _free_port()
        with open(conf, "a") as f:
            f.write(f"\n# pgmonkey sandbox: {name}\nport = {port}\ncluster_name = '{name}'\n")
        entry["port"] = port
        _write_state(dir, state)
        with contextlib.suppress(_PortTaken):
            entry["pid"] = _pg_ctl_start(bindir, node_dir)
            break
    else:
        raise SandboxError(f"could not find a free port on {HOST} for {name}")
    _write_state(dir, state)
    _wait_streaming(state, name, node_dir / "server.log")


def _wait_streaming(state: dict[str, Any], name: str, log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + _READY_TIMEOUT
    with psycopg.connect(_state_conninfo(state), autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT state FROM pg_stat_replication WHERE application_name = %s", (name,)
            ).fetchone()
            if row is not None and row[0] == "streaming":
                return
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"{name} did not start streaming in {_READY_TIMEOUT:g} s; "
                    f"its log: {_log_tail(log)}"
                )
            time.sleep(0.1)


def _add_pgbouncer(dir: Path, state: dict[str, Any], binary: Path, server_dir: Path) -> None:
    import psycopg

    bdir = server_dir / "pgbouncer"
    bdir.mkdir(mode=0o700, exist_ok=True)
    _give_to_server(bdir)
    # The SCRAM verifier, not the password: PgBouncer checks the client with it and, as the
    # client proved it knows the password, logs in to the server with the same proof.
    with psycopg.connect(_state_conninfo(state), autocommit=True) as conn:
        row = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (SUPERUSER,)
        ).fetchone()
    if row is None or not str(row[0] or "").startswith("SCRAM-SHA-256$"):
        raise SandboxError(f"the role {SUPERUSER!r} has no SCRAM secret for PgBouncer")
    _write_private(bdir / "userlist.txt", f'"{SUPERUSER}" "{row[0]}"\n'.encode(), server=True)
    entry: dict[str, Any] = {"port": None, "pid": None, "binary": str(binary)}
    state["pgbouncer"] = entry
    for _ in range(3):
        entry["port"] = port = _free_port()
        _write_state(dir, state)
        with contextlib.suppress(_PortTaken):
            entry["pid"] = _pgbouncer_start(binary, bdir, port, int(state["port"]))
            break
    else:
        raise SandboxError(f"could not find a free port on {HOST} for pgbouncer")
    _write_state(dir, state)


def _pgbouncer_start(binary: Path, bdir: Path, port: int, primary_port: int) -> int:
    settings = {
        "listen_addr": HOST,
        "listen_port": str(port),
        "unix_socket_dir": "",  # TCP only
        "auth_type": "scram-sha-256",
        "auth_file": str(bdir / "userlist.txt"),
        "pool_mode": "transaction",
        "default_pool_size": str(_PGBOUNCER_POOL_SIZE),
        "max_client_conn": "500",
        "admin_users": SUPERUSER,
        "ignore_startup_parameters": "extra_float_digits",
        "logfile": str(bdir / "pgbouncer.log"),
        "pidfile": str(bdir / "pgbouncer.pid"),
    }
    ini = (
        "; pgmonkey sandbox: PgBouncer in front of the primary\n"
        f"[databases]\n* = host={HOST} port={primary_port}\n\n[pgbouncer]\n"
        + "".join(f"{k} = {v}\n" for k, v in settings.items())
    )
    (bdir / "pgbouncer.ini").write_text(ini)
    _give_to_server(bdir / "pgbouncer.ini")
    log, pidfile = bdir / "pgbouncer.log", bdir / "pgbouncer.pid"
    for stale in (log, pidfile):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    _run([binary, "-d", bdir / "pgbouncer.ini"], cwd=bdir, timeout=30)
    deadline = time.monotonic() + 15.0
    while True:
        pid = _pgbouncer_pid(bdir)
        if pid is not None and _accepts(port):
            return pid
        text = ""
        with contextlib.suppress(OSError):
            text = log.read_text(errors="replace")
        if "Address already in use" in text:
            _stop_pgbouncer(bdir.parent)
            raise _PortTaken
        if time.monotonic() > deadline or (pid is None and "FATAL" in text):
            _stop_pgbouncer(bdir.parent)
            raise SandboxError(f"pgbouncer did not start; its log: {_log_tail(log)}")
        time.sleep(0.05)


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect((HOST, port))
        except OSError:
            return False
    return True


def _pgbouncer_pid(bdir: Path) -> int | None:
    """The running pgbouncer's pid from its pid file (None if it is not running)."""
    try:
        pid = int((bdir / "pgbouncer.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    if not _alive(pid):
        return None
    with contextlib.suppress(OSError):
        # A pid file left behind by a crash may name a reused pid: check what runs there.
        if Path(f"/proc/{pid}/comm").read_text().strip() != "pgbouncer":
            return None
    return pid


def _stop_pgbouncer(server_dir: Path) -> bool:
    pid = _pgbouncer_pid(server_dir / "pgbouncer")
    if pid is None:
        return False
    # SIGTERM: immediate shutdown (SIGINT would wait for clients to finish).
    _terminate(pid, ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)), "pgbouncer")
    return True


def _terminate(pid: int, steps: Sequence[tuple[signal.Signals, float]], what: str) -> None:
    """Send each signal in turn until *pid* is gone; an error if it survives them all."""
    for sig, wait in steps:
        if not _alive(pid):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    if _alive(pid):
        raise SandboxError(f"{what} (pid {pid}) did not stop")


def _node_data_dir(state: dict[str, Any], node: str) -> Path:
    server_dir = Path(state["server_dir"])
    if node == "primary":
        return server_dir / "data"
    names = [str(s["name"]) for s in state.get("standbys") or ()]
    if node not in names:
        known = ", ".join(["primary", *names, *(["pgbouncer"] if state.get("pgbouncer") else [])])
        raise SandboxError(f"the sandbox has no node {node!r}: expected one of {known}")
    return server_dir / node / "data"


def _state_of(path: Path) -> dict[str, Any]:
    state = _read_state(path) if path.is_dir() else None
    if state is None:
        raise SandboxError(f"no sandbox in {str(path)!r}")
    return state


def promote(dir: str | os.PathLike[str] | None = None, standby: int | str = 1) -> Node:
    """Promote a standby (its number, or a name such as 'standby1') to a primary.

    For failover tests: stop the primary with :func:`stop_node`, then promote. Waits until
    the standby accepts writes; the other standbys keep following the old primary.
    """
    path = _resolve_dir(dir)
    name = f"standby{standby}" if isinstance(standby, int) else standby
    with _locked(path):
        state = _state_of(path)
        data_dir = _node_data_dir(state, name)
        if name == "primary":
            raise SandboxError("the primary is a primary already: promote a standby")
        pid = _postmaster_pid(data_dir)
        if pid is None or not _alive(pid):
            raise SandboxError(f"{name} is not running")
        bindir = find_bindir([state["bindir"]])
        _run(
            [bindir / "pg_ctl", "-D", data_dir, "-w", "-t", str(int(_READY_TIMEOUT)), "promote"],
            cwd=data_dir.parent,
            timeout=_READY_TIMEOUT + 10,
        )
        entry = next(s for s in state["standbys"] if s["name"] == name)
        entry["promoted"] = True
        _write_state(path, state)
        return Node(name, int(entry["port"]), pid)


def stop_node(dir: str | os.PathLike[str] | None = None, node: str = "primary") -> bool:
    """Stop one process of the sandbox: 'primary', 'standby1', ... or 'pgbouncer'.

    The rest keeps running (a stopped primary is how failover starts). True if it was
    running. ``stop()`` still stops and removes everything; ``status()`` reports a sandbox
    only while its primary runs.
    """
    path = _resolve_dir(dir)
    with _locked(path):
        state = _state_of(path)
        if node == "pgbouncer":
            if not state.get("pgbouncer"):
                raise SandboxError("the sandbox has no pgbouncer")
            return _stop_pgbouncer(Path(state["server_dir"]))
        data_dir = _node_data_dir(state, node)
        pid = _postmaster_pid(data_dir)
        if pid is None or not _alive(pid):
            return False
        _shutdown(state, data_dir, pid)
        return True
