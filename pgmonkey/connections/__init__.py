"""The four connection types, each a class over one shared base (``_base``).

- ``normal``: :class:`PGNormalConnection`, one ``psycopg.Connection``;
- ``pool``: :class:`PGPoolConnection`, a ``psycopg_pool.ConnectionPool``;
- ``async_``: :class:`PGAsyncConnection`, one ``psycopg.AsyncConnection``;
- ``async_pool``: :class:`PGAsyncPoolConnection`, a ``psycopg_pool.AsyncConnectionPool``.

``with obj as conn`` / ``async with obj as conn`` yields a real psycopg connection. The
manager creates and caches these objects; ``_lifecycle`` closes what is still open at exit.
``postgres/*_connection.py`` are 4.0 import paths that re-export the classes.

Nothing here is imported by ``import pgmonkey`` until a connection is asked for.
"""
