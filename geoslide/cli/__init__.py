"""The ``geoslide`` command line: one module per sub-command, each a thin wrapper.

Each sub-command module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a function taking the parsed arguments and returning an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import GeoslideError

COMMANDS = ("prepare", "features", "train", "predict", "evaluate", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geoslide",
        description="Landslide susceptibility maps with the Self-Aligned CNN (SACNN).",
    )
    parser.add_argument("--version", action="version", version="geoslide 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"geoslide.cli.{name}")
        except ModuleNotFoundError as exc:  # a sub-command not built yet
            if exc.name != f"geoslide.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GeoslideError as exc:
        print(f"geoslide {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"geoslide {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
