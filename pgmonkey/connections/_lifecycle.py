"""Closing what is still open: at exit (one handler for the whole process) and from sync code.

Every connection object registers itself here while it holds open resources. At interpreter
exit one ``atexit`` handler closes them all within a global deadline, and never waits on an
event loop that is closed or busy: an async resource whose loop is gone has its sockets
closed directly (libpq needs no loop for that).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol

logger = logging.getLogger("pgmonkey.connections")

# Total time the exit handler may spend, and the most one object may take of it.
EXIT_BUDGET: Final = 5.0
PER_OBJECT_TIMEOUT: Final = 2.0


class Closable(Protocol):
    def close_now(self, timeout: float) -> None: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()
# Close tasks scheduled on a running loop (kept alive until done, as asyncio asks).
_pending: set[asyncio.Future[Any]] = set()


def register(obj: Closable) -> None:
    """Remember *obj* as holding open resources until it closes them."""
    _live.add(obj)


def unregister(obj: Closable) -> None:
    _live.discard(obj)


def live_objects() -> list[Any]:
    return list(_live)


def loop_alive(loop: asyncio.AbstractEventLoop | None) -> bool:
    return loop is not None and not loop.is_closed()


def current_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def close_async_from_sync(
    loop: asyncio.AbstractEventLoop | None,
    closer: Callable[[], Coroutine[Any, Any, None]],
    hard_close: Callable[[], None],
    *,
    timeout: float,
    wait: bool = True,
) -> None:
    """Close an async resource from synchronous code without ever hanging.

    - its loop is closed (or unknown): close the sockets directly;
    - we are inside its loop (sync code called from a coroutine, a finalizer): schedule the
      graceful close as a task, since we cannot block the loop we run on;
    - its loop runs in another thread: ask it, wait up to *timeout*, else close the sockets;
    - its loop is idle: run the graceful close on it, bounded by *timeout*.
    """
    if not loop_alive(loop):
        hard_close()
        return
    assert loop is not None
    running = current_loop()
    if running is loop:
        task = loop.create_task(closer())
        _pending.add(task)
        task.add_done_callback(_pending.discard)
        return
    if loop.is_running():
        future = asyncio.run_coroutine_threadsafe(closer(), loop)
        if not wait:
            return
        try:
            future.result(timeout)
        except Exception as exc:  # timeout, or the loop stopped under us
            future.cancel()
            logger.debug("graceful async close failed (%s): closing sockets", type(exc).__name__)
            hard_close()
        return
    if running is not None:
        # Another loop runs in this thread: the idle one cannot be driven from here.
        hard_close()
        return
    try:
        loop.run_until_complete(asyncio.wait_for(closer(), timeout))
    except Exception as exc:
        logger.debug("graceful async close failed (%s): closing sockets", type(exc).__name__)
        hard_close()


def _close_all_at_exit() -> None:
    deadline = time.monotonic() + EXIT_BUDGET
    for obj in live_objects():
        remaining = deadline - time.monotonic()
        try:
            obj.close_now(max(0.0, min(PER_OBJECT_TIMEOUT, remaining)))
        except Exception as exc:  # never let one object stop the others, or the exit
            logger.debug("closing %r at exit failed: %s", obj, exc)


def _forget_inherited() -> None:
    # In a child after os.fork(): the objects and their sockets are the parent's. Closing
    # them at the child's exit would end the parent's sessions, so the child forgets them.
    _live.clear()
    _pending.clear()


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_forget_inherited)
