"""4.0 import path of :class:`PGPoolConnection` (code written for 4.0 imports it here)."""

from pgmonkey.connections.pool import PGPoolConnection

__all__ = ["PGPoolConnection"]
