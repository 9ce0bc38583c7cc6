"""Sync and async twins stay in step: the async one, made sync, equals the sync one.

As psycopg does for its pools (it generates the sync code from the async code and checks it
in CI), each pair here is compared after a mechanical "unasync" of the async twin: ``await``
dropped, ``async with/for/def`` made plain, async names mapped to their sync names. What may
differ (the I/O itself) is listed per pair; any other change to one twin alone fails here
with the diff.

Twins not compared here, by design: ``frames._api._read`` / ``_read_async`` (the sync one
receives on the caller's thread and parses on a worker thread or inline, the async one
receives on the event loop and always parses on a worker thread), and the connection classes
(``connections/normal.py`` / ``async_.py``, ``pool.py`` / ``async_pool.py``: the async ones
also track their event loop). Their shared logic lives once in ``connections/_base.py``.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from pgmonkey import _connect
from pgmonkey.frames import _api
from pgmonkey.magics import _run

RENAME = {
    "apply_settings_async": "apply_settings",
    "open_config_async": "open_config",
    "_open_async": "_open",
    "sanitized_connect_async": "sanitized_connect",
    "async_connection": "connection",
    "read_sql_async": "read_sql",
    "read_arrow_async": "read_arrow",
    "read_polars_async": "read_polars",
    "_read_async": "_read",
    "_read_on_async": "_read_on",
    "_describe_async": "_describe",
    "_describe_by_query_async": "_describe_by_query",
    "_run_describe_async": "_run_describe",
    "run_and_describe_async": "run_and_describe",
    "cancel_and_drain_async": "cancel_and_drain",
    "_end_describe_async": "_end_describe",
    "_outside_pipeline_async": "_outside_pipeline",
    "AbstractAsyncContextManager": "AbstractContextManager",
    "to_sql_async": "to_sql",
    "_to_sql_async": "_to_sql",
    "AsyncConnection": "Connection",
    "AsyncConnectionPool": "ConnectionPool",
    "AsyncClientCursor": "ClientCursor",
    "AsyncCursor": "Cursor",
    "AsyncIterator": "Iterator",
    "asynccontextmanager": "contextmanager",
    "aconn": "conn",
    "acur": "cur",
    "atx": "tx",
    "async_": "sync",
}


class _Unasync(ast.NodeTransformer):
    def _plain(self, node: Any, cls: type[Any]) -> Any:
        node = self.generic_visit(node)
        return cls(**{f: getattr(node, f) for f in node._fields})

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> Any:
        return self._plain(node, ast.FunctionDef)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> Any:
        return self._plain(node, ast.With)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> Any:
        return self._plain(node, ast.For)

    def visit_Await(self, node: ast.Await) -> Any:
        return self.visit(node.value)

    def visit_Name(self, node: ast.Name) -> Any:
        node.id = RENAME.get(node.id, node.id)
        return node

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        self.generic_visit(node)
        node.attr = RENAME.get(node.attr, node.attr)
        return node

    def visit_alias(self, node: ast.alias) -> Any:
        node.name = RENAME.get(node.name, node.name)
        return node

    def visit_arg(self, node: ast.arg) -> Any:
        node.arg = RENAME.get(node.arg, node.arg)
        return node


def _normalised(fn: Callable[..., Any], unasync: bool) -> str:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    func = tree.body[0]
    assert isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        func.body = body[1:]  # the docstrings may differ
    func.name, func.decorator_list, func.returns = "twin", [], None
    for arg in (*func.args.args, *func.args.kwonlyargs):
        arg.annotation = None
    if unasync:
        tree = _Unasync().visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


# (sync twin, async twin, what may differ: (text after unasync, the sync text))
PAIRS: list[tuple[Callable[..., Any], Callable[..., Any], list[tuple[str, str]]]] = [
    (_connect.apply_settings, _connect.apply_settings_async, []),
    (
        _connect.open_config,
        _connect.open_config_async,
        [("config, 'async'), 'async_settings'", "config, 'normal'), 'sync_settings'")],
    ),
    (_connect._open, _connect._open_async, [("psycopg.Connection.connect,", "psycopg.connect,")]),
    (
        _connect.connection,
        _connect.async_connection,
        [
            (
                "if isinstance(con, psycopg.Connection):\n"
                "        raise TypeError(f'{type(con).__name__} is synchronous: use the sync "
                "function')\n    if hasattr(con, '__aenter__'):",
                "if isinstance(con, psycopg.AsyncConnection) or (hasattr(con, '__aenter__') "
                "and (not hasattr(con, '__enter__'))):\n"
                "        raise TypeError(f'{type(con).__name__} is asynchronous: use the *_async "
                "function')\n    if hasattr(con, '__enter__'):",
            ),
            ("did not give a psycopg async connection", "did not give a psycopg connection"),
            ("{_KINDS} (async)", "{_KINDS}"),
        ],
    ),
    (_api.to_sql, _api.to_sql_async, []),
    (_api._to_sql, _api._to_sql_async, []),
    (_api._read_on, _api._read_on_async, []),
    (_api._run_describe, _api._run_describe_async, []),
    (_api._describe, _api._describe_async, []),
    (_api._describe_by_query, _api._describe_by_query_async, []),
    (
        _api.read_polars,
        _api.read_polars_async,
        # Reading in ranges over several connections at once is sync only (threads).
        [
            (
                "params=None):",
                "params=None, *, partition_on=None, partitions=None, consistent=False):",
            ),
            (
                "read_arrow(query, con, params))",
                "read_arrow(query, con, params, partition_on=partition_on, "
                "partitions=partitions, consistent=consistent))",
            ),
        ],
    ),
    (
        _run.Run.sync,
        _run.Run.async_,
        [
            ("conn.set_autocommit(True)", "conn.autocommit = True"),
            ("conn.set_autocommit(False)", "conn.autocommit = False"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("sync", "async_", "allowed"), PAIRS, ids=[f"{p[0].__qualname__}" for p in PAIRS]
)
def test_async_twin_made_sync_equals_the_sync_twin(
    sync: Callable[..., Any], async_: Callable[..., Any], allowed: list[tuple[str, str]]
) -> None:
    expected = _normalised(sync, unasync=False)
    got = _normalised(async_, unasync=True)
    for async_text, sync_text in allowed:
        assert async_text in got, f"an allowed difference is gone: {async_text!r}"
        got = got.replace(async_text, sync_text)
    diff = "\n".join(difflib.unified_diff(expected.splitlines(), got.splitlines(), lineterm=""))
    assert got == expected, f"{sync.__qualname__} and its async twin drifted:\n{diff}"
