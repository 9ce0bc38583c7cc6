"""The magics' private event loop thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pgmonkey.magics._loop import LoopThread


async def _where() -> tuple[str, asyncio.AbstractEventLoop]:
    return threading.current_thread().name, asyncio.get_running_loop()


async def _boom() -> None:
    raise ValueError("boom")


def test_runs_in_its_own_daemon_thread() -> None:
    lt = LoopThread(name="pgmonkey-test-loop")
    try:
        name, loop = lt.run(_where())
        assert name == "pgmonkey-test-loop"
        assert lt.run(_where())[1] is loop  # the same loop every time
        assert lt.running
        assert "running" in repr(lt)
        with pytest.raises(ValueError, match="boom"):
            lt.run(_boom())
        assert lt.run(_where())[1] is loop  # an error does not stop the loop
    finally:
        lt.stop()
    assert not lt.running
    assert loop.is_closed()
    lt.stop()  # idempotent


def test_restarts_after_stop_and_times_out() -> None:
    lt = LoopThread()
    try:
        first = lt.run(_where())[1]
        lt.stop()
        assert lt.run(_where())[1] is not first
        with pytest.raises(TimeoutError, match=r"0\.05 seconds"):
            lt.run(asyncio.sleep(5), timeout=0.05)
    finally:
        lt.stop()


def test_timeout_cancels_and_waits_for_the_task() -> None:
    lt = LoopThread()
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    try:
        with pytest.raises(TimeoutError):
            lt.run(slow(), timeout=0.05)
        assert cancelled.is_set()  # the task has unwound when run() returns
    finally:
        lt.stop()
