"""Hostile config input beyond ``test_config_fuzz.py`` (which fuzzes dicts): raw YAML text,
raw bytes, ``${...}`` interpolation strings and hostile secret values.

Properties: only ConfigError (EnvInterpolationError is one) ever escapes load_config; no
message or log line ever holds the password, whatever broke; interpolation inserts
environment values verbatim (never expanded again) and the conninfo built from hostile values
parses back to exactly those values (no conninfo injection).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

from pgmonkey import ConfigError
from pgmonkey.config import (
    CONNECTION_TYPES,
    connect_params,
    load_config,
    pool_settings,
    resolve_config,
    session_settings,
)
from pgmonkey.errors import EnvInterpolationError
from tests.test_config_fuzz import configs as config_structures
from tests.test_config_fuzz import values as value_structures

SECRET = "Zq9-FUZZ-pw-4417"
_FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Text that is mostly YAML punctuation and config words, so the parser gets far.
_YAML_ATOMS = st.sampled_from(
    [
        *("\n", "  ", "    ", ": ", "- ", "{", "}", "[", "]", ",", "'", '"', "#", "&a", "*a"),
        *("!!str ", "!!python/object ", "? ", "|", ">", "---\n", "...\n", "%YAML 1.1\n", "\t"),
        *("connection_type", "connection_settings", "pool_settings", "async_pool_settings"),
        *("sync_settings", "async_settings", "postgresql", "host", "port", "password"),
        *("min_size", "max_size", "timeout", "check_on_checkout", "sslmode", "from_env"),
        *("from_file", "${PGMONKEY_FUZZ_A}", "${X:-5}", "${", "}", ":-", "null", "true", "5"),
        *("-1", "1e400", ".inf", "0x10", "2001-01-01", "~", "\u2028", "é", "\x85", "\ufeff"),
        SECRET,
    ]
)
yaml_texts = st.one_of(
    st.lists(_YAML_ATOMS, max_size=40).map("".join),
    st.text(max_size=200),
)


def _config_text(draw: st.DrawFn) -> str:
    """A well-formed config with the secret as password, then broken in one random way."""
    data: dict[str, Any] = {
        "connection_type": draw(st.sampled_from([*CONNECTION_TYPES, "bogus", 5])),
        "connection_settings": {
            "host": "127.0.0.1",
            "port": draw(st.sampled_from([5432, "5432", "x", -1, "${PGMONKEY_FUZZ_A}"])),
            "user": "u",
            "password": SECRET,
            "sslmode": draw(st.sampled_from(["disable", "verify-full", "nope", True])),
        },
        draw(st.sampled_from(["pool_settings", "async_pool_settings"])): draw(
            st.dictionaries(
                st.sampled_from(["min_size", "max_size", "timeout", "nope"]),
                st.one_of(st.integers(-2, 20), st.sampled_from(["5", "x", None, True])),
                max_size=3,
            )
        ),
    }
    text = yaml.safe_dump(data)
    cut = draw(st.integers(0, len(text)))
    insert = draw(st.sampled_from(["", "\n", ":", " [", "'", "\t", "- ", "{", "\x00", "*x"]))
    return text[:cut] + insert + text[cut:]


broken_configs = st.composite(_config_text)()


@contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pgm-fuzz-cfg-") as d:
        yield Path(d)


def _load_everything(path: Path, *, resolve_env: bool, strict: bool) -> None:
    """load_config then the translations; only ConfigError may escape."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the postgresql: wrapper
        cfg = load_config(path, resolve_env=resolve_env, strict=strict)
    for ctype in CONNECTION_TYPES:
        try:
            connect_params(cfg)
            pool_settings(cfg, ctype)
            session_settings(cfg, ctype)
        except ConfigError:
            pass


@_FAST
@given(text=yaml_texts, resolve_env=st.booleans(), strict=st.booleans())
def test_random_yaml_text_only_config_errors(
    scratch_dir: Path, text: str, resolve_env: bool, strict: bool
) -> None:
    path = scratch_dir / "random.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    path.chmod(0o600)
    with _env({"PGMONKEY_FUZZ_A": "5433"}):
        try:
            _load_everything(path, resolve_env=resolve_env, strict=strict)
            event("loaded")
        except ConfigError as exc:
            assert str(path) in str(exc)
            event(type(exc).__name__)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=120))
def test_random_bytes_only_config_errors(scratch_dir: Path, data: bytes) -> None:
    path = scratch_dir / "bytes.yaml"
    path.write_bytes(data)
    try:
        _load_everything(path, resolve_env=False, strict=True)
    except ConfigError as exc:
        assert str(path) in str(exc)


@_FAST
@given(text=broken_configs, resolve_env=st.booleans())
def test_broken_configs_never_show_the_password(
    scratch_dir: Path, caplog: pytest.LogCaptureFixture, text: str, resolve_env: bool
) -> None:
    path = scratch_dir / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)  # group/other readable: the permission warning names the file only
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="pgmonkey"), _env({"PGMONKEY_FUZZ_A": "5"}):
        try:
            _load_everything(path, resolve_env=resolve_env, strict=True)
            event("loaded")
        except ConfigError as exc:
            event("refused")
            assert SECRET not in str(exc) and SECRET not in repr(exc)
            assert exc.__cause__ is None or SECRET not in str(exc.__cause__)
    assert SECRET not in caplog.text


@_FAST
@given(data=st.one_of(config_structures, value_structures), resolve_env=st.booleans())
def test_random_structures_as_files_only_config_errors(
    scratch_dir: Path, data: Any, resolve_env: bool
) -> None:
    """test_config_fuzz's random dicts, this time as YAML files through load_config."""
    path = scratch_dir / "structure.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    path.chmod(0o600)
    with _env({"PGMONKEY_FUZZ": "7"}):
        try:
            _load_everything(path, resolve_env=resolve_env, strict=True)
            event("loaded")
        except ConfigError as exc:
            assert str(path) in str(exc)
            event(type(exc).__name__)


# -- ${...} interpolation ------------------------------------------------------------------

_NAMES = ["PGMONKEY_FUZZ_A", "PGMONKEY_FUZZ_B", "PGMONKEY_FUZZ_UNSET"]
_env_values = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12
) | st.sampled_from(["${PGMONKEY_FUZZ_B}", "$${x}", "}", "${", ":-", "'", "\\", " a=b "])
_templates = st.lists(
    st.one_of(
        st.sampled_from(["${PGMONKEY_FUZZ_A}", "${PGMONKEY_FUZZ_B}", "${PGMONKEY_FUZZ_UNSET}"]),
        st.sampled_from(
            ["${PGMONKEY_FUZZ_UNSET:-}", "${PGMONKEY_FUZZ_A:-d}", "${PGMONKEY_FUZZ_UNSET:-x:-y}"]
        ),
        st.sampled_from(
            ["${", "}", "$", "{", ":-", "${1X}", "${}", "${A B}", "$${PGMONKEY_FUZZ_A}"]
        ),
        st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=5),
    ),
    max_size=6,
).map("".join)

_REF = re.compile(r"\$\{([^}]*)\}")


def _expected(template: str, env: Mapping[str, str], strict: bool) -> str | None:
    """The 4.0 rules, written independently: None when the template must be refused."""
    out: list[str] = []
    last = 0
    for m in _REF.finditer(template):
        out.append(template[last : m.start()])
        last = m.end()
        name, sep, default = m.group(1).partition(":-")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            return None
        value = env.get(name, default if sep else None)
        if value is None:
            if strict:
                return None
            value = m.group(0)
        out.append(value)
    if "${" in template[last:]:
        return None  # an unclosed ${ (any ${ with a } after it was matched above)
    out.append(template[last:])
    return "".join(out)


@_FAST
@given(
    template=_templates,
    a=_env_values,
    b=_env_values,
    strict=st.booleans(),
    key=st.sampled_from(["application_name", "options", "password"]),
)
def test_interpolation_inserts_values_verbatim(
    template: str, a: str, b: str, strict: bool, key: str
) -> None:
    env = {"PGMONKEY_FUZZ_A": a, "PGMONKEY_FUZZ_B": b}
    config = {"connection_settings": {"host": "h", key: template}}
    with _env(env), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cfg = resolve_config(
                config, resolve_env=True, strict=strict, allow_sensitive_defaults=True
            )
        except EnvInterpolationError as exc:
            for value in (a, b):  # the resolved values are never in the message
                if len(value) >= 4 and value not in template:
                    assert value not in str(exc)
            assert _expected(template, env, strict) is None, str(exc)
            event("refused")
            return
        except ConfigError:
            return  # a value the validation refuses after interpolation
    expected = _expected(template, env, strict)
    event("resolved")
    assert expected is not None
    assert cfg["connection_settings"][key] == expected


# -- hostile secret values reach libpq intact ----------------------------------------------

_hostile = st.one_of(
    st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1
    ).filter(lambda t: "${" not in t),
    st.sampled_from(
        [
            "x sslmode=disable",
            "' host=evil.example '",
            "a\\' b",
            "pw' dbname='other",
            " lead and trail ",
            "=",
            "p@ss:w/rd?x=1#frag",
        ]
    ),
)


@settings(max_examples=120, deadline=None)
@given(password=_hostile, appname=_hostile, via=st.sampled_from(["literal", "env", "file"]))
@example(password="a\r\nb\rc\r\n", appname="x", via="file")  # found: CR became LF (fixed)
def test_hostile_values_cannot_inject_conninfo(password: str, appname: str, via: str) -> None:
    settings_: dict[str, Any] = {"host": "127.0.0.1", "port": 5432, "user": "u"}
    env: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="pgm-fuzz-") as d:
        if via == "literal":
            settings_["password"] = password
        elif via == "env":
            env["PGMONKEY_FUZZ_PW"] = password
            settings_["password"] = {"from_env": "PGMONKEY_FUZZ_PW"}
        else:
            secret_file = Path(d) / "pw"
            secret_file.write_text(password + "\n", encoding="utf-8")
            settings_["password"] = {"from_file": str(secret_file)}
        settings_["application_name"] = appname
        with _env(env), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                cfg = resolve_config({"connection_settings": settings_}, resolve_env=True)
            except ConfigError as exc:
                if len(password) >= 4 and password not in appname:
                    assert password not in str(exc)
                return
            params = connect_params(cfg)
    parsed = conninfo_to_dict(params.conninfo)
    # A secret file's trailing newline is not part of the secret (Kubernetes style).
    expected_pw = password.rstrip("\r\n") if via == "file" else password
    # Empty values mean "not set" (4.0) and are left out of the conninfo.
    expected = {"host": "127.0.0.1", "port": "5432", "user": "u"}
    if expected_pw:
        expected["password"] = expected_pw
    if appname:
        expected["application_name"] = appname
    assert parsed == expected
    if len(password) >= 8 and password not in appname and password.isprintable():
        assert password not in repr(params)
