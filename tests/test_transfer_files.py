"""Files written by export and the import's review step.

Never through a symlink (a planted ``out.csv.part`` link overwrote its target; the
``<csv>.import.yaml`` was written through a dangling link), never half-written, and an
existing file keeps its mode (a re-export over a 0600 file left 0644).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgmonkey.cli import run
from pgmonkey.errors import TransferError
from pgmonkey.transfer import _files, export_csv, import_csv, import_settings_path

Conn = psycopg.Connection[tuple[Any, ...]]
QUERY = "SELECT 1 AS a, 'x' AS b"
EXPECTED = "a,b\n1,x\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file elsewhere that a planted link points at: it must never change."""
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_text("precious\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_planted_part_link_is_not_written_through(
    db_conn: Conn, out_dir: Path, victim: Path
) -> None:
    planted = out_dir / "out.csv.part"
    planted.symlink_to(victim)
    export_csv(db_conn, out_dir / "out.csv", query=QUERY)
    assert victim.read_text() == "precious\n"
    assert (out_dir / "out.csv").read_text() == EXPECTED
    assert planted.is_symlink()  # left alone, not followed
    assert sorted(p.name for p in out_dir.iterdir()) == ["out.csv", "out.csv.part"]


def test_the_temporary_file_is_exclusive_and_never_a_link(
    out_dir: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Even a link planted under the very temporary name chosen is not opened: O_EXCL |
    # O_NOFOLLOW fail, and another name is drawn.
    names = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(_files.secrets, "token_hex", lambda n: next(names))
    (out_dir / "f.txt.aaaa.part").symlink_to(victim)
    (out_dir / "f.txt.bbbb.part.unrelated").write_text("")
    _files.write_text(out_dir / "f.txt", "new\n")
    assert victim.read_text() == "precious\n"
    assert (out_dir / "f.txt").read_text() == "new\n"
    assert (out_dir / "f.txt.aaaa.part").is_symlink()
    assert not (out_dir / "f.txt.bbbb.part").exists()


@pytest.mark.parametrize("dangling", [False, True], ids=["link", "dangling link"])
def test_export_refuses_an_output_that_is_a_link(
    db_conn: Conn, out_dir: Path, victim: Path, dangling: bool
) -> None:
    target = victim.with_name("not-yet.csv") if dangling else victim
    link = out_dir / "out.csv"
    link.symlink_to(target)
    with pytest.raises(TransferError, match=r"refusing to write .*out\.csv.*symbolic link"):
        export_csv(db_conn, link, query=QUERY)
    assert victim.read_text() == "precious\n"
    assert not victim.with_name("not-yet.csv").exists()
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert [p.name for p in out_dir.iterdir()] == ["out.csv"]  # no temporary file left


def test_import_review_refuses_a_dangling_settings_link(
    tmp_path: Path, db_conn: Conn, victim: Path
) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text("id,name\n1,a\n")
    settings = import_settings_path(csv)
    target = victim.with_name("created-through-the-link.yaml")
    settings.symlink_to(target)
    with pytest.raises(TransferError, match=r"refusing to write .*data\.csv\.import\.yaml"):
        import_csv(csv, "public.never_created", db_conn)
    assert not target.exists()
    assert settings.is_symlink()


def test_import_review_refuses_a_settings_link_to_a_folder(
    tmp_path: Path, db_conn: Conn, victim: Path
) -> None:
    # An existing link is read as the settings (the user's choice); a link that does not
    # resolve to a file is what the review step would write: refused above. Here a link
    # to a folder: not a settings file, not written through either.
    csv = tmp_path / "data.csv"
    csv.write_text("id,name\n1,a\n")
    import_settings_path(csv).symlink_to(victim.parent)
    with pytest.raises(TransferError, match=r"symbolic link"):
        import_csv(csv, "public.never_created", db_conn)
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o400], ids=oct)
def test_reexport_keeps_the_files_mode(db_conn: Conn, out_dir: Path, mode: int) -> None:
    out = out_dir / "out.csv"
    out.write_text("old\n")
    out.chmod(mode)
    export_csv(db_conn, out, query=QUERY)
    assert out.read_text() == EXPECTED
    assert _mode(out) == mode


def test_a_new_file_follows_the_umask(db_conn: Conn, out_dir: Path) -> None:
    old = os.umask(0o027)
    try:
        export_csv(db_conn, out_dir / "new.csv", query=QUERY)
    finally:
        os.umask(old)
    assert _mode(out_dir / "new.csv") == 0o640


def test_a_failed_export_keeps_the_old_file(db_conn: Conn, out_dir: Path) -> None:
    out = out_dir / "out.csv"
    out.write_text("old\n")
    out.chmod(0o600)
    with pytest.raises(psycopg.errors.DivisionByZero):
        export_csv(db_conn, out, query="SELECT 1 / (500 - g) FROM generate_series(1, 1000) g")
    assert out.read_text() == "old\n" and _mode(out) == 0o600
    assert [p.name for p in out_dir.iterdir()] == ["out.csv"]


def test_only_regular_files_are_replaced(out_dir: Path) -> None:
    os.mkfifo(out_dir / "fifo")
    (out_dir / "folder").mkdir()
    for name in ("fifo", "folder"):
        with pytest.raises(TransferError, match=rf"refusing to write .*{name}.*not a regular"):
            _files.write_text(out_dir / name, "x")
    assert sorted(p.name for p in out_dir.iterdir()) == ["fifo", "folder"]


def test_the_writer_leaves_nothing_when_the_body_fails(out_dir: Path) -> None:
    target = out_dir / "f.txt"
    with pytest.raises(RuntimeError), _files.atomic_writer(target) as f:
        f.write(b"half")
        raise RuntimeError("boom")
    assert list(out_dir.iterdir()) == []


@pytest.fixture
def cli_export(password_config: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    def call(out: Path) -> tuple[int, str]:
        args = ["pgexport", "--query", QUERY, "--connconfig", str(password_config)]
        code = run([*args, "--export_file", str(out)])
        return code, capsys.readouterr().err

    return call


def test_cli_says_why_in_one_line(cli_export: Any, out_dir: Path, victim: Path) -> None:
    link = out_dir / "out.csv"
    link.symlink_to(victim)
    code, err = cli_export(link)
    assert code == 1
    assert err == (
        f"pgmonkey: error: refusing to write {str(link)!r}: it is a symbolic link"
        f" (to {str(victim)!r}); remove the link or give the real file's path\n"
    )
    assert victim.read_text() == "precious\n"
