"""4.0 import path of ``normalize_config`` and ``load_config``; code in :mod:`pgmonkey.config`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgmonkey.config import load_config
from pgmonkey.config._load import _unwrap

__all__ = ["load_config", "normalize_config"]


def normalize_config(config_data: Any) -> Any:
    """The config without the pre-3.0 top-level ``postgresql:`` level (a DeprecationWarning).

    Anything else is returned as it is, as in 4.0.
    """
    if isinstance(config_data, Mapping) and "postgresql" in config_data:
        return _unwrap(config_data, None, stacklevel=3)
    return config_data
