"""A test session killed with SIGTERM stops its sandbox cluster, as one ended by Ctrl-C does.

A real pytest process, with the sandbox fixtures and a real cluster, gets SIGTERM while a
test runs; afterwards no process of that cluster may be left, nor its directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pgmonkey import sandbox as sb

REPO = Path(__file__).resolve().parent.parent

CHILD_TEST = """
import json
import pathlib
import time


def test_waits_for_sigterm(sandbox):
    where = {{"dir": str(sandbox.dir), "server_dir": str(sandbox.server_dir)}}
    pathlib.Path({marker!r}).write_text(json.dumps(where))
    time.sleep(600)
"""


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def _wait_for(what: str, check: object, limit: float = 300) -> None:
    deadline = time.monotonic() + limit  # a hang guard, not a timing: it is met in seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def test_sigterm_ends_the_session_and_stops_its_sandbox(tmp_path: Path) -> None:
    marker = tmp_path / "sandbox-dir"
    (tmp_path / "test_child.py").write_text(CHILD_TEST.format(marker=str(marker)))
    ini = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    (tmp_path / "pytest.ini").write_text(ini)
    env = {k: v for k, v in os.environ.items() if k != sb.DIR_ENV}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.fix_sandbox",
            "-p",
            "no:cacheprovider",
            "-c",
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            "-q",
            str(tmp_path / "test_child.py"),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    sandbox_dir = None
    try:
        _wait_for("the child's sandbox", lambda: marker.exists() or child.poll() is not None)
        assert child.poll() is None, child.communicate()[0].decode()
        where = json.loads(marker.read_text())
        sandbox_dir, server_dir = where["dir"], where["server_dir"]
        assert _processes_naming(server_dir), "the child's cluster is not running"
        child.send_signal(signal.SIGTERM)
        output = child.communicate(timeout=300)[0].decode()  # a hang guard
        assert child.returncode != 0, output
        assert not _processes_naming(server_dir), output
        assert not Path(sandbox_dir).exists() and not Path(server_dir).exists(), output
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        if sandbox_dir is not None:
            sb.stop(sandbox_dir)  # whatever the outcome, leave no cluster behind
