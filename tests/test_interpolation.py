"""Environment and secret-file interpolation: one test per rule of the 4.0 documentation."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgmonkey import ConfigError, EnvInterpolationError, load_config
from pgmonkey.config import connect_params, pool_settings, resolve_config

SECRET = "S3cr3t-Pa55"
LOGGER = "pgmonkey.config"


def write(tmp_path: Path, doc: dict[str, Any] | str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    path.chmod(0o600)
    return path


def cs(**settings: Any) -> dict[str, Any]:
    return {"connection_settings": settings}


def everything(exc: BaseException) -> str:
    return str(exc) + repr(exc.args) + "".join(traceback.format_exception(exc))


# -- interpolation is opt-in -------------------------------------------------------------------


def test_disabled_by_default_values_are_literal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGMONKEY_HOST", "resolved")
    doc = {
        "connection_settings": {
            "host": "${PGMONKEY_HOST}",
            "user": "${PGMONKEY_MISSING}",
            "password": {"from_env": "PGMONKEY_HOST"},
            "dbname": "${not valid",
        }
    }
    cfg = load_config(write(tmp_path, doc))
    assert cfg == doc
    assert resolve_config(doc) == doc
    assert load_config(write(tmp_path, doc), resolve_env=False) == doc


# -- ${VAR} and ${VAR:-default} ----------------------------------------------------------------


def test_var_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMONKEY_HOST", "db.prod.example")
    cfg = load_config(write(tmp_path, cs(host="${PGMONKEY_HOST}")), resolve_env=True)
    assert cfg["connection_settings"]["host"] == "db.prod.example"


def test_default_used_when_unset(tmp_path: Path) -> None:
    doc = cs(
        user="${PGMONKEY_USER:-postgres}",
        host="${PGMONKEY_HOST:-localhost}",
        port="${PGMONKEY_PORT:-5432}",
        dbname="${PGMONKEY_DB:-mydb}",
    )
    cfg = load_config(write(tmp_path, doc), resolve_env=True)
    assert cfg["connection_settings"] == {
        "user": "postgres",
        "host": "localhost",
        "port": "5432",
        "dbname": "mydb",
    }


def test_environment_wins_over_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMONKEY_HOST", "from-env")
    monkeypatch.setenv("PGMONKEY_EMPTY", "")
    doc = cs(host="${PGMONKEY_HOST:-localhost}", application_name="${PGMONKEY_EMPTY:-x}")
    cfg = load_config(write(tmp_path, doc), resolve_env=True)
    assert cfg["connection_settings"]["host"] == "from-env"
    # Set to the empty string is set: the default applies only to an unset variable.
    assert cfg["connection_settings"]["application_name"] == ""


def test_empty_default_and_default_with_colons(tmp_path: Path) -> None:
    doc = cs(options="${PGMONKEY_OPTS:-}", host="${PGMONKEY_H:-a:b-c}")
    cfg = load_config(write(tmp_path, doc), resolve_env=True)
    assert cfg["connection_settings"] == {"options": "", "host": "a:b-c"}


def test_missing_variable_raises_naming_variable_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, cs(host="${PGMONKEY_HOST}"))
    for kwargs in ({"resolve_env": True}, {"resolve_env": True, "strict": True}):
        with pytest.raises(EnvInterpolationError) as info:
            load_config(path, **kwargs)
        message = str(info.value)
        assert "'PGMONKEY_HOST'" in message
        assert "connection_settings.host" in message
        assert str(path) in message
        assert isinstance(info.value, ConfigError)


def test_missing_variable_non_strict_leaves_reference_and_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PGMONKEY_PORT", "6543")
    doc = cs(host="${PGMONKEY_HOST}", port="${PGMONKEY_PORT}", user="${PGMONKEY_U:-me}")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cfg = load_config(write(tmp_path, doc), resolve_env=True, strict=False)
    assert cfg["connection_settings"] == {"host": "${PGMONKEY_HOST}", "port": "6543", "user": "me"}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "'PGMONKEY_HOST'" in messages[0] and "connection_settings.host" in messages[0]


def test_non_strict_unresolved_pool_value_is_deferred(tmp_path: Path) -> None:
    doc = {**cs(host="h"), "pool_settings": {"max_size": "${PGMONKEY_MAX}"}}
    cfg = load_config(write(tmp_path, doc), resolve_env=True, strict=False)
    assert cfg["pool_settings"] == {"max_size": "${PGMONKEY_MAX}"}
    with pytest.raises(ConfigError, match=r"pool_settings\.max_size"):
        pool_settings(cfg, "pool")


def test_several_references_in_one_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMONKEY_HOST", "db")
    monkeypatch.setenv("PGMONKEY_PORT", "5433")
    doc = cs(application_name="${PGMONKEY_HOST}:${PGMONKEY_PORT}/${PGMONKEY_X:-app}-$x $")
    cfg = load_config(write(tmp_path, doc), resolve_env=True)
    assert cfg["connection_settings"]["application_name"] == "db:5433/app-$x $"


def test_non_string_values_pass_through(tmp_path: Path) -> None:
    doc = {
        **cs(port=5432, keepalives=1, connect_timeout=None, autocommit=True),
        "pool_settings": {"min_size": 2, "max_size": 4, "timeout": 1.5, "check_on_checkout": True},
    }
    cfg = load_config(write(tmp_path, doc), resolve_env=True)
    assert cfg["connection_settings"] == {
        "port": 5432,
        "keepalives": 1,
        "connect_timeout": None,
        "autocommit": True,
    }
    assert cfg["pool_settings"] == doc["pool_settings"]


def test_references_everywhere_and_normalised_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGMONKEY_MAX", "12")
    doc = {
        "connection_type": "${PGMONKEY_TYPE:-pool}",
        **cs(host="h"),
        "pool_settings": {"max_size": "${PGMONKEY_MAX}", "min_size": "${PGMONKEY_MIN:-3}"},
        "sync_settings": {"statement_timeout": "${PGMONKEY_ST:-5s}"},
        "extra": {"hosts": ["${PGMONKEY_MAX}", 7]},
    }
    cfg = load_config(write(tmp_path, doc), resolve_env=True)
    assert cfg["connection_type"] == "pool"
    assert cfg["pool_settings"] == {"max_size": 12, "min_size": 3}
    assert cfg["sync_settings"] == {"statement_timeout": "5s"}
    assert cfg["extra"] == {"hosts": ["12", 7]}


def test_key_path_of_a_list_item(tmp_path: Path) -> None:
    doc = {**cs(host="h"), "extra": {"hosts": ["ok", "${PGMONKEY_NOPE}"]}}
    with pytest.raises(EnvInterpolationError, match=r"extra\.hosts\[1\]"):
        load_config(write(tmp_path, doc), resolve_env=True)


# -- malformed ${...} --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("${PGMONKEY_HOST", "unclosed"),
        ("x-${", "unclosed"),
        ("${}", "empty variable name"),
        ("${:-default}", "empty variable name"),
        ("${1ABC}", "invalid variable name"),
        ("${A B}", "invalid variable name"),
        ("${HOST:default}", "invalid variable name"),
        ("${HOST-default}", "invalid variable name"),
    ],
)
def test_bad_reference_syntax(tmp_path: Path, value: str, problem: str) -> None:
    path = write(tmp_path, cs(host=value))
    with pytest.raises(EnvInterpolationError, match=problem) as info:
        load_config(path, resolve_env=True, strict=False)  # syntax errors ignore strict
    assert "connection_settings.host" in str(info.value)
    assert repr(value) in str(info.value)


def test_bad_reference_syntax_in_a_password_is_redacted(tmp_path: Path) -> None:
    path = write(tmp_path, cs(password=f"{SECRET}${{oops"))
    with pytest.raises(EnvInterpolationError, match="unclosed") as info:
        load_config(path, resolve_env=True)
    assert "connection_settings.password = '***REDACTED***'" in str(info.value)
    assert SECRET not in everything(info.value)


# -- from_env / from_file ----------------------------------------------------------------------


def test_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMONKEY_DB_PASSWORD", SECRET)
    path = write(tmp_path, cs(password={"from_env": "PGMONKEY_DB_PASSWORD"}))
    cfg = load_config(path, resolve_env=True)
    assert cfg["connection_settings"]["password"] == SECRET


def test_from_env_missing_raises(tmp_path: Path) -> None:
    path = write(tmp_path, cs(password={"from_env": "PGMONKEY_DB_PASSWORD"}))
    with pytest.raises(EnvInterpolationError) as info:
        load_config(path, resolve_env=True)
    assert "'PGMONKEY_DB_PASSWORD'" in str(info.value)
    assert "connection_settings.password" in str(info.value)


def test_from_env_missing_non_strict_keeps_reference(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, cs(password={"from_env": "PGMONKEY_DB_PASSWORD"}))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cfg = load_config(path, resolve_env=True, strict=False)
    assert cfg["connection_settings"]["password"] == {"from_env": "PGMONKEY_DB_PASSWORD"}
    assert "PGMONKEY_DB_PASSWORD" in caplog.text
    with pytest.raises(ConfigError, match="not resolved"):
        connect_params(cfg)


def test_from_file_trims_the_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    multi = tmp_path / "multi"
    multi.write_text(" a\nb \n", encoding="utf-8")
    bare = tmp_path / "bare"
    bare.write_text(SECRET, encoding="utf-8")
    doc = cs(
        password={"from_file": str(secret)},
        options={"from_file": str(multi)},
        user={"from_file": str(bare)},
    )
    cfg = load_config(write(tmp_path, doc), resolve_env=True)
    assert cfg["connection_settings"] == {"password": SECRET, "options": " a\nb ", "user": SECRET}


def test_from_file_missing_raises_even_non_strict(tmp_path: Path) -> None:
    target = tmp_path / "nope"
    path = write(tmp_path, cs(password={"from_file": str(target)}))
    for strict in (True, False):
        with pytest.raises(EnvInterpolationError, match="not found") as info:
            load_config(path, resolve_env=True, strict=strict)
        assert str(target) in str(info.value)
        assert "connection_settings.password.from_file" in str(info.value)


def test_from_file_unreadable_raises(tmp_path: Path) -> None:
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + SECRET.encode())
    for target in (tmp_path, binary):  # a directory; not text
        path = write(tmp_path, cs(password={"from_file": str(target)}))
        with pytest.raises(EnvInterpolationError, match="cannot read") as info:
            load_config(path, resolve_env=True)
        assert str(target) in str(info.value)
        assert SECRET not in everything(info.value)


def test_structured_ref_needs_exactly_one_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGMONKEY_X", "x")
    # More keys: ordinary nested config, walked like any other mapping.
    nested = {"from_env": "PGMONKEY_X", "other": "${PGMONKEY_X}"}
    cfg = load_config(write(tmp_path, {**cs(host="h"), "extra": nested}), resolve_env=True)
    assert cfg["extra"] == {"from_env": "PGMONKEY_X", "other": "x"}
    # ... which connection_settings does not take.
    with pytest.raises(ConfigError, match=r"connection_settings\.password") as info:
        load_config(write(tmp_path, cs(password=nested)), resolve_env=True)
    assert not isinstance(info.value, EnvInterpolationError)


# -- the sensitive-default guard ---------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["password", "sslkey", "sslcert", "sslrootcert", "api_token", "MySecret", "credentials"]
)
def test_sensitive_default_refused(tmp_path: Path, key: str) -> None:
    doc = {**cs(host="h"), "extra": {key: f"${{PGMONKEY_PW:-{SECRET}}}"}}
    if key in ("password", "sslkey", "sslcert", "sslrootcert"):
        doc = cs(**{key: f"${{PGMONKEY_PW:-{SECRET}}}"})
    path = write(tmp_path, doc)
    with pytest.raises(EnvInterpolationError, match="allow_sensitive_defaults") as info:
        load_config(path, resolve_env=True)
    assert key in str(info.value)
    assert "PGMONKEY_PW" in str(info.value)
    assert SECRET not in everything(info.value)


def test_sensitive_default_refused_even_when_variable_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rule is about the config as written: it must not ship a fallback password.
    monkeypatch.setenv("PGMONKEY_PW", "from-env")
    path = write(tmp_path, cs(password="${PGMONKEY_PW:-fallback}"))
    with pytest.raises(EnvInterpolationError, match="sensitive"):
        load_config(path, resolve_env=True)


def test_sensitive_default_allowed_on_request(tmp_path: Path) -> None:
    path = write(tmp_path, cs(password="${PGMONKEY_PW:-dev}", host="${PGMONKEY_H:-localhost}"))
    cfg = load_config(path, resolve_env=True, allow_sensitive_defaults=True)
    assert cfg["connection_settings"] == {"password": "dev", "host": "localhost"}


def test_default_fine_for_non_sensitive_key(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, cs(host="${PGMONKEY_H:-db-service}")), resolve_env=True)
    assert cfg["connection_settings"]["host"] == "db-service"


# -- secrets stay out of messages --------------------------------------------------------------


def test_resolved_secret_never_in_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PGMONKEY_PW", SECRET)
    secret_file = tmp_path / "key"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    doc = {
        **cs(password="${PGMONKEY_PW}", sslpassword={"from_file": str(secret_file)}, bogus="x"),
        "pool_settings": {"max_size": "${PGMONKEY_NOPE:-zero}"},
    }
    with caplog.at_level(logging.DEBUG, logger="pgmonkey"):
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, doc), resolve_env=True, strict=False)
    assert "pool_settings.max_size = '${PGMONKEY_NOPE:-zero}' (resolved" in str(info.value)
    assert SECRET not in everything(info.value)
    assert SECRET not in caplog.text
    assert "bogus" in caplog.text


def test_resolve_config_dict_with_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMONKEY_PW", SECRET)
    doc = cs(password={"from_env": "PGMONKEY_PW"}, host="${PGMONKEY_H:-h}")
    cfg = resolve_config(doc, resolve_env=True)
    assert cfg["connection_settings"] == {"password": SECRET, "host": "h"}
    assert doc["connection_settings"]["password"] == {"from_env": "PGMONKEY_PW"}  # not mutated
    with pytest.raises(EnvInterpolationError, match=r"^app\.yaml: connection_settings\.user"):
        resolve_config(cs(user="${PGMONKEY_U}"), resolve_env=True, source="app.yaml")
