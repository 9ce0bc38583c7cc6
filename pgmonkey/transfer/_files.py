"""Writing a file safely: never through a symlink, never half-written, keeping its mode.

Every file that CSV import and export write (the exported CSV, ``<csv>.import.yaml``) goes
through :func:`atomic_writer`:

- the data goes to a new temporary file beside the final one (same folder, so the rename is
  atomic), opened with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a file or a symlink already there
  under that name is never opened, so nothing is written through a planted link;
- the temporary file is renamed over the final name only once everything is written; on
  any failure it is removed and the final file is left as it was;
- a final name that is a symbolic link (dangling or not) is refused with a clear error, and
  so is one that is not a regular file (a folder, a FIFO, a device);
- replacing an existing file keeps its permission bits (a 0600 export stays 0600) and, where
  allowed, its owner and group; a new file gets the usual ``0666 & ~umask``.

The rename makes the file whole or absent for other processes; there is no ``fsync``, so
after a power loss the newest content may be missing (as with ``psql \\copy``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pgmonkey.errors import TransferError

__all__ = ["atomic_writer", "write_text"]

_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def _existing(path: Path) -> os.stat_result | None:
    """The final file's status, or None if there is none; refuse a link or a non-file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        try:
            target = f" (to {os.readlink(path)!r})"
        except OSError:
            target = ""
        raise TransferError(
            f"refusing to write {os.fspath(path)!r}: it is a symbolic link{target}; "
            "remove the link or give the real file's path"
        )
    if not stat.S_ISREG(st.st_mode):
        raise TransferError(f"refusing to write {os.fspath(path)!r}: it is not a regular file")
    return st


def _create_temp(path: Path, private: bool) -> tuple[int, Path]:
    """A new temporary file beside ``path`` (a name no one else holds), open for writing."""
    mode = 0o600 if private else 0o666  # the umask applies to the new file's 0666
    for _ in range(100):
        temp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
        try:
            return os.open(temp, _FLAGS, mode), temp
        except FileExistsError:
            continue  # taken (or a planted link): another name
    raise FileExistsError(f"no free temporary name beside {os.fspath(path)!r}")


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Write ``path`` through a temporary file beside it, renamed over it at the end.

    Yields a binary file. ``TransferError`` when ``path`` is a symbolic link or not a
    regular file; ``OSError`` as ``open`` would raise it otherwise (a missing folder, no
    permission). Nothing is left behind when the body raises.
    """
    final = Path(path)
    st = _existing(final)
    fd, temp = _create_temp(final, private=st is not None)
    try:
        with os.fdopen(fd, "wb") as f:
            if st is not None:
                with contextlib.suppress(OSError):  # only root may give a file away
                    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                        os.fchown(f.fileno(), st.st_uid, st.st_gid)
                os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode) & 0o777)
            yield f
        _existing(final)  # still no link (a rename would replace it, never write through it)
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` with :func:`atomic_writer`."""
    with atomic_writer(path) as f:
        f.write(text.encode(encoding))
