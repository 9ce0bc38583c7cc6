"""No secret on any surface that shows text: one test collects them all.

Roles with distinctive passwords are created on the sandbox and used through configs that
hold the password literally, through ``from_env``, ``${VAR}`` and ``from_file``, plus
failing configs (wrong password, broken YAML, bad values, a password under a typo'd key).
Every surface a user can see is collected while they are used:

- CLI stdout/stderr of every command, in-process and as real subprocesses;
- log records at DEBUG (all loggers, pgmonkey's included);
- exception messages, reprs and formatted tracebacks, of every exception chained to them
  too (``__cause__``, ``__context__``), and the repr of each one's attributes; reprs of
  connection objects, managers, ConnectParams and redacted configs;
- magic outputs (connect banner, connections, config, query, errors) and their displays;
- files pgmonkey writes for the user (import settings, exported CSV headers);
- the stored outputs of notebooks/*.ipynb;

and none may contain a password (nor, anywhere, private key material).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from pgmonkey import PGConnectionManager, load_config, redact_config
from pgmonkey import sandbox as sb
from pgmonkey.cli import run
from pgmonkey.config import connect_params
from pgmonkey.transfer import export_csv, import_csv
from tests._conn_support import close_leftovers
from tests.fix_magics import fresh_magics

__all__ = ["close_leftovers"]  # autouse fixture: closes whatever a test left open

LITERAL_PW = "Zq9-UNIQUE-pw-7781"
ENV_PW = "Zq9-ENVVAR-pw-5512"
FILE_PW = "Zq9-SECFILE-pw-9034"
WRONG_PW = "Zq9-WRONG-pw-3321"
TYPES = ("normal", "pool", "async", "async_pool")
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SMALL_POOL = {"min_size": 1, "max_size": 2, "timeout": 5}
RUN = uuid.uuid4().hex[:8]  # in the names of the tables the CLI imports


# psycopg's private attribute behind ``exc.pgconn`` (a FinishedPGconn whose repr lists the
# password); ConnectError, pgmonkey's sanitised connect error, has none.
_UNWIRED_ATTRS = frozenset({"_pgconn"})


class Surfaces:
    """Every text shown, labelled by where it was shown."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.unwired = 0

    def add(self, label: str, text: Any) -> None:
        self.items.append((label, text if isinstance(text, str) else str(text)))

    def exception(self, label: str, exc: BaseException) -> None:
        """*exc* and every exception chained to it: text, repr, traceback, attributes."""
        self.add(f"{label}: traceback", "".join(traceback.format_exception(exc)))
        seen: set[int] = set()
        todo: list[BaseException | None] = [exc]
        while todo:
            e = todo.pop()
            if e is None or id(e) in seen:
                continue
            seen.add(id(e))
            tag = label if e is exc else f"{label}: chained {type(e).__name__}"
            self.add(f"{tag}: str", str(e))
            self.add(f"{tag}: repr", repr(e))
            for name, value in vars(e).items():
                if name in _UNWIRED_ATTRS and isinstance(e, psycopg.Error) and value is not None:
                    # psycopg's connect error keeps the attempt, password included; pgmonkey's
                    # connects raise ConnectError instead (test_failed_connects_carry_...).
                    self.unwired += 1
                    continue
                self.add(f"{tag}: attribute {name}", repr(value))
            todo += [e.__cause__, e.__context__]

    def call(self, label: str, fn: Callable[[], Any], *, shown: bool = True) -> Any:
        """Run *fn*; its exception goes in, and its result's repr when *shown*.

        (A config dict holds the password by design: it is data, not a display.)
        """
        try:
            result = fn()
        except Exception as exc:
            self.exception(label, exc)
            return None
        if shown:
            self.add(f"{label}: result", repr(result))
        return result

    def leaks(self, secrets: list[str]) -> list[str]:
        found = []
        for label, text in self.items:
            for i, secret in enumerate(secrets):
                if secret in text:
                    found.append(f"secret #{i} in {label}")
            if "PRIVATE KEY" in text:
                found.append(f"private key material in {label}")
        return found


@pytest.fixture
def roles(db_conn: psycopg.Connection[Any]) -> Iterator[dict[str, str]]:
    """Three login roles, one per way of giving the password; dropped with what they own."""
    suffix = uuid.uuid4().hex[:8]
    made = {
        "literal": (f"pgm_lit_{suffix}", LITERAL_PW),
        "env": (f"pgm_env_{suffix}", ENV_PW),
        "file": (f"pgm_file_{suffix}", FILE_PW),
    }
    for name, pw in made.values():
        db_conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(pw)
            )
        )
        db_conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(name)))
    try:
        yield {kind: name for kind, (name, _pw) in made.items()}
    finally:
        # Tables imported through the sandbox's own configs (superuser, cert role).
        for (table,) in db_conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE %s",
            [f"secret_{RUN}_%"],
        ).fetchall():
            db_conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier("public", table)))
        for name, _pw in made.values():
            ident = sql.Identifier(name)
            db_conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                [name],
            )
            db_conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            db_conn.execute(sql.SQL("DROP ROLE {}").format(ident))


def _write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    path.chmod(0o600)
    return path


def _configs(
    sandbox: sb.Sandbox, roles: dict[str, str], d: Path
) -> tuple[dict[str, Path], set[str]]:
    """The configs, and the names of those that need ``--resolve-env``."""
    base = yaml.safe_load(sandbox.configs["password"].read_text())

    def cfg(user: str, password: Any, **extra: Any) -> dict[str, Any]:
        settings = {**base["connection_settings"], "user": user, "password": password}
        settings["connect_timeout"] = 5
        settings.update(extra)
        return {
            "connection_type": "normal",
            "connection_settings": settings,
            "pool_settings": SMALL_POOL,
            "async_pool_settings": SMALL_POOL,
            "sync_settings": {"statement_timeout": "30s"},
            "async_settings": {"statement_timeout": "30s"},
        }

    secret_file = d / "db-password"
    secret_file.write_text(FILE_PW + "\n")
    secret_file.chmod(0o600)
    paths = {
        "literal": _write(d / "literal.yaml", cfg(roles["literal"], LITERAL_PW)),
        "from_env": _write(d / "env.yaml", cfg(roles["env"], {"from_env": "PGM_SECRET_ENV"})),
        "env_sub": _write(d / "envsub.yaml", cfg(roles["env"], "${PGM_SECRET_ENV}")),
        "from_file": _write(d / "file.yaml", cfg(roles["file"], {"from_file": str(secret_file)})),
        "wrong": _write(d / "wrong.yaml", cfg(roles["literal"], WRONG_PW)),
        "wrong_env": _write(
            d / "wrongenv.yaml", cfg(roles["literal"], {"from_env": "PGM_SECRET_WRONG"})
        ),
        "bad_yaml": _write(
            d / "badyaml.yaml",
            f"connection_settings:\n  password: {LITERAL_PW}\n  host: [127.0.0.1\n  port: 5\n",
        ),
        "bad_yaml2": _write(
            d / "badyaml2.yaml",
            f"connection_settings:\n  host: x\n  password: '{LITERAL_PW}\n  user: u\n",
        ),
        "bad_value": _write(
            d / "badvalue.yaml",
            {
                **cfg(roles["literal"], LITERAL_PW, port="x", sslmode="maybe"),
                "pool_settings": {"min_size": 5, "max_size": 1},
            },
        ),
        "bad_password_type": _write(
            d / "badpwtype.yaml", cfg(roles["literal"], [LITERAL_PW, {"k": LITERAL_PW}])
        ),
        "typo_key": _write(
            d / "typo.yaml",
            {
                **cfg(roles["literal"], None),
                "connection_settings": {
                    **cfg(roles["literal"], None)["connection_settings"],
                    "passwrod": LITERAL_PW,
                },
            },
        ),
        "default_secret": _write(
            d / "default.yaml", cfg(roles["literal"], "${PGM_SECRET_UNSET:-" + LITERAL_PW + "}")
        ),
        "env_missing": _write(
            d / "envmissing.yaml", cfg(roles["literal"], {"from_env": "PGM_SECRET_UNSET"})
        ),
        "ssl": sandbox.configs["ssl"],
        "cert": sandbox.configs["cert"],
        # Secrets in any section, under names other than "password": redacted everywhere.
        "extra_secrets": _write(
            d / "extras.yaml",
            {
                **cfg(roles["literal"], LITERAL_PW),
                "extras": {"admin_password": LITERAL_PW, "api_key": LITERAL_PW},
                "more": [{"PGPASSWORD": LITERAL_PW, "passphrase": LITERAL_PW}],
            },
        ),
        # Without --resolve-env: a warning says how to resolve it, then the server refuses.
        "unresolved": _write(d / "bad_unresolved.yaml", cfg(roles["env"], "${PGM_SECRET_ENV}")),
        # YAML that quotes the password in PyYAML's own messages, or fails in its constructors.
        "tag": _write(
            d / "bad_tag.yaml", _tagged(cfg(roles["literal"], "TAGGED"), f"!{LITERAL_PW}")
        ),
        "int_tag": _write(
            d / "bad_inttag.yaml",
            _tagged(cfg(roles["literal"], LITERAL_PW, keepalives="TAGGED"), f"!!int {LITERAL_PW}"),
        ),
        "bool_tag": _write(
            d / "bad_booltag.yaml",
            _tagged(cfg(roles["literal"], LITERAL_PW, sslmode="TAGGED"), f"!!bool {LITERAL_PW}"),
        ),
        "dsn": _write(
            d / "bad_dsn.yaml",
            {"connection_settings": f"postgresql://{roles['literal']}:{LITERAL_PW}@127.0.0.1/x"},
        ),
        "url_dbname": _write(
            d / "bad_url.yaml",
            cfg(
                roles["literal"],
                None,
                dbname=f"postgresql://{roles['literal']}:{LITERAL_PW}@127.0.0.1/x?sslmode=maybe",
            ),
        ),
        # Resolved values on ordinary keys that refuse them: the reference is shown, not them.
        "resolved_port": _write(
            d / "bad_port.yaml",
            cfg(roles["env"], {"from_env": "PGM_SECRET_ENV"}, port={"from_env": "PGM_SECRET_ENV"}),
        ),
        "resolved_sslmode": _write(
            d / "bad_sslmode.yaml",
            cfg(roles["file"], None, sslmode={"from_file": str(secret_file)}),
        ),
        "alias_bomb": _write(d / "bad_bomb.yaml", _bomb(cfg(roles["literal"], LITERAL_PW))),
    }
    resolve = {"from_env", "env_sub", "from_file", "wrong_env", "default_secret", "env_missing"}
    resolve |= {"resolved_port", "resolved_sslmode"}
    return paths, resolve


def _tagged(data: dict[str, Any], tagged: str) -> str:
    """*data* as YAML, its "TAGGED" value replaced by *tagged* (a tag and a value)."""
    return yaml.safe_dump(data, sort_keys=False).replace("TAGGED", tagged)


def _bomb(data: dict[str, Any]) -> str:
    """*data* as YAML plus a billion laughs."""
    lines = [yaml.safe_dump(data, sort_keys=False), "a0: &a0 [lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def _cli(surfaces: Surfaces, capsys: pytest.CaptureFixture[str], *argv: Any) -> int:
    args = [str(a) for a in argv]
    code = run(args)
    out, err = capsys.readouterr()
    label = "cli " + " ".join(a if "/" not in a else Path(a).name for a in args)
    surfaces.add(f"{label}: stdout", out)
    surfaces.add(f"{label}: stderr", err)
    return code


def _notebook_texts() -> Iterator[tuple[str, str, str]]:
    """``(notebook, sources, outputs)`` of each stored notebook."""
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        sources, outputs = [], []
        for cell in nb["cells"]:
            sources.append("".join(cell.get("source", "")))
            for out in cell.get("outputs", []):
                outputs.append("".join(out.get("text", "")))
                outputs.extend("".join(out.get("traceback", [])) for _ in [0])
                outputs.append(str(out.get("evalue", "")))
                for value in out.get("data", {}).values():
                    outputs.append("".join(value) if isinstance(value, list) else str(value))
        yield path.name, "\n".join(sources), "\n".join(outputs)


# Secrets a notebook's own code sets: fake passwords in strings, defaults of sensitive refs.
_NB_SECRET_PATTERNS = [
    re.compile(r"""["'](fake-[^"'\s]+)["']"""),
    re.compile(
        r"""environ\[["'][A-Z0-9_]*(?:PASSWORD|SECRET|TOKEN)[A-Z0-9_]*["']\]\s*=\s*["']([^"']+)["']"""
    ),
    re.compile(r"""\$\{[A-Z0-9_]*(?:PASSWORD|SECRET)[A-Z0-9_]*:-([^}]+)\}"""),
    re.compile(r"""password\s*[:=]\s*["']([^"'${}\s]{6,})["']"""),
]
# A password shown in clear in an output: a conninfo or a mapping entry not redacted.
_SHOWN_PASSWORD = re.compile(
    r"""(?:password=(?!\*)[^\s'"]+)|(?:['"]password['"]\s*:\s*['"](?!\*\*\*REDACTED)[^'"]+['"])"""
)


def test_no_secret_on_any_surface(
    sandbox: sb.Sandbox,
    roles: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="pgmonkey")
    monkeypatch.setenv("PGM_SECRET_ENV", ENV_PW)
    monkeypatch.setenv("PGM_SECRET_WRONG", WRONG_PW)
    monkeypatch.delenv("PGM_SECRET_UNSET", raising=False)
    surfaces = Surfaces()
    configs, resolve = _configs(sandbox, roles, tmp_path)
    good = ["literal", "from_env", "env_sub", "from_file", "ssl", "cert", "extra_secrets"]
    failing = [k for k in configs if k not in good]

    def flag(name: str) -> list[str]:
        return ["--resolve-env"] if name in resolve else []

    # -- CLI: every command, on good and failing configs -----------------------------------
    csv_in = tmp_path / "people.csv"
    csv_in.write_text("name,age\nAda,36\nAlan,41\n", encoding="utf-8")
    exit_codes: dict[str, list[int]] = {}
    for name, path in configs.items():
        codes = exit_codes.setdefault(name, [])
        types = TYPES if name in ("literal", "from_env", "from_file", "wrong", "cert") else (None,)
        for ctype in types:
            extra = ["--connection-type", ctype] if ctype else []
            codes.append(
                _cli(
                    surfaces, capsys, "pgconfig", "test", "--connconfig", path, *extra, *flag(name)
                )
            )
        for lib in ("pgmonkey", "psycopg"):
            codes.append(
                _cli(
                    surfaces,
                    capsys,
                    *("pgconfig", "generate-code", "--filepath", path),
                    *("--connection-type", "pool", "--library", lib, *flag(name)),
                )
            )
        codes.append(_cli(surfaces, capsys, "pgserverconfig", "--filepath", path, *flag(name)))
        codes.append(
            _cli(surfaces, capsys, "pgserverconfig", "--filepath", path, "--audit", *flag(name))
        )
        table = f"public.secret_{RUN}_{name}"
        for _review_then_import in range(2):
            codes.append(
                _cli(
                    surfaces,
                    capsys,
                    *("pgimport", "--table", table, "--connconfig", path),
                    *("--import_file", csv_in, *flag(name)),
                )
            )
        (tmp_path / "people.csv.import.yaml").unlink(missing_ok=True)
        out_csv = tmp_path / f"out_{name}.csv"
        codes.append(
            _cli(
                surfaces,
                capsys,
                *("pgexport", "--table", table, "--connconfig", path),
                *("--export_file", out_csv, *flag(name)),
            )
        )
        codes.append(
            _cli(
                surfaces,
                capsys,
                *("pgexport", "--query", "SELECT current_user, 'x' AS c"),
                *("--connconfig", path, "--export_file", out_csv, *flag(name)),
            )
        )
        if out_csv.exists():
            surfaces.add(f"exported csv ({name})", out_csv.read_text())
    surfaces.add(
        "import settings file",
        (tmp_path / "people.csv.import.yaml").read_text()
        if (tmp_path / "people.csv.import.yaml").exists()
        else "",
    )
    _cli(
        surfaces, capsys, "pgconfig", "create", "--type", "pg", "--filepath", tmp_path / "new.yaml"
    )
    _cli(surfaces, capsys, "sandbox", "status", "--dir", sandbox.dir)
    _cli(surfaces, capsys, "sandbox", "status", "--dir", tmp_path / "no-sandbox-here")
    # Good configs worked on every command, failing ones failed cleanly (exit 1).
    for name in ("literal", "from_env", "env_sub", "from_file", "extra_secrets"):
        assert set(exit_codes[name]) == {0}, (name, exit_codes[name])
    for name in failing:
        assert 1 in exit_codes[name] and set(exit_codes[name]) <= {0, 1}, (name, exit_codes[name])

    # As real processes too (the console's own streams, interpreter shutdown included).
    env = {**os.environ, "PGM_SECRET_ENV": ENV_PW, "PGM_SECRET_WRONG": WRONG_PW}
    for name in ("from_env", "wrong_env", "wrong", "bad_yaml", "bad_value", "tag", "resolved_port"):
        for cmd in (["pgconfig", "test"], ["pgserverconfig", "--audit"]):
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pgmonkey",
                    *cmd,
                    "--connconfig",
                    str(configs[name]),
                    *flag(name),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
            surfaces.add(f"subprocess {' '.join(cmd)} {name}: stdout", proc.stdout)
            surfaces.add(f"subprocess {' '.join(cmd)} {name}: stderr", proc.stderr)
            assert proc.returncode == (0 if name == "from_env" else 1), (name, cmd, proc)

    # -- Python API: objects, reprs, errors, four types ------------------------------------
    manager = PGConnectionManager()
    for name, path in configs.items():
        res = name in resolve
        cfg = surfaces.call(
            f"load_config {name}", lambda p=path, r=res: load_config(p, r), shown=False
        )
        if cfg is not None:
            surfaces.add(f"redact_config {name}", repr(redact_config(cfg)))
            surfaces.call(f"connect_params {name}", lambda c=cfg: connect_params(c))
        for ctype in ("normal", "pool"):

            def use_sync(p: Path = path, t: str = ctype, r: bool = res) -> Any:
                obj = manager.get_database_connection(p, t, resolve_env=r)
                with obj as conn:
                    surfaces.add("psycopg connection repr", repr(conn))
                    surfaces.add("conninfo dsn", conn.info.dsn)
                    conn.execute("SELECT 1")
                return obj

            surfaces.call(f"manager {name} {ctype}", use_sync)

        async def use_async(p: Path = path, r: bool = res) -> list[Any]:
            shown = []
            for t in ("async", "async_pool"):
                try:
                    obj = await manager.get_database_connection(p, t, resolve_env=r)
                    async with obj as conn:
                        await conn.execute("SELECT 1")
                    shown.append(obj)
                except Exception as exc:
                    surfaces.exception(f"manager {p.name} {t}", exc)
            shown.append(manager)
            shown.append(manager.cache_info)
            await manager.clear_cache_async()
            return shown

        surfaces.call(f"manager {name} async", lambda f=use_async: asyncio.run(f()))
    surfaces.add("manager repr", repr(manager))
    surfaces.add("manager cache_info", repr(manager.cache_info))
    manager.clear_cache()
    surfaces.call(
        "import_csv wrong config",
        lambda: import_csv(
            csv_in, "public.never", configs["wrong"], settings=tmp_path / "none.import.yaml"
        ),
    )
    surfaces.call(
        "export_csv wrong config",
        lambda: export_csv(configs["wrong"], tmp_path / "never.csv", table="public.never"),
    )

    # -- magics: banner, connections, config, queries, errors ------------------------------
    with fresh_magics() as (shell, magics):
        cells = []
        for i, ctype in enumerate(TYPES):
            cells.append(f"%pgmonkey connect {configs['literal']} {ctype} --name lit{i}")
        cells += [
            f"%pgmonkey connect {configs['from_env']} pool --name env --resolve-env",
            f"%pgmonkey connect {configs['from_file']} async_pool --name file --resolve-env",
            f"%pgmonkey connect {configs['cert']} --name cert",
            "%pgmonkey connections",
            "%pgmonkey use lit0",
            "%pgmonkey SELECT current_user, 1 AS one",
            "%%pgmonkey --conn env\nSELECT current_user; SELECT 1/0",
            "%pgmonkey SELECT * FROM no_such_table",
            f"%pgmonkey config {configs['literal']}",
            f"%pgmonkey config {configs['from_env']} --resolve-env",
            f"%pgmonkey config {configs['from_file']} --resolve-env",
            f"%pgmonkey config {configs['bad_yaml']}",
            f"%pgmonkey config {configs['extra_secrets']}",
            f"%pgmonkey config {configs['tag']}",
            f"%pgmonkey config {configs['int_tag']}",
            f"%pgmonkey config {configs['dsn']}",
            f"%pgmonkey config {configs['url_dbname']}",
            f"%pgmonkey config {configs['alias_bomb']}",
            f"%pgmonkey config {configs['resolved_port']} --resolve-env",
            f"%pgmonkey serverconfig {configs['literal']}",
            f"%pgmonkey audit {configs['literal']}",
            f"%pgmonkey connect {configs['wrong']} --name wrong",
            f"%pgmonkey connect {configs['wrong_env']} async --name wrong2 --resolve-env",
            f"%pgmonkey connect {configs['bad_yaml']} --name bad",
            f"%pgmonkey connect {configs['bad_value']} --name bad2",
            f"%pgmonkey connect {configs['default_secret']} --name bad3 --resolve-env",
            "%pgmonkey connections",
            "%pgmonkey disconnect --all",
        ]
        must_fail = ("1/0", "no_such_table", "bad", "wrong")
        for cell in cells:
            capsys.readouterr()
            result = shell.run_cell(cell, store_history=False)
            out, err = capsys.readouterr()
            failed = result.error_in_exec is not None or result.error_before_exec is not None
            assert failed == any(word in cell for word in must_fail), (cell, out, err)
            label = f"magic {cell.splitlines()[0][:60]}"
            surfaces.add(f"{label}: stdout", out)
            surfaces.add(f"{label}: stderr", err)
            for exc in (result.error_in_exec, result.error_before_exec):
                if exc is not None:
                    surfaces.exception(label, exc)
            value = result.result
            if value is not None:
                surfaces.add(f"{label}: repr", repr(value))
                for display in ("_repr_html_", "to_string"):
                    if hasattr(value, display):
                        surfaces.add(f"{label}: {display}", getattr(value, display)())
        surfaces.add("magics repr", repr(magics))

    # -- logs ------------------------------------------------------------------------------
    for record in caplog.records:
        surfaces.add(f"log {record.name} {record.levelname}", record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            surfaces.exception(f"log {record.name} exc_info", record.exc_info[1])
    assert any(r.name.startswith("pgmonkey") for r in caplog.records)

    # -- stored notebook outputs -----------------------------------------------------------
    notebook_secrets: list[str] = []
    notebooks = list(_notebook_texts())
    assert notebooks, "no stored notebooks found"
    for nb, sources, outputs in notebooks:
        surfaces.add(f"notebook {nb} outputs", outputs)
        for pattern in _NB_SECRET_PATTERNS:
            notebook_secrets += [m.group(1) for m in pattern.finditer(sources)]
        shown = [m.group(0) for m in _SHOWN_PASSWORD.finditer(outputs)]
        assert not shown, f"{nb}: a password shown in clear in a stored output"

    # -- the verdict -----------------------------------------------------------------------
    # The client key's body too, not only its PEM header.
    key_lines = (sandbox.dir / "client.key").read_text().splitlines()
    key_body = [line for line in key_lines if line and not line.startswith("-----")]
    assert key_body
    secrets = [LITERAL_PW, ENV_PW, FILE_PW, WRONG_PW, sandbox.password, *notebook_secrets]
    secrets += key_body
    leaks = surfaces.leaks(secrets)
    assert not leaks, leaks
    labels = {label.split(":")[0].split(" ")[0] for label, _ in surfaces.items}
    assert {"cli", "subprocess", "log", "magic", "notebook", "manager"} <= labels
    print(
        f"\nsecrets surface: {len(surfaces.items)} texts scanned "
        f"({sum(len(t) for _, t in surfaces.items):,} characters) from "
        f"{sum(1 for lab, _ in surfaces.items if lab.startswith('cli'))} CLI streams, "
        f"{sum(1 for lab, _ in surfaces.items if lab.startswith('subprocess'))} subprocess "
        f"streams, {len(caplog.records)} log records, "
        f"{sum(1 for lab, _ in surfaces.items if lab.startswith('magic'))} magic outputs, "
        f"{len(notebooks)} notebooks; {len(secrets)} secrets; "
        f"{surfaces.unwired} psycopg connect errors still carrying pgconn"
    )


def test_failed_connects_carry_no_password_in_any_attribute(
    sandbox: sb.Sandbox, tmp_path: Path
) -> None:
    data = yaml.safe_load(sandbox.configs["password"].read_text())
    data["connection_settings"]["password"] = WRONG_PW
    data["pool_settings"] = data["async_pool_settings"] = SMALL_POOL
    path = _write(tmp_path / "wrong.yaml", data)
    manager = PGConnectionManager()
    errors: list[BaseException] = []

    def attempt(fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:
            errors.append(exc)

    def sync(ctype: str) -> None:
        with manager.get_database_connection(path, ctype) as conn:
            conn.execute("SELECT 1")

    async def use_async(ctype: str) -> None:
        obj = await manager.get_database_connection(path, ctype)
        async with obj as conn:
            await conn.execute("SELECT 1")

    for ctype in ("normal", "pool"):
        attempt(lambda t=ctype: sync(t))
    for ctype in ("async", "async_pool"):
        attempt(lambda t=ctype: asyncio.run(use_async(t)))
    attempt(lambda: export_csv(path, tmp_path / "never.csv", table="public.never"))
    manager.clear_cache()
    assert len(errors) == 5, errors
    surfaces = Surfaces()
    for exc in errors:
        surfaces.exception("connect", exc)
        for e in (exc, exc.__cause__, exc.__context__):
            surfaces.add("pgconn", repr(getattr(e, "pgconn", None)))
    assert surfaces.unwired == 0
    assert not surfaces.leaks([WRONG_PW])
