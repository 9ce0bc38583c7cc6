"""``%pgmonkey --dask SELECT ...`` and ``persist`` of a Dask DataFrame (``pgmonkey[dask]``).

The tasks open their own connections on the workers, so they get the connection's config
file (never the connection object, nor a secret): a named connection's ``path`` and
``--resolve-env`` choice.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pgmonkey.errors import MagicError

if TYPE_CHECKING:
    from ._cmd_connections import Entry
    from ._params import Statement


def _module() -> Any:
    try:
        import pgmonkey.dask
    except ImportError:
        raise MagicError("--dask needs Dask: pip install 'pgmonkey[dask]'") from None
    return pgmonkey.dask


def read(
    entry: Entry,
    statements: Sequence[Statement],
    params: Sequence[dict[str, Any] | None],
    options: dict[str, Any],
) -> Any:
    if len(statements) != 1 or not statements[0].returns_rows:
        raise MagicError("--dask reads one query that returns rows")
    return _module().read_sql(
        statements[0].query,
        entry.path,
        params=params[0],
        resolve_env=entry.resolve_env,
        **options,
    )


def is_dask_frame(value: Any) -> bool:
    # Only when Dask is already imported: whoever holds a Dask DataFrame has imported it.
    dd = sys.modules.get("dask.dataframe")
    return dd is not None and isinstance(value, dd.DataFrame)


def persist(entry: Entry, ddf: Any, table: str, if_exists: str, feedback: bool) -> None:
    written = _module().to_sql(
        ddf, table, entry.path, if_exists=if_exists, resolve_env=entry.resolve_env
    )
    if feedback:
        print(f"{written} row{'' if written == 1 else 's'} written to {table}")
