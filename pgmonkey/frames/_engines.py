"""Which engine reads a result, and the worker thread the sync reader parses on.

Four engines read a query's ``COPY``, each giving the same frame, dtype for dtype:

- binary COPY decoded by the compiled decoder (``_bincompiled``), when it is built: every
  column an integer, float8, bool, date, timestamp, numeric or text (in a UTF-8 session);
- binary COPY decoded with numpy (``_bincopy``): every column fixed-width (integers,
  float8, bool, date, timestamps), where PostgreSQL's float-to-text would set the pace;
- Arrow's CSV reader (``_arrow``): any other result, when pyarrow is installed and the
  session's client encoding is UTF-8 (Arrow reads UTF-8 only);
- pandas' CSV reader (``_read.Plan``): everything else.

An engine has ``configure(row)`` (the caller hands it the describe row of
``_read.describe_and_settings``, the session's settings, before the COPY),
``copy_statement(query)``, ``parser(output)`` (a
function from the COPY stream, a file-like object, to the result) and ``threaded`` (parse on
a worker thread while the caller's thread receives; such an engine's parser also takes the
list of all the stream's blocks, for a result received whole).
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Final

from psycopg import sql

from pgmonkey.errors import TransferError

from . import _arrow, _bincompiled, _bincopy
from ._read import Plan, QueueChunks, masks_fit

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

PANDAS: Final = "pandas"
ARROW: Final = "arrow"


class PandasCsvEngine:
    """pandas' C CSV reader on the COPY stream, in the caller's thread (``_read.Plan``)."""

    threaded = False

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def configure(self, row: Any) -> None:
        pass

    def copy_statement(self, query: str) -> sql.Composed:
        return self.plan.copy_statement(query)

    def parser(self, output: str) -> Callable[[Any], Any]:
        if output == PANDAS:
            return self.plan.parse
        return lambda source: convert(self.plan.parse(source), output)


class ArrowCsvEngine:
    threaded = True

    def __init__(self, plan: Plan) -> None:
        self.reader = _arrow.ArrowCsvPlan(plan)

    def configure(self, row: Any) -> None:
        pass

    def copy_statement(self, query: str) -> sql.Composed:
        return self.reader.copy_statement(query)

    def parser(self, output: str) -> Callable[[Any], Any]:
        return self.reader.parse if output == PANDAS else self.reader.read_arrow


class BinaryEngine:
    threaded = True

    def __init__(self, plan: Plan) -> None:
        self.reader = self._reader(plan)

    @staticmethod
    def _reader(plan: Plan) -> _bincopy.BinaryPlan | _bincompiled.CompiledBinaryPlan:
        return _bincopy.BinaryPlan(plan)

    def configure(self, row: Any) -> None:
        self.reader.configure(row)

    def copy_statement(self, query: str) -> sql.Composed:
        return self.reader.copy_statement(query)

    def parser(self, output: str) -> Callable[[Any], Any]:
        return self.reader.parse if output == PANDAS else self.reader.read_arrow


class CompiledBinaryEngine(BinaryEngine):
    @staticmethod
    def _reader(plan: Plan) -> _bincopy.BinaryPlan | _bincompiled.CompiledBinaryPlan:
        return _bincompiled.CompiledBinaryPlan(plan)


Engine = PandasCsvEngine | ArrowCsvEngine | BinaryEngine


def choose_engine(plan: Plan) -> Engine:
    if _bincompiled.usable(plan):
        return CompiledBinaryEngine(plan)
    if _bincopy.usable(plan):
        return BinaryEngine(plan)
    if plan.encoding.replace("-", "").replace("_", "").lower() == "utf8" and _arrow.available():
        return ArrowCsvEngine(plan)
    if not masks_fit(len(plan.columns), len(plan.string_columns)):
        # Refused before anything is sent: the COPY would fail, and abort a transaction.
        raise TransferError(
            f"a result of {len(plan.columns)} columns, {len(plan.string_columns)} of them"
            " read as strings, is past what read_sql can read in the client_encoding"
            f" {plan.encoding!r} (each string column's NULLs take a bit of an extra column,"
            " and PostgreSQL allows 1664): set client_encoding to UTF8 for this read"
        )
    return PandasCsvEngine(plan)


def convert(frame: Any, output: str) -> Any:
    """A frame of the pandas engines in the asked output."""
    if output == PANDAS:
        return frame
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def first_blocks(blocks: Iterator[bytes], limit: int) -> tuple[list[bytes], bool]:
    """The first blocks of a stream, up to ``limit`` bytes; True if that was all of it."""
    head: list[bytes] = []
    size = 0
    for block in blocks:
        head.append(block)
        size += len(block)
        if size >= limit:
            return head, False
    return head, True


def parse_in_thread(
    parse: Callable[[Any], Any], reader: Any, chunks: QueueChunks
) -> asyncio.Future[Any]:
    """``parse(reader)`` on a :class:`ParseThread`, as a future of the running event loop.

    A thread of its own, not the loop's default executor: the reads running at once would
    otherwise share (and could fill) the executor other code needs.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle() -> None:  # in the loop, after the thread ended
        if future.cancelled():  # the caller stopped waiting (its task was cancelled)
            return
        if worker.error is not None:
            future.set_exception(worker.error)
        else:
            future.set_result(worker.value)

    def done() -> None:  # in the thread
        with suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle)

    worker = ParseThread(parse, reader, chunks, done)
    return future


class ParseThread:
    """Runs ``parse(reader)`` on a thread of its own; :meth:`result` waits for it.

    ``chunks``: the queue ``reader`` reads, abandoned once the parser stops (done or failed),
    so that its receiver never waits for room nobody makes. ``done``: called on the thread
    at its end.
    """

    def __init__(
        self,
        parse: Callable[[Any], Any],
        reader: Any,
        chunks: QueueChunks,
        done: Callable[[], None] | None = None,
    ) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(parse, reader, chunks, done), daemon=True
        )
        self._thread.start()

    def _run(
        self,
        parse: Callable[[Any], Any],
        reader: Any,
        chunks: QueueChunks,
        done: Callable[[], None] | None,
    ) -> None:
        try:
            self.value = parse(reader)
        except BaseException as error:
            self.error = error
        finally:
            chunks.abandon()
            if done is not None:
                done()

    def join(self) -> None:
        self._thread.join()

    def result(self, reader: Any) -> Any:
        self._thread.join()
        if self.error is not None:
            failure = getattr(reader, "failure", None)
            if failure is not None:  # the parser wrapped it in an error of its own
                raise failure from None
            raise self.error
        return self.value
