"""`python -m pipeline.console`: the same as `python -m pipeline console`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pipeline.console.cli import add_console_parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline")
    add_console_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["console", *(sys.argv[1:] if argv is None else argv)])
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
