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
import threading
import traceback
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
    redact_config,
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
        *("!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ", "!!set ", "!!omap "),
        *("!!map ", "!!seq ", "!!null ", "!x!y ", "&b ", "*b ", "&a [*a]", "<<: ", "<<: *a"),
        *("0123", "12:30", "1_000", "yes", "Off", "dbname", "user", "sslpassword"),
        SECRET,
        f"!{SECRET}",
        f"!!int {SECRET}",
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


def _everything(exc: BaseException) -> str:
    """Message, repr, args, traceback and attributes of *exc* and every exception chained."""
    texts: list[str] = []
    e: BaseException | None = exc
    while e is not None:
        texts += [str(e), repr(e), repr(e.args), repr(vars(e))]
        texts.append("".join(traceback.format_exception(e)))
        e = e.__cause__ or e.__context__
    return "\n".join(texts)


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
            assert SECRET not in _everything(exc)
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
@example(password="***REDAC", appname="0", via="literal")  # found: a part of the marker
@example(password="127.0.0.", appname="0", via="literal")  # found: a part of the host
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
            # The same settings without a password: what the repr shows of the rest.
            others = {**cfg, "connection_settings": dict(cfg["connection_settings"])}
            others["connection_settings"].pop("password", None)
            baseline = repr(connect_params(others))
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
    shown = repr(params).replace("***REDACTED***", "")  # a password may be part of the marker
    if len(password) >= 8 and password.isprintable():
        # Shown no more often than the rest of the settings show it (a password such as
        # '127.0.0.' is part of the host; one inside the application name is shown there).
        assert shown.count(password) <= baseline.count(password)


# -- anchors, aliases, merges and tags ------------------------------------------------------

# Where the secret may sit in these documents: a value of a sensitive key (never anchored, so
# never aliased under an ordinary key), a URL's password, a tag, or a value its tag refuses.
_SECRET_KEYS = ["password", "sslpassword", "admin_password", "PGPASSWORD", "api_key"]
_SECRET_VALUES = [SECRET, f"'{SECRET}'", f"postgresql://u:{SECRET}@h/db", f"!!str {SECRET}"]
_TAGGED_SECRETS = [f"!{SECRET}", f"!!int {SECRET}", f"!!float {SECRET}", f"!!bool {SECRET}"]
_TAGGED_SECRETS += [f"!!timestamp {SECRET}", f"!!null {SECRET}"]
_PLAIN = ["h", "5432", "05432", "0123", "12:30", "yes", "~", "''", "disable", "verify-full"]
_PLAIN += ["2024-01-01", "1e3", "'${PGMONKEY_FUZZ_A}'", "{from_env: PGMONKEY_FUZZ_A}", "!!str 7"]
_PLAIN += ["!!int 7", "!!float 1.5", "!!bool true", "!!set {a, b}", "!!omap [{a: 1}]"]
_KEYS = ["host", "port", "user", "dbname", "sslmode", "connect_timeout", "keepalives"]
_KEYS += ["application_name", "options", "bogus", "max_size", "min_size", "<<"]
_TEXT_KEYS = {"host", "port", "user", "dbname", "application_name", "options"}


@st.composite
def anchored_documents(draw: st.DrawFn) -> str:
    """A flow-style config whose values use anchors, aliases (self-references included),
    merge keys and tags."""
    anchors: list[str] = []

    def node(depth: int, text_key: bool = False) -> str:
        kinds = ["plain", "tagged", "alias", "list", "map", "anchored"]
        kind = draw(st.sampled_from(kinds if depth < 3 else kinds[:3]))
        if kind == "alias" and anchors:
            return "*" + draw(st.sampled_from(anchors))
        if kind == "tagged":
            # A text key keeps "!!int X" as the text X (shown like any value of that key):
            # only a local tag, never shown, goes there.
            return draw(st.sampled_from(_TAGGED_SECRETS[:1] if text_key else _TAGGED_SECRETS))
        if kind in ("plain", "alias"):
            return draw(st.sampled_from(_PLAIN))
        if kind == "anchored":
            name = f"a{len(anchors)}"
            anchors.append(name)  # registered first: its children may refer to it
            return f"&{name} " + (mapping(depth + 1) if draw(st.booleans()) else seq(depth + 1))
        return seq(depth + 1) if kind == "list" else mapping(depth + 1)

    def seq(depth: int) -> str:
        return "[" + ", ".join(node(depth) for _ in range(draw(st.integers(0, 3)))) + "]"

    def mapping(depth: int) -> str:
        entries = []
        for _ in range(draw(st.integers(0, 4))):
            if draw(st.integers(0, 4)) == 0:
                key = draw(st.sampled_from(_SECRET_KEYS))
                entries.append(f"{key}: {draw(st.sampled_from(_SECRET_VALUES))}")
            else:
                key = draw(st.sampled_from(_KEYS))
                entries.append(f"{key}: {node(depth, key in _TEXT_KEYS)}")
        return "{" + ", ".join(entries) + "}"

    sections = [f"connection_settings: {mapping(1)}"]
    for section in ("pool_settings", "sync_settings", "extras", "connection_type"):
        if draw(st.booleans()):
            sections.append(f"{section}: {node(1)}")
    draw(st.randoms()).shuffle(sections)
    return "\n".join(sections) + "\n"


@st.composite
def alias_chains(draw: st.DrawFn) -> str:
    """Each anchor a list of *fan* aliases to the previous one: fan**depth values."""
    fan, depth = draw(st.integers(1, 10)), draw(st.integers(1, 9))
    lines = ["connection_settings: {host: h}", "l0: &l0 [x, x]"]
    for i in range(1, depth + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan) + "]")
    where = draw(st.sampled_from(["sync_settings: {x: *L}", "extras: *L", "pool_settings: *L"]))
    lines.append(where.replace("L", f"l{depth}"))
    return "\n".join(lines) + "\n"


def _load_in_time(path: Path, **kwargs: Any) -> BaseException | None:
    """load_config and the translations in a thread that must end (only a hang misses it)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            _load_everything(path, **kwargs)
            outcome.append(None)
        except BaseException as e:  # handed back to the test
            outcome.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "load_config hung"
    return outcome[0]


@_FAST
@given(text=st.one_of(anchored_documents(), alias_chains()), resolve_env=st.booleans())
def test_anchors_aliases_and_tags(
    scratch_dir: Path, caplog: pytest.LogCaptureFixture, text: str, resolve_env: bool
) -> None:
    """Only ConfigError, never a hang or a RecursionError, and never the secret: in the
    error, anything chained to it, its attributes, the logs, or the redacted config."""
    path = scratch_dir / "anchors.yaml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)  # the permission warning names keys, never values
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="pgmonkey"), _env({"PGMONKEY_FUZZ_A": "5"}):
        error = _load_in_time(path, resolve_env=resolve_env, strict=False)
        if error is None:
            event("loaded")
            cfg = load_config(path, resolve_env=resolve_env, strict=False)
            # "!!int X" where the value is text (a text key, a session setting, or an anchor
            # aliased there) is the text X: shown like any value there. Otherwise never.
            if not any(tagged in text for tagged in _TAGGED_SECRETS[1:]):
                assert SECRET not in repr(redact_config(cfg))
    if error is not None:
        assert isinstance(error, ConfigError), repr(error)
        message = str(error)
        kinds = ("alias bomb", "recursive", "does not fit its tag", "YAML tag", "invalid YAML")
        event("refused: " + next((k for k in kinds if k in message), "by validation"))
        assert SECRET not in _everything(error)
    assert SECRET not in caplog.text


@settings(max_examples=40, deadline=None)
@given(
    value=st.sampled_from(["0123", "12:30", "1_000", "0x1F", "1e3", "yes", "no", "on", "~x"]),
    key=st.sampled_from(["password", "user", "dbname", "host", "application_name", "options"]),
    via=st.sampled_from(["plain", "anchor", "merge", "wrapper"]),
)
def test_text_keys_keep_the_text_as_written(
    scratch_dir: Path, value: str, key: str, via: str
) -> None:
    if via == "plain":
        text = f"connection_settings:\n  {key}: {value}\n"
    elif via == "anchor":
        text = f"x: &v {value}\nconnection_settings:\n  {key}: *v\n"
    elif via == "merge":
        text = f"base: &b\n  {key}: {value}\nconnection_settings:\n  <<: *b\n"
    else:
        text = f"postgresql:\n  connection_settings:\n    {key}: {value}\n"
    path = scratch_dir / "text.yaml"
    path.write_text(text, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cfg = load_config(path, strict=False)
    assert cfg["connection_settings"][key] == value
