"""Byte progress bars: tqdm on a terminal or in a notebook, nothing otherwise."""

from __future__ import annotations

import importlib.util
import sys
import threading
from typing import Any


class Progress:
    """``update(nbytes)`` / ``close()`` over a tqdm bar, or a no-op when not shown."""

    def __init__(self, total: int | None, desc: str, enabled: bool | None) -> None:
        self._bar: Any = None
        self._lock = threading.Lock()  # the ranges of an export update it from their threads
        if enabled is None:
            enabled = is_interactive()
        if not enabled:
            return
        self._bar = _tqdm_class()(
            total=total,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            delay=0.5,  # quick transfers show no bar at all
            leave=False,
        )

    def update(self, nbytes: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(nbytes)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def in_notebook() -> bool:
    """True inside a Jupyter kernel (without importing IPython if nothing else did)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def is_interactive() -> bool:
    """A person is watching: stderr is a terminal, or we run in a notebook."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except ValueError:  # a closed stream
        pass
    return in_notebook()


def _tqdm_class() -> Any:
    if in_notebook():
        # tqdm's notebook bar needs ipywidgets; without it tqdm would warn, so use the
        # text bar, which notebooks show too.
        if importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm
    from tqdm.std import tqdm

    return tqdm
