"""4.0 import path of :class:`PGConnectionManager`; the code lives in :mod:`pgmonkey.manager`."""

from __future__ import annotations

from pgmonkey.manager import PGConnectionManager

__all__ = ["PGConnectionManager"]
