"""Environment and secret-file interpolation (opt-in, ``resolve_env=True``).

The rules are the 4.0 documentation's:

- ``${VAR}`` and ``${VAR:-default}`` inside strings, several per value; other types pass through.
- ``{from_env: VAR}`` and ``{from_file: /path}``: a dict with exactly one of those keys is a
  structured reference; a dict with more keys is ordinary nested config. ``from_file`` trims
  the trailing newline (Kubernetes Secret files end with one).
- A default is refused for a sensitive key (``password``, ``sslkey``, ... see
  :func:`~pgmonkey.config.is_sensitive_key`) unless ``allow_sensitive_defaults=True``: the
  refusal is about the config as written, so it applies whether or not the variable is set.
- A missing variable raises :class:`EnvInterpolationError` (``strict=True``, the default) or, with
  ``strict=False``, leaves the reference as written and logs a warning. A missing or unreadable
  ``from_file`` always raises. Malformed ``${...}`` always raises.

No resolved value ever goes into a message: only variable names, file paths and key paths.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pgmonkey.errors import EnvInterpolationError

from ._common import Index, Path, describe, is_sensitive_path, is_structured_ref, render_path
from ._files import MAX_SECRET_BYTES, FileProblem, decode_utf8, read_limited

logger = logging.getLogger("pgmonkey.config")

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class Dependencies:
    """What a resolved config was built from: used by the cache to notice changes."""

    env: dict[str, str | None] = field(default_factory=dict)  # name -> value as read
    files: set[str] = field(default_factory=set)
    # key path -> the reference as written, for every value interpolation changed: messages
    # about such a value show the reference, never what it resolved to.
    resolved: dict[Path, object] = field(default_factory=dict)


@dataclass(frozen=True)
class _Ref:
    start: int
    end: int
    name: str
    default: str | None


class _Interpolator:
    def __init__(
        self,
        *,
        strict: bool,
        allow_sensitive_defaults: bool,
        source: str | None,
        warn: Callable[[str], None] | None = None,
    ):
        self.strict = strict
        self.allow_sensitive_defaults = allow_sensitive_defaults
        self.source = source
        self.deps = Dependencies()
        self._warn = warn or logger.warning

    # -- errors -----------------------------------------------------------------------------

    def _error(
        self, path: Path, value: object, message: str, *, reference: bool = False
    ) -> EnvInterpolationError:
        """*reference*: the value is a variable name or file path, never the secret itself."""
        where = f"{self.source}: " if self.source else ""
        shown = describe(value, sensitive=not reference and is_sensitive_path(path))
        return EnvInterpolationError(f"{where}{render_path(path)} = {shown}: {message}")

    def _warn_missing(self, path: Path, name: str) -> None:
        where = f"{self.source}: " if self.source else ""
        self._warn(
            f"{where}{render_path(path)}: environment variable {name!r} is not set; "
            "the reference is left as written"
        )

    # -- walking ----------------------------------------------------------------------------

    def walk(self, value: Any, path: Path) -> Any:
        if is_structured_ref(value):
            result = self.structured(value, path)
        elif isinstance(value, Mapping):
            return {k: self.walk(v, (*path, k)) for k, v in value.items()}
        elif isinstance(value, list):
            return [self.walk(v, (*path, Index(i))) for i, v in enumerate(value)]
        elif isinstance(value, str) and "${" in value:
            result = self.string(value, path)
        else:
            return value
        if result != value:
            self.deps.resolved[path] = value
        return result

    def _sensitive(self, path: Path) -> bool:
        return is_sensitive_path(path)

    # -- ${VAR} -----------------------------------------------------------------------------

    def scan(self, text: str, path: Path) -> list[_Ref]:
        refs: list[_Ref] = []
        i = 0
        while (start := text.find("${", i)) >= 0:
            end = text.find("}", start + 2)
            if end < 0:
                raise self._error(path, text, "unclosed '${': expected '${NAME}'")
            name, sep, default = text[start + 2 : end].partition(":-")
            if not name:
                raise self._error(path, text, "empty variable name: expected '${NAME}'")
            if not _NAME.match(name):
                what = "a variable name" if self._sensitive(path) else repr(name)
                raise self._error(
                    path,
                    text,
                    f"invalid variable name ({what}): expected '${{NAME}}' or "
                    "'${NAME:-default}', NAME made of letters, digits and '_'",
                )
            refs.append(_Ref(start, end + 1, name, default if sep else None))
            i = end + 1
        return refs

    def string(self, text: str, path: Path) -> str:
        refs = self.scan(text, path)
        out: list[str] = []
        last = 0
        for ref in refs:
            out.append(text[last : ref.start])
            last = ref.end
            if ref.default is not None and not self.allow_sensitive_defaults:
                if self._sensitive(path):
                    raise self._error(
                        path,
                        text,
                        f"a default value ('${{{ref.name}:-...}}') is not allowed for a "
                        f"sensitive key: set {ref.name!r} in the environment, or pass "
                        "allow_sensitive_defaults=True",
                    )
            value = self.deps.env[ref.name] = os.environ.get(ref.name)
            if value is None:
                value = ref.default
            if value is None:
                if self.strict:
                    raise self._error(
                        path,
                        text,
                        f"environment variable {ref.name!r} is not set and no default was "
                        "given: expected it set, or '${NAME:-default}'",
                    )
                self._warn_missing(path, ref.name)
                value = text[ref.start : ref.end]
            out.append(value)
        out.append(text[last:])
        return "".join(out)

    # -- from_env / from_file ---------------------------------------------------------------

    def structured(self, ref: Mapping[str, Any], path: Path) -> Any:
        ((kind, target),) = ref.items()
        refpath = (*path, kind)
        if kind == "from_env":
            if not isinstance(target, str) or not _NAME.match(target):
                raise self._error(
                    refpath, target, "expected an environment variable name", reference=True
                )
            value = self.deps.env[target] = os.environ.get(target)
            if value is None:
                if self.strict:
                    raise self._error(
                        refpath,
                        target,
                        "environment variable is not set: expected it set",
                        reference=True,
                    )
                self._warn_missing(refpath, target)
                return dict(ref)
            return value
        if not isinstance(target, str) or not target:
            raise self._error(refpath, target, "expected the path of a secret file", reference=True)
        filename = os.path.expanduser(target)
        self.deps.files.add(filename)
        problem: str | None = None
        try:
            content = decode_utf8(read_limited(filename, MAX_SECRET_BYTES))
        except FileNotFoundError:
            problem = "secret file not found"
        except FileProblem as exc:
            # The reason only (a kind of file, a size, an offset): never the file's bytes.
            problem = f"cannot read the secret file: {exc}"
        if problem is not None:
            raise self._error(refpath, target, problem, reference=True)
        # Kubernetes Secret style: the file ends with a newline that is not part of the secret.
        # (Read as bytes: a CR in the secret is kept as stored.)
        return content.rstrip("\r\n")


def interpolate(
    config: Mapping[str, Any],
    *,
    strict: bool = True,
    allow_sensitive_defaults: bool = False,
    source: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], Dependencies]:
    """Resolve every reference in *config*; return a new dict and what it depended on."""
    it = _Interpolator(
        strict=strict, allow_sensitive_defaults=allow_sensitive_defaults, source=source, warn=warn
    )
    result = {k: it.walk(v, (k,)) for k, v in config.items()}
    return result, it.deps
