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

import importlib
from typing import TYPE_CHECKING, Any

# Each name is loaded from its module on first use: ``pgmonkey pgexport`` needs only the
# export module, not CSV detection and import (a start-up cost paid by every CLI run).
_EXPORTS: dict[str, str] = {
    "column_names": "._detect",
    "detect_csv": "._detect",
    "detect_encoding": "._detect",
    "ExportResult": "._export",
    "export_csv": "._export",
    "ImportResult": "._import",
    "import_csv": "._import",
    "ColumnSpec": "._settings",
    "Evidence": "._settings",
    "ExportSettings": "._settings",
    "ImportSettings": "._settings",
    "export_settings_path": "._settings",
    "import_settings_path": "._settings",
    "legacy_settings_path": "._settings",
    "load_export_settings": "._settings",
    "load_import_settings": "._settings",
    "write_import_settings": "._settings",
}

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
