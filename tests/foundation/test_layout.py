"""DESIGN.md's one-way flow of imports, checked on the source (AST)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = {"kernels", "models", "training", "service"}
FORBIDDEN = {
    "kernels": {"models", "training", "service"},
    "models": {"training", "service"},
    "training": {"service"},
    "service": {"training"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


def violations() -> list[str]:
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in sorted(imported_packages(path) & forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return bad


def test_imports_flow_one_way():
    assert violations() == []


def test_the_check_catches_a_bad_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("import os\nfrom training.loop import Run\n")
    assert imported_packages(bad) == {"training"}
