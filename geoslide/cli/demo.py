"""``geoslide demo`` (temporary): prepare the Kashmir store and print its summary.

To be replaced by the full demo (features, training, prediction, report).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="prepare the Kashmir store and print a summary",
                              description="Prepare the real Kashmir data into OUT/kashmir.zarr "
                                          "and print pixels, positive rate and variables.")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..datasets import load
    from ..store import open_zarr, to_zarr
    from .prepare import summary

    path = Path(args.out) / "kashmir.zarr"
    to_zarr(load("kashmir"), path, mode="w", progress=not args.quiet)
    print(summary(open_zarr(path), path))
    return 0
