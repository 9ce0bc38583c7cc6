"""IPython magics: ``%load_ext pgmonkey``, then ``%pgmonkey`` / ``%%pgmonkey``.

A thin face over the Python API: connections come from :class:`pgmonkey.PGConnectionManager`,
results from :func:`pgmonkey.frames.read_sql`, tables from :func:`pgmonkey.frames.to_sql`,
CSV from :mod:`pgmonkey.transfer`, advice from :mod:`pgmonkey.serveradvice`.

- ``_magic``: the ``Magics`` class, its entry point and the command table;
- ``_params``: ``:name`` parameters found in SQL (never inside literals, comments, quotes);
- ``_loop``: the private event loop thread that async connections live on.
"""

from __future__ import annotations

from ._magic import MagicCellError, PgMonkeyMagics, load_ipython_extension

__all__ = ["MagicCellError", "PgMonkeyMagics", "load_ipython_extension"]
