"""Hostile and careless configs: no secret in any error, no hang, no silent surprise.

Secrets in errors (YAML tags, explicit tags that do not fit, a DSN as connection_settings,
resolved references, psycopg's connect error), redaction by pattern, alias bombs and
files that never end, YAML 1.1 retyping of text values, typo'd keys and unresolved
references: each with the text a user sees.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgmonkey import ConfigError, EnvInterpolationError, load_config
from pgmonkey._connect import connect_error, sanitized_connect, sanitized_connect_async
from pgmonkey.config import (
    clear_config_cache,
    connect_params,
    load_config_cached,
    redact_config,
    resolve_config,
    session_settings,
)
from pgmonkey.errors import ConnectError, PgMonkeyError

SECRET = "Zq9-HOSTILE-pw-6620"
LOGGER = "pgmonkey.config"


def write(tmp_path: Path, text: str, *, mode: int = 0o600, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def everything(exc: BaseException) -> str:
    """All a user, a log or a crash reporter could see of *exc*: message, args, traceback,
    every chained exception, and the repr of every attribute of each."""
    texts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        texts += [str(e), repr(e), repr(e.args), "".join(traceback.format_exception(e))]
        texts += [f"{k}={v!r}" for k, v in vars(e).items()]
        texts += [repr(getattr(e, "pgconn", None))]
        todo += [e.__cause__, e.__context__]
    return "\n".join(texts)


def refused(load: Callable[[], object], exc: type[Exception] = ConfigError) -> ConfigError:
    with pytest.raises(exc) as info:
        load()
    assert isinstance(info.value, ConfigError)
    return info.value


def finishes(fn: Callable[[], object]) -> BaseException | None:
    """Run *fn* in a thread; it must end (a deadline only a hang reaches)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as e:  # handed back to the test
            outcome.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "hung"
    return outcome[0]


# == secrets in errors ======================================================================


def test_yaml_tag_error_never_quotes_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, f"connection_settings:\n  host: h\n  password: !{SECRET}\n")
    err = refused(lambda: load_config(path))
    assert str(err) == (
        f"{path}: invalid YAML at line 3, column 13: could not determine a constructor for "
        "the tag: a value starting with '!' is read as a YAML tag; put the value in quotes"
    )
    assert SECRET not in everything(err)
    assert err.__context__ is None and err.__cause__ is None


@pytest.mark.parametrize(
    "text",
    [
        f"keepalives: !!int {SECRET}",
        f"keepalives: !!float {SECRET}",
        f"keepalives: !!bool {SECRET}",
        f"keepalives: !!timestamp {SECRET}",
        "keepalives: !!int ''",
        f"sslmode: !!bool {SECRET}",
    ],
)
def test_explicit_tags_that_do_not_fit_are_config_errors(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, f"connection_settings:\n  host: h\n  {text}\n")
    err = refused(lambda: load_config(path))
    assert "invalid YAML at line 3, column " in str(err)
    assert "the value does not fit its tag !!" in str(err)
    assert SECRET not in everything(err)
    assert err.__context__ is None and err.__cause__ is None


def test_explicit_tags_elsewhere_are_config_errors(tmp_path: Path) -> None:
    for text in (f"extra: !!int {SECRET}\n", f"pool_settings:\n  max_size: !!float {SECRET}\n"):
        path = write(tmp_path, "connection_settings:\n  host: h\n" + text)
        err = refused(lambda p=path: load_config(p))
        assert "does not fit its tag" in str(err)
        assert SECRET not in everything(err)


def test_text_keys_keep_explicitly_tagged_values_as_text(tmp_path: Path) -> None:
    path = write(tmp_path, f"connection_settings:\n  password: !!int {SECRET}\n  user: !!bool X\n")
    assert load_config(path)["connection_settings"] == {"password": SECRET, "user": "X"}


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://app:{SECRET}@db.example.com:5432/app",
        f"host=db.example.com password={SECRET} dbname=app",
        f"host=db.example.com password='{SECRET} x' dbname=app",
    ],
)
def test_dsn_as_connection_settings_is_not_quoted(tmp_path: Path, dsn: str) -> None:
    path = write(tmp_path, yaml.safe_dump({"connection_settings": dsn}))
    err = refused(lambda: load_config(path))
    assert str(err) == (
        f"{path}: connection_settings is a string (a connection URI or DSN?), not shown: "
        "expected a mapping of libpq connection parameters, one per line "
        "(host: ..., dbname: ..., user: ...)"
    )
    assert SECRET not in everything(err)
    assert "db.example.com" not in str(err)


@pytest.mark.parametrize(
    ("key", "ref"),
    [
        ("port", "'${PGM_HOSTILE}'"),
        ("sslmode", "'${PGM_HOSTILE}'"),
        ("connect_timeout", "{from_env: PGM_HOSTILE}"),
        ("target_session_attrs", "'pre-${PGM_HOSTILE}'"),
        ("sslmode", "{from_file: SECRET_FILE}"),
    ],
)
def test_resolved_values_are_not_quoted_on_any_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, ref: str
) -> None:
    monkeypatch.setenv("PGM_HOSTILE", SECRET)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    ref = ref.replace("SECRET_FILE", str(secret_file))
    path = write(tmp_path, f"connection_settings:\n  host: h\n  {key}: {ref}\n")
    err = refused(lambda: load_config(path, resolve_env=True))
    message = str(err)
    assert f"connection_settings.{key} = " in message
    assert "(resolved value not shown)" in message
    assert SECRET not in everything(err)


@pytest.mark.parametrize(
    ("key", "expected"),
    [("max_size", "a positive integer"), ("timeout", "a positive number of seconds")],
)
def test_resolved_pool_value_shows_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, expected: str
) -> None:
    monkeypatch.setenv("PGM_HOSTILE", SECRET)
    path = write(
        tmp_path, f"connection_settings:\n  host: h\npool_settings:\n  {key}: ${{PGM_HOSTILE}}\n"
    )
    err = refused(lambda: load_config(path, resolve_env=True))
    assert str(err) == (
        f"{path}: pool_settings.{key} = '${{PGM_HOSTILE}}' (resolved value not shown): "
        f"expected {expected}"
    )
    assert SECRET not in everything(err)


def test_secret_file_errors_never_hold_its_bytes(tmp_path: Path) -> None:
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff" + SECRET.encode())
    path = write(tmp_path, f"connection_settings:\n  password:\n    from_file: {binary}\n")
    err = refused(lambda: load_config(path, resolve_env=True), EnvInterpolationError)
    assert "cannot read the secret file: not UTF-8 text (byte 0)" in str(err)
    assert SECRET not in everything(err)
    assert err.__context__ is None


def test_connect_error_is_sanitised(password_config: Path) -> None:
    params = conninfo_to_dict(connect_params(load_config(password_config)).conninfo)
    params["password"] = SECRET  # a wrong password: the server refuses it
    conninfo = make_conninfo(**params)
    # psycopg's own error keeps the attempt, password included: what is fixed here.
    with pytest.raises(psycopg.OperationalError) as raw:
        psycopg.connect(conninfo)
    assert SECRET in repr(raw.value.pgconn)

    with pytest.raises(ConnectError) as info:
        sanitized_connect(psycopg.connect, conninfo=conninfo)
    err = info.value
    assert isinstance(err, psycopg.OperationalError) and isinstance(err, PgMonkeyError)
    assert "password authentication failed" in str(err)
    assert err.pgconn is None
    assert err.__cause__ is None and err.__context__ is None and err.__suppress_context__
    assert SECRET not in everything(err)

    async def connect_async() -> None:
        await sanitized_connect_async(psycopg.AsyncConnection.connect, conninfo=conninfo)

    with pytest.raises(ConnectError) as ainfo:
        asyncio.run(connect_async())
    assert "password authentication failed" in str(ainfo.value)
    assert SECRET not in everything(ainfo.value)


def test_connect_error_redacts_credentials_in_the_message() -> None:
    class Fake(psycopg.OperationalError):
        pass

    exc = Fake(
        f'could not translate host name "{SECRET}x" to address\n'
        f"  while connecting to postgresql://u:{SECRET}@h/db (password={SECRET})"
    )
    err = connect_error(exc, conninfo=make_conninfo(host="h", password=SECRET))
    assert SECRET not in str(err)
    assert "could not translate host name" in str(err)
    assert "\n" not in str(err)
    assert err.pgconn is None


# == redaction by pattern ===================================================================


SENSITIVE = ["admin_password", "PGPASSWORD", "api_key", "apiKey", "passphrase", "sslpassword"]
SENSITIVE += ["auth_token", "client_secret", "private_key", "db_pwd", "oauth_client_secret"]


@pytest.mark.parametrize("key", SENSITIVE)
def test_redaction_by_pattern_in_any_section(tmp_path: Path, key: str) -> None:
    doc = {
        "connection_settings": {"host": "h"},
        "sync_settings": {"app.x": "1"},
        "extras": {key: SECRET, "nested": [{key: SECRET}]},
    }
    path = write(tmp_path, yaml.safe_dump(doc))
    shown = redact_config(load_config(path))
    assert SECRET not in repr(shown)
    assert shown["extras"][key] == "***REDACTED***"


def test_url_with_password_in_dbname_is_redacted_and_checked(tmp_path: Path) -> None:
    url = f"postgresql://app:{SECRET}@db.example.com:5432/app?sslmode=require"
    path = write(tmp_path, yaml.safe_dump({"connection_settings": {"dbname": url}}))
    cfg = load_config(path)
    assert cfg["connection_settings"]["dbname"] == url  # libpq takes it as written
    shown = redact_config(cfg)["connection_settings"]["dbname"]
    assert shown == "postgresql://app:***REDACTED***@db.example.com:5432/app?sslmode=require"
    # Its parameters are checked like top-level ones, and no message shows the password.
    bad = url.replace("sslmode=require", "sslmode=maybe")
    path = write(tmp_path, yaml.safe_dump({"connection_settings": {"dbname": bad}}))
    err = refused(lambda: load_config(path))
    assert "connection_settings.dbname.sslmode = 'maybe'" in str(err)
    assert SECRET not in everything(err)
    path = write(tmp_path, yaml.safe_dump({"connection_settings": {"dbname": url + "&bogus=1"}}))
    err = refused(lambda: load_config(path))
    assert "holds a connection URI or key=value string that libpq cannot parse" in str(err)
    assert SECRET not in everything(err)


def test_conninfo_in_any_value_is_redacted() -> None:
    cfg = {"connection_settings": {"options": f"password={SECRET} x"}, "notes": [f"a:{SECRET}"]}
    cfg["notes"].append(f"see postgres://u:{SECRET}@h/db")
    cfg["notes"].append(f"sslpassword = '{SECRET} y' client_secret={SECRET}&x=1")
    shown = repr(redact_config(cfg))
    assert SECRET in shown  # "a:SECRET" alone is no credential: left as it is
    assert shown.count(SECRET) == 1
    # A setting named after a password is not one.
    options = {"options": "-c password_encryption=scram-sha-256"}
    assert redact_config(options) == options


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(
    ("settings", "where"),
    [
        ({"sslpassword": SECRET}, "connection_settings.sslpassword"),
        ({"dbname": f"postgresql://u:{SECRET}@h/db"}, "connection_settings.dbname"),
        ({"host": "h", "PGPASSWORD": None}, None),
    ],
)
def test_readable_config_with_any_literal_secret_warns(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    settings: dict[str, Any],
    where: str | None,
) -> None:
    path = write(tmp_path, yaml.safe_dump({"connection_settings": settings}), mode=0o644)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_config(path, strict=False)
    messages = [r.getMessage() for r in caplog.records if "group or others" in r.getMessage()]
    if where is None:
        assert messages == []
        return
    assert messages == [
        f"{path} holds a literal password or other secret ({where}) and is readable by group "
        "or others (mode 0o644): restrict it with 'chmod 600', or use from_env / from_file"
    ]
    assert SECRET not in caplog.text


# == hangs: alias bombs, recursion, FIFOs, endless files =====================================


def _billion_laughs() -> str:
    lines = ["connection_settings:\n  host: h\n", 'a: &a ["lol","lol","lol","lol","lol","lol"]\n']
    prev = "a"
    for name in "bcdefghijkl":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n")
        prev = name
    return "".join(lines)


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    text = _billion_laughs()
    assert len(text) < 1000
    path = write(tmp_path, text)
    for load in (
        lambda: load_config(path),
        lambda: load_config(path, resolve_env=True),
        lambda: load_config_cached(path),
    ):
        err = finishes(load)
        assert isinstance(err, ConfigError)
        assert str(err) == (
            f"{path}: refused: the YAML holds more than 100,000 values once its aliases are "
            "expanded (an alias bomb?); a config holds a few dozen"
        )


def test_ordinary_anchors_and_merges_still_work(tmp_path: Path) -> None:
    text = (
        "base: &base\n  host: db\n  port: 5432\n  user: app\n"
        "connection_settings:\n  <<: *base\n  dbname: 0123\n"
        "pool_settings: &pool\n  max_size: 4\nasync_pool_settings: *pool\n"
    )
    cfg = load_config(write(tmp_path, text), strict=False)
    assert cfg["connection_settings"] == {
        "host": "db",
        "port": 5432,
        "user": "app",
        "dbname": "0123",
    }
    assert cfg["async_pool_settings"] == {"max_size": 4}


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    # PyYAML kept the last value without a word: the second host silently won.
    text = (
        "connection_settings:\n  host: db\n  password: 'S3cret-1'\n  user: app\n"
        "  password: 'S3cret-2'\n"
    )
    err = finishes(lambda: load_config(write(tmp_path, text)))
    assert isinstance(err, ConfigError), repr(err)
    assert str(err).endswith(
        "invalid YAML at line 5, column 3: the key 'password' is given twice (first at line 3)"
        ": keep one"
    )
    assert "S3cret" not in everything(err)
    # In a nested mapping, and with a key that is not a name (not shown).
    for text, said in (
        ("connection_settings:\n  host: h\nsync_settings:\n  a: 1\n  a: 2\n", "'a'"),
        ("connection_settings:\n  host: h\nx:\n  'p@ss w': 1\n  'p@ss w': 2\n", "a key"),
    ):
        err = finishes(lambda text=text: load_config(write(tmp_path, text), strict=False))
        assert isinstance(err, ConfigError), repr(err)
        assert f"{said} is given twice" in str(err) and "p@ss" not in everything(err)


@pytest.mark.parametrize(
    "text",
    ["x: &a [*a]\n", "x: &a {y: *a}\n", "x: &a [1, [2, *a]]\n", "x: &a {<<: *a}\n"],
)
def test_self_referencing_alias_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "connection_settings:\n  host: h\n" + text)
    err = finishes(lambda: load_config(path))
    assert isinstance(err, ConfigError), repr(err)
    assert "an alias refers to a value that contains it (a config cannot be recursive)" in str(err)


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "connection_settings:\n  host: h\nx: " + "[" * 500 + "]" * 500 + "\n")
    err = finishes(lambda: load_config(path))
    assert isinstance(err, ConfigError), repr(err)
    assert "invalid YAML" in str(err) and "nest" in str(err)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs")
def test_fifo_as_config_or_secret_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    err = finishes(lambda: load_config(fifo))
    assert isinstance(err, ConfigError)
    assert str(err) == (
        f"cannot read config file {str(fifo)!r}: it is a FIFO (named pipe), not a regular file"
    )
    path = write(tmp_path, f"connection_settings:\n  password:\n    from_file: {fifo}\n")
    err = finishes(lambda: load_config(path, resolve_env=True))
    assert isinstance(err, EnvInterpolationError)
    assert "cannot read the secret file: it is a FIFO (named pipe), not a regular file" in str(err)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="/dev/zero")
def test_endless_files_are_refused(tmp_path: Path) -> None:
    err = finishes(lambda: load_config("/dev/zero"))
    assert isinstance(err, ConfigError)
    assert "it is a character device, not a regular file" in str(err)
    path = write(tmp_path, "connection_settings:\n  password:\n    from_file: /dev/zero\n")
    err = finishes(lambda: load_config(path, resolve_env=True))
    assert isinstance(err, EnvInterpolationError)
    assert "it is a character device, not a regular file" in str(err)


def test_size_limits(tmp_path: Path) -> None:
    big = write(tmp_path, "connection_settings:\n  host: h\n# " + "x" * (1024 * 1024) + "\n")
    err = refused(lambda: load_config(big))
    assert str(err) == f"cannot read config file {str(big)!r}: larger than 1,048,576 bytes"
    secret = tmp_path / "huge-secret"
    secret.write_bytes(b"s" * (64 * 1024 + 1))
    path = write(tmp_path, f"connection_settings:\n  password:\n    from_file: {secret}\n")
    err = refused(lambda: load_config(path, resolve_env=True), EnvInterpolationError)
    assert "cannot read the secret file: larger than 65,536 bytes" in str(err)


# == YAML 1.1 retyping of text values ======================================================


@pytest.mark.parametrize(
    ("key", "written", "kept"),
    [
        ("password", "0123", "0123"),  # octal: would be 83
        ("password", "12:30", "12:30"),  # sexagesimal: would be 750
        ("password", "1_000", "1_000"),
        ("password", "0x1F", "0x1F"),
        ("password", "1e3", "1e3"),
        ("password", "yes", "yes"),  # would be True, sent as "1"
        ("password", "Off", "Off"),
        ("password", ".inf", ".inf"),
        ("user", "0777", "0777"),
        ("dbname", "2024-01-01", "2024-01-01"),  # would be a date
        ("application_name", "1:2:3", "1:2:3"),
        ("host", "10.10", "10.10"),
        ("options", "12:30", "12:30"),
        ("sslpassword", "0123", "0123"),
        ("port", "05432", "05432"),  # octal 2842 otherwise; libpq reads 5432
        ("port", "5432", 5432),
    ],
)
def test_text_values_stay_as_written(tmp_path: Path, key: str, written: str, kept: Any) -> None:
    cfg = load_config(write(tmp_path, f"connection_settings:\n  {key}: {written}\n"))
    assert cfg["connection_settings"][key] == kept
    assert conninfo_to_dict(connect_params(cfg).conninfo)[key] == str(kept)


def test_session_settings_stay_as_written(tmp_path: Path) -> None:
    text = "connection_settings:\n  host: h\nsync_settings:\n  statement_timeout: 0123\n"
    text += "  DateStyle: 12:30\n  jit: off\n"
    cfg = load_config(write(tmp_path, text))
    assert session_settings(cfg, "normal") == {
        "statement_timeout": "0123",
        "DateStyle": "12:30",
        "jit": "off",
    }


def test_numbers_and_switches_stay_numbers(tmp_path: Path) -> None:
    text = "connection_settings:\n  host: h\n  keepalives: 1\n  connect_timeout: 10\n"
    text += "  autocommit: yes\n  sslmode: off\n"
    err = refused(lambda: load_config(write(tmp_path, text)))
    assert "connection_settings.sslmode = False" in str(err)  # not a libpq sslmode
    cfg = load_config(write(tmp_path, text.replace("  sslmode: off\n", "")))
    assert cfg["connection_settings"] == {
        "host": "h",
        "keepalives": 1,
        "connect_timeout": 10,
        "autocommit": True,
    }


# == typo'd keys (strict by default) ========================================================


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("dbnmae", "did you mean dbname?"),
        ("database", "did you mean dbname?"),
        ("username", "did you mean user?"),
        ("passwrod", "did you mean password?"),
        ("sslmdoe", "did you mean sslmode?"),
        ("HOST", "did you mean host? (names are lower case)"),
        (
            "max_size",
            "max_size is a pool setting: put it under pool_settings / async_pool_settings",
        ),
        ("zzzz", "remove it"),
    ],
)
def test_typo_key_is_an_error_naming_the_closest(tmp_path: Path, key: str, hint: str) -> None:
    path = write(tmp_path, yaml.safe_dump({"connection_settings": {"host": "h", key: SECRET}}))
    err = refused(lambda: load_config(path))
    assert str(err) == (
        f"{path}: connection_settings.{key} is not a libpq connection parameter nor a psycopg "
        f"option (autocommit, prepare_threshold): {hint}"
    )
    assert SECRET not in everything(err)
    err = refused(lambda: resolve_config({"connection_settings": {key: SECRET}}))
    assert str(err).startswith(f"connection_settings.{key} is not a libpq")


def test_typo_key_non_strict_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clear_config_cache()
    path = write(tmp_path, "connection_settings:\n  host: h\n  dbnmae: mydb\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_config(path, strict=False)
        load_config_cached(path, strict=False)  # what the CLI then the manager do
        load_config(path, strict=False)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: connection_settings.dbnmae is not a libpq connection parameter nor a psycopg "
        "option (autocommit, prepare_threshold): ignored (did you mean dbname?)"
    ]
    # A new version of the file is a new warning.
    path.write_text("connection_settings:\n  host: h2\n  dbnmae: mydb\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_config(path, strict=False)
    assert len(caplog.records) == 2


def test_dict_warnings_once(caplog: pytest.LogCaptureFixture) -> None:
    clear_config_cache()
    doc = {"connection_settings": {"host": "h", "hots": "x", "password": "${PGM_DICT_PW}"}}
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(3):  # what get_database_connection_from_dict does on every call
            resolve_config(doc, strict=False)
    assert [r.getMessage() for r in caplog.records] == [
        "connection_settings.password looks like an unresolved environment reference "
        "(${PGM_DICT_PW}) and is used as written: to resolve it, pass --resolve-env on the "
        "command line, or resolve_env=True in Python",
        "connection_settings.hots is not a libpq connection parameter nor a psycopg option "
        "(autocommit, prepare_threshold): ignored (did you mean host?)",
    ]


def test_top_level_typo_warns_with_a_suggestion(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "connection_settings:\n  host: h\npool_setting:\n  max_size: 3\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_config(path)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: pool_setting is not a pgmonkey config key: ignored (did you mean pool_settings?)"
    ]


# == unresolved references ==================================================================


def test_unresolved_reference_without_resolve_env_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fix = "pass --resolve-env on the command line, or resolve_env=True in Python"
    cases = [
        (
            "password: ${PGM_PASS}",
            "connection_settings.password looks like an unresolved environment reference "
            f"(${{PGM_PASS}}) and is used as written: to resolve it, {fix}",
        ),
        (
            "application_name: app-${PGM_TEAM:-x}",
            "connection_settings.application_name looks like an unresolved environment "
            f"reference (app-${{PGM_TEAM:-x}}) and is used as written: to resolve it, {fix}",
        ),
        (  # more than a reference on a sensitive key: not shown
            f"sslpassword: {SECRET}${{PGM_X}}",
            "connection_settings.sslpassword looks like an unresolved environment reference "
            f"and is used as written: to resolve it, {fix}",
        ),
        (
            "user:\n    from_env: PGM_USER",
            f"connection_settings.user is a from_env reference, resolved only on request: "
            f"to resolve it, {fix}",
        ),
    ]
    for i, (line, message) in enumerate(cases):
        path = write(tmp_path, f"connection_settings:\n  host: h\n  {line}\n", name=f"{i}.yaml")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            cfg = load_config(path)
        assert [r.getMessage() for r in caplog.records] == [f"{path}: {message}"]
        assert SECRET not in caplog.text
    assert cfg["connection_settings"]["user"] == {"from_env": "PGM_USER"}  # 4.0: as written

    # Several: one warning naming them all.
    text = "connection_settings:\n" + "".join(f"  {line}\n" for line, _ in cases)
    path = write(tmp_path, text + "pool_settings:\n  max_size: ${PGM_MAX:-4}\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert load_config(path)["connection_settings"]["password"] == "${PGM_PASS}"
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: 5 values look like unresolved environment references "
        "(connection_settings.password, connection_settings.application_name, "
        "connection_settings.sslpassword, connection_settings.user, pool_settings.max_size) "
        f"and are used as written: to resolve them, {fix}"
    ]
    # Resolved: no such warning.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_config(path, resolve_env=True, strict=False)
    assert not any("resolve-env" in r.getMessage() for r in caplog.records)


def test_unresolved_password_seen_before_the_auth_failure(
    password_config: Path, tmp_path: Path
) -> None:
    """The CLI as a user runs it: the hint comes first, then the server's refusal."""
    data = yaml.safe_load(password_config.read_text())
    data["connection_settings"]["password"] = "${PGM_PASS}"
    path = write(tmp_path, yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    proc = subprocess.run(
        [sys.executable, "-m", "pgmonkey", "pgconfig", "test", "--connconfig", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    hint = [i for i, line in enumerate(lines) if "looks like an unresolved environment" in line]
    failure = [i for i, line in enumerate(lines) if "password authentication failed" in line]
    assert len(hint) == 1 and len(failure) == 1 and hint[0] < failure[0], proc.stderr
    assert "--resolve-env" in lines[hint[0]] and "resolve_env=True" in lines[hint[0]]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_cli_prints_each_warning_once(password_config: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(password_config.read_text())
    data["extras"] = {"note": "kept"}  # an unknown top-level key: warned about
    path = write(tmp_path, yaml.safe_dump(data), mode=0o644)  # and a readable password
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    proc = subprocess.run(
        [sys.executable, "-m", "pgmonkey", "pgconfig", "test", "--connconfig", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("is readable by group or others") == 1, proc.stderr
    assert proc.stderr.count("extras is not a pgmonkey config key") == 1, proc.stderr
