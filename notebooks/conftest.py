"""nbval settings for the notebooks (``python -m pytest`` runs them with ``--nbval``).

- The session sandbox plugin (tests/fix_sandbox.py) is loaded here too, so that running the
  notebooks alone (``python -m pytest notebooks``) still exports ``PGMONKEY_SANDBOX_DIR``
  for the kernels, and the sandbox their ``sb.start()`` starts is stopped at the end.
- The kernels run without this interpreter's folder (a venv's ``bin``) on PATH, so a notebook
  that calls a console script by name instead of ``{sys.executable} -m ...`` fails here, as it
  would for a user whose venv is not activated.
- ``notebooks/sanitize.cfg`` is the default ``--nbval-sanitize-with``, by absolute path, so
  the run does not depend on the working directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # `pytest notebooks` puts only notebooks/ on sys.path
    sys.path.insert(0, str(ROOT))

pytest_plugins = ("tests.fix_sandbox",)

SANITIZE = HERE / "sanitize.cfg"


def pytest_configure(config: pytest.Config) -> None:
    bin_dir = Path(sys.executable).parent
    os.environ["PATH"] = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != bin_dir
    )
    option = config.option
    if getattr(option, "nbval_sanitize_with", "missing") is None:
        option.nbval_sanitize_with = str(SANITIZE)
