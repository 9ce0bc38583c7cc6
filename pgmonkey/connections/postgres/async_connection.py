"""4.0 import path of :class:`PGAsyncConnection` (code written for 4.0 imports it here)."""

from pgmonkey.connections.async_ import PGAsyncConnection

__all__ = ["PGAsyncConnection"]
