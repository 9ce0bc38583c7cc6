"""load_config_cached: the same validated dict while the file (and its references) are unchanged."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgmonkey import ConfigError, EnvInterpolationError
from pgmonkey.config import clear_config_cache, load_config, load_config_cached

TEXT = "connection_settings:\n  host: h1\npool_settings:\n  max_size: 5\n"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_config_cache()
    yield
    clear_config_cache()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def test_unchanged_file_gives_the_same_object(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", TEXT)
    first = load_config_cached(path)
    assert first == load_config(path)
    assert load_config_cached(path) is first
    assert load_config_cached(str(path)) is first


def test_changed_content_is_reloaded(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", TEXT)
    assert load_config_cached(path)["connection_settings"]["host"] == "h1"
    write(path, TEXT.replace("h1", "host2"))
    assert load_config_cached(path)["connection_settings"]["host"] == "host2"


def test_same_size_new_mtime_is_reloaded(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", TEXT)
    st = os.stat(path)
    load_config_cached(path)
    write(path, TEXT.replace("h1", "h2"))  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert load_config_cached(path)["connection_settings"]["host"] == "h2"


def test_replaced_file_is_reloaded(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", TEXT)
    first = load_config_cached(path)
    other = write(tmp_path / "other.yaml", TEXT.replace("h1", "h9"))
    os.utime(other, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns))
    os.replace(other, path)  # another inode, same size and mtime
    again = load_config_cached(path)
    assert again is not first
    assert again["connection_settings"]["host"] == "h9"


def test_flags_are_separate_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMONKEY_HOST", "resolved")
    path = write(tmp_path / "c.yaml", "connection_settings:\n  host: '${PGMONKEY_HOST}'\n")
    literal = load_config_cached(path)
    resolved = load_config_cached(path, resolve_env=True)
    assert literal["connection_settings"]["host"] == "${PGMONKEY_HOST}"
    assert resolved["connection_settings"]["host"] == "resolved"
    assert load_config_cached(path) is literal
    assert load_config_cached(path, resolve_env=True) is resolved


def test_environment_change_is_picked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path / "c.yaml",
        "connection_settings:\n  host: '${PGMONKEY_HOST:-localhost}'\n"
        "  password:\n    from_env: PGMONKEY_PW\n",
    )
    monkeypatch.setenv("PGMONKEY_PW", "one")
    first = load_config_cached(path, resolve_env=True)
    assert first["connection_settings"] == {"host": "localhost", "password": "one"}
    assert load_config_cached(path, resolve_env=True) is first
    monkeypatch.setenv("PGMONKEY_HOST", "db")
    assert load_config_cached(path, resolve_env=True)["connection_settings"]["host"] == "db"
    monkeypatch.setenv("PGMONKEY_PW", "two")
    assert load_config_cached(path, resolve_env=True)["connection_settings"]["password"] == "two"
    monkeypatch.delenv("PGMONKEY_PW")
    with pytest.raises(EnvInterpolationError, match="PGMONKEY_PW"):
        load_config_cached(path, resolve_env=True)


def test_secret_file_change_is_picked_up(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("first\n", encoding="utf-8")
    path = write(
        tmp_path / "c.yaml", f"connection_settings:\n  password:\n    from_file: {secret}\n"
    )
    assert load_config_cached(path, resolve_env=True)["connection_settings"]["password"] == "first"
    secret.write_text("second-longer\n", encoding="utf-8")
    assert (
        load_config_cached(path, resolve_env=True)["connection_settings"]["password"]
        == "second-longer"
    )
    secret.unlink()
    with pytest.raises(EnvInterpolationError, match="not found"):
        load_config_cached(path, resolve_env=True)


def test_errors_are_not_cached(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    with pytest.raises(ConfigError, match="not found"):
        load_config_cached(path)
    write(path, "connection_settings: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config_cached(path)
    write(path, TEXT)
    assert load_config_cached(path)["pool_settings"] == {"max_size": 5}
    path.unlink()
    with pytest.raises(ConfigError, match="not found"):
        load_config_cached(path)


def test_warnings_once_per_file_version(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "c.yaml", "connection_settings:\n  host: h\n  hots: typo\n")
    with caplog.at_level(logging.WARNING, logger="pgmonkey.config"):
        for _ in range(3):
            load_config_cached(path, strict=False)
    assert len(caplog.records) == 1
    assert "connection_settings.hots" in caplog.records[0].getMessage()


def test_clear_config_cache(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", TEXT)
    first = load_config_cached(path)
    clear_config_cache()
    again = load_config_cached(path)
    assert again == first and again is not first
