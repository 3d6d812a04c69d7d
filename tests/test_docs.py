"""The documentation's code names what exists: every Python block of the pages (docs/**/*.md,
the README) parses, every import in them and in examples/, and every ``geoslide.<name>...``
chain they use after ``import geoslide``, resolves (a renamed module or function fails here,
not in a user's notebook); every ``geoslide ...`` command of a shell block is accepted by the
CLI's own parsers; the results pages render, "not measured yet" for a missing file."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([p for p in ROOT.glob("docs/**/*.md")
                if not {"_build", "generated", "jupyter_execute"} & set(p.parts)]
               + [ROOT / "README.md"])
FILES = sorted([*PAGES, *ROOT.glob("examples/*.py")])
FENCE = re.compile(r"```python\n(.*?)```", re.S)
SHELL = re.compile(r"```(?:bash|sh|shell|console)\n(.*?)```", re.S)


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
        except SyntaxError as exc:  # a page's Python block must be Python as written
            pytest.fail(f"{path.relative_to(ROOT)}: a Python block does not parse: {exc}\n{block}")
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


def _commands(text: str) -> list[str]:
    """The ``geoslide ...`` command lines of a page's shell blocks: continuation lines joined,
    a ``$ `` prompt dropped, shell variables set from the block's ``for VAR in A B`` loops
    (their first value) or else to ``0``."""
    out = []
    for block in SHELL.findall(text):
        block = re.sub(r"\s*\\\n\s*", " ", block)
        loops = dict(re.findall(r"\bfor (\w+) in (\S+)", block))
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if not re.match(r"geoslide(\s|$)", line):
                continue
            line = re.sub(r"\$\{?(\w+)\}?", lambda m: loops.get(m[1], "0"), line)
            out.append(line)
    return out


@pytest.fixture
def documented_models():
    """The example network of docs/own-model.md, registered as an installed package's
    entry point would register it (its commands name it)."""
    from torch import nn

    from geoslide.learn.models import MODELS, register

    register("twoconv", lambda in_channels, **kw: nn.Conv2d(in_channels, 1, 1))
    yield
    MODELS.pop("twoconv", None)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_commands_parse(path, documented_models, capsys):
    """Every ``geoslide`` command of a page is accepted by ``build_parser`` (paths need not
    exist: only the arguments are checked)."""
    from geoslide.cli import build_parser

    bad = []
    for line in _commands(path.read_text()):
        args = shlex.split(line, comments=True)[1:]
        try:
            build_parser(args).parse_args(args)
        except SystemExit as exc:
            if exc.code:
                err = capsys.readouterr().err.strip().splitlines()
                bad.append(f"{line}\n    {err[-1] if err else exc.code}")
    assert not bad, f"{path.relative_to(ROOT)}:\n" + "\n".join(bad)


def test_commands_are_found():
    """The command extraction sees the pages' commands (a broken regex would pass above)."""
    found = [c for p in PAGES for c in _commands(p.read_text())]
    assert len(found) > 40
    assert any(c.startswith("geoslide compare ") for c in found)
    assert _commands("```bash\nfor m in llr cnn; do\n  geoslide train s.zarr --model $m \\\n"
                     "    --seed $S\ndone\n```") == ["geoslide train s.zarr --model llr --seed 0"]


def _results():
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        import geoslide_results
    finally:
        sys.path.remove(str(ROOT / "docs" / "_ext"))
    return geoslide_results


def test_results_pages_render(tmp_path):
    """A results marker renders the JSON with its header line, or "not measured yet"."""
    r = _results()
    page = "<!-- results: missing.json | benchmarks/x.py --json missing.json -->"
    assert r.expand(page, root=tmp_path) == ("*Not measured yet* (`docs/results/missing.json`: "
                                             "`benchmarks/x.py --json missing.json` writes it).")
    (tmp_path / "bench.json").write_text(
        '{"command": "benchmarks/x.py", "date": "2026-12-06", "sizes": {"a": {"s": 1.5}}}')
    text = r.expand("<!-- results: bench.json -->", root=tmp_path)
    assert text.splitlines()[0] == ("**Run:** `benchmarks/x.py` · date 2026-12-06 · "
                                    "commit not recorded · machine not recorded")
    assert "| a | 1.5 |" in text
    for path in (ROOT / "docs" / "results").glob("*.json"):   # the committed ones
        assert r.render(path.name).startswith("**Run:** "), path.name


@pytest.mark.slow
@pytest.mark.parametrize("notebook", sorted((ROOT / "docs" / "gallery").glob("*.ipynb")),
                         ids=lambda p: p.name)
def test_gallery_notebook_runs(notebook):
    """The gallery's notebooks (shown with their stored outputs, never executed by the
    site's build) still run top to bottom from the repository root, on the real data."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    book = nbformat.read(notebook, as_version=4)
    nbclient.NotebookClient(book, timeout=3600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
