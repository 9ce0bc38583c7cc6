"""Configuration loading and validation: real files, no mocks."""

from __future__ import annotations

import logging
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from pgmonkey import ConfigError, EnvInterpolationError, load_config
from pgmonkey.config import (
    config_template,
    connect_params,
    libpq_parameters,
    pool_settings,
    resolve_config,
    resolved_connection_type,
    session_settings,
)

PASSWORD = "S3cr3t-Pa55"
LOGGER = "pgmonkey.config"


def write(tmp_path: Path, text: str, *, mode: int = 0o600, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def settings(**extra: Any) -> str:
    """A YAML config with a literal password, plus *extra* top-level sections."""
    doc: dict[str, Any] = {
        "connection_settings": {"user": "u", "password": PASSWORD, "host": "localhost"}
    }
    doc.update(extra)
    return yaml.safe_dump(doc, sort_keys=False)


def conn(**extra: Any) -> str:
    """A YAML config whose connection_settings hold the password plus *extra* keys."""
    return yaml.safe_dump({"connection_settings": {"password": PASSWORD, **extra}}, sort_keys=False)


def full_text(exc: BaseException) -> str:
    """Everything a user could see: the message, the args, the whole formatted traceback."""
    return str(exc) + repr(exc.args) + "".join(traceback.format_exception(exc))


# -- the table of malformed configs -------------------------------------------------------------


@dataclass
class Bad:
    id: str
    text: str | None  # None: the case builds its own path
    fragments: tuple[str, ...]  # key path and bad value, as they must appear in the message
    exc: type[ConfigError] = ConfigError
    kwargs: dict[str, Any] = field(default_factory=dict)


BAD: list[Bad] = [
    Bad(
        "yaml-syntax",
        f"connection_settings:\n  password: '{PASSWORD}'\n  host: [a\n",
        ("invalid YAML", "line 4, column 1"),
    ),
    Bad(
        "yaml-tab",
        f"connection_settings:\n  password: {PASSWORD}\n\thost: a\n",
        ("invalid YAML", "line 3, column 1", "tab"),
    ),
    Bad("list-document", f"- password: {PASSWORD}\n- host: x\n", ("<top level>", "list")),
    Bad("scalar-document", f"{PASSWORD}\n", ("<top level>", "str")),
    Bad("empty-file", "", ("empty", "expected a mapping")),
    Bad("comments-only", "# nothing here\n", ("empty", "expected a mapping")),
    Bad(
        "unknown-connection-type",
        settings(connection_type="bogus"),
        ("connection_type", "'bogus'", "'async_pool'"),
    ),
    Bad("connection-settings-missing", "connection_type: normal\n", ("connection_settings",)),
    Bad(
        "connection-settings-list",
        f"connection_settings:\n  - {PASSWORD}\n",
        ("connection_settings = a list of 1 items", "mapping"),
    ),
    Bad(
        "connection-settings-str",
        f"connection_settings: 'host=x password={PASSWORD}'\n",
        ("connection_settings is a string", "not shown", "mapping"),
    ),
    Bad("connection-settings-null", "connection_settings:\n", ("connection_settings = None",)),
    Bad(
        "max-size-abc",
        settings(pool_settings={"min_size": 1, "max_size": "abc"}),
        ("pool_settings.max_size = 'abc'", "positive integer"),
    ),
    Bad("max-size-zero", settings(pool_settings={"max_size": 0}), ("pool_settings.max_size = 0",)),
    Bad(
        "max-size-negative",
        settings(async_pool_settings={"max_size": -3}),
        ("async_pool_settings.max_size = -3",),
    ),
    Bad(
        "min-size-float",
        settings(pool_settings={"min_size": 2.5}),
        ("pool_settings.min_size = 2.5", "integer"),
    ),
    Bad("max-size-bool", settings(pool_settings={"max_size": True}), ("max_size = True",)),
    Bad(
        "min-greater-than-max",
        settings(pool_settings={"min_size": 30, "max_size": 5}),
        ("pool_settings.min_size = 30", "max_size (5)"),
    ),
    Bad(
        "min-greater-than-max-strings",
        settings(async_pool_settings={"min_size": "9", "max_size": "3"}),
        ("async_pool_settings.min_size = 9", "max_size (3)"),
    ),
    Bad(
        "unknown-pool-key",
        settings(pool_settings={"maxsize": 5}),
        ("pool_settings.maxsize = 5", "known pool setting", "did you mean max_size?"),
    ),
    Bad(
        "unknown-pool-key-far-from-any",
        settings(async_pool_settings={"workers_please": 5}),
        ("async_pool_settings.workers_please = 5", "known pool setting"),
    ),
    Bad(
        "timeout-not-a-number",
        settings(pool_settings={"timeout": "soon"}),
        ("pool_settings.timeout = 'soon'", "positive number"),
    ),
    Bad(
        "max-idle-negative",
        settings(pool_settings={"max_idle": -1}),
        ("pool_settings.max_idle = -1",),
    ),
    Bad(
        "max-lifetime-zero",
        settings(async_pool_settings={"max_lifetime": 0}),
        ("async_pool_settings.max_lifetime = 0",),
    ),
    Bad(
        "check-on-checkout-not-bool",
        settings(pool_settings={"check_on_checkout": "maybe"}),
        ("pool_settings.check_on_checkout = 'maybe'", "true or false"),
    ),
    Bad(
        "pool-settings-list", settings(pool_settings=[1, 2]), ("pool_settings = [1, 2]", "mapping")
    ),
    Bad(
        "async-settings-str",
        settings(async_settings="fast"),
        ("async_settings = 'fast'", "mapping"),
    ),
    Bad(
        "sync-settings-nested",
        settings(sync_settings={"statement_timeout": {"ms": 5}}),
        ("sync_settings.statement_timeout = {'ms': 5}", "single value"),
    ),
    Bad(
        "sync-settings-null-value",
        settings(sync_settings={"work_mem": None}),
        ("sync_settings.work_mem = None",),
    ),
    Bad(
        "session-setting-bad-name",
        settings(async_settings={"x; drop table t": "1"}),
        ("async_settings.x; drop table t = 'x; drop table t'", "setting name"),
    ),
    Bad(
        "host-is-a-mapping",
        conn(host={"name": "db", "password": PASSWORD}),
        ("connection_settings.host = a mapping with keys ['name', 'password']",),
    ),
    Bad("host-is-a-list", conn(host=["h1", PASSWORD]), ("connection_settings.host = a list of 2",)),
    Bad(
        "password-is-a-list",
        conn(user="u") + f"  sslpassword: [{PASSWORD}]\n",
        ("connection_settings.sslpassword = '***REDACTED***'",),
    ),
    Bad("port-abc", conn(port="abc"), ("connection_settings.port = 'abc'", "port number")),
    Bad("port-out-of-range", conn(port=70000), ("connection_settings.port = 70000",)),
    # From a file YAML's 5432.5 and true stay text for port (not 5432.5 and True): both refused.
    Bad("port-float", conn(port=5432.5), ("connection_settings.port = ", "5432.5", "port number")),
    Bad("port-bool", conn(port=True), ("connection_settings.port = ", "port number")),
    Bad("port-unicode-digit", conn(port="\u00b2"), ("connection_settings.port = '\u00b2'",)),
    Bad(
        "max-size-unicode-digits",
        settings(pool_settings={"max_size": "\u0663"}),
        ("pool_settings.max_size = '\u0663'",),
    ),
    Bad(
        "multi-port-bad-piece",
        conn(host="h1,h2", port="5432,x"),
        ("connection_settings.port = '5432,x'",),
    ),
    Bad(
        "sslmode-unknown",
        conn(sslmode="verify_full"),
        ("connection_settings.sslmode = 'verify_full'", "verify-full"),
    ),
    Bad(
        "sslmode-yaml-off",
        f"connection_settings:\n  password: {PASSWORD}\n  sslmode: off\n",
        ("connection_settings.sslmode = False", "disable"),
    ),
    Bad(
        "target-session-attrs-unknown",
        conn(target_session_attrs="primary-ish"),
        ("connection_settings.target_session_attrs = 'primary-ish'", "read-write"),
    ),
    Bad(
        "connect-timeout-text",
        conn(connect_timeout="ten"),
        ("connection_settings.connect_timeout = 'ten'", "integer"),
    ),
    Bad(
        "autocommit-not-bool",
        conn(autocommit="sometimes"),
        ("connection_settings.autocommit = 'sometimes'", "true or false"),
    ),
    Bad(
        "prepare-threshold-negative",
        conn(prepare_threshold=-1),
        ("connection_settings.prepare_threshold = -1", "non-negative integer"),
    ),
    Bad(
        "date-value",
        f"connection_settings:\n  password: {PASSWORD}\n  keepalives: 2024-01-01\n",
        ("connection_settings.keepalives = datetime.date(2024, 1, 1)",),
    ),
    Bad("non-string-top-key", settings() + "1: one\n", ("1 = 1", "string key")),
    Bad(
        "unclosed-reference",
        conn(password=f"{PASSWORD}${{PGMONKEY_X"),
        ("connection_settings.password = '***REDACTED***'", "unclosed"),
        EnvInterpolationError,
        {"resolve_env": True},
    ),
    Bad(
        "empty-reference",
        conn(host="db-${}"),
        ("connection_settings.host = 'db-${}'", "empty variable name"),
        EnvInterpolationError,
        {"resolve_env": True},
    ),
    Bad(
        "invalid-reference-name",
        conn(host="${1HOST}"),
        ("connection_settings.host = '${1HOST}'", "invalid variable name"),
        EnvInterpolationError,
        {"resolve_env": True},
    ),
    Bad(
        "missing-variable",
        conn(host="${PGMONKEY_MISSING_HOST}"),
        ("connection_settings.host = '${PGMONKEY_MISSING_HOST}'", "'PGMONKEY_MISSING_HOST'"),
        EnvInterpolationError,
        {"resolve_env": True},
    ),
    Bad(
        "sensitive-default",
        f"connection_settings:\n  password: '${{PGMONKEY_PW:-{PASSWORD}}}'\n",
        ("connection_settings.password", "PGMONKEY_PW", "allow_sensitive_defaults"),
        EnvInterpolationError,
        {"resolve_env": True},
    ),
    Bad(
        "from-file-missing",
        "connection_settings:\n  password:\n    from_file: /nonexistent/pgmonkey/secret\n",
        ("connection_settings.password.from_file = '/nonexistent/pgmonkey/secret'", "not found"),
        EnvInterpolationError,
        {"resolve_env": True},
    ),
    Bad(
        "from-env-not-a-name",
        f"connection_settings:\n  user: {PASSWORD}x\n  password:\n    from_env: 123\n",
        ("connection_settings.password.from_env = 123", "variable name"),
        EnvInterpolationError,
        {"resolve_env": True},
    ),
    Bad(
        "pool-size-from-env-not-a-number",
        settings(pool_settings={"max_size": "${PGMONKEY_POOL_MAX:-lots}"}),
        # The reference as written, never what it resolved to.
        (
            "pool_settings.max_size = '${PGMONKEY_POOL_MAX:-lots}' (resolved value not shown)",
            "positive integer",
        ),
        ConfigError,
        {"resolve_env": True},
    ),
    Bad(
        "postgresql-wrapper-not-a-mapping",
        "postgresql: 5\n",
        ("postgresql is a int", "mapping"),
    ),
]


def _parses_to_dict(text: str | None) -> bool:
    try:
        return isinstance(yaml.safe_load(text or ""), dict)
    except yaml.YAMLError:
        return False


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_malformed_config_file(tmp_path: Path, case: Bad) -> None:
    assert case.text is not None
    path = write(tmp_path, case.text)
    with pytest.raises(case.exc) as info, _maybe_deprecated(case):
        load_config(path, **case.kwargs)
    message = str(info.value)
    assert str(path) in message
    for fragment in case.fragments:
        assert fragment in message, (fragment, message)
    assert PASSWORD not in full_text(info.value)


@pytest.mark.parametrize(
    "case",
    [c for c in BAD if _parses_to_dict(c.text)],
    ids=lambda c: c.id,
)
def test_malformed_config_dict(case: Bad) -> None:
    """The same rules for an in-memory dict, named by *source*."""
    assert case.text is not None
    with pytest.raises(case.exc) as info, _maybe_deprecated(case):
        resolve_config(yaml.safe_load(case.text), source="<dict>", **case.kwargs)
    message = str(info.value)
    assert message.startswith("<dict>: ")
    for fragment in case.fragments:
        assert fragment in message, (fragment, message)
    assert PASSWORD not in full_text(info.value)


def _maybe_deprecated(case: Bad) -> Any:
    if case.id.startswith("postgresql-"):
        return pytest.warns(DeprecationWarning, match="postgresql")
    return _Nothing()


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def test_table_is_large_enough() -> None:
    assert len(BAD) >= 20


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unreadable_file_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="directory") as info:
        load_config(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_unreadable_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"connection_settings:\n  password: caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8") as info:
        load_config(path)
    assert "caf" not in str(info.value)


def test_yaml_error_never_quotes_the_line(tmp_path: Path) -> None:
    # PyYAML's own message prints the offending line: ours gives line and column only.
    path = write(tmp_path, f"connection_settings:\n  password: '{PASSWORD}\n  host: x\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+") as info:
        load_config(path)
    assert PASSWORD not in full_text(info.value)


# -- valid configs ------------------------------------------------------------------------------


def test_template_loads_and_validates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = config_template()
    path = write(tmp_path, text)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cfg = load_config(path)
    assert caplog.records == []
    assert cfg["connection_type"] == "normal"
    for section in ("pool_settings", "async_pool_settings", "async_settings"):
        assert section in cfg
    assert cfg["pool_settings"] == {
        "min_size": 5,
        "max_size": 20,
        "timeout": 30,
        "max_idle": 300,
        "max_lifetime": 3600,
        "check_on_checkout": False,
    }
    # sync_settings is offered, commented out; the 4.0 keys are all there.
    assert "# sync_settings:" in text
    for key in ("sslrootcert", "keepalives_count", "application_name", "connect_timeout"):
        assert f"  {key}:" in text
    for ctype in ("normal", "pool", "async", "async_pool"):
        assert resolved_connection_type(cfg, ctype) == ctype
    connect_params(cfg)  # builds a conninfo


def test_template_with_sync_settings_uncommented(tmp_path: Path) -> None:
    text = config_template().replace("# sync_settings:", "sync_settings:")
    text = text.replace("#   statement_timeout: '30000'", "  statement_timeout: '30000'")
    cfg = load_config(write(tmp_path, text))
    assert session_settings(cfg, "normal") == {"statement_timeout": "30000"}
    assert session_settings(cfg, "pool") == {"statement_timeout": "30000"}
    assert session_settings(cfg, "async")["lock_timeout"] == "10000"


def test_pool_numbers_normalised(tmp_path: Path) -> None:
    text = settings(
        pool_settings={
            "min_size": "2",
            "max_size": " 8 ",
            "timeout": "2.5",
            "max_idle": 60,
            "check_on_checkout": "True",
            "max_waiting": 0,
            "num_workers": 2,
            "reconnect_timeout": 10.0,
        },
        async_pool_settings=None,
    )
    cfg = load_config(write(tmp_path, text))
    assert pool_settings(cfg, "pool") == {
        "min_size": 2,
        "max_size": 8,
        "timeout": 2.5,
        "max_idle": 60,
        "check_on_checkout": True,
        "max_waiting": 0,
        "num_workers": 2,
        "reconnect_timeout": 10.0,
    }
    assert pool_settings(cfg, "async_pool") == {}
    assert pool_settings(cfg, "normal") == {}


def test_min_size_zero_is_a_lazy_pool(tmp_path: Path) -> None:
    # psycopg_pool accepts min_size=0 (connections opened on demand); max_size must be >= 1.
    cfg = load_config(write(tmp_path, settings(pool_settings={"min_size": 0, "max_size": 1})))
    assert pool_settings(cfg, "pool") == {"min_size": 0, "max_size": 1}


def test_connection_type_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, settings()))
    assert resolved_connection_type(cfg) == "normal"
    cfg = load_config(write(tmp_path, settings(connection_type="async_pool")))
    assert resolved_connection_type(cfg) == "async_pool"
    assert resolved_connection_type(cfg, "pool") == "pool"
    with pytest.raises(ConfigError, match="'nope'"):
        resolved_connection_type(cfg, "nope")


def test_postgresql_wrapper_is_unwrapped_with_a_warning(tmp_path: Path) -> None:
    text = "postgresql:\n" + "".join(f"  {line}\n" for line in settings().splitlines())
    path = write(tmp_path, text)
    with pytest.warns(DeprecationWarning, match="postgresql") as record:
        cfg = load_config(path)
    assert cfg["connection_settings"]["host"] == "localhost"
    assert record[0].filename == __file__  # points at the caller
    with pytest.warns(DeprecationWarning):
        assert resolve_config(yaml.safe_load(text)) == cfg


# -- libpq parameters -----------------------------------------------------------------------------


def test_libpq_parameters_come_from_libpq() -> None:
    expected = {o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults()}
    assert libpq_parameters() == expected
    assert {"host", "port", "target_session_attrs", "sslcrl", "channel_binding"} <= expected


def _sample_value(key: str) -> str:
    samples = {
        "port": "5432,5433",
        "host": "h1,h2",
        "hostaddr": "127.0.0.1,127.0.0.2",
        "sslmode": "verify-full",
        "channel_binding": "require",
        "gssencmode": "disable",
        "target_session_attrs": "read-write",
        "load_balance_hosts": "random",
        "sslnegotiation": "postgres",
        "sslcertmode": "allow",
        "options": "-c search_path=app,public -c statement_timeout=5s",
        "replication": "database",
        "password": PASSWORD,
    }
    if key in samples:
        return samples[key]
    if key in {"connect_timeout", "tcp_user_timeout"} or key.startswith("keepalives"):
        return "7"
    return f"v-{key}"


def test_every_libpq_parameter_is_accepted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    values = {key: _sample_value(key) for key in sorted(libpq_parameters())}
    path = write(tmp_path, yaml.safe_dump({"connection_settings": values}))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cfg = load_config(path)
    assert caplog.records == []
    assert cfg["connection_settings"] == values
    # Conninfo built by psycopg's own quoting: every value round-trips, spaces and commas too.
    assert conninfo_to_dict(connect_params(cfg).conninfo) == values


def test_spec_examples_round_trip(tmp_path: Path) -> None:
    wanted = {
        "host": "h1,h2",
        "port": "5432,5433",
        "target_session_attrs": "read-write",
        "options": "-c search_path=app",
        "sslcrl": "/etc/ssl/crl.pem",
        "channel_binding": "require",
        "service": "mysvc",
        "load_balance_hosts": "random",
    }
    cfg = load_config(write(tmp_path, yaml.safe_dump({"connection_settings": wanted})))
    assert conninfo_to_dict(connect_params(cfg).conninfo) == wanted


def test_unknown_connection_key_non_strict_warns_and_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, conn(host="db", hots="typo", database="x"))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cfg = load_config(path, strict=False)
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert any(
        "connection_settings.hots" in m and str(path) in m and "did you mean host?" in m
        for m in messages
    ), messages
    assert any(
        "connection_settings.database" in m and "did you mean dbname?" in m for m in messages
    ), messages
    assert len(messages) == 2, messages
    assert all(PASSWORD not in m for m in messages)
    assert "hots" not in cfg["connection_settings"]
    params = conninfo_to_dict(connect_params(cfg).conninfo)
    assert params == {"host": "db", "password": PASSWORD}


def test_unknown_top_level_key_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, settings(pool_setting={"max_size": 3}))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_config(path)
    assert any("pool_setting " in r.getMessage() for r in caplog.records)


def test_psycopg_options(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, conn(host="db", autocommit="true", prepare_threshold=None)))
    params = connect_params(cfg)
    assert params.options == {"autocommit": True, "prepare_threshold": None}
    assert params.connect_kwargs()["autocommit"] is True
    assert params.pool_kwargs()["kwargs"] == {"autocommit": True, "prepare_threshold": None}
    assert "autocommit" not in conninfo_to_dict(params.conninfo)
    cfg = load_config(write(tmp_path, conn(autocommit=False, prepare_threshold="0")))
    assert connect_params(cfg).options == {"autocommit": False, "prepare_threshold": 0}


def test_booleans_and_empty_values_for_libpq(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, conn(host="db", keepalives=True, sslsni=False, sslcert="", sslkey=None))
    )
    params = conninfo_to_dict(connect_params(cfg).conninfo)
    assert params == {"host": "db", "password": PASSWORD, "keepalives": "1", "sslsni": "0"}


def test_connect_params_repr_hides_the_password(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, conn(host="db", user="me")))
    params = connect_params(cfg)
    assert PASSWORD not in repr(params)
    assert "'me'" in repr(params)


def test_unresolved_reference_is_refused_at_translation(tmp_path: Path) -> None:
    # Without resolve_env a from_env dict is kept as written; it cannot become a password.
    text = "connection_settings:\n  password:\n    from_env: PGMONKEY_PW\n"
    text += "pool_settings:\n  max_size: '${PGMONKEY_MAX:-4}'\n"
    cfg = load_config(write(tmp_path, text))
    assert cfg["connection_settings"]["password"] == {"from_env": "PGMONKEY_PW"}
    with pytest.raises(ConfigError, match="resolve_env=True") as info:
        connect_params(cfg)
    assert "connection_settings.password" in str(info.value)
    with pytest.raises(ConfigError, match=r"pool_settings.max_size = '\$\{PGMONKEY_MAX:-4\}'"):
        pool_settings(cfg, "pool")


# -- file permissions (libpq's .pgpass rule) -----------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_readable_literal_password_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    path = write(tmp_path, settings(), mode=mode)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_config(path)
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 1, messages
    assert str(path) in messages[0] and "group or others" in messages[0]
    assert oct(mode) in messages[0]
    assert PASSWORD not in messages[0]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(
    ("text", "mode"),
    [
        (settings(), 0o600),
        (settings(), 0o400),
        ("connection_settings:\n  password: '${PGPASSWORD}'\n", 0o644),
        ("connection_settings:\n  password:\n    from_env: PGPASSWORD\n", 0o644),
        ("connection_settings:\n  password: ''\n  host: x\n", 0o644),
        ("connection_settings:\n  host: x\n", 0o666),
    ],
    ids=["0600", "0400", "reference", "from_env", "empty", "no-password"],
)
def test_no_permission_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, mode: int
) -> None:
    path = write(tmp_path, text, mode=mode)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        load_config(path)
    assert [r.getMessage() for r in caplog.records if "group or others" in r.getMessage()] == []


# -- the sandbox's configs are valid configs -----------------------------------------------------


def test_sandbox_configs_validate(auth_config: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cfg = load_config(auth_config)
    assert caplog.records == []  # no unknown key, no readable password
    with psycopg.connect(**connect_params(cfg).connect_kwargs()) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
