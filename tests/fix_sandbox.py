"""Session fixtures over one sandbox PostgreSQL (see ``pgmonkey.sandbox``).

The session's sandbox directory is chosen when pytest starts and exported as
``PGMONKEY_SANDBOX_DIR``, so notebooks (nbval kernels) and subprocesses that call
``pgmonkey.sandbox.start()`` reuse the very server the fixtures use. Whoever starts it, it
is stopped when the session ends, even after failures.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgmonkey import sandbox as sb
from pgmonkey.errors import SandboxError

AUTH_KINDS = ("password", "ssl", "cert")

_DIR_KEY = pytest.StashKey[Path]()
_OLD_ENV_KEY = pytest.StashKey["str | None"]()
_OLD_SIGTERM_KEY = pytest.StashKey[object]()


def pytest_configure(config: pytest.Config) -> None:
    # Short path in the temp dir: the server's socket path must stay under ~100 bytes.
    path = Path(tempfile.mkdtemp(prefix="pgmonkey-test-"))
    config.stash[_DIR_KEY] = path
    config.stash[_OLD_ENV_KEY] = os.environ.get(sb.DIR_ENV)
    os.environ[sb.DIR_ENV] = str(path)
    # SIGTERM (a CI runner's timeout, `kill`) ends the session as Ctrl-C does, through
    # pytest_unconfigure below, so the sandbox cluster does not outlive the run. Only where
    # nobody handles SIGTERM already.
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        config.stash[_OLD_SIGTERM_KEY] = signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_unconfigure(config: pytest.Config) -> None:
    path = config.stash.get(_DIR_KEY, None)
    if path is None:
        return
    ours = config.stash.get(_OLD_SIGTERM_KEY, None) is not None
    if ours:  # a second SIGTERM must not cut the stop short (its own waits are bounded)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        sb.stop(path)
    finally:
        if ours:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        shutil.rmtree(path, ignore_errors=True)
        old = config.stash.get(_OLD_ENV_KEY, None)
        if old is None:
            os.environ.pop(sb.DIR_ENV, None)
        else:
            os.environ[sb.DIR_ENV] = old


@pytest.fixture(scope="session")
def sandbox(pytestconfig: pytest.Config) -> Iterator[sb.Sandbox]:
    """A running sandbox, started once per session and stopped at its end."""
    path = pytestconfig.stash[_DIR_KEY]
    try:
        running = sb.start(path)
    except SandboxError as e:
        pytest.fail(f"cannot start the sandbox PostgreSQL: {e}", pytrace=False)
    try:
        yield running
    finally:
        sb.stop(path)


@pytest.fixture(scope="session")
def password_config(sandbox: sb.Sandbox) -> Path:
    """Config path: scram-sha-256 over TCP, sslmode disable, superuser ``pgmonkey``."""
    return sandbox.configs["password"]


@pytest.fixture(scope="session")
def ssl_config(sandbox: sb.Sandbox) -> Path:
    """Config path: scram-sha-256, sslmode verify-full against the sandbox CA."""
    return sandbox.configs["ssl"]


@pytest.fixture(scope="session")
def cert_config(sandbox: sb.Sandbox) -> Path:
    """Config path: client certificate as ``pgmonkey_cert`` (not superuser), no password."""
    return sandbox.configs["cert"]


@pytest.fixture(params=AUTH_KINDS, ids=AUTH_KINDS)
def auth_config(request: pytest.FixtureRequest, sandbox: sb.Sandbox) -> Path:
    """Each of the three config paths in turn (ids: password, ssl, cert)."""
    kind: str = request.param
    return sandbox.configs[kind]


@pytest.fixture(scope="session")
def superuser_dsn(sandbox: sb.Sandbox) -> str:
    """Conninfo of the superuser over password auth (holds the password: never print it)."""
    return sandbox.superuser_conninfo


@pytest.fixture
def db_conn(superuser_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A superuser connection in autocommit mode, for setup and inspection; closed after."""
    conn = psycopg.connect(superuser_dsn, autocommit=True)
    try:
        yield conn
    finally:
        conn.close()
