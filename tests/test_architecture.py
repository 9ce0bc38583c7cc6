"""The layout in docs/architecture.md holds: no module imports a floor above its own.

Every import counts, module-level or inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pgmonkey"

# Module prefix -> floor, the longest matching prefix wins (docs/architecture.md).
FLOORS = {
    "pgmonkey.errors": 1,
    "pgmonkey._psycopg": 1,
    "pgmonkey.config": 2,
    "pgmonkey.connections": 3,
    "pgmonkey._connect": 3,
    "pgmonkey.manager": 4,
    "pgmonkey.frames": 5,
    "pgmonkey.transfer": 5,
    "pgmonkey.serveradvice": 5,
    "pgmonkey.codegen": 5,
    "pgmonkey.dask": 5,
    "pgmonkey.sandbox": 6,
    "pgmonkey.cli": 7,
    "pgmonkey.magics": 7,
    # 4.0 paths: re-exports and thin adapters over the rooms below
    "pgmonkey.common": 7,
    "pgmonkey.managers": 7,
    "pgmonkey.tools": 7,
    "pgmonkey.serversettings": 7,
    "pgmonkey.__main__": 7,
    "pgmonkey": 7,  # the package's __init__: the public API
}


def _floor(module: str) -> int:
    best = max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)
    return FLOORS[best]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from pgmonkey import frames` imports the module pgmonkey.frames
            found.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in found if m == "pgmonkey" or m.startswith("pgmonkey.")}


def _known(name: str) -> bool:
    path = PACKAGE.parent / Path(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def test_no_module_imports_a_floor_above_its_own() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        for target in _imports(path, module):
            if not _known(target) or target == "pgmonkey":
                continue  # a name imported from a package, not a module
            if _floor(target) > _floor(module):
                upward.append(f"{module} (floor {_floor(module)}) imports {target}")
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import() -> None:
    assert _floor("pgmonkey.config._load") == 2
    assert _floor("pgmonkey.magics._run") == 7
    assert _floor("pgmonkey._connect") == 3
    sample = PACKAGE / "config" / "_load.py"
    assert "pgmonkey.errors" in _imports(sample, "pgmonkey.config._load")


def test_no_private_module_at_the_top_but_the_two_rooms() -> None:
    private = sorted(
        p.name for p in PACKAGE.glob("_*.py") if p.name not in ("__init__.py", "__main__.py")
    )
    assert private == ["_connect.py", "_psycopg.py"]


def test_only_connect_opens_connections() -> None:
    # The one road: no other module calls psycopg.connect / AsyncConnection.connect directly,
    # except the sandbox (its own superuser bootstrap) and the connection classes' pools.
    allowed = {"_connect.py", "sandbox", "connections"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in allowed or rel.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = ast.unparse(node.func.value)
                if node.func.attr == "connect" and owner in ("psycopg", "psycopg.AsyncConnection"):
                    offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, offenders
