"""4.0 import path of :class:`PGAsyncPoolConnection` (code written for 4.0 imports it here)."""

from pgmonkey.connections.async_pool import PGAsyncPoolConnection

__all__ = ["PGAsyncPoolConnection"]
