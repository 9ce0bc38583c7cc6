"""The 4.0 import path of :func:`redact_config`; the code lives in :mod:`pgmonkey.config`."""

from __future__ import annotations

from pgmonkey.config import REDACTED, redact_config

__all__ = ["REDACTED", "redact_config"]
