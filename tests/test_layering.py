"""The package's layers import downwards only (read from the source, nothing is imported).

- entrypoints/native and entrypoints/pooling share what they need with entrypoints/openai
  through entrypoints/ itself (serving_common, serving_tokenize), never through openai/;
- models/ and layers/ sit below engine/ (ForwardBatch lives in radixserve/forward_batch.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "radixserve"


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(("radixserve", *path.relative_to(PACKAGE).parent.parts))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("entrypoints/native", "radixserve.entrypoints.openai"),
        ("entrypoints/pooling", "radixserve.entrypoints.openai"),
        ("models", "radixserve.engine"),
        ("layers", "radixserve.engine"),
    ],
)
def test_no_upward_or_sideways_imports(folder: str, forbidden: str) -> None:
    files = sorted((PACKAGE / folder).rglob("*.py"))
    assert files, folder
    offenders = {
        str(f.relative_to(PACKAGE)): sorted(m for m in imported_modules(f)
                                            if m == forbidden or m.startswith(forbidden + "."))
        for f in files
    }  # fmt: skip
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_import_scan_sees_imports() -> None:
    """The scan itself finds an import of openai/ where there is one (so the test can fail)."""
    found = imported_modules(PACKAGE / "entrypoints" / "app.py")
    assert "radixserve.entrypoints.openai.serving_chat" in found
