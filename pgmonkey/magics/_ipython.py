"""IPython's magic decorators and ``Magics`` base, typed here once.

IPython 8 ships them untyped and IPython 9 typed: declaring their type at this boundary keeps
mypy's verdict the same whichever IPython is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from IPython.core import magic as _ipython_magic
from IPython.core.magic import Magics

__all__ = ["MagicsBase", "line_cell_magic", "magics_class", "needs_local_scope", "no_var_expand"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _typed_decorator(decorator: object) -> Callable[[_F], _F]:
    # IPython 8 ships its magic decorators untyped and IPython 9 typed: declaring their type
    # here, once, keeps mypy's verdict the same whichever IPython is installed.
    return cast("Callable[[_F], _F]", decorator)


if TYPE_CHECKING:

    class MagicsBase:
        """The part of IPython's ``Magics`` this module uses (IPython 8 ships no types)."""

        shell: Any

        def __init__(self, shell: Any = None, **kwargs: Any) -> None: ...

else:
    MagicsBase = Magics

magics_class = _typed_decorator(_ipython_magic.magics_class)
line_cell_magic = _typed_decorator(_ipython_magic.line_cell_magic)
needs_local_scope = _typed_decorator(_ipython_magic.needs_local_scope)
no_var_expand = _typed_decorator(_ipython_magic.no_var_expand)
