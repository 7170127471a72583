"""Style rules no linter checks for us (see the brief, "How we write code")."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "scryp"
# The pure core never touches IO, the clock, global randomness or the network stack.
CORE_FORBIDDEN = {
    "asyncio",
    "socket",
    "time",
    "os",
    "pickle",
    "libtorrent",
    "aiohttp",
    "subprocess",
    "threading",
    "pathlib",
    "datetime",
    "shutil",
    "btdht",
    "uuid",
    "secrets",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_core_is_pure() -> None:
    core = sorted((PACKAGE / "core").rglob("*.py"))
    assert core, "scryp/core has no modules"
    for path in core:
        bad = imported_modules(path) & CORE_FORBIDDEN
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
        # A core module may be handed a random.Random, but never use the global generator.
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "random"
            ):
                assert node.attr == "Random", f"{path.relative_to(ROOT)} uses random.{node.attr}"
        bad_from = [
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "random"
            for alias in node.names
            if alias.name != "Random"
        ]
        assert not bad_from, f"{path.relative_to(ROOT)} imports {bad_from} from random"


def test_core_modules_have_a_header() -> None:
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        if path.name == "__init__.py" and path.stat().st_size == 0:
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring and len(docstring) > 40, f"{path.relative_to(ROOT)}: no header"


def test_only_the_swarm_imports_libtorrent_and_none_imports_btdht() -> None:
    swarm = PACKAGE / "swarm"
    importers = [p for p in package_files() if "libtorrent" in imported_modules(p)]
    assert all(swarm in p.parents for p in importers), importers
    assert not [p for p in package_files() if "btdht" in imported_modules(p)]


def test_no_pickle_anywhere() -> None:
    for path in [*package_files(), *sorted((ROOT / "tools").glob("*.py"))]:
        assert "pickle" not in imported_modules(path), path


def test_no_leftover_markers() -> None:
    for path in package_files():
        text = path.read_text()
        assert "FIXME" not in text and "XXX" not in text, path
