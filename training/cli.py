"""`python -m training` (also the `mtl-train` console script): the researcher's command line.

Subcommands live in `training/commands/<name>.py`; see that package's docstring for the protocol.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Order is the order shown by --help.
COMMANDS = (
    "synth",
    "synth-dense",
    "coco",
    "train",
    "evaluate",
    "export",
    "methods",
    "report",
    "sweep",
    "bench",
    "toy",
    "demo",
)


def optional_module(qualified: str):
    """Import `qualified`, or None if that module itself does not exist (errors inside it propagate)."""
    try:
        return importlib.import_module(qualified)
    except ModuleNotFoundError as exc:
        if exc.name == qualified:
            return None
        raise


def _load(name: str):
    return optional_module(f"training.commands.{name.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=(
            "Train, evaluate, compare and export the mtl_grasp RGB-D amodal instance segmentation "
            "network with any multi-task-learning (MTL) method; the dense NYU-v2 / CityScapes benchmarks "
            "train, evaluate and compare the same way (family: dense, docs/dense.md). Run "
            "`python -m training <command> --help` for a command's options."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMANDS:
        module = _load(name)
        if module is None:
            continue
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args._module.run(args) or 0)
    except ImportError as exc:
        if not getattr(exc, "install_hint", False):
            raise  # a genuine import bug keeps its traceback
        print(f"error: {exc}", file=sys.stderr)  # an optional extra is missing: say which one
        return 2
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Bad input: a one-line message naming the problem, no stack trace (a KeyError's str() would
        # wrap the message in quotes).
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
