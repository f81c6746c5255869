"""The backup role installs every module_utils file the backup program imports, and nothing else.

The program runs on the host from copies of the collection's module_utils (roles/backup/vars/main.yml,
_backup_module_utils). A new module it imports and the list lacks fails only on a host, at the first
backup: pg_archive did so in a molecule run.
"""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
MODULE_UTILS = ROOT / "plugins" / "module_utils"
PACKAGE = "ansible_collections.chajipoa.platform.plugins.module_utils"


def imported_module_utils(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE + "."):
            found.add(node.module.rsplit(".", 1)[1])
        elif isinstance(node, ast.Import):
            found.update(alias.name.rsplit(".", 1)[1] for alias in node.names if alias.name.startswith(PACKAGE + "."))
    return found


def closure(start: str) -> set[str]:
    needed, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(imported_module_utils(MODULE_UTILS / f"{name}.py"))
    return needed


def test_the_role_installs_exactly_what_the_program_imports():
    installed = yaml.safe_load((ROOT / "roles" / "backup" / "vars" / "main.yml").read_text())["_backup_module_utils"]
    assert sorted(installed) == sorted(f"{name}.py" for name in closure("backup_program"))


def test_the_import_walk_finds_the_programs_direct_imports():
    assert {"backup_checks", "backup_manifest", "backup_sources", "pg_archive"} <= imported_module_utils(MODULE_UTILS / "backup_program.py")
