"""Reading config and secret files, and parsing YAML, with limits and without leaks.

- Only regular files are read (a FIFO would block for ever, ``/dev/zero`` never ends), and
  only up to a size limit, checked before and while reading.
- The YAML node graph is checked before any Python object is built: a self-referencing alias
  (``x: &a [*a]``) and an alias bomb ("billion laughs": a few hundred bytes that expand to
  billions of values) are refused by counting values as if every alias were written out.
- A value that does not fit its explicit tag (``!!int abc``, ``!!bool X``) is a YAML error
  with its position, never a raw ValueError/KeyError holding the value.
- YAML 1.1 reads unquoted ``0123`` as octal 83, ``12:30`` as 750, ``yes`` as True and
  ``2024-01-01`` as a date. For keys whose value is text (password, user, dbname, host,
  application_name, session settings, ...) the loader keeps the text as written.
- Messages never quote the document: PyYAML's own text quotes the offending line or tag,
  which may be a password. Only the position and the kind of problem are kept.

Every error is raised outside ``except`` blocks, so no exception chained to it (``__context__``)
carries the text either.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_CONFIG_BYTES: Final = 1024 * 1024
MAX_SECRET_BYTES: Final = 64 * 1024
# Values (scalars, lists, mappings) with every alias written out; a real config has dozens.
MAX_VALUES: Final = 100_000
MAX_DEPTH: Final = 100

_Base: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG: Final = "tag:yaml.org,2002:"
_STR: Final = _TAG + "str"
_MERGE: Final = _TAG + "merge"
# Implicitly typed scalars that may not be the text as written.
_RETYPED: Final = frozenset(_TAG + t for t in ("int", "float", "bool", "timestamp"))
_CANONICAL_PORT: Final = re.compile(r"[1-9][0-9]*\Z")
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}\Z")
_QUOTED: Final = re.compile(r"""\s*(?:'[^']*'|"[^"]*")""")
_FILE_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileProblem(Exception):
    """Why a file cannot be read: the reason only, never the content."""


def read_limited(path: str, limit: int) -> bytes:
    """The bytes of the regular file *path*, at most *limit* of them.

    Raises FileNotFoundError for a missing file, FileProblem for anything else (not a regular
    file, too large, unreadable), with a reason that holds no byte of the file.
    """
    problem: str | None = None
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
    if problem is not None:
        raise FileProblem(problem)
    try:
        data = _read_fd(fd, limit)
    finally:
        os.close(fd)
    return data


def _read_fd(fd: int, limit: int) -> bytes:
    mode = os.fstat(fd).st_mode
    for test, kind in _FILE_KINDS:
        if test(mode):
            raise FileProblem(f"it is {kind}, not a regular file")
    if not stat.S_ISREG(mode):
        raise FileProblem("it is not a regular file")
    if os.fstat(fd).st_size > limit:
        raise FileProblem(f"larger than {limit:,} bytes")
    chunks: list[bytes] = []
    size = 0
    problem: str | None = None
    while True:
        try:
            chunk = os.read(fd, limit + 1 - size)
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:  # the file grew while being read
            problem = f"larger than {limit:,} bytes"
            break
    if problem is not None:
        raise FileProblem(problem)
    return b"".join(chunks)


def decode_utf8(data: bytes) -> str:
    """UTF-8 text; FileProblem naming only the offset of a bad byte."""
    problem: str | None = None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte {exc.start})"
    raise FileProblem(problem)


# -- YAML -----------------------------------------------------------------------------------


class YAMLProblem(Exception):
    """An invalid or refused YAML document: position and kind of problem, never its text."""


class _TagMismatch(yaml.constructor.ConstructorError):
    pass


class _Loader(_Base):  # type: ignore[misc]
    """The safe loader (libyaml's when built with it); explicit tags fail as YAML errors."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        failed = False
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception:  # ValueError, KeyError, TypeError... from SafeConstructor
            failed = True
        assert failed
        raise _TagMismatch(
            None, None, f"the value does not fit its tag {_short_tag(node.tag)}", node.start_mark
        )


def _short_tag(tag: str) -> str:
    # Standard tags only: a local tag (``!Passw0rd``) may be the value itself.
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else "(a local tag)"


def parse_yaml(text: str, text_keys: frozenset[str]) -> object:
    """The document in *text*, checked for aliases, size and depth before it is built.

    *text_keys*: keys of ``connection_settings`` whose values are text (kept as written).
    Raises YAMLProblem.
    """
    problem: str | None = None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node)
        _check_keys(node)
        _keep_text(node, text_keys)
        return loader.construct_document(node)
    except YAMLProblem:
        raise
    except yaml.MarkedYAMLError as exc:
        problem = _describe_marked(exc)
    except yaml.YAMLError as exc:
        problem = f"invalid YAML ({type(exc).__name__})"
    except RecursionError:
        problem = f"invalid YAML: nested more than {MAX_DEPTH} levels deep"
    finally:
        loader.dispose()
    raise YAMLProblem(problem)


def _describe_marked(exc: yaml.MarkedYAMLError) -> str:
    # Never str(exc): it quotes the offending line. problem/context may quote a tag or a
    # character: every quoted part is dropped.
    mark = exc.problem_mark or exc.context_mark
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = _QUOTED.sub("", exc.problem or exc.context or "syntax error").strip(" ;")
    hint = ""
    if "constructor for the tag" in what:
        hint = ": a value starting with '!' is read as a YAML tag; put the value in quotes"
    elif "undefined alias" in what:
        hint = ": a value starting with '*' is read as a YAML alias; put the value in quotes"
    elif "cannot start any token" in what:
        hint = ": a value starting with '@' or '`' must be put in quotes"
    return f"invalid YAML{at}: {what}{hint}"


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _check_graph(root: Node) -> None:
    """Refuse cycles (a self-referencing alias), alias bombs and deep nesting.

    Counts each node's values as if every alias were written out, each node once (memoised),
    so the check itself is linear in the document.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[list[Any]] = []  # [node, iterator over its children, values so far]

    def enter(node: Node) -> None:
        if len(stack) >= MAX_DEPTH:
            raise YAMLProblem(
                f"invalid YAML at line {node.start_mark.line + 1}: "
                f"nested more than {MAX_DEPTH} levels deep"
            )
        active.add(id(node))
        stack.append([node, iter(_children(node)), 1])

    def add(count: int) -> None:
        stack[-1][2] += count
        if stack[-1][2] > MAX_VALUES:
            raise YAMLProblem(
                f"refused: the YAML holds more than {MAX_VALUES:,} values once its aliases "
                "are expanded (an alias bomb?); a config holds a few dozen"
            )

    enter(root)
    while stack:
        node, children, total = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            active.discard(id(node))
            sizes[id(node)] = total
            if stack:
                add(total)
        elif id(child) in active:
            raise YAMLProblem(
                f"invalid YAML at line {child.start_mark.line + 1}, column "
                f"{child.start_mark.column + 1}: an alias refers to a value that contains it "
                "(a config cannot be recursive)"
            )
        elif id(child) in sizes:
            add(sizes[id(child)])
        elif isinstance(child, ScalarNode):
            sizes[id(child)] = 1
            add(1)
        else:
            enter(child)


def _check_keys(root: Node) -> None:
    """Refuse a key written twice in one mapping: YAML forbids it, and PyYAML would keep the
    last value without a word (a second ``host:`` silently wins). A key that overrides one
    merged in with ``<<`` is fine."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(_children(node))
        if not isinstance(node, MappingNode):
            continue
        first: dict[tuple[str, str], Node] = {}
        for key, _value in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _MERGE:
                continue
            earlier = first.setdefault((key.tag, key.value), key)
            if earlier is not key:
                raise YAMLProblem(
                    f"invalid YAML at line {key.start_mark.line + 1}, column "
                    f"{key.start_mark.column + 1}: {_key_name(key.value)} is given twice "
                    f"(first at line {earlier.start_mark.line + 1}): keep one"
                )


def _key_name(key: str) -> str:
    # Keys are names (host, password, statement_timeout); anything else is not shown.
    return f"the key {key!r}" if _NAME.match(key) else "a key"


def _pairs(node: MappingNode, seen: set[int]) -> Iterator[tuple[Node, Node]]:
    """Key and value nodes of a mapping, those brought in by ``<<: *anchor`` included."""
    if id(node) in seen:
        return
    seen.add(id(node))
    for key, value in node.value:
        if key.tag == _MERGE:
            merged = value.value if isinstance(value, SequenceNode) else [value]
            for m in merged:
                if isinstance(m, MappingNode):
                    yield from _pairs(m, seen)
        else:
            yield key, value


def _get(node: Node, key: str) -> Node | None:
    if not isinstance(node, MappingNode):
        return None
    for k, v in _pairs(node, set()):
        if isinstance(k, ScalarNode) and k.value == key:
            return v
    return None


def _keep_text(root: Node, text_keys: frozenset[str]) -> None:
    """Retag YAML-1.1-typed plain scalars as text where the value must be text."""
    top = _get(root, "postgresql") or root  # the pre-3.0 wrapper
    settings = _get(top, "connection_settings")
    if isinstance(settings, MappingNode):
        for key, value in _pairs(settings, set()):
            if not (isinstance(key, ScalarNode) and isinstance(value, ScalarNode)):
                continue
            if value.tag not in _RETYPED:
                continue
            if key.value in text_keys or (
                key.value == "port" and not _CANONICAL_PORT.match(value.value)
            ):
                value.tag = _STR
    for section in ("sync_settings", "async_settings"):
        gucs = _get(top, section)
        if isinstance(gucs, MappingNode):
            for _key, value in _pairs(gucs, set()):
                if isinstance(value, ScalarNode) and value.tag in _RETYPED:
                    value.tag = _STR
