"""redact_config: the 4.0 rule, at both import paths; secrets never shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import pgmonkey
from pgmonkey.common.utils import redaction
from pgmonkey.config import REDACTED, connect_params, is_sensitive_key, load_config, redact_config

SECRET = "S3cr3t-Pa55"


def test_both_import_paths_are_one_function() -> None:
    assert pgmonkey.redact_config is redact_config
    assert redaction.redact_config is redact_config
    assert redaction.REDACTED == REDACTED == "***REDACTED***"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "sslkey",
        "sslcert",
        "sslrootcert",
        "sslpassword",
        "api_token",
        "TOKEN",
        "client_secret",
        "oauth_client_secret",
        "aws_credentials",
        "Credential",
        # By pattern, not by exact name:
        "admin_password",
        "PGPASSWORD",
        "PgPassword",
        "api_key",
        "apiKey",
        "ssh-key",
        "passphrase",
        "db_passwd",
        "db_pwd",
        "scram_client_key",
        "oauth_client_secret",
        "private_key",
    ],
)
def test_sensitive_keys(key: str) -> None:
    assert is_sensitive_key(key)
    assert redact_config({key: SECRET}) == {key: REDACTED}


@pytest.mark.parametrize(
    "key",
    [
        *("user", "host", "port", "dbname", "sslmode", "passfile", 5, None, "pgmonkey"),
        *("keepalives", "application_name", "options", "sslcrl", "min_size", "monkey_keys"),
    ],
)
def test_ordinary_keys(key: Any) -> None:
    assert not is_sensitive_key(key)
    assert redact_config({key: "v"}) == {key: "v"}


def test_nested_lists_and_untouched_input() -> None:
    cfg: dict[str, Any] = {
        "connection_settings": {"password": SECRET, "host": "db.prod.com", "port": 5432},
        "extra": [{"token": SECRET}, "plain", 3],
        "pool_settings": {"max_size": 20},
    }
    out = redact_config(cfg)
    assert out == {
        "connection_settings": {"password": REDACTED, "host": "db.prod.com", "port": 5432},
        "extra": [{"token": REDACTED}, "plain", 3],
        "pool_settings": {"max_size": 20},
    }
    assert cfg["connection_settings"]["password"] == SECRET  # a copy, not in place
    assert out["pool_settings"] is not cfg["pool_settings"]


def test_empty_and_none_left_as_is() -> None:
    cfg = {"password": "", "sslkey": None, "sslcert": "", "secret": 0}
    assert redact_config(cfg) == {"password": "", "sslkey": None, "sslcert": "", "secret": REDACTED}


def test_a_whole_sensitive_section_is_redacted() -> None:
    assert redact_config({"credentials": {"user": "u", "pw": SECRET}}) == {"credentials": REDACTED}


def test_non_mappings_pass_through() -> None:
    assert redact_config("text") == "text"
    assert redact_config(None) is None
    assert redact_config([{"password": SECRET}]) == [{"password": REDACTED}]


def test_redacting_a_loaded_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMONKEY_DB_PASSWORD", SECRET)
    path = tmp_path / "config.yaml"
    path.write_text(
        "connection_settings:\n"
        "  password:\n    from_env: PGMONKEY_DB_PASSWORD\n"
        "  host: db.prod.com\n  sslrootcert: ''\n",
        encoding="utf-8",
    )
    cfg = load_config(path, resolve_env=True)
    assert cfg["connection_settings"]["password"] == SECRET
    shown = redact_config(cfg)
    assert shown == {
        "connection_settings": {"password": REDACTED, "host": "db.prod.com", "sslrootcert": ""}
    }
    assert SECRET not in repr(shown)
    assert SECRET not in repr(connect_params(cfg))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (f"postgresql://app:{SECRET}@db/x", "postgresql://app:***REDACTED***@db/x"),
        (f"postgres://:{SECRET}@db", "postgres://:***REDACTED***@db"),
        (f"postgresql://app:p@{SECRET}@db/x", "postgresql://app:***REDACTED***@db/x"),
        (
            f"postgresql://db/x?password={SECRET}&a=1",
            "postgresql://db/x?password=***REDACTED***&a=1",
        ),
        (f"host=db password={SECRET} user=u", "host=db password=***REDACTED*** user=u"),
        (f"host=db password = '{SECRET} \\' x'", "host=db password = ***REDACTED***"),
        ("postgresql://app@db/x", "postgresql://app@db/x"),
        ("-c password_encryption=scram-sha-256", "-c password_encryption=scram-sha-256"),
    ],
)
def test_credentials_inside_any_value(value: str, shown: str) -> None:
    assert redact_config({"dbname": value}) == {"dbname": shown}
    assert redact_config([value]) == [shown]


def test_a_structure_that_contains_itself() -> None:
    cfg: dict[str, Any] = {"password": SECRET, "host": "h"}
    cfg["self"] = cfg
    assert redact_config(cfg) == {"password": REDACTED, "host": "h", "self": "..."}
