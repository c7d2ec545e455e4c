"""The store's modules import one another one way: the configuration model knows nothing of the
database, `db` reads the model, and seeding (which needs both) sits above them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import firmware.store

STORE_DIR = Path(firmware.store.__file__).parent
REPO_ROOT = STORE_DIR.parent.parent
SUBPROCESS_TIMEOUT_S = 60

# `firmware/store/__init__.py` re-exports `Store`, so importing the package loads `db` by design;
# a bare package module in its place lets the child load `config` with only the imports it makes.
LOAD_CONFIG_ALONE = """
import sys, types
package = types.ModuleType("firmware.store")
package.__path__ = [sys.argv[1]]
sys.modules["firmware.store"] = package
import firmware.store.config
print("firmware.store.db" in sys.modules)
"""


def store_imports(path: Path) -> set[str]:
    """The `firmware.store` modules `path` imports, by their short names, TYPE_CHECKING ones too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = "firmware.store" + (f".{node.module}" if node.module else "")
            else:
                base = node.module or ""
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["firmware", "store"] and len(parts) > 2:
                found.add(parts[2])
    return found


def test_config_loads_without_the_database_module() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOAD_CONFIG_ALONE, str(STORE_DIR)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=True,
    )

    assert result.stdout.strip() == "False"


def test_store_modules_import_each_other_without_a_circle() -> None:
    modules = {path.stem: path for path in STORE_DIR.glob("*.py") if path.stem != "__init__"}
    graph = {name: store_imports(path) & modules.keys() - {name} for name, path in modules.items()}

    # Peel off modules that import nothing left in the graph; a circle is what cannot be peeled.
    while leaves := {name for name, imported in graph.items() if not imported}:
        graph = {name: imported - leaves for name, imported in graph.items() if name not in leaves}

    assert graph == {}
    # The reading finds the imports that are there (an empty graph proves nothing otherwise).
    assert "db" in store_imports(modules["seed"]) and "config" in store_imports(modules["db"])
