"""A throwaway PostgreSQL cluster for newcomers, notebooks and the test suite.

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

Scale-out: ``start(standbys=N)`` adds N streaming-replication standbys
(``pg_basebackup -R`` from the primary, each on a free port of its own) and
``start(pgbouncer=True)`` a PgBouncer in transaction pool mode in front of the primary.
They get configs of their own::

    DIR/standby1.yaml   the first standby alone (read-only)
    DIR/multihost.yaml  every node, target_session_attrs read-write: follows a failover
    DIR/readonly.yaml   every node, target_session_attrs prefer-standby: reads on a standby
    DIR/pgbouncer.yaml  through PgBouncer, prepare_threshold null (needed before 1.21)

``promote()`` and ``stop_node()`` turn a standby into the primary and stop one node, so
failover can be tried (and tested) on one machine.

The package: ``_model`` (constants, ``Sandbox``), ``_binaries``, ``_runas``, ``_certs``,
``_state`` (configs, sandbox.json), ``_process``, ``_lifecycle`` (start/stop), ``_scaleout``.
"""

from __future__ import annotations

from ._binaries import find_bindir, find_pgbouncer
from ._lifecycle import restart, start, status, stop
from ._model import (
    BINDIR_ENV,
    CERT_USER,
    DBNAME,
    DEFAULT_DIR,
    DIR_ENV,
    HOST,
    INSTALL_HINT,
    PGBOUNCER_ENV,
    PGBOUNCER_HINT,
    SERVER_USER,
    SUPERUSER,
    Node,
    Sandbox,
    default_dir,
)
from ._scaleout import promote, stop_node

__all__ = [
    "BINDIR_ENV",
    "CERT_USER",
    "DBNAME",
    "DEFAULT_DIR",
    "DIR_ENV",
    "HOST",
    "INSTALL_HINT",
    "PGBOUNCER_ENV",
    "PGBOUNCER_HINT",
    "SERVER_USER",
    "SUPERUSER",
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
