"""Regenerate the module sections of docs/api.md from the code (signatures and the first
line of each docstring); the text above the first ``## `geoslide.`` heading is kept as written.

    .venv/bin/python docs/make_api.py
"""
from __future__ import annotations

import importlib
import re
import inspect
import pkgutil
from pathlib import Path

PACKAGES = ["names", "errors", "parallel", "store", "io", "features", "prepare", "learn", "maps",
            "evaluation", "accessor"]
"""The layers in import order (each imports only those before it; tests/test_layout.py)."""


def modules() -> list[str]:
    """Every documented module, package by package in layer order (the CLI and the numba
    kernels are left out: see ``geoslide --help`` and docs/aligned-features.md)."""
    out = []
    for pkg in PACKAGES:
        mod = importlib.import_module(f"geoslide.{pkg}")
        out.append(pkg)
        if hasattr(mod, "__path__"):
            subs = sorted(m.name for m in pkgutil.walk_packages(mod.__path__, f"{pkg}.")
                          if ".kernels" not in m.name)
            out += subs
    return out


def _first_line(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    para = doc.split("\n\n")[0].replace("\n", " ").strip()
    first = re.split(r"\.\s+(?=[A-Z])", para)[0].rstrip(".")
    return first + "." if para else "(no docstring)"


def _sig(obj) -> str:
    """The signature with annotations as written (``from __future__ import annotations``
    stores them as strings: shown without quotes)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    plain = sig.replace(
        parameters=[p.replace(annotation=_Raw(p.annotation)) if isinstance(p.annotation, str)
                    else p for p in sig.parameters.values()],
        return_annotation=(_Raw(sig.return_annotation)
                           if isinstance(sig.return_annotation, str) else sig.return_annotation))
    return str(plain)


class _Raw:
    """An annotation string printed as is."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _public(mod) -> list[str]:
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [n for n, v in vars(mod).items() if not n.startswith("_")
                 and (inspect.isfunction(v) or inspect.isclass(v))
                 and getattr(v, "__module__", None) == mod.__name__]
    return list(names)


def section(name: str) -> str:
    mod = importlib.import_module(f"geoslide.{name}")
    lines = [f"## `geoslide.{name}`", "", _first_line(mod), ""]
    for n in _public(mod):
        obj = getattr(mod, n, None)
        if obj is None or inspect.ismodule(obj):
            continue
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            lines.append(f"- **exception** `{n}` — {_first_line(obj)}")
        elif inspect.isclass(obj):
            lines.append(f"- **class** `{n}{_sig(obj)}` — {_first_line(obj)}")
            for m, f in vars(obj).items():
                if m.startswith("_"):
                    continue
                if inspect.isfunction(f):
                    lines.append(f"  - `.{m}{_sig(f)}` — {_first_line(f)}")
                elif hasattr(f, "target"):  # accessor forwarding: the target's signature
                    t = f.target()
                    sig = _sig(t).split(", ", 1)
                    rest = "(" + sig[1] if len(sig) > 1 else "()" + _sig(t).split(")", 1)[1]
                    lines.append(f"  - `.{m}{rest}` — {_first_line(t)} (`{t.__module__}."
                                 f"{t.__name__}`)")
        elif callable(obj):
            lines.append(f"- `{n}{_sig(obj)}` — {_first_line(obj)}")
        else:
            lines.append(f"- `{n}` = `{obj!r}`"[:200])
    return "\n".join(lines) + "\n"


def main() -> None:
    path = Path(__file__).with_name("api.md")
    head = path.read_text().split("\n## `geoslide.", 1)[0].rstrip("\n") + "\n\n"
    path.write_text(head + "\n".join(section(m) for m in modules()))


if __name__ == "__main__":
    main()
