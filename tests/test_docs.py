"""The documentation's code names what exists: every import in the Python blocks of docs/*.md,
the README and examples/, and every ``geoslide.<name>...`` chain they use after ``import
geoslide``, resolves (a renamed module or function fails here, not in a user's notebook)."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md", *ROOT.glob("examples/*.py")])
FENCE = re.compile(r"```python\n(.*?)```", re.S)


def _blocks(path: Path) -> list[str]:
    text = path.read_text()
    return [text] if path.suffix == ".py" else FENCE.findall(text)


def _chains(tree: ast.AST) -> set[str]:
    """``geoslide.a.b`` attribute chains read from the name ``geoslide``."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, n = [], node
            while isinstance(n, ast.Attribute):
                parts.append(n.attr)
                n = n.value
            if isinstance(n, ast.Name) and n.id == "geoslide":
                out.add(".".join(["geoslide", *reversed(parts)]))
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_names_exist(path):
    import geoslide

    bad = []
    for block in _blocks(path):
        try:
            tree = ast.parse(block)
        except SyntaxError:  # a block with shell prompts or elided parts
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("geoslide"):
                mod = importlib.import_module(node.module)
                bad += [f"from {node.module} import {a.name}" for a in node.names
                        if not hasattr(mod, a.name) and not (
                            hasattr(mod, "__path__")
                            and importlib.util.find_spec(f"{node.module}.{a.name}"))]
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("geoslide") and importlib.util.find_spec(a.name) is None:
                        bad.append(f"import {a.name}")
        for chain in _chains(tree):
            obj, parts = geoslide, chain.split(".")[1:]
            for part in parts:
                if not hasattr(obj, part):
                    bad.append(chain)
                    break
                obj = getattr(obj, part)
    assert not bad, f"{path.relative_to(ROOT)}: {sorted(set(bad))}"
