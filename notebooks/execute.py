"""Execute notebooks in place and store their outputs: ``python notebooks/execute.py [NB ...]``.

The project tests notebooks with nbval (``python -m pytest``), which compares a fresh run
with the outputs stored in each notebook; after editing a notebook, store its new outputs
with this script (or ``jupyter nbconvert --to notebook --execute --inplace`` where
nbconvert is installed). It runs each notebook in a fresh kernel of the current Python,
the way nbval does (same kernel, working directory = the notebook's folder), stops at the
first error unless the cell carries the ``raises-exception`` tag, and writes nothing for
a notebook that failed.

Without arguments it runs every ``notebooks/[0-9]*.ipynb``. The notebooks call
``pgmonkey.sandbox.start()``: the sandbox is ``~/.pgmonkey/sandbox``, or PGMONKEY_SANDBOX_DIR
when set. Outputs show the sandbox's folder, which ``notebooks/sanitize.cfg`` recognises in
those two forms only (``~/.pgmonkey/sandbox`` and ``.../pgmonkey-test-NAME``, like the test
session's), e.g.::

    PGMONKEY_SANDBOX_DIR=/tmp/pgmonkey-test-notebook python notebooks/execute.py
    PGMONKEY_SANDBOX_DIR=/tmp/pgmonkey-test-notebook pgmonkey sandbox stop   # when done

Keep the name after ``pgmonkey-test-`` 8 characters long, like the test session's
``tempfile.mkdtemp`` folders: a table that shows a config's full path pads its columns to
the path's length, and the sanitizer replaces the path, not the padding.

Run twice in a row and ``git diff`` shows only real changes (and the one timing in 08, which
nbval ignores): every notebook drops and recreates its own tables, so reruns on a used
sandbox give the outputs of a fresh one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from queue import Empty
from typing import Any

import nbformat
from nbformat.v4 import output_from_msg
from nbval.kernel import CURRENT_ENV_KERNEL_NAME, RunningKernel

HERE = Path(__file__).resolve().parent
CELL_TIMEOUT = 300.0


class CellFailed(Exception):
    pass


def _run_cell(kernel: RunningKernel, source: str, timeout: float) -> list[Any]:
    msg_id = kernel.execute_cell_input(source, allow_stdin=False)
    kernel.await_reply(msg_id, timeout=timeout)
    outputs: list[Any] = []
    while True:
        msg = kernel.get_message("iopub", timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "status" and msg["content"]["execution_state"] == "idle":
            return outputs
        if kind == "clear_output":
            outputs.clear()
        elif (
            kind == "stream"
            and outputs
            and outputs[-1].get("output_type") == "stream"
            and (outputs[-1]["name"] == msg["content"]["name"])
        ):
            outputs[-1]["text"] += msg["content"]["text"]
        elif kind in ("stream", "display_data", "execute_result", "error"):
            outputs.append(output_from_msg(msg))


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    kernel = RunningKernel(CURRENT_ENV_KERNEL_NAME, cwd=str(path.parent))
    try:
        count = 0
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            count += 1
            try:
                outputs = _run_cell(kernel, cell.source, CELL_TIMEOUT)
            except Empty:
                raise CellFailed(f"{path.name}: cell {index} timed out") from None
            for out in outputs:
                if out.get("output_type") == "execute_result":
                    out["execution_count"] = count
            errors = [o for o in outputs if o.get("output_type") == "error"]
            if errors and "raises-exception" not in cell.metadata.get("tags", []):
                tb = "\n".join(errors[0].get("traceback", []))
                raise CellFailed(f"{path.name}: cell {index} failed:\n{tb}\n{cell.source}")
            cell.outputs = outputs
            cell.execution_count = count
    finally:
        kernel.stop()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    nbformat.write(nb, path)


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(HERE.glob("[0-9]*.ipynb"))
    for path in paths:
        print(f"executing {path}", flush=True)
        try:
            execute(path)
        except CellFailed as e:
            print(e, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
