"""CSV import and export at COPY speed.

- :func:`import_csv`: a CSV file into a table through ``COPY ... FROM STDIN``, all rows or
  none. The first run of a file detects its settings, writes ``<csv>.import.yaml`` beside it
  and imports nothing (the review step); later runs import with those settings.
- :func:`export_csv`: a table or a query into a CSV file through ``COPY ... TO STDOUT``.
- :func:`detect_csv`: the detection alone (encoding, delimiter, quoting, header, columns).

The CLI (``pgmonkey pgimport`` / ``pgexport``) and the ``%pgmonkey import`` / ``export``
magics are thin faces over these functions.
"""

from __future__ import annotations

from ._detect import column_names, detect_csv, detect_encoding
from ._export import ExportResult, export_csv
from ._import import ImportResult, import_csv
from ._settings import (
    ColumnSpec,
    Evidence,
    ExportSettings,
    ImportSettings,
    export_settings_path,
    import_settings_path,
    legacy_settings_path,
    load_export_settings,
    load_import_settings,
    write_import_settings,
)

__all__ = [
    "ColumnSpec",
    "Evidence",
    "ExportResult",
    "ExportSettings",
    "ImportResult",
    "ImportSettings",
    "column_names",
    "detect_csv",
    "detect_encoding",
    "export_csv",
    "export_settings_path",
    "import_csv",
    "import_settings_path",
    "legacy_settings_path",
    "load_export_settings",
    "load_import_settings",
    "write_import_settings",
]
