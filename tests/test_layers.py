"""The package's layers (issue 16): no module imports a private name (``_x``) from another subpackage.

The layer order itself is an import-linter contract (``.importlinter``), checked by ``tox -e lint``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import audio_dialogues

PACKAGE = Path(audio_dialogues.__file__).parent


def _subpackage(module: str) -> str:
    """``dataset`` for ``audio_dialogues.dataset.builder``; a root module (``files``) counts as its own."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def private_imports_across_subpackages(root: Path = PACKAGE) -> list[str]:
    """``file:line name from module`` for each private name imported from another subpackage (or the root)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = ("audio_dialogues", *path.relative_to(root).with_suffix("").parts)
        package = parts if parts[-1] == "__init__" else parts[:-1]
        package = package[:-1] if package[-1] == "__init__" else package
        here = _subpackage(".".join(parts))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join((*base, node.module) if node.module else base)
            else:
                module = node.module or ""
            if not module.startswith("audio_dialogues"):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") and _subpackage(module) != here:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {alias.name} from {module}")
    return found


def test_no_private_name_is_imported_across_subpackages() -> None:
    assert private_imports_across_subpackages() == []


def test_the_check_finds_a_private_import_across_subpackages(tmp_path: Path) -> None:
    """The check itself: the import publish made of the builder's ``_features`` before issue 16 is found."""
    root = tmp_path / "audio_dialogues"
    for sub in ("dataset", "publish"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text("")
    (root / "dataset" / "builder.py").write_text("def _features(): ...\n")
    (root / "dataset" / "api.py").write_text("from .builder import _features\n")  # same subpackage: allowed
    (root / "publish" / "repo_folder.py").write_text("from ..dataset.builder import _features\n")
    assert private_imports_across_subpackages(root) == [
        "audio_dialogues/publish/repo_folder.py:1 _features from audio_dialogues.dataset.builder"]
