"""Server configuration advice and audit.

:func:`recommend` turns a pgmonkey config into the pg_hba.conf lines and postgresql.conf
settings the server needs for it (``_advice``); :func:`audit` compares them, read-only, with a
live server's ``pg_settings`` and ``pg_hba_file_rules``, and tells whether a current pg_hba rule
would match this client (``_audit``; pg_hba parsing and matching in ``_hba``). Both return
structured results with ``.to_text(width=None)`` (the 4.0 layout of ``pgmonkey
pgserverconfig``, fitted to *width* or to the terminal) and ``.to_frame()`` (a pandas
DataFrame, for notebooks)::

    advice = recommend(load_config("app.yaml"))
    report = audit(load_config("app.yaml"))        # or audit(cfg, conn) with a psycopg connection
    report.needs_attention                         # what `--audit --strict` exits 3 on
"""

from __future__ import annotations

from ._advice import Advice, Setting, Status, recommend
from ._audit import AuditReport, AuditRow, audit
from ._hba import HbaClient, HbaLine, HbaRule

__all__ = [
    "Advice",
    "AuditReport",
    "AuditRow",
    "HbaClient",
    "HbaLine",
    "HbaRule",
    "Setting",
    "Status",
    "audit",
    "recommend",
]
