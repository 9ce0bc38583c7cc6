"""Fuzzing resolve_config: whatever the input, only ConfigError (or its subclass) escapes."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from pgmonkey import ConfigError
from pgmonkey.config import (
    CONNECTION_TYPES,
    connect_params,
    pool_settings,
    redact_config,
    resolve_config,
    resolved_connection_type,
    session_settings,
)

KEYS = [
    "postgresql",
    "connection_type",
    "connection_settings",
    "pool_settings",
    "async_pool_settings",
    "sync_settings",
    "async_settings",
    "host",
    "port",
    "password",
    "sslmode",
    "autocommit",
    "prepare_threshold",
    "min_size",
    "max_size",
    "timeout",
    "check_on_checkout",
    "statement_timeout",
    "target_session_attrs",
]

keys = st.one_of(
    st.sampled_from(KEYS), st.text(max_size=12).filter(lambda k: k != "from_file"), st.integers()
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.text(alphabet="${}:-AB_1 x,", max_size=16),
    st.sampled_from(["${PGMONKEY_FUZZ}", "${PGMONKEY_FUZZ:-5}", "5432,5433", "verify-full", "20"]),
)
# from_file only ever names files that do not exist (never /dev/zero or a real secret).
refs = st.one_of(
    st.fixed_dictionaries({"from_env": st.one_of(st.text(max_size=8), st.integers())}),
    st.fixed_dictionaries(
        {"from_file": st.sampled_from(["/nonexistent/pgmonkey-fuzz", "", "rel/missing"])}
    ),
)
values = st.recursive(
    st.one_of(scalars, refs),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=12,
)
pool_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=50),
    st.floats(min_value=-1, max_value=100),
    st.sampled_from(["5", " 7 ", "abc", "2.5", "true", "inf", "${PGMONKEY_FUZZ:-4}"]),
)
pool_sections = st.dictionaries(
    st.sampled_from(
        [
            *("min_size", "max_size", "timeout", "max_idle", "max_lifetime"),
            *("check_on_checkout", "max_waiting", "num_workers", "reconnect_timeout", "nope"),
        ]
    ),
    pool_values,
    max_size=5,
)
connection_settings = st.dictionaries(
    st.sampled_from(
        [
            *("host", "port", "password", "user", "dbname", "sslmode", "autocommit", "options"),
            *("prepare_threshold", "target_session_attrs", "connect_timeout", "keepalives"),
            "bogus",
        ]
    ),
    st.one_of(scalars, refs),
    max_size=6,
)
# Mostly well-shaped configs, so the fuzz reaches the value checks and the translation.
shaped = st.fixed_dictionaries(
    {"connection_settings": connection_settings},
    optional={
        "connection_type": st.one_of(st.sampled_from(CONNECTION_TYPES), scalars),
        "pool_settings": st.one_of(pool_sections, st.none()),
        "async_pool_settings": pool_sections,
        "sync_settings": st.dictionaries(
            st.sampled_from(["statement_timeout", "work_mem", "app.x", "bad name"]),
            st.one_of(scalars, refs),
            max_size=3,
        ),
        "async_settings": st.one_of(values, st.dictionaries(keys, scalars, max_size=2)),
    },
)
configs = st.one_of(shaped, shaped, st.dictionaries(keys, values, max_size=6))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=st.one_of(configs, values),
    resolve_env=st.booleans(),
    strict=st.booleans(),
    allow=st.booleans(),
)
def test_only_config_errors_escape(
    config: Any, resolve_env: bool, strict: bool, allow: bool
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the postgresql: wrapper
        try:
            cfg = resolve_config(
                config,
                resolve_env=resolve_env,
                strict=strict,
                allow_sensitive_defaults=allow,
                source="fuzz.yaml",
            )
        except ConfigError as exc:
            assert str(exc).startswith("fuzz.yaml: ")
            return
    # A config that validated translates without anything but ConfigError.
    assert isinstance(cfg["connection_settings"], dict)
    for ctype in CONNECTION_TYPES:
        try:
            assert resolved_connection_type(cfg, ctype) == ctype
            connect_params(cfg)
            pool_settings(cfg, ctype)
            session_settings(cfg, ctype)
        except ConfigError:
            pass


# -- secrets: whatever fails, a secret value never shows -------------------------------------

FUZZ_SECRET = "Zq9-DICTFUZZ-pw-3198"  # written in the config
ENV_SECRET = "Zq9-ENVFUZZ-pw-7710"  # in an environment variable any key may reference
SENSITIVE_KEYS = ["password", "sslpassword", "admin_password", "PGPASSWORD", "api_key"]
SENSITIVE_KEYS += ["passphrase", "auth_token", "client_secret"]
# A credential inside a value, whatever its key: a URL's password, a conninfo's password.
embedded_secrets = st.sampled_from(
    [
        f"postgresql://u:{FUZZ_SECRET}@h:5432/db",
        f"postgres://u:{FUZZ_SECRET}@h/db?sslmode=maybe",
        f"postgresql://h/db?password={FUZZ_SECRET}&port=x",
        f"host=h password={FUZZ_SECRET}",
        f"host=h password='{FUZZ_SECRET} x' port=x",
    ]
)
referencing = st.sampled_from(
    [
        "${PGMONKEY_FUZZ_SECRET}",
        "x${PGMONKEY_FUZZ_SECRET}",
        "${PGMONKEY_FUZZ_SECRET:-5}",
        {"from_env": "PGMONKEY_FUZZ_SECRET"},
    ]
)
leafs = st.one_of(scalars, refs, referencing)
secret_settings = st.builds(
    lambda a, b: {**a, **b},
    st.dictionaries(
        st.sampled_from(
            [
                *("host", "port", "user", "dbname", "sslmode", "connect_timeout", "options"),
                *("application_name", "bogus", "autocommit"),
            ]
        ),
        st.one_of(leafs, embedded_secrets, st.lists(leafs, max_size=2)),
        max_size=5,
    ),
    st.dictionaries(
        st.sampled_from(SENSITIVE_KEYS),
        st.one_of(st.just(FUZZ_SECRET), embedded_secrets, leafs),
        max_size=2,
    ),
)
secret_configs = st.fixed_dictionaries(
    {"connection_settings": st.one_of(secret_settings, secret_settings, embedded_secrets)},
    optional={
        "connection_type": st.one_of(st.sampled_from(CONNECTION_TYPES), referencing),
        "pool_settings": st.dictionaries(
            st.sampled_from(["min_size", "max_size", "timeout", "nope"]),
            st.one_of(pool_values, referencing, st.lists(referencing, max_size=2)),
            max_size=3,
        ),
        "sync_settings": st.dictionaries(
            st.sampled_from(["statement_timeout", "bad name"]), leafs, max_size=2
        ),
        "extras": st.dictionaries(
            st.sampled_from(SENSITIVE_KEYS), st.one_of(st.just(FUZZ_SECRET), embedded_secrets)
        ),
    },
)


def _all_texts(exc: BaseException) -> str:
    """Message, repr and attributes of *exc* and of every exception chained to it."""
    texts = []
    e: BaseException | None = exc
    while e is not None:
        texts += [str(e), repr(e), repr(vars(e))]
        e = e.__cause__ or e.__context__
    return "\n".join(texts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=secret_configs, resolve_env=st.booleans(), strict=st.booleans())
@example(  # found: float()'s ValueError, chained to the ConfigError, quoted the value
    config={"connection_settings": {}, "pool_settings": {"timeout": "${PGMONKEY_FUZZ_SECRET}"}},
    resolve_env=True,
    strict=True,
)
def test_no_secret_in_errors_warnings_or_redacted_configs(
    config: Any, resolve_env: bool, strict: bool
) -> None:
    """Errors and warnings never hold a secret, whether written in the config (under a
    sensitive key, in a URL or conninfo) or resolved from the environment on any key; a
    redacted config never holds a secret written in the config."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect()
    log = logging.getLogger("pgmonkey")
    log.addHandler(handler)
    os.environ["PGMONKEY_FUZZ_SECRET"] = ENV_SECRET
    errors: list[str] = []
    shown = ""
    try:
        try:
            cfg = resolve_config(config, resolve_env=resolve_env, strict=strict, source="s.yaml")
        except ConfigError as exc:
            errors.append(_all_texts(exc))
            event("refused")
        else:
            event("loaded")
            shown = repr(redact_config(cfg))
            for ctype in CONNECTION_TYPES:
                try:
                    shown += repr(connect_params(cfg))
                    pool_settings(cfg, ctype)
                except ConfigError as exc:
                    errors.append(_all_texts(exc))
    finally:
        log.removeHandler(handler)
        del os.environ["PGMONKEY_FUZZ_SECRET"]
    for text in [*errors, *records]:
        assert FUZZ_SECRET not in text and ENV_SECRET not in text, text
    assert FUZZ_SECRET not in shown, shown
