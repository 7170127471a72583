"""The libtorrent boundary: only ``scryp/swarm/`` imports libtorrent, and the pure modules the
client and the core use load without it (a unit test, a light client's argument parsing or a
tool that only reads keys never pays for, or depends on, the BitTorrent stack).
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import scryp.core
from tests.test_tidy import PACKAGE, ROOT, imported_modules

# Pure helpers and the client's parts that decide without the network (besides scryp.core.*).
PURE_MODULES = (
    "scryp.errors",
    "scryp.hostport",
    "scryp.files",
    "scryp.crypto",
    "scryp.keyfile",
    "scryp.client.network",
    "scryp.core.replay",
    "scryp.client.search",
    "scryp.client.verify",
)


def core_modules() -> list[str]:
    found = pkgutil.walk_packages(scryp.core.__path__, prefix="scryp.core.")
    return ["scryp.core", *sorted(module.name for module in found)]


def loaded_after_importing(modules: list[str]) -> list[str]:
    """``sys.modules`` of a fresh interpreter after importing ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_pure_modules_load_without_libtorrent() -> None:
    modules = [*core_modules(), *PURE_MODULES]
    assert "scryp.core.pointer" in modules and "scryp.core.raft.node" in modules
    loaded = loaded_after_importing(modules)
    assert set(modules) <= set(loaded)  # the probe really imported them
    assert "libtorrent" not in loaded
    assert not [name for name in loaded if name.startswith("scryp.swarm")]


def test_the_probe_sees_libtorrent_when_it_is_loaded() -> None:
    # The check above could pass vacuously if the probe never saw libtorrent at all.
    assert "libtorrent" in loaded_after_importing(["scryp.swarm"])


def test_only_the_swarm_package_imports_libtorrent() -> None:
    swarm = PACKAGE / "swarm"
    importers = [p for p in sorted(PACKAGE.rglob("*.py")) if "libtorrent" in imported_modules(p)]
    outside = [str(p.relative_to(ROOT)) for p in importers if swarm not in p.parents]
    assert not outside, f"libtorrent imported outside scryp/swarm/: {outside}"
    assert importers, "nothing imports libtorrent: the check looks in the wrong place"
