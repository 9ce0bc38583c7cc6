"""pg_hba.conf rules: building recommended lines and evaluating current ones.

The matching follows the server's own order: the first rule whose connection type,
database, user and address all match the client decides; later rules are never looked at.
Where a rule depends on something a client cannot see (a host name that needs reverse DNS,
``samehost``/``samenet``), the answer is "cannot tell" rather than a guess.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "HbaClient",
    "HbaLine",
    "HbaMatch",
    "HbaRule",
    "first_match",
    "hba_addresses",
    "quote_hba_name",
]

# Tokens pg_hba.conf reads as keywords unless they are quoted.
_KEYWORDS: Final = frozenset({"all", "sameuser", "samerole", "samegroup", "replication"})
_PLAIN_NAME: Final = re.compile(r"^[A-Za-z0-9_.$-]+$")


def quote_hba_name(name: str) -> str:
    """Quote a database or role name the way pg_hba.conf needs it (keywords, odd characters)."""
    if _PLAIN_NAME.match(name) and name not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def hba_addresses(host: str) -> list[str]:
    """The pg_hba ADDRESS entries for one libpq host entry ('' means a Unix socket: no ADDRESS).

    IPv4 -> ``a.b.c.d/32``, IPv6 -> ``x::y/128``, ``localhost`` -> both loopbacks (libpq may
    use either), anything else is a host name, which pg_hba.conf accepts as it is.
    """
    host = host.strip()
    if not host or host.startswith("/") or host.startswith("@"):
        return [""]
    if host.lower() == "localhost":
        return ["127.0.0.1/32", "::1/128"]
    ip = _parse_ip(host)
    if ip is not None:
        return [f"{ip}/{ip.max_prefixlen}"]
    return [host]


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip("[]").split("%", 1)[0]  # a zone id (fe80::1%eth0) has no place here
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class HbaLine:
    """One recommended pg_hba.conf line."""

    type: str
    database: str
    user: str
    address: str
    method: str
    options: str = ""

    def fields(self) -> tuple[str, str, str, str, str, str]:
        return (self.type, self.database, self.user, self.address, self.method, self.options)

    def __str__(self) -> str:
        return " ".join(f for f in self.fields() if f)


@dataclass(frozen=True)
class HbaRule:
    """One row of ``pg_hba_file_rules`` (a rule of the server's current pg_hba.conf file)."""

    line_number: int
    type: str
    database: tuple[str, ...]
    user_name: tuple[str, ...]
    address: str | None
    netmask: str | None
    auth_method: str
    options: tuple[str, ...] = ()
    error: str | None = None
    file_name: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> HbaRule:
        return cls(
            line_number=int(row.get("line_number") or 0),
            type=str(row.get("type") or ""),
            database=tuple(row.get("database") or ()),
            user_name=tuple(row.get("user_name") or ()),
            address=row.get("address"),
            netmask=row.get("netmask"),
            auth_method=str(row.get("auth_method") or ""),
            options=tuple(row.get("options") or ()),
            error=row.get("error"),
            file_name=row.get("file_name"),
        )

    @property
    def address_text(self) -> str:
        if not self.address:
            return ""
        if self.netmask:
            try:
                mask = ipaddress.ip_address(self.netmask)
                prefix = bin(int(mask)).count("1")
                return f"{self.address}/{prefix}"
            except ValueError:
                return f"{self.address} {self.netmask}"
        return self.address

    def fields(self) -> tuple[str, str, str, str, str, str]:
        return (
            self.type,
            ",".join(self.database),
            ",".join(self.user_name),
            self.address_text,
            self.auth_method,
            " ".join(self.options),
        )

    def __str__(self) -> str:
        return " ".join(f for f in self.fields() if f)


@dataclass(frozen=True)
class HbaClient:
    """A client as the server's pg_hba check sees it. ``address`` None: a Unix socket."""

    database: str
    user: str
    address: str | None
    ssl: bool
    # Roles the user is a member of (for ``+role`` and ``samerole``); None: unknown.
    roles: frozenset[str] | None = None

    def describe(self) -> str:
        where = f"from {self.address}" if self.address else "over a Unix socket"
        ssl = "SSL" if self.ssl else "no SSL"
        return f"user {self.user!r}, database {self.database!r}, {where}, {ssl}"


@dataclass(frozen=True)
class HbaMatch:
    """The first rule matching a client; ``undecided`` lists rules before it that may match."""

    rule: HbaRule | None
    undecided: tuple[HbaRule, ...] = ()
    skipped_errors: tuple[HbaRule, ...] = field(default=())

    @property
    def certain(self) -> bool:
        return not self.undecided


def first_match(rules: Iterable[HbaRule], client: HbaClient) -> HbaMatch:
    """Evaluate *rules* in order, as the server does; the first full match wins."""
    undecided: list[HbaRule] = []
    errors: list[HbaRule] = []
    for rule in rules:
        if rule.error:
            errors.append(rule)
            continue
        verdict = _matches(rule, client)
        if verdict is None:
            undecided.append(rule)
        elif verdict:
            return HbaMatch(rule, tuple(undecided), tuple(errors))
    return HbaMatch(None, tuple(undecided), tuple(errors))


def _all_true(verdicts: Sequence[bool | None]) -> bool | None:
    if any(v is False for v in verdicts):
        return False
    if any(v is None for v in verdicts):
        return None
    return True


def _matches(rule: HbaRule, client: HbaClient) -> bool | None:
    return _all_true(
        [
            _type_matches(rule.type, client),
            _database_matches(rule.database, client),
            _user_matches(rule.user_name, client),
            _address_matches(rule, client),
        ]
    )


def _type_matches(rtype: str, client: HbaClient) -> bool:
    if rtype == "local":
        return client.address is None
    if client.address is None:
        return False
    if rtype == "hostssl":
        return client.ssl
    if rtype == "hostnossl":
        return not client.ssl
    if rtype == "hostgssenc":  # pgmonkey connections do not use GSSAPI encryption
        return False
    return rtype in ("host", "hostnogssenc")


def _unquote(token: str) -> tuple[str, bool]:
    if len(token) >= 2 and token[0] == token[-1] == '"':
        return token[1:-1].replace('""', '"'), True
    return token, False


def _name_matches(token: str, name: str) -> bool | None:
    text, quoted = _unquote(token)
    if not quoted and text.startswith("/"):  # a regular expression (PostgreSQL 16+)
        try:
            return re.search(text[1:], name) is not None
        except re.error:
            return None
    return text == name


def _member(role: str, client: HbaClient) -> bool | None:
    if role == client.user:
        return True
    if client.roles is None:
        return None
    return role in client.roles


def _any(verdicts: Iterable[bool | None]) -> bool | None:
    seen_none = False
    for v in verdicts:
        if v:
            return True
        if v is None:
            seen_none = True
    return None if seen_none else False


def _database_matches(tokens: Sequence[str], client: HbaClient) -> bool | None:
    def one(token: str) -> bool | None:
        if token == "all":
            return True
        if token == "sameuser":
            return client.database == client.user
        if token in ("samerole", "samegroup"):
            return _member(client.database, client)
        if token == "replication":
            return False
        return _name_matches(token, client.database)

    return _any(one(t) for t in tokens)


def _user_matches(tokens: Sequence[str], client: HbaClient) -> bool | None:
    def one(token: str) -> bool | None:
        if token == "all":
            return True
        if token.startswith("+"):
            return _member(token[1:], client)
        return _name_matches(token, client.user)

    return _any(one(t) for t in tokens)


def _address_matches(rule: HbaRule, client: HbaClient) -> bool | None:
    if rule.type == "local":
        return True
    if client.address is None:
        return False
    if not rule.address or rule.address == "all":
        return True
    if rule.address in ("samehost", "samenet"):
        return None  # depends on the server's own interfaces
    ip = _parse_ip(client.address)
    if ip is None:
        return None
    network = _rule_network(rule)
    if network is None:
        # A host name: the server checks it by reverse and forward DNS lookups of the client.
        return None
    if network.version != ip.version:
        return False
    return ip in network


def _rule_network(rule: HbaRule) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    assert rule.address is not None
    try:
        if rule.netmask:
            prefix = bin(int(ipaddress.ip_address(rule.netmask))).count("1")
            return ipaddress.ip_network(f"{rule.address}/{prefix}", strict=False)
        return ipaddress.ip_network(rule.address, strict=False)
    except ValueError:
        return None
