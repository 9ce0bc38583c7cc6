"""A private asyncio event loop in a daemon thread, for the magics' async connections.

IPython runs cells synchronously (and ipykernel already runs a loop of its own in the main
thread), so ``async`` and ``async_pool`` connections opened by the magics live in this loop:
they are created in it, used in it and closed in it, and the magics wait for each result
with :func:`asyncio.run_coroutine_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Coroutine
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop running forever in a daemon thread, started on first use."""

    def __init__(self, name: str = "pgmonkey-magics-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self._name!r} {state}>"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop, started if needed."""
        with self._lock:
            if self._loop is None or not self.running:
                # psycopg's async connections need a selector loop (Windows defaults to proactor).
                loop: asyncio.AbstractEventLoop = (
                    asyncio.SelectorEventLoop()
                    if sys.platform == "win32"
                    else asyncio.new_event_loop()
                )
                thread = threading.Thread(
                    target=self._run, args=(loop,), name=self._name, daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run *coro* in the loop and wait for its result (re-raising its exception).

        Ctrl-C in the waiting thread cancels the coroutine (psycopg then cancels the query)
        and waits a little for the cancellation to complete before re-raising.
        """
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.run() called from inside its own loop")
        finished = threading.Event()

        async def tracked() -> T:
            try:
                return await coro
            finally:
                finished.set()

        future = asyncio.run_coroutine_threadsafe(tracked(), self.loop())
        try:
            return future.result(timeout)
        except KeyboardInterrupt:
            future.cancel()
            finished.wait(5.0)  # let the task unwind (psycopg cancels the query)
            raise
        except FutureTimeoutError:
            future.cancel()
            finished.wait(5.0)
            raise TimeoutError(f"no result after {timeout} seconds") from None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and join the thread (bounded by *timeout*); idempotent."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if thread.is_alive():
            # As asyncio.run() does: cancel what is left and let it finish, then stop.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        if not thread.is_alive() and not loop.is_closed():
            loop.close()


async def _cancel_all() -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
