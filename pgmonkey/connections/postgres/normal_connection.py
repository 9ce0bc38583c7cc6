"""4.0 import path of :class:`PGNormalConnection` (code written for 4.0 imports it here)."""

from pgmonkey.connections.normal import PGNormalConnection

__all__ = ["PGNormalConnection"]
