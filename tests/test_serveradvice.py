"""Server configuration advice: the rules on configs, pg_hba matching, and the audit."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from pgmonkey.config import load_config
from pgmonkey.serveradvice import (
    Advice,
    AuditReport,
    HbaClient,
    HbaLine,
    HbaRule,
    audit,
    recommend,
)
from pgmonkey.serveradvice._hba import first_match, hba_addresses, quote_hba_name


def cfg(**settings: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"user": "app", "password": "pw", "dbname": "appdb", "host": "10.1.2.3"}
    base.update(settings)
    return {"connection_type": "normal", "connection_settings": base}


def setting(advice: Advice, name: str) -> str | None:
    return next((s.value for s in advice.settings if s.name == name), None)


# --- addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("192.168.0.10", ["192.168.0.10/32"]),
        ("::1", ["::1/128"]),
        ("2001:db8::5", ["2001:db8::5/128"]),
        ("[2001:db8::5]", ["2001:db8::5/128"]),
        ("fe80::1%eth0", ["fe80::1/128"]),
        ("db.example.com", ["db.example.com"]),
        ("localhost", ["127.0.0.1/32", "::1/128"]),
        ("LocalHost", ["127.0.0.1/32", "::1/128"]),
        ("/var/run/postgresql", [""]),
        ("", [""]),
    ],
)
def test_hba_addresses(host: str, expected: list[str]) -> None:
    assert hba_addresses(host) == expected


def test_ipv4_line_is_scoped_to_database_and_user() -> None:
    advice = recommend(cfg(host="192.168.0.10", sslmode="require"))
    assert advice.hba == (
        HbaLine("hostssl", "appdb", "app", "192.168.0.10/32", "scram-sha-256", ""),
    )


def test_ipv6_host() -> None:
    (line,) = recommend(cfg(host="2001:db8::5")).hba
    assert line.address == "2001:db8::5/128"


def test_host_name_is_kept() -> None:
    (line,) = recommend(cfg(host="db.example.com")).hba
    assert line.address == "db.example.com"


def test_localhost_gives_both_loopbacks() -> None:
    lines = recommend(cfg(host="localhost")).hba
    assert [line.address for line in lines] == ["127.0.0.1/32", "::1/128"]


def test_multi_host_gives_one_line_each() -> None:
    lines = recommend(cfg(host="db1.example.com,10.0.0.2,::2", port="5432,5433,5434")).hba
    assert [line.address for line in lines] == ["db1.example.com", "10.0.0.2/32", "::2/128"]
    assert {line.database for line in lines} == {"appdb"}


def test_hostaddr_wins_over_host() -> None:
    (line,) = recommend(cfg(host="db.example.com", hostaddr="10.9.8.7")).hba
    assert line.address == "10.9.8.7/32"


def test_unix_socket_gives_a_local_line() -> None:
    (line,) = recommend(cfg(host="/var/run/postgresql")).hba
    assert (line.type, line.address, line.method) == ("local", "", "scram-sha-256")


def test_odd_names_are_quoted() -> None:
    assert quote_hba_name("all") == '"all"'
    assert quote_hba_name("my db") == '"my db"'
    assert quote_hba_name('a"b') == '"a""b"'
    assert quote_hba_name("app_1") == "app_1"
    (line,) = recommend(cfg(dbname="all", user="replication")).hba
    assert (line.database, line.user) == ('"all"', '"replication"')


# --- SSL, methods and client certificates --------------------------------------------------


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_ssl_not_required_means_no_ssl_advice(mode: str) -> None:
    advice = recommend(cfg(sslmode=mode))
    assert setting(advice, "ssl") is None
    assert advice.hba[0].type == "host"
    assert advice.hba[0].options == ""


def test_ssl_default_is_prefer() -> None:
    assert setting(recommend(cfg()), "ssl") is None


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_ssl_required_means_ssl_on_and_hostssl(mode: str) -> None:
    advice = recommend(cfg(sslmode=mode))
    assert setting(advice, "ssl") == "on"
    assert setting(advice, "ssl_cert_file") == "server.crt"
    assert setting(advice, "ssl_ca_file") is None  # no client certificate to verify
    assert advice.hba[0].type == "hostssl"
    assert advice.hba[0].method == "scram-sha-256"
    assert "clientcert" not in advice.hba[0].options


def test_client_certificate_without_password_uses_cert() -> None:
    config = cfg(sslmode="verify-full", sslcert="/c/client.crt", sslkey="/c/client.key")
    del config["connection_settings"]["password"]
    advice = recommend(config)
    (line,) = advice.hba
    assert (line.type, line.method, line.options) == ("hostssl", "cert", "clientcert=verify-full")
    assert setting(advice, "ssl_ca_file") == "ca.crt"
    assert setting(advice, "password_encryption") is None


def test_client_certificate_with_password_uses_scram_and_clientcert() -> None:
    advice = recommend(cfg(sslmode="verify-full", sslcert="/c/client.crt", sslkey="/c/client.key"))
    (line,) = advice.hba
    assert (line.method, line.options) == ("scram-sha-256", "clientcert=verify-full")


def test_clientcert_is_tied_to_the_certificate_not_to_sslmode() -> None:
    # 4.0 put clientcert=verify-full on every verify-full config.
    (line,) = recommend(cfg(sslmode="verify-full", sslrootcert="/c/ca.crt")).hba
    assert line.options == ""


def test_empty_cert_entries_mean_no_certificate() -> None:
    (line,) = recommend(cfg(sslmode="require", sslcert="", sslkey="")).hba
    assert line.options == ""


# --- max_connections ----------------------------------------------------------------------


def test_max_connections_counts_every_pool() -> None:
    config = cfg()
    config["pool_settings"] = {"min_size": 5, "max_size": 20}
    config["async_pool_settings"] = {"min_size": 5, "max_size": 20}
    advice = recommend(config)
    # 40 for the pools + 3 superuser_reserved_connections + a margin of 10% (at least 2).
    assert setting(advice, "max_connections") == "47"
    assert setting(recommend(config, reserved_connections=10), "max_connections") == "54"


def test_max_connections_without_pools() -> None:
    assert setting(recommend(cfg()), "max_connections") == "5"


def test_max_connections_one_pool() -> None:
    config = cfg()
    config["pool_settings"] = {"max_size": 100}
    assert setting(recommend(config), "max_connections") == str(100 + 3 + 10)


# --- text and frames ----------------------------------------------------------------------


def test_text_keeps_the_40_layout() -> None:
    config = cfg(host="192.168.0.10", sslmode="verify-full", sslcert="/c.crt", sslkey="/c.key")
    config["pool_settings"] = {"max_size": 20}
    text = recommend(config).to_text()
    lines = text.splitlines()
    assert lines[0] == "1) Database type detected: PostgreSQL"
    assert "2) Minimal database server settings needed for this config file:" in lines
    a = lines.index("a) pg_hba.conf:")
    assert lines[a + 1].split() == ["TYPE", "DATABASE", "USER", "ADDRESS", "METHOD", "OPTIONS"]
    assert lines[a + 2].split() == [
        "hostssl",
        "appdb",
        "app",
        "192.168.0.10/32",
        "scram-sha-256",
        "clientcert=verify-full",
    ]
    b = lines.index("b) postgresql.conf:")
    assert lines[b + 1].startswith("max_connections = 25  #")
    assert lines[b + 2 : b + 6] == [
        "ssl = on",
        "ssl_cert_file = 'server.crt'",
        "ssl_key_file = 'server.key'",
        "ssl_ca_file = 'ca.crt'",
    ]
    assert "pw" not in text.split()


def test_advice_frame() -> None:
    frame = recommend(cfg(sslmode="require")).to_frame()
    assert list(frame.columns) == ["file", "setting", "value", "note"]
    assert set(frame["file"]) == {"pg_hba.conf", "postgresql.conf"}
    assert "on" in set(frame.loc[frame["setting"] == "ssl", "value"])


# --- pg_hba matching ----------------------------------------------------------------------


def rule(line: int, text: str, netmask: str | None = None, **kw: Any) -> HbaRule:
    parts = text.split()
    rtype, db, user = parts[0], parts[1], parts[2]
    address = parts[3] if rtype != "local" else None
    method = parts[-1]
    return HbaRule(
        line,
        rtype,
        tuple(db.split(",")),
        tuple(user.split(",")),
        address,
        netmask,
        method,
        **kw,
    )


def client(address: str | None = "127.0.0.1", ssl: bool = False, **kw: Any) -> HbaClient:
    values: dict[str, Any] = {"database": "appdb", "user": "app", "roles": frozenset()}
    values.update(kw)
    return HbaClient(address=address, ssl=ssl, **values)


def test_first_matching_rule_wins() -> None:
    rules = [
        rule(1, "local all all trust"),
        rule(2, "host all all 127.0.0.1 reject", "255.255.255.255"),
        rule(3, "host all all 0.0.0.0 scram-sha-256", "0.0.0.0"),
    ]
    assert first_match(rules, client()).rule == rules[1]
    assert first_match(rules, client("10.0.0.1")).rule == rules[2]
    assert first_match(rules, client(None)).rule == rules[0]


def test_ssl_types() -> None:
    rules = [
        rule(1, "hostssl all all all cert"),
        rule(2, "hostnossl all all all md5"),
    ]
    assert first_match(rules, client(ssl=True)).rule == rules[0]
    assert first_match(rules, client(ssl=False)).rule == rules[1]


def test_netmask_containment_v4_and_v6() -> None:
    rules = [
        rule(1, "host all all 192.168.0.0 scram-sha-256", "255.255.255.0"),
        rule(2, "host all all 2001:db8:: scram-sha-256", "ffff:ffff::"),
    ]
    assert first_match(rules, client("192.168.0.77")).rule == rules[0]
    assert first_match(rules, client("192.168.1.77")).rule is None
    assert first_match(rules, client("2001:db8:1::5")).rule == rules[1]
    assert first_match(rules, client("2001:db9::5")).rule is None


def test_database_and_user_keywords() -> None:
    rules = [
        rule(1, "host sameuser all all trust"),
        rule(2, "host appdb +admins all md5"),
        rule(3, "host replication all all trust"),
        rule(4, "host otherdb,appdb app all scram-sha-256"),
    ]
    assert first_match(rules, client(database="app")).rule == rules[0]
    assert first_match(rules, client(roles=frozenset({"admins"}))).rule == rules[1]
    assert first_match(rules, client()).rule == rules[3]


def test_unknown_membership_and_host_names_are_undecided() -> None:
    rules = [
        rule(1, "host all +admins all trust"),
        rule(2, "host all all db.example.com trust"),
        rule(3, "host all all samenet trust"),
        rule(4, "host all all all scram-sha-256"),
    ]
    match = first_match(rules, client(roles=None))
    assert match.rule == rules[3]
    assert [r.line_number for r in match.undecided] == [1, 2, 3]
    assert not match.certain


def test_rules_with_errors_are_skipped() -> None:
    rules = [rule(1, "host all all all trust", error="invalid"), rule(2, "host all all all md5")]
    match = first_match(rules, client())
    assert match.rule == rules[1]
    assert [r.line_number for r in match.skipped_errors] == [1]


def test_rule_text() -> None:
    r = rule(7, "hostssl appdb app 10.0.0.0 cert", "255.0.0.0", options=("clientcert=verify-full",))
    assert str(r) == "hostssl appdb app 10.0.0.0/8 cert clientcert=verify-full"


# --- the audit, against the sandbox -------------------------------------------------------


def big_pools(path: Path, tmp_path: Path, size: int = 150) -> dict[str, Any]:
    """The config at *path* with pools larger than the sandbox's max_connections (200)."""
    config = load_config(path)
    config["pool_settings"]["max_size"] = size
    config["async_pool_settings"]["max_size"] = size
    return config


def statuses(report: AuditReport) -> dict[str, str]:
    return {r.setting.split(" (")[0]: r.status for r in report.rows}


def test_audit_as_superuser_has_ok_mismatch_and_review(
    ssl_config: Path, tmp_path: Path, sandbox: Any
) -> None:
    config = big_pools(ssl_config, tmp_path)
    # The superuser presenting the sandbox's client certificate besides its password: the
    # advice wants the certificate checked, the sandbox's password rule does not check it.
    config["connection_settings"].update(
        sslcert=str(sandbox.dir / "client.crt"), sslkey=str(sandbox.dir / "client.key")
    )
    report = audit(config)
    got = statuses(report)
    assert got["max_connections"] == "MISMATCH"  # 300 pool connections, server allows 200
    assert got["ssl"] == "OK"
    assert got["ssl_cert_file"] == "OK"  # the sandbox's server.crt, in its own directory
    assert got["password_encryption"] == "OK"
    assert got["this client"] == "REVIEW"
    hba = next(r for r in report.rows if r.section == "pg_hba.conf")
    assert "no clientcert=verify-full" in hba.note
    assert hba.current is not None
    assert "hostssl all all 127.0.0.1/32 scram-sha-256" in hba.current
    assert hba.recommended == (
        "hostssl pgmonkey pgmonkey 127.0.0.1/32 scram-sha-256 clientcert=verify-full"
    )
    assert report.hba_error is None
    assert report.hba_rules and any(r.auth_method == "cert" for r in report.hba_rules)
    assert report.in_recovery is False
    assert report.client is not None and report.client.ssl
    assert report.needs_attention

    text = report.to_text()
    assert "2) Server settings audit:" in text
    assert "Setting" in text and "Recommended" in text and "Status" in text
    assert "Current rules (pg_hba_file_rules):" in text
    assert sandbox.password not in text

    frame = report.to_frame()
    assert list(frame.columns) == [
        "section",
        "setting",
        "recommended",
        "current",
        "source",
        "status",
        "note",
    ]
    assert {"OK", "MISMATCH", "REVIEW"} <= set(frame["status"])


@pytest.mark.parametrize("kind", ["password", "ssl", "cert"])
def test_a_new_sandboxs_configs_audit_clean(sandbox: Any, kind: str) -> None:
    # The sandbox's pg_hba.conf follows the advice: hostssl for the SSL clients (so none is
    # also admitted without SSL), hostnossl for the password one, and its certificate role
    # may read pg_hba_file_rules. So `pgserverconfig --audit --strict` passes on each.
    report = audit(load_config(sandbox.configs[kind]))
    assert not report.needs_attention, report.to_text()
    assert set(statuses(report).values()) == {"OK"}


@pytest.mark.parametrize("kind", ["ssl", "cert"])
def test_a_new_sandboxs_configs_pass_the_strict_audit_command(sandbox: Any, kind: str) -> None:
    command = ["pgserverconfig", "--filepath", str(sandbox.configs[kind]), "--audit", "--strict"]
    res = subprocess.run(
        [sys.executable, "-m", "pgmonkey", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "REVIEW" not in res.stdout and "UNKNOWN" not in res.stdout


def test_audit_as_certificate_role(cert_config: Path) -> None:
    # pgmonkey_cert is no superuser: pg_settings yes, pg_hba_file_rules by the sandbox's grant.
    report = audit(load_config(cert_config))
    (line,) = report.advice.hba
    assert (line.type, line.user, line.method, line.options) == (
        "hostssl",
        "pgmonkey_cert",
        "cert",
        "clientcert=verify-full",
    )
    got = statuses(report)
    assert got["ssl"] == got["ssl_ca_file"] == got["max_connections"] == "OK"
    assert got["this client"] == "OK"
    hba = next(r for r in report.rows if r.section == "pg_hba.conf")
    assert hba.current is not None and "hostssl all pgmonkey_cert 127.0.0.1/32 cert" in hba.current
    assert report.client is not None and report.client.ssl
    assert report.hba_error is None


def test_audit_without_privileges_gives_recommendations_with_the_reason(
    password_config: Path, db_conn: psycopg.Connection[Any], sandbox: Any
) -> None:
    role = f"audit_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    db_conn.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )
    try:
        config = load_config(password_config)
        config["connection_settings"].update(user=role, password=password)
        report = audit(config)
    finally:
        db_conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert report.hba_rules is None
    assert report.hba_error is not None and "permission denied" in report.hba_error
    assert statuses(report)["max_connections"] == "OK"  # pg_settings is readable by all
    assert report.needs_attention  # an audit that could not see pg_hba is not a clean bill
    frame = report.to_frame()
    hba = frame[frame["section"] == "pg_hba.conf"].iloc[0]
    assert hba["status"] == "UNKNOWN" and "permission denied" in hba["note"]
    # The privilege that would let the role read the rules is named.
    assert "GRANT SELECT ON pg_hba_file_rules" in report.hba_error
    assert "GRANT EXECUTE ON FUNCTION pg_hba_file_rules()" in report.hba_error
    text = report.to_text(width=1000)
    assert "cannot read pg_hba_file_rules: permission denied" in text
    assert f"host  pgmonkey  {role}" in text  # the recommendation is still shown
    assert password not in text


def test_audit_uses_the_connection_it_is_given(
    password_config: Path, db_conn: psycopg.Connection[Any]
) -> None:
    report = audit(load_config(password_config), db_conn)
    assert report.client is not None and report.client.user == "pgmonkey"
    assert not db_conn.closed


def test_audit_connection_error_is_psycopgs(password_config: Path) -> None:
    config = load_config(password_config)
    config["connection_settings"]["password"] = "wrong"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        audit(config)


def test_the_40_template_gets_sensible_advice() -> None:
    from pgmonkey.config import config_template

    config = yaml.safe_load(config_template())
    advice = recommend(config)
    # localhost: both loopbacks; sslmode 'prefer' requires nothing, so no ssl = on (4.0 did).
    assert [(line.type, line.address) for line in advice.hba] == [
        ("host", "127.0.0.1/32"),
        ("host", "::1/128"),
    ]
    assert setting(advice, "ssl") is None
    pools = config["pool_settings"]["max_size"] + config["async_pool_settings"]["max_size"]
    assert int(setting(advice, "max_connections") or 0) > pools + 3


def test_standby_and_attention_in_the_report() -> None:
    advice = recommend(cfg(host="127.0.0.1"))
    ok = AuditReport(advice, (), in_recovery=True, hba_rules=())
    assert not ok.needs_attention
    assert "standby (in recovery)" in ok.to_text()
    denied = AuditReport(advice, (), hba_error="permission denied for view pg_hba_file_rules")
    assert denied.needs_attention
    assert "standby" not in denied.to_text()


# --- fitting the terminal -----------------------------------------------------------------


def _wide_report() -> AuditReport:
    from pgmonkey.serveradvice import AuditRow

    advice = recommend(cfg(host="127.0.0.1", sslmode="verify-full"))
    source = "configuration file (/var/lib/postgresql/15/main/postgresql.conf:827)"
    rows = (
        AuditRow("postgresql.conf", "max_connections", "15", "200", source, "OK"),
        AuditRow(
            "postgresql.conf",
            "ssl_cert_file",
            "server.crt",
            "/etc/ssl/certs/ssl-cert-snakeoil-with-a-long-name.pem",
            source,
            "REVIEW",
            "'/etc/ssl/certs/ssl-cert-snakeoil-with-a-long-name.pem' instead of the usual "
            "'server.crt': check it is the intended file",
        ),
    )
    rules = (
        HbaRule(6, "hostssl", ("all",), ("all",), "127.0.0.1", "255.255.255.255", "md5"),
        HbaRule(7, "hostnossl", ("all",), ("all",), "::1", None, "scram-sha-256"),
    )
    return AuditReport(
        advice,
        rows,
        server_version="PostgreSQL 15.20 (Debian 15.20-0+deb12u1)",
        hba_rules=rules,
        replication=("standby standby1 from 127.0.0.1: streaming (async), replay lag 0.1 s",),
        notes=(("a note long enough to need wrapping on a narrow terminal, " * 3).strip(),),
    )


@pytest.mark.parametrize("width", [60, 80, 100])
def test_audit_text_fits_the_width(width: int) -> None:
    report = _wide_report()
    wide = report.to_text(width=1000)
    assert max(len(line) for line in wide.splitlines()) > 120  # too wide for a terminal
    text = report.to_text(width=width)
    assert max(len(line) for line in text.splitlines()) <= width, text

    # Nothing is lost, only spread over more lines (the rule under the table's header follows
    # the table's width; a narrow table gives each source a "source:" line of its own).
    def chars(t: str) -> Counter[str]:
        return Counter(c for c in t if not c.isspace() and c != "─")

    assert not (chars(wide) - chars(text)) - Counter("Source")
    assert "Setting" in text and "Status" in text and "REVIEW" in text


def test_audit_text_without_a_terminal_is_not_wrapped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    report = _wide_report()
    assert report.to_text() == report.to_text(width=1000)  # stdout is captured, not a tty
    monkeypatch.setenv("COLUMNS", "72")
    assert report.to_text() == report.to_text(width=72)


def test_advice_text_fits_the_width_and_stays_pasteable() -> None:
    config = cfg(host="192.168.0.10", sslmode="verify-full", sslcert="/c.crt", sslkey="/c.key")
    config["pool_settings"] = {"max_size": 20}
    advice = recommend(config)
    wide = advice.to_text(width=1000)
    assert "max_connections = 25  # at least: pools 20" in wide
    text = advice.to_text(width=72)
    assert max(len(line) for line in text.splitlines()) <= 72, text
    conf = text.split("b) postgresql.conf:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    # The comment moved above its setting, as comment lines: the block still pastes as is.
    assert conf[0].startswith("# at least: pools 20")
    assert "max_connections = 25" in conf
    assert all(line.startswith("#") or " = " in line for line in conf)


def test_the_cli_fits_columns(sandbox: Any) -> None:
    command = ["pgserverconfig", "--filepath", str(sandbox.configs["ssl"]), "--audit"]
    res = subprocess.run(
        [sys.executable, "-m", "pgmonkey", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "72"},
    )
    assert res.returncode == 0, res.stderr
    assert "2) Server settings audit:" in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= 72, res.stdout


def test_a_column_wraps_inside_its_own_width() -> None:
    from pgmonkey.serveradvice._advice import text_table

    rows = [("Setting", "Source"), ("max_connections", "configuration file (/a/b/c:1)")]
    text = text_table(rows, 30)
    assert text.splitlines() == [
        "Setting          Source",
        "max_connections  configuration",
        "                 file",
        "                 (/a/b/c:1)",
    ]
