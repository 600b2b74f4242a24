"""The dev tooling's import boundaries (issue 10 item 6): bench/, demo/ and devtools/ never import tests.*
(they run without the test suite), and gateway/ imports neither devtools nor tests (the image ships only
gateway/, see .dockerignore)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in files
        if "node_modules" not in path.parts
        for module in sorted(_imported_modules(path))
        if module.split(".")[0] in forbidden
    ]


@pytest.mark.parametrize("package", ["bench", "demo", "devtools"])
def test_tooling_does_not_import_the_tests(package: str) -> None:
    assert _offenders(package, ("tests",)) == []


def test_gateway_imports_no_dev_tooling() -> None:
    assert _offenders("gateway", ("tests", "devtools", "bench", "demo")) == []


def test_the_check_sees_an_import_of_tests(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom tests.support.upstream import Upstream\nimport tests.fixtures\n")
    assert _imported_modules(sample) >= {"tests.support.upstream", "tests.fixtures"}
